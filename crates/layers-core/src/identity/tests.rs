//! The account flows against a real store (SQLite), with mail captured as it is delivered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use layers_store::testing::TestDatabase;
use secrecy::SecretString;

use super::mailer::{Mail, SendError, Transport};
use super::*;
use crate::tasks::Tasks;

#[derive(Debug, Default)]
struct Outbox(Mutex<Vec<Mail>>);

#[async_trait]
impl Transport for Outbox {
    async fn deliver(&self, mail: &Mail) -> Result<(), SendError> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

struct Fixture {
    identity: IdentityService,
    outbox: Arc<Outbox>,
    clock: Clock,
    _db: TestDatabase,
    _tasks: Tasks,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TestDatabase::sqlite();
        let store = db.store().await;
        let tasks = Tasks::new();
        let outbox = Arc::new(Outbox::default());
        let clock = Clock::system();
        let identity = IdentityService::new(
            store.clone(),
            Mailer::start(outbox.clone(), &tasks),
            Audit::new(store),
            clock.clone(),
            IdentitySettings::new("https://layers.example/"),
            IdentityKeys { csrf: [7; 32], totp: [(1, [8; 32])].into_iter().collect(), totp_current: 1 },
            tasks.clone(),
        );
        Fixture { identity, outbox, clock, _db: db, _tasks: tasks }
    }

