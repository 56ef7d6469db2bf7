//! Accounts over HTTP, as a browser without JavaScript meets them: sign-up, the e-mailed link
//! (through real SMTP to a mail catcher), login, sessions, logout, password reset and change,
//! and the attacks each page must refuse (SPEC §6.1, §6.2, §8.3).

use layers_testkit::{AppOptions, Browser, MailCatcher, Page, TestApp};

pub(crate) const PASSWORD: &str = "tulip lantern harbour";

pub(crate) async fn app_with_mail() -> (TestApp, MailCatcher) {
    let mail = MailCatcher::start().await;
    let opts = AppOptions {
        config: format!("[email]\nsmtp_url = \"{}\"\nfrom = \"Layers <no-reply@layers.test>\"\n", mail.url),
        ..AppOptions::default()
    };
    (TestApp::spawn_with(opts).await.unwrap(), mail)
}

/// The path and query of an e-mailed link to this app.
pub(crate) fn path_of(app: &TestApp, link: &str) -> String {
    link.strip_prefix(&app.url).expect("a link to this app").to_owned()
}

/// Signs up and confirms through the pages; returns the browser, logged out.
pub(crate) async fn signed_up(app: &TestApp, mail: &MailCatcher, email: &str) -> Browser {
    let mut b = Browser::new(&app.url);
    let form = b.get("/signup").await;
    let before = mail.to(email).len();
    let done = b.post("/signup", &[("csrf", &form.csrf()), ("email", email), ("password", PASSWORD)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let message = mail.wait_for(email, before + 1).await;
    let link = message.link(&format!("{}/auth/confirm?token=", app.url)).expect("a confirmation link");
    let page = b.get(&path_of(app, &link)).await;
    let confirmed =
        b.post("/auth/confirm", &[("csrf", &page.csrf()), ("token", &page.input_value("token").unwrap())]).await;
    assert_eq!(confirmed.location(), Some("/login?notice=confirmed"));
    b
}

pub(crate) async fn log_in(b: &mut Browser, email: &str, password: &str, redirect_to: &str) -> Page {
    let form = b.get("/login").await;
    b.post("/login", &[("csrf", &form.csrf()), ("email", email), ("password", password), ("redirectTo", redirect_to)])
        .await
}

fn assert_page_headers(p: &Page) {
    let csp = p.header("content-security-policy").unwrap_or_default();
    for part in ["default-src 'none'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(p.header("cache-control"), Some("no-store"));
    assert_eq!(p.header("x-frame-options"), Some("DENY"));
    assert_eq!(p.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn a_person_signs_up_confirms_logs_in_and_logs_out() {
    let (app, mail) = app_with_mail().await;
    let mut b = Browser::new(&app.url);
    let form = b.get("/signup").await;
    assert_eq!(form.status, 200);
    assert_page_headers(&form);
    assert!(form.body.contains("Create account"));
    let done =
        b.post("/signup", &[("csrf", &form.csrf()), ("email", "Alice@Example.com"), ("password", PASSWORD)]).await;
    assert!(done.body.contains("Check your inbox"), "{}", done.body);

    let message = mail.wait_for("alice@example.com", 1).await;
    assert!(message.subject().contains("Confirm"), "{}", message.subject());
    assert!(message.data.contains("text/plain") && message.data.contains("text/html"), "both parts");
    let link = message.link(&format!("{}/auth/confirm?token=", app.url)).unwrap();

    // Refused until confirmed, with a way to get the link again.
    let early = log_in(&mut b, "alice@example.com", PASSWORD, "").await;
    assert_eq!(early.status, 403);
    assert!(early.body.contains("Send the link again"));

    // Opening the link changes nothing (mail scanners open links); the button confirms, once.
    let page = b.get(&path_of(&app, &link)).await;
    assert_eq!(page.status, 200);
    let token = page.input_value("token").unwrap();
    let confirmed = b.post("/auth/confirm", &[("csrf", &page.csrf()), ("token", &token)]).await;
    assert_eq!(confirmed.location(), Some("/login?notice=confirmed"));
    let again = b.post("/auth/confirm", &[("csrf", &page.csrf()), ("token", &token)]).await;
    assert_eq!(again.status, 400, "a confirmation link works once");

    let before = b.cookies.clone();
    let logged_in = log_in(&mut b, "alice@example.com", PASSWORD, "").await;
    assert_eq!(logged_in.location(), Some("/dashboard"));
    let set = logged_in.header("set-cookie").unwrap();
    assert!(set.starts_with("layers_session=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    assert!(!before.contains_key("layers_session"));
    let session = b.cookies["layers_session"].clone();
    assert!(!before.values().any(|v| *v == session), "session fixation: the cookie is new at login");

    let dash = b.get("/dashboard").await;
    assert_eq!(dash.status, 200);
    assert!(dash.body.contains("Overview") && dash.body.contains("equals the sum of your ledger"), "{}", dash.body);
    let settings = b.get("/dashboard/settings").await;
    assert_eq!(settings.status, 200);
    assert_page_headers(&settings);
    assert!(settings.body.contains("alice@example.com") && settings.body.contains("This browser"));
    assert!(settings.body.contains("Logged in") && settings.body.contains("Log out everywhere"));

    let out = b.post("/logout", &[("csrf", &settings.csrf())]).await;
    assert_eq!(out.location(), Some("/login?notice=logged_out"));
    assert!(!b.cookies.contains_key("layers_session"));
    // The old cookie no longer works either.
    b.cookies.insert("layers_session".into(), session);
    let after = b.get("/dashboard/settings").await;
    assert_eq!(after.location(), Some("/login?redirectTo=/dashboard/settings"));
}

#[tokio::test]
async fn the_answers_do_not_tell_whether_an_email_is_registered() {
    let (app, mail) = app_with_mail().await;
    signed_up(&app, &mail, "known@example.com").await;
    let mut b = Browser::new(&app.url);
    let body_of = |p: &Page, email: &str| p.body.replace(email, "EMAIL");
    let f = b.get("/signup").await;
    let known = b.post("/signup", &[("csrf", &f.csrf()), ("email", "known@example.com"), ("password", PASSWORD)]).await;
    let fresh = b.post("/signup", &[("csrf", &f.csrf()), ("email", "fresh@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(
        (known.status, body_of(&known, "known@example.com")),
        (fresh.status, body_of(&fresh, "fresh@example.com"))
    );
    // The owner of the known address hears of it.
    assert!(mail.wait_for("known@example.com", 2).await.subject().contains("already have"));

    let wrong = log_in(&mut b, "known@example.com", "not the password at all", "").await;
    let unknown = log_in(&mut b, "nobody@example.com", "not the password at all", "").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(
        wrong.body.contains("Incorrect e-mail or password.") && unknown.body.contains("Incorrect e-mail or password.")
    );

    let f = b.get("/forgot-password").await;
    let known = b.post("/forgot-password", &[("csrf", &f.csrf()), ("email", "known@example.com")]).await;
    let unknown = b.post("/forgot-password", &[("csrf", &f.csrf()), ("email", "nobody@example.com")]).await;
    assert_eq!(body_of(&known, "known@example.com"), body_of(&unknown, "nobody@example.com"));
}

#[tokio::test]
async fn csrf_tokens_missing_from_another_session_or_cross_site_are_refused() {
    let (app, mail) = app_with_mail().await;
    let mut alice = signed_up(&app, &mail, "alice@example.com").await;
    let mut other = Browser::new(&app.url);
    let other_form = other.get("/login").await;

    let form = alice.get("/login").await;
    let creds = |csrf: &str| {
        vec![("csrf", csrf.to_owned()), ("email", "alice@example.com".into()), ("password", PASSWORD.into())]
    };
    let as_pairs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    for bad in ["", "forged", other_form.csrf().as_str()] {
        let pairs = as_pairs(&creds(bad));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = alice.post("/login", &refs).await;
        assert_eq!(p.status, 403, "csrf {bad:?}");
        assert!(!alice.cookies.contains_key("layers_session"));
    }
    let pairs = as_pairs(&creds(&form.csrf()));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cross = alice.post_with("/login", &refs, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, 403, "a form posted from another site");
    let ok = alice.post("/login", &refs).await;
    assert_eq!(ok.location(), Some("/dashboard"));

    // Signed in: the visitor token, or another session's token, does not change anything.
    let mut bob = signed_up(&app, &mail, "bob@example.com").await;
    log_in(&mut bob, "bob@example.com", PASSWORD, "").await;
    let bobs = bob.get("/dashboard/settings").await.csrf();
    for token in [form.csrf(), bobs] {
        let p = alice.post("/dashboard/settings/sessions/everywhere", &[("csrf", &token)]).await;
        assert_eq!(p.status, 403);
    }
    assert_eq!(alice.get("/dashboard/settings").await.status, 200, "still logged in");
}

#[tokio::test]
async fn redirect_targets_never_leave_the_site() {
    let (app, mail) = app_with_mail().await;
    let mut b = signed_up(&app, &mail, "carol@example.com").await;
    let gate = b.get("/dashboard/settings?tab=sessions").await;
    assert_eq!(gate.status, 303);
    assert_eq!(gate.location(), Some("/login?redirectTo=/dashboard/settings%3Ftab%3Dsessions"));
    for evil in [
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "%2F%2Fevil.example",
        "javascript:alert(1)",
        "https://evil.example/x",
    ] {
        let page = b.get(&format!("/login?redirectTo={}", urlencode(evil))).await;
        assert_eq!(page.input_value("redirectTo").as_deref(), Some(""), "{evil}");
        let p = log_in(&mut b, "carol@example.com", PASSWORD, evil).await;
        assert_eq!(p.location(), Some("/dashboard"), "{evil}");
    }
    let p = log_in(&mut b, "carol@example.com", PASSWORD, "/dashboard/settings?tab=sessions").await;
    assert_eq!(p.location(), Some("/dashboard/settings?tab=sessions"));
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn tampered_revoked_and_replaced_sessions_are_logged_out() {
    let (app, mail) = app_with_mail().await;
    let mut laptop = signed_up(&app, &mail, "dora@example.com").await;
    log_in(&mut laptop, "dora@example.com", PASSWORD, "").await;
    let mut phone = Browser::new(&app.url);
    log_in(&mut phone, "dora@example.com", PASSWORD, "").await;

    let mut tampered = laptop.clone();
    let cookie = tampered.cookies.get_mut("layers_session").unwrap();
    let flipped = if cookie.ends_with('A') { 'B' } else { 'A' };
    cookie.pop();
    cookie.push(flipped);
    assert_eq!(tampered.get("/dashboard/settings").await.status, 303);

    // The laptop revokes the phone's session.
    let settings = laptop.get("/dashboard/settings").await;
    let phone_session = settings.input_value("session").expect("the other session has a revoke button");
    let p = laptop
        .post("/dashboard/settings/sessions/revoke", &[("csrf", &settings.csrf()), ("session", &phone_session)])
        .await;
    assert_eq!(p.location(), Some("/dashboard/settings?notice=revoked"));
    assert_eq!(phone.get("/dashboard/settings").await.status, 303, "the revoked phone is out");
    assert_eq!(laptop.get("/dashboard/settings").await.status, 200);

    // A password change ends every other session; this browser stays in with a new cookie.
    log_in(&mut phone, "dora@example.com", PASSWORD, "").await;
    let settings = laptop.get("/dashboard/settings").await;
    let wrong = laptop
        .post(
            "/dashboard/settings/password",
            &[("csrf", &settings.csrf()), ("current", "not it at all"), ("new", "a fresh long passphrase")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("The current password is not correct."));
    let old_cookie = laptop.cookies["layers_session"].clone();
    let changed = laptop
        .post(
            "/dashboard/settings/password",
            &[("csrf", &settings.csrf()), ("current", PASSWORD), ("new", "a fresh long passphrase")],
        )
        .await;
    assert_eq!(changed.location(), Some("/dashboard/settings?notice=password"));
    assert_ne!(laptop.cookies["layers_session"], old_cookie, "rotated on the password change");
    assert_eq!(laptop.get("/dashboard/settings").await.status, 200);
    assert_eq!(phone.get("/dashboard/settings").await.status, 303);
    assert!(mail.wait_for("dora@example.com", 2).await.subject().contains("password was changed"));
}

#[tokio::test]
async fn a_reset_link_works_once_and_logs_out_everywhere() {
    let (app, mail) = app_with_mail().await;
    let mut b = signed_up(&app, &mail, "eve@example.com").await;
    log_in(&mut b, "eve@example.com", PASSWORD, "").await;
    let mut other = Browser::new(&app.url);
    let f = other.get("/forgot-password").await;
    other.post("/forgot-password", &[("csrf", &f.csrf()), ("email", "eve@example.com")]).await;
    let link = mail.wait_for("eve@example.com", 2).await.link(&format!("{}/reset-password?token=", app.url)).unwrap();
    let page = other.get(&path_of(&app, &link)).await;
    let token = page.input_value("token").unwrap();
    let weak =
        other.post("/reset-password", &[("csrf", &page.csrf()), ("token", &token), ("password", "qwerty123456")]).await;
    assert_eq!(weak.status, 422);
    assert!(weak.body.contains("too common"));
    let done = other
        .post("/reset-password", &[("csrf", &page.csrf()), ("token", &token), ("password", "brand new passphrase")])
        .await;
    assert_eq!(done.location(), Some("/login?notice=reset"));
    let again = other
        .post("/reset-password", &[("csrf", &page.csrf()), ("token", &token), ("password", "another passphrase x")])
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(b.get("/dashboard/settings").await.status, 303, "every session ended");
    assert_eq!(log_in(&mut other, "eve@example.com", "brand new passphrase", "").await.location(), Some("/dashboard"));
}

#[tokio::test]
async fn login_throttling_engages_at_its_threshold_over_http() {
    let (app, mail) = app_with_mail().await;
    let mut b = signed_up(&app, &mail, "finn@example.com").await;
    for _ in 0..5 {
        assert_eq!(log_in(&mut b, "finn@example.com", "not the password at all", "").await.status, 401);
    }
    let refused = log_in(&mut b, "finn@example.com", PASSWORD, "").await;
    assert_eq!(refused.status, 429);
    assert!(refused.body.contains("Too many attempts"));
}

#[tokio::test]
async fn export_has_every_row_and_no_secret_and_deletion_turns_keys_off_at_once() {
    let (app, mail) = app_with_mail().await;
    let mut b = signed_up(&app, &mail, "gail@example.com").await;
    log_in(&mut b, "gail@example.com", PASSWORD, "").await;
    let user = app.store().user_by_email("gail@example.com").await.unwrap().unwrap();
    app.grant(&user, "3").await;
    let key = app.create_key(&user, layers_domain::KeyEnv::Live).await;
    let settings = b.get("/dashboard/settings").await;
    let export = b.post("/dashboard/settings/export", &[("csrf", &settings.csrf())]).await;
    assert_eq!(export.status, 200);
    assert!(export.header("content-disposition").unwrap().starts_with("attachment; filename=\"layers-export-"));
    let data: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(data["account"]["email"], "gail@example.com");
    assert_eq!(data["balance"], "3");
    assert_eq!(data["api_keys"][0]["name"], "test");
    assert_eq!(data["ledger"].as_array().unwrap().len(), 1);
    assert!(data["audit_log"].as_array().unwrap().iter().any(|e| e["event"] == "login_succeeded"));
    for secret in [key.as_str(), PASSWORD, &b.cookies["layers_session"]] {
        assert!(!export.body.contains(secret), "the export holds no secret");
    }
    assert!(!export.body.contains("argon2"), "nor a hash");

    // A wrong password deletes nothing.
    let settings = b.get("/dashboard/settings").await;
    let wrong =
        b.post("/dashboard/settings/delete", &[("csrf", &settings.csrf()), ("password", "not it at all")]).await;
    assert_eq!(wrong.location(), Some("/dashboard/settings?notice=delete_wrong_password#delete"));
    let balance = |k: &str| app.get("/api/v1/balance").bearer_auth(k).send();
    assert_eq!(balance(&key).await.unwrap().status(), 200);

    let gone = b.post("/dashboard/settings/delete", &[("csrf", &settings.csrf()), ("password", PASSWORD)]).await;
    assert_eq!(gone.location(), Some("/login?notice=deleted"));
    assert_eq!(b.get("/dashboard/settings").await.status, 303, "logged out");
    assert_eq!(balance(&key).await.unwrap().status(), 401, "its keys no longer work");
    assert_eq!(log_in(&mut b, "gail@example.com", PASSWORD, "").await.status, 401);
    assert!(app.store().user_by_email("gail@example.com").await.unwrap().is_none(), "the address names no one now");
    assert_eq!(app.store().balance(user.id).await.unwrap().micros(), 3_000_000, "the ledger is kept");
    // The address can sign up afresh.
    let again = signed_up(&app, &mail, "gail@example.com").await;
    drop(again);
}

#[tokio::test]
async fn the_address_changes_only_through_a_link_sent_to_the_new_one() {
    let (app, mail) = app_with_mail().await;
    let mut b = signed_up(&app, &mail, "hugo@example.com").await;
    signed_up(&app, &mail, "taken@example.com").await;
    log_in(&mut b, "hugo@example.com", PASSWORD, "").await;
    let settings = b.get("/dashboard/settings").await;
    let wrong = b
        .post(
            "/dashboard/settings/email",
            &[("csrf", &settings.csrf()), ("email", "hugo@new.example"), ("password", "nope nope nope")],
        )
        .await;
    assert_eq!(wrong.location(), Some("/dashboard/settings?notice=email_wrong_password"));
    let sent = b
        .post(
            "/dashboard/settings/email",
            &[("csrf", &settings.csrf()), ("email", "Hugo@New.example"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(sent.location(), Some("/dashboard/settings?notice=email_sent"));
    let link =
        mail.wait_for("hugo@new.example", 1).await.link(&format!("{}/auth/change-email?token=", app.url)).unwrap();
    assert!(mail.wait_for("hugo@example.com", 2).await.subject().contains("change of e-mail address was requested"));
    // Nothing changed yet.
    assert!(b.get("/dashboard/settings").await.body.contains("hugo@example.com"));
    let page = b.get(&path_of(&app, &link)).await;
    let token = page.input_value("token").unwrap();
    let done = b.post("/auth/change-email", &[("csrf", &page.csrf()), ("token", &token)]).await;
    assert_eq!(done.location(), Some("/dashboard/settings?notice=email_changed"));
    assert!(b.get("/dashboard/settings").await.body.contains("hugo@new.example"));
    assert_eq!(b.post("/auth/change-email", &[("csrf", &page.csrf()), ("token", &token)]).await.status, 400, "once");
    assert!(mail.wait_for("hugo@example.com", 3).await.subject().contains("moved to another e-mail address"));
    let mut other = Browser::new(&app.url);
    assert_eq!(log_in(&mut other, "hugo@example.com", PASSWORD, "").await.status, 401);
    assert_eq!(log_in(&mut other, "hugo@new.example", PASSWORD, "").await.location(), Some("/dashboard"));

    // Someone else's address: the same answer here; its owner hears of it; no link exists.
    let settings = b.get("/dashboard/settings").await;
    let taken = b
        .post(
            "/dashboard/settings/email",
            &[("csrf", &settings.csrf()), ("email", "taken@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(taken.location(), Some("/dashboard/settings?notice=email_sent"));
    let note = mail.wait_for("taken@example.com", 2).await;
    assert!(note.subject().contains("already have") && note.link(&format!("{}/auth/change-email", app.url)).is_none());
}
