use super::*;
use proptest::prelude::*;

fn price() -> Price {
    Price::from_usd(3.0, 15.0, Some(0.3), None).unwrap()
}

#[test]
fn estimates_and_affordable_output() {
    let p = price();
    // 1,000 prompt tokens at $3/Mtok + 500 output at $15/Mtok = $0.0105 = 1.05 credits.
    assert_eq!(estimate(&p, 1000, 500), MicroCredits(1_050_000));
    let budget = MicroCredits(1_050_000);
    assert_eq!(affordable_output(&p, 1000, budget, 64_000), Some(500));
    assert_eq!(affordable_output(&p, 1000, MicroCredits(299_999), 64_000), None);
    assert_eq!(affordable_output(&p, 1000, MicroCredits(10_000_000_000), 64_000), Some(64_000));
}

#[test]
fn caps_resolve_key_then_account_then_tier() {
    let c = |r: Option<i64>, h: Option<i64>| Caps { per_request: r.map(MicroCredits), per_hour: h.map(MicroCredits) };
    let e = EffectiveCaps::resolve(c(Some(100), Some(1000)), c(None, Some(5000)), c(Some(10), None), None);
    assert_eq!(e.per_request, Some(MicroCredits(10)));
    assert_eq!(e.account_per_hour, Some(MicroCredits(5000)));
    assert_eq!(e.key_per_hour, None);
    let e =
        EffectiveCaps::resolve(c(Some(100), Some(1000)), c(Some(50), None), c(None, Some(7)), Some(MicroCredits(3)));
    assert_eq!(
        (e.per_request, e.account_per_hour, e.key_per_hour),
        (Some(MicroCredits(50)), Some(MicroCredits(1000)), Some(MicroCredits(7)))
    );
    assert_eq!(e.key_total, Some(MicroCredits(3)));
}

#[test]
fn a_hold_settles_within_the_lease() {
    let mut b = LeaseBook::default();
    assert!(!b.try_hold(MicroCredits(10)));
    b.add_lease(MicroCredits(100));
    assert!(b.try_hold(MicroCredits(60)));
    assert!(!b.try_hold(MicroCredits(50)), "only 40 free");
    assert!(b.try_hold(MicroCredits(40)));
    // The first request cost less than held: the rest is free again.
    assert_eq!(
        b.settle(MicroCredits(60), MicroCredits(25), None),
        Settled { charged: MicroCredits(25), shortfall: MicroCredits(0) }
    );
    assert_eq!(b.free(), 35);
    // The second cost more than its hold and more than the lease can cover.
    let s = b.settle(MicroCredits(40), MicroCredits(90), None);
    assert_eq!(s, Settled { charged: MicroCredits(75), shortfall: MicroCredits(15) });
    assert_eq!(b.free(), 0);
    b.flushed(MicroCredits(100));
    assert_eq!(b, LeaseBook::default());
}

#[derive(Clone, Debug)]
enum Op {
    Lease(i64),
    Hold(i64),
    Settle(usize, i64),
    Release(usize),
    Flush,
    Return(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..500).prop_map(Op::Lease),
        (0i64..200).prop_map(Op::Hold),
        (0usize..8, 0i64..400).prop_map(|(i, c)| Op::Settle(i, c)),
        (0usize..8).prop_map(Op::Release),
        Just(Op::Flush),
        (0i64..300).prop_map(Op::Return),
    ]
}

proptest! {
    /// Whatever happens, the book stays consistent, nothing is charged beyond the credit leased,
    /// and granted = charged + returned + what remains.
    #[test]
    fn the_book_never_overspends(ops in proptest::collection::vec(op(), 1..200)) {
        let mut b = LeaseBook::default();
        let mut holds: Vec<i64> = Vec::new();
        let (mut granted, mut charged, mut returned, mut flushed) = (0i64, 0i64, 0i64, 0i64);
        for op in ops {
            match op {
                Op::Lease(n) => { b.add_lease(MicroCredits(n)); granted += n; }
                Op::Hold(n) => if b.try_hold(MicroCredits(n)) { holds.push(n) },
                Op::Settle(i, cost) => if !holds.is_empty() {
                    let h = holds.remove(i % holds.len());
                    let s = b.settle(MicroCredits(h), MicroCredits(cost), None);
                    prop_assert_eq!(s.charged.0 + s.shortfall.0, cost);
                    charged += s.charged.0;
                },
                Op::Release(i) => if !holds.is_empty() { let h = holds.remove(i % holds.len()); b.release(MicroCredits(h)); },
                Op::Flush => { let u = b.unflushed; b.flushed(MicroCredits(u)); flushed += u; }
                Op::Return(n) => { returned += b.take_free(MicroCredits(n)).0; }
            }
            prop_assert!(b.is_consistent(), "{:?}", b);
            prop_assert_eq!(b.held, holds.iter().sum::<i64>());
            prop_assert!(charged <= granted - returned);
            prop_assert_eq!(granted, flushed + returned + b.lease);
        }
    }
}

#[test]
fn the_hold_covers_the_dearest_rate_the_provider_may_bill_the_prompt_at() {
    let price = Price::from_usd(3.0, 15.0, Some(0.30), None).unwrap().with_cache_write(Some(3.75)).unwrap();
    // 1,000 prompt tokens all written to the cache: 1,000 × 3.75 US$/Mtok, not 1,000 × 3.00.
    assert_eq!(estimate(&price, 1_000, 0).0, 1_000 * 375);
    let plain = Price::from_usd(3.0, 15.0, Some(0.30), None).unwrap();
    assert_eq!(estimate(&plain, 1_000, 0).0, 1_000 * 300);
}

#[test]
fn a_cost_beyond_the_hold_is_paid_from_free_lease_credit_within_the_per_request_cap() {
    let mut b = LeaseBook::default();
    b.add_lease(MicroCredits(1_000));
    assert!(b.try_hold(MicroCredits(100)));
    // The provider billed 400 on a 100 hold: the lease's free credit pays it, up to the cap.
    let s = b.settle(MicroCredits(100), MicroCredits(400), Some(MicroCredits(250)));
    assert_eq!(s, Settled { charged: MicroCredits(250), shortfall: MicroCredits(150) });
    assert!(b.try_hold(MicroCredits(100)));
    let s = b.settle(MicroCredits(100), MicroCredits(400), None);
    assert_eq!(s, Settled { charged: MicroCredits(400), shortfall: MicroCredits::ZERO });
    assert_eq!(b.free(), 350);
    assert!(b.is_consistent());
}