    /// Waits for the `n`th message (1-based).
    async fn mail(&self, n: usize) -> Mail {
        for _ in 0..500 {
            if let Some(m) = self.outbox.0.lock().unwrap().get(n - 1) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no message {n}");
    }

    fn sent(&self) -> usize {
        self.outbox.0.lock().unwrap().len()
    }
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn token_of(mail: &Mail, path: &str) -> String {
    let at = mail.text.find(&format!("https://layers.example{path}?token=")).expect("a link");
    let rest = &mail.text[at..];
    let link = rest.split_whitespace().next().unwrap();
    link.split("token=").nth(1).unwrap().to_owned()
}

const PASSWORD: &str = "tulip lantern harbour";

fn opened(outcome: LoginOutcome) -> NewSession {
    match outcome {
        LoginOutcome::Session(s) => s,
        LoginOutcome::SecondFactor(_) => panic!("a session, not a second step"),
    }
}

async fn confirmed(f: &Fixture, email: &str) -> UserId {
    let before = f.sent();
    f.identity.sign_up(email, &pw(PASSWORD), &Client::default()).await.unwrap();
    let mail = f.mail(before + 1).await;
    f.identity.confirm(&token_of(&mail, "/auth/confirm"), &Client::default()).await.unwrap()
}

#[tokio::test]
async fn sign_up_confirm_and_log_in() {
    let f = Fixture::new().await;
    let client = Client { ip: Some("203.0.113.5".parse().unwrap()), user_agent: Some("test".into()) };
    f.identity.sign_up(" Alice@Example.com ", &pw(PASSWORD), &client).await.unwrap();
    let mail = f.mail(1).await;
    assert_eq!(mail.to, "alice@example.com");
    assert!(mail.subject.contains("Confirm"));
    assert!(!mail.text.contains(PASSWORD));
    // Refused until confirmed: only after the right password is that said.
    assert!(matches!(
        f.identity.log_in("alice@example.com", &pw(PASSWORD), &client).await,
        Err(IdentityError::Unconfirmed)
    ));
    assert!(matches!(
        f.identity.log_in("alice@example.com", &pw("wrong password here"), &client).await,
        Err(IdentityError::BadCredentials)
    ));
    let token = token_of(&mail, "/auth/confirm");
    f.identity.confirm(&token, &client).await.unwrap();
    assert!(matches!(f.identity.confirm(&token, &client).await, Err(IdentityError::InvalidLink)), "single use");
    let session = opened(f.identity.log_in("alice@example.com", &pw(PASSWORD), &client).await.unwrap());
    let who = f.identity.session(secrecy::ExposeSecret::expose_secret(&session.token)).await.unwrap().unwrap();
    assert_eq!((who.email.as_str(), who.session_id), ("alice@example.com", session.session_id));
    let sessions = f.identity.sessions(who.user_id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].ip, client.ip);
    let kinds: Vec<String> = f.identity.activity(who.user_id, 10).await.unwrap().into_iter().map(|a| a.kind).collect();
    for k in ["account_created", "login_failed", "email_confirmed", "login_succeeded"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[tokio::test]
async fn signing_up_twice_answers_the_same_and_tells_the_owner() {
    let f = Fixture::new().await;
    confirmed(&f, "bob@example.com").await;
    f.identity.sign_up("bob@example.com", &pw("another good passphrase"), &Client::default()).await.unwrap();
    let note = f.mail(2).await;
    assert!(note.subject.contains("already have"), "{}", note.subject);
    // The first password still works: nothing was changed.
    opened(f.identity.log_in("bob@example.com", &pw(PASSWORD), &Client::default()).await.unwrap());
}

#[tokio::test]
async fn weak_passwords_and_bad_addresses_are_refused_before_anything_is_stored() {
    let f = Fixture::new().await;
    for (email, password) in [("c@example.com", "short"), ("c@example.com", "password1234"), ("not-an-email", PASSWORD)]
    {
        assert!(f.identity.sign_up(email, &pw(password), &Client::default()).await.is_err(), "{email} {password}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.sent(), 0);
}

#[tokio::test]
async fn throttling_engages_at_its_threshold_and_not_below() {
    let f = Fixture::new().await;
    confirmed(&f, "dan@example.com").await;
    let client = Client { ip: Some("198.51.100.7".parse().unwrap()), user_agent: None };
    for _ in 0..4 {
        let r = f.identity.log_in("dan@example.com", &pw("not the password"), &client).await;
        assert!(matches!(r, Err(IdentityError::BadCredentials)));
    }
    // Four failures: the right password still gets in (and clears the count).
    opened(f.identity.log_in("dan@example.com", &pw(PASSWORD), &client).await.unwrap());
    for _ in 0..5 {
        let _ = f.identity.log_in("dan@example.com", &pw("not the password"), &client).await;
    }
    // Five: refused, even with the right password, until the window ends.
    assert!(matches!(
        f.identity.log_in("dan@example.com", &pw(PASSWORD), &client).await,
        Err(IdentityError::Throttled(_))
    ));
    f.clock.advance(Duration::from_secs(15 * 60 + 1));
    opened(f.identity.log_in("dan@example.com", &pw(PASSWORD), &client).await.unwrap());
}

#[tokio::test]
async fn a_reset_link_works_once_and_ends_every_session() {
    let f = Fixture::new().await;
    confirmed(&f, "erin@example.com").await;
    let s1 = opened(f.identity.log_in("erin@example.com", &pw(PASSWORD), &Client::default()).await.unwrap());
    f.identity.forgot_password("erin@example.com", &Client::default()).await.unwrap();
    f.identity.forgot_password("nobody@example.com", &Client::default()).await.unwrap();
    let mail = f.mail(2).await;
    assert_eq!(mail.to, "erin@example.com");
    let token = token_of(&mail, "/reset-password");
    // A weak password does not use up the link.
    assert!(matches!(
        f.identity.reset_password(&token, &pw("123456789012"), &Client::default()).await,
        Err(IdentityError::WeakPassword(_))
    ));
    f.identity.reset_password(&token, &pw("a brand new passphrase"), &Client::default()).await.unwrap();
    assert!(matches!(
        f.identity.reset_password(&token, &pw("yet another passphrase"), &Client::default()).await,
        Err(IdentityError::InvalidLink)
    ));
    assert!(f.identity.session(secrecy::ExposeSecret::expose_secret(&s1.token)).await.unwrap().is_none());
    assert!(f.identity.log_in("erin@example.com", &pw(PASSWORD), &Client::default()).await.is_err());
    opened(f.identity.log_in("erin@example.com", &pw("a brand new passphrase"), &Client::default()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.sent(), 2, "no mail for an unknown address");
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_and_keeps_this_browser_in() {
    let f = Fixture::new().await;
    confirmed(&f, "fay@example.com").await;
    let phone = opened(f.identity.log_in("fay@example.com", &pw(PASSWORD), &Client::default()).await.unwrap());
    let laptop = opened(f.identity.log_in("fay@example.com", &pw(PASSWORD), &Client::default()).await.unwrap());
    let who = f.identity.session(secrecy::ExposeSecret::expose_secret(&laptop.token)).await.unwrap().unwrap();
    assert!(matches!(
        f.identity
            .change_password(&who, &pw("wrong current one"), &pw("new passphrase here"), &Client::default())
            .await,
        Err(IdentityError::WrongPassword)
    ));
    let fresh =
        f.identity.change_password(&who, &pw(PASSWORD), &pw("new passphrase here"), &Client::default()).await.unwrap();
    for old in [&phone, &laptop] {
        assert!(f.identity.session(secrecy::ExposeSecret::expose_secret(&old.token)).await.unwrap().is_none());
    }
    assert!(f.identity.session(secrecy::ExposeSecret::expose_secret(&fresh.token)).await.unwrap().is_some());
}

#[tokio::test]
async fn sessions_end_when_idle_and_tokens_are_checked_before_any_lookup() {
    let f = Fixture::new().await;
    confirmed(&f, "gus@example.com").await;
    let s = opened(f.identity.log_in("gus@example.com", &pw(PASSWORD), &Client::default()).await.unwrap());
    let token = secrecy::ExposeSecret::expose_secret(&s.token).to_owned();
    assert!(f.identity.session(&token).await.unwrap().is_some());
    let mut tampered = token.clone();
    tampered.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
    assert!(f.identity.session(&tampered).await.unwrap().is_none());
    assert!(f.identity.session("not-a-token").await.unwrap().is_none());
    f.clock.advance(Duration::from_secs(24 * 3600));
    assert!(f.identity.session(&token).await.unwrap().is_none(), "24 h idle");
}

#[test]
fn csrf_tokens_are_bound_to_what_they_were_made_for() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(Fixture::new());
    let t = f.identity.csrf_token("s:one");
    assert!(f.identity.csrf_valid("s:one", &t));
    assert!(!f.identity.csrf_valid("s:two", &t));
    assert!(!f.identity.csrf_valid("s:one", ""));
    assert!(!f.identity.csrf_valid("", &f.identity.csrf_token("")));
    assert!(!f.identity.csrf_valid("s:one", &t[..t.len() - 1]));
}

#[tokio::test]
async fn two_factor_is_asked_at_login_once_on_and_codes_work_once() {
    use layers_domain::identity::totp;
    let f = Fixture::new().await;
    confirmed(&f, "hal@example.com").await;
    let client = Client::default();
    let s = opened(f.identity.log_in("hal@example.com", &pw(PASSWORD), &client).await.unwrap());
    let who = f.identity.session(secrecy::ExposeSecret::expose_secret(&s.token)).await.unwrap().unwrap();
    let setup = f.identity.begin_two_factor(&who, &pw(PASSWORD), &client).await.unwrap();
    assert!(setup.uri.starts_with("otpauth://totp/Layers:hal@example.com?secret="));
    assert_eq!(f.identity.two_factor_status(who.user_id).await.unwrap(), two_factor::Status::Pending);
    let secret = base32_decode(&setup.secret_base32);
    let now = || f.clock.unix_ms() / 1000;
    let code_at = |t: u64| format!("{:06}", totp::code_at(&secret, totp::step_of(t)));
    assert!(matches!(f.identity.enable_two_factor(&who, "000000", &client).await, Err(IdentityError::WrongCode)));
    let recovery = f.identity.enable_two_factor(&who, &code_at(now()), &client).await.unwrap();
    assert_eq!(recovery.len(), 10);
    assert!(
        matches!(f.identity.begin_two_factor(&who, &pw(PASSWORD), &client).await, Err(IdentityError::Service(_))),
        "on stays on"
    );

    // The password alone no longer opens a session.
    let LoginOutcome::SecondFactor(ticket) =
        f.identity.log_in("hal@example.com", &pw(PASSWORD), &client).await.unwrap()
    else {
        panic!("a second step")
    };
    // The code that enabled it was used; the next step's code works once.
    assert!(matches!(
        f.identity.complete_login(&ticket.0, &code_at(now()), &client).await,
        Err(IdentityError::WrongCode)
    ));
    f.clock.advance(Duration::from_secs(30));
    let code = code_at(now());
    f.identity.complete_login(&ticket.0, &code, &client).await.unwrap();
    assert!(
        matches!(f.identity.complete_login(&ticket.0, &code, &client).await, Err(IdentityError::WrongCode)),
        "replay"
    );
    // A recovery code, once, in any case and with or without its dash.
    let r = recovery[0].to_uppercase().replace('-', "");
    f.identity.complete_login(&ticket.0, &r, &client).await.unwrap();
    assert!(matches!(f.identity.complete_login(&ticket.0, &recovery[0], &client).await, Err(IdentityError::WrongCode)));
    assert_eq!(
        f.identity.two_factor_status(who.user_id).await.unwrap(),
        two_factor::Status::On { recovery_codes_left: 9 }
    );
    // A forged or expired ticket.
    let mut forged = ticket.0.clone();
    forged.replace_range(0..2, "AA");
    assert!(matches!(f.identity.complete_login(&forged, &recovery[1], &client).await, Err(IdentityError::InvalidLink)));
    f.clock.advance(Duration::from_secs(301));
    assert!(matches!(
        f.identity.complete_login(&ticket.0, &recovery[1], &client).await,
        Err(IdentityError::InvalidLink)
    ));

    // Off: the password and a code.
    assert!(matches!(
        f.identity.disable_two_factor(&who, &pw(PASSWORD), "123456", &client).await,
        Err(IdentityError::WrongCode)
    ));
    f.identity.disable_two_factor(&who, &pw(PASSWORD), &recovery[2], &client).await.unwrap();
    assert!(matches!(f.identity.log_in("hal@example.com", &pw(PASSWORD), &client).await, Ok(LoginOutcome::Session(_))));
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".iter().position(|&a| a == c).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[tokio::test]
async fn the_mailer_stops_at_shutdown_and_sends_what_was_queued() {
    let tasks = Tasks::new();
    let outbox = Arc::new(Outbox::default());
    let mailer = Mailer::start(outbox.clone(), &tasks);
    let mail = Mail { to: "a@example.com".into(), subject: "s".into(), text: "t".into(), html: "h".into() };
    mailer.send(mail.clone());
    mailer.send(mail);
    // The mailer (and its queue) stay alive; shutdown must not wait for them to drop.
    tokio::time::timeout(Duration::from_secs(10), tasks.shutdown(Duration::from_secs(1))).await.expect("shutdown ends");
    assert_eq!(outbox.0.lock().unwrap().len(), 2);
    drop(mailer);
}
