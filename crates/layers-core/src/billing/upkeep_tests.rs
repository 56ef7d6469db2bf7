use std::time::Duration;

use futures_util::StreamExt;
use layers_domain::{KeyEnv, KeyId, MicroCredits, Price, Tier, UserId};
use layers_store::testing::TestDatabase;
use layers_store::{CapOverrides, LeaseState, NewTransaction, NewUser, RateOverrides, TransactionKind};

use super::*;
use crate::auth::Principal;
use crate::billing::{Billing, BillingError, BillingSettings, ReserveRequest};
use crate::broadcast::Broadcaster;
use crate::clock::Clock;

fn request<'a>(p: &'a Principal, price: &'a Price) -> ReserveRequest<'a> {
    ReserveRequest {
        principal: p,
        price,
        prompt_tokens: 10,
        requested_output: Some(10),
        choices: 1,
        model_output_cap: 100,
        images: 0,
        fees: MicroCredits::ZERO,
    }
}

fn principal(user: UserId) -> Principal {
    Principal {
        key_id: KeyId::random(),
        user_id: user,
        env: KeyEnv::Live,
        tier: Tier::Team,
        spend_limit: None,
        limit_period: Default::default(),
        key_caps: CapOverrides::default(),
        account_caps: CapOverrides { per_request: None, per_hour: Some(MicroCredits(i64::MAX / 4)) },
        account_rate: RateOverrides::default(),
    }
}

/// 10,000 keys that went idle are given back in one database call, while a busy key's lease is
/// renewed on time throughout: release, renewal and reaping never wait on one another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_keys_do_not_starve_the_renewal_of_a_busy_one() {
    const IDLE_KEYS: usize = 10_000;
    let db = TestDatabase::sqlite();
    let store = db.store().await;
    let now = time::OffsetDateTime::now_utc();
    let user = UserId::random();
    store
        .create_user(&NewUser { id: user, email: "idle@example.com".into(), tier: Tier::Team, created_at: now })
        .await
        .unwrap();
    store
        .apply_transaction(&NewTransaction {
            id: uuid::Uuid::new_v4(),
            user_id: user,
            kind: TransactionKind::Grant,
            amount: MicroCredits(1_000_000_000_000),
            idempotency_key: "grant".into(),
            reason: None,
            request_id: None,
            allow_negative: false,
            created_at: now,
        })
        .await
        .unwrap();
    let settings = BillingSettings {
        // A lease is spent only for two thirds of its TTL after the grant was asked for: with
        // 3 s, a grant that took SQLite over 2 s beside other tests came back already unusable.
        lease_ttl: Duration::from_secs(6),
        idle_release: Duration::from_millis(500),
        reaper_interval: Duration::from_secs(1),
        ..BillingSettings::default()
    };
    let tasks = Tasks::new();
    let billing = Billing::start(store.clone(), settings, Broadcaster::default(), &tasks, Clock::system()).await;
    let price = Price::from_usd(1.0, 1.0, None, None).unwrap();

    let started = std::time::Instant::now();
    let idle: Vec<Principal> = (0..IDLE_KEYS).map(|_| principal(user)).collect();
    futures_util::stream::iter(&idle)
        .for_each_concurrent(4, |p| async {
            // A hold released unused: the key's lease stays. Ten thousand grants on SQLite can
            // queue one past the billing database timeout; that refusal is not what this test
            // is about, so such a request is simply made again.
            for attempt in 0.. {
                match billing.reserve(request(p, &price)).await {
                    Ok(hold) => {
                        drop(hold);
                        break;
                    }
                    Err(BillingError::Unavailable(_)) if attempt < 20 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(err) => panic!("reserve failed: {err:?}"),
                }
            }
        })
        .await;
    println!("{IDLE_KEYS} leases taken in {:?}", started.elapsed());
    // A busy key, for longer than two TTLs while the idle ones are given back.
    let busy = principal(user);
    let busy_until = tokio::time::Instant::now() + Duration::from_secs(13);
    while tokio::time::Instant::now() < busy_until {
        drop(billing.reserve(request(&busy, &price)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leases = store.leases_of_user(user).await.unwrap();
    let active: Vec<_> = leases.iter().filter(|l| l.state == LeaseState::Active).collect();
    assert_eq!(leases.len(), IDLE_KEYS + 1, "the busy key kept one lease: it was renewed, never reaped");
    assert_eq!(active.len(), 1, "every idle lease was given back");
    assert_eq!(active[0].key_id, busy.key_id);
    assert!(leases.iter().all(|l| l.state != LeaseState::Expired), "nothing expired: renewal kept up");
    tasks.shutdown(Duration::from_secs(5)).await;
}
