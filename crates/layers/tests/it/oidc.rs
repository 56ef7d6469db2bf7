//! "Continue with Google" against a local OpenID Connect provider: a new account, an existing
//! one linked through a verified e-mail, and every way the provider's answer or the browser's
//! return can be forged (SPEC §6.1).

use layers_testkit::{AppOptions, Attack, Browser, MockOidc, OidcUser, Page, TestApp};

async fn app() -> (TestApp, MockOidc) {
    let idp = MockOidc::start().await;
    let opts = AppOptions { config: idp.config(), ..AppOptions::default() };
    (TestApp::spawn_with(opts).await.unwrap(), idp)
}

/// Clicks "Continue with Google" on the login page; returns the provider's redirect back to the
/// app (the browser is at the provider, which consents at once).
async fn to_provider(b: &mut Browser, redirect_to: &str) -> String {
    let login = b.get("/login").await;
    assert!(login.body.contains("Continue with Google"));
    let go = b.post("/auth/google", &[("csrf", &login.csrf()), ("redirectTo", redirect_to)]).await;
    assert_eq!(go.status, 303, "{}", go.body);
    let at_provider = go.location().unwrap().to_owned();
    for part in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "scope=openid"] {
        assert!(at_provider.contains(part), "{part} in {at_provider}");
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let back = http.get(&at_provider).send().await.unwrap();
    assert_eq!(back.status(), 303);
    back.headers()["location"].to_str().unwrap().to_owned()
}

async fn callback(app: &TestApp, b: &mut Browser, back: &str) -> Page {
    b.get(back.strip_prefix(&app.url).expect("back to this app")).await
}

#[tokio::test]
async fn a_new_person_signs_up_with_google_and_comes_back_to_the_same_account() {
    let (app, idp) = app().await;
    idp.sign_in_as(OidcUser { sub: "g-1".into(), email: "Nina@Gmail.example".into(), email_verified: true });
    let mut b = Browser::new(&app.url);
    let back = to_provider(&mut b, "/dashboard/settings").await;
    let done = callback(&app, &mut b, &back).await;
    assert_eq!(done.location(), Some("/dashboard/settings"));
    assert!(!b.cookies.contains_key("layers_oidc"), "the flow cookie is cleared");
    let settings = b.get("/dashboard/settings").await;
    assert!(settings.body.contains("nina@gmail.example"));
    let user = app.store().user_by_email("nina@gmail.example").await.unwrap().unwrap();
    let export = b.post("/dashboard/settings/export", &[("csrf", &settings.csrf())]).await;
    let data: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(data["sign_in_identities"][0]["subject"], "g-1", "the export names the linked identity");

    // Again, from another browser: the same account, by issuer and subject, even with a new e-mail.
    idp.sign_in_as(OidcUser { sub: "g-1".into(), email: "nina.new@gmail.example".into(), email_verified: true });
    let mut other = Browser::new(&app.url);
    let back = to_provider(&mut other, "").await;
    assert_eq!(callback(&app, &mut other, &back).await.location(), Some("/dashboard"));
    assert!(other.get("/dashboard/settings").await.body.contains("nina@gmail.example"));
    assert!(app.store().user_by_email("nina.new@gmail.example").await.unwrap().is_none());
    assert_eq!(app.store().user_by_identity(&idp.issuer, "g-1").await.unwrap(), Some(user.id));
}

#[tokio::test]
async fn an_existing_account_is_linked_only_through_a_verified_email() {
    let (app, idp) = app().await;
    let existing = app.create_user("omar@example.com", layers_domain::Tier::Pro).await;
    // Unverified at the provider: refused, nothing linked.
    idp.sign_in_as(OidcUser { sub: "g-2".into(), email: "omar@example.com".into(), email_verified: false });
    let mut b = Browser::new(&app.url);
    let back = to_provider(&mut b, "").await;
    let refused = callback(&app, &mut b, &back).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("Google sign-in did not work"));
    assert!(app.store().user_by_identity(&idp.issuer, "g-2").await.unwrap().is_none());
    // Verified: linked to the existing account.
    idp.sign_in_as(OidcUser { sub: "g-2".into(), email: "omar@example.com".into(), email_verified: true });
    let back = to_provider(&mut b, "").await;
    assert_eq!(callback(&app, &mut b, &back).await.location(), Some("/dashboard"));
    assert_eq!(app.store().user_by_identity(&idp.issuer, "g-2").await.unwrap(), Some(existing.id));
}

#[tokio::test]
async fn a_forged_return_or_a_forged_token_is_refused() {
    let (app, idp) = app().await;
    let mut b = Browser::new(&app.url);

    // A wrong state, or no flow cookie at all (someone else's link).
    let back = to_provider(&mut b, "").await;
    let forged_state = back.replace("state=", "state=x");
    assert_eq!(callback(&app, &mut b, &forged_state).await.status, 400);
    let back = to_provider(&mut b, "").await;
    let mut stranger = Browser::new(&app.url);
    assert_eq!(callback(&app, &mut stranger, &back).await.status, 400);
    assert!(!stranger.cookies.contains_key("layers_session"));

    // A code used twice: the provider refuses the second trade.
    let back = to_provider(&mut b, "").await;
    assert_eq!(callback(&app, &mut b, &back).await.status, 303);
    let mut again = b.clone();
    again.cookies.remove("layers_session");
    let flow = to_provider(&mut again, "").await;
    let (_, fresh_state) = flow.split_once("state=").unwrap();
    let (old_code, _) = back.split_once("&state=").unwrap();
    let replay = format!("{old_code}&state={fresh_state}");
    assert_eq!(callback(&app, &mut again, &replay).await.status, 400, "a reused code");

    for attack in [
        Attack::WrongNonce,
        Attack::WrongAudience,
        Attack::WrongIssuer,
        Attack::AlgNone,
        Attack::Hs256WithPublicKey,
        Attack::Expired,
    ] {
        idp.misbehave(attack);
        let mut fresh = Browser::new(&app.url);
        let back = to_provider(&mut fresh, "").await;
        let page = callback(&app, &mut fresh, &back).await;
        assert_eq!(page.status, 400, "{attack:?}");
        assert!(!fresh.cookies.contains_key("layers_session"), "{attack:?}");
    }
}

#[tokio::test]
async fn an_unconfirmed_sign_up_of_someone_elses_address_is_no_way_into_their_account() {
    let (app, idp) = app().await;
    // An attacker signs up with the victim's address and a password of their own, unconfirmed.
    let client = layers_core::identity::Client::default();
    let theirs = secrecy::SecretString::from("attacker chosen passphrase".to_owned());
    app.core.identity.sign_up("victim@gmail.example", &theirs, &client).await.unwrap();
    // The account is made after the answer.
    for _ in 0..200 {
        if app.store().user_by_email("victim@gmail.example").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(app.store().user_by_email("victim@gmail.example").await.unwrap().is_some());
    // The owner signs in with Google, which vouches for the address.
    idp.sign_in_as(OidcUser { sub: "g-3".into(), email: "victim@gmail.example".into(), email_verified: true });
    let mut b = Browser::new(&app.url);
    let back = to_provider(&mut b, "").await;
    assert_eq!(callback(&app, &mut b, &back).await.location(), Some("/dashboard"));
    // The attacker's password no longer opens it.
    let r = app.core.identity.log_in("victim@gmail.example", &theirs, &client).await;
    assert!(matches!(r, Err(layers_core::identity::IdentityError::BadCredentials)), "{r:?}");
}
