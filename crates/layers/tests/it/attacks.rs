//! The attack suite (issue 16): what an attacker who read the reference implementation's
//! security guide would try first, each against the real server. Every answer must be a clear
//! 4xx (never a 5xx, never someone else's data), and the server must stay up.

use std::time::Duration;

use layers_domain::{KeyEnv, Tier};
use layers_testkit::{AppOptions, Browser, MailCatcher, MockOpenAi, TestApp};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accounts::{log_in, signed_up, PASSWORD};
use crate::billing::{exact, EXACT_MODEL};

struct Target {
    app: TestApp,
    mail: MailCatcher,
    _mock: MockOpenAi,
}

async fn target() -> Target {
    let mail = MailCatcher::start().await;
    let mock = MockOpenAi::start().await;
    let mut opts = AppOptions::default();
    opts.env.push(("LAYERS_ALLOWED_ORIGINS".into(), "https://app.example.com".into()));
    let opts = opts
        .with_mock(&mock)
        .config(EXACT_MODEL)
        .config(&format!("[email]\nsmtp_url = \"{}\"\nfrom = \"Layers <no-reply@layers.test>\"\n", mail.url));
    Target { app: TestApp::spawn_with(opts).await.unwrap(), mail, _mock: mock }
}

async fn person(t: &Target, email: &str) -> (Browser, layers_store::User, String) {
    let mut b = signed_up(&t.app, &t.mail, email).await;
    assert_eq!(log_in(&mut b, email, PASSWORD, "").await.location(), Some("/dashboard"));
    let user = t.app.core.accounts.user_by_email(email).await.unwrap();
    t.app.core.accounts.set_tier(user.id, Tier::Pro).await.unwrap();
    t.app.grant(&user, "5").await;
    let key = t.app.create_key(&user, KeyEnv::Live).await;
    (b, user, key)
}

/// Sends raw bytes and returns the status line's code (0 when the server closed at once).
async fn raw(app: &TestApp, request: &[u8]) -> u16 {
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await.unwrap_or(Ok(0)).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A chat request with this raw JSON body.
async fn chat_body(app: &TestApp, key: &str, body: String) -> reqwest::Result<reqwest::Response> {
    app.http
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

async fn alive(app: &TestApp) {
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200, "the server is still up");
}

#[tokio::test]
async fn the_reference_test_mode_header_opens_no_route() {
    let t = target().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let headers = [
        ("x-layers-test-mode", "layers-integration-test-2026"),
        ("x-layers-test-mode", "true"),
        ("x-layers-test-secret", "layers-integration-test-2026"),
    ];
    let api: &[(&str, &str)] = &[
        ("POST", "/v1/chat/completions"),
        ("POST", "/api/v1/chat"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/images/generations"),
        ("GET", "/api/v1/balance"),
        ("GET", "/api/v1/usage"),
        ("GET", "/api/v1/generation?id=req_x"),
    ];
    for (method, path) in api {
        let mut req = client.request(method.parse().unwrap(), format!("{}{path}", t.app.url));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.json(&exact()).send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with the test-mode header");
    }
    for path in [
        "/dashboard",
        "/dashboard/keys",
        "/dashboard/usage",
        "/dashboard/billing",
        "/dashboard/security",
        "/dashboard/settings",
    ] {
        let mut req = client.get(format!("{}{path}", t.app.url));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"), "{path}: to the login page");
    }
}

#[tokio::test]
async fn another_persons_keys_sessions_usage_and_purchases_are_out_of_reach() {
    let t = target().await;
    let (mut alice, _, alice_key) = person(&t, "alice@example.com").await;
    let (mut bob, bob_user, bob_key) = person(&t, "bob@example.com").await;
    let r = t.app.chat(&bob_key, &exact()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bob_request = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let bob_row = t.app.wait_for_usage(&bob_user, 1).await.remove(0);
    let bob_key_id = t.app.store().keys_of_user(bob_user.id).await.unwrap()[0].id;

    // Alice's session: Bob's key, Bob's request, Bob's key's state form.
    assert_eq!(alice.get(&format!("/dashboard/keys/{bob_key_id}")).await.status, 404);
    assert_eq!(alice.get(&format!("/dashboard/usage/{}", bob_row.id)).await.status, 404);
    let page = alice.get("/dashboard/keys").await;
    let off = alice
        .post(&format!("/dashboard/keys/{bob_key_id}/state"), &[("csrf", &page.csrf()), ("action", "deactivate")])
        .await;
    assert_eq!(off.status, 404);
    assert_eq!(t.app.chat(&bob_key, &exact()).send().await.unwrap().status(), 200, "Bob's key still works");
    // Alice's key: Bob's request by id.
    let r = t.app.get(&format!("/api/v1/generation?id={bob_request}")).bearer_auth(&alice_key).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Bob's session cookie is Bob's: Alice's CSRF token does not work with it.
    let bob_page = bob.get("/dashboard/keys").await;
    let forged = bob.post("/dashboard/keys", &[("csrf", &page.csrf()), ("name", "x"), ("env", "live")]).await;
    assert_eq!(forged.status, 403, "a CSRF token from another session is refused");
    assert_eq!(bob_page.status, 200);
    // A made-up Checkout Session of someone else.
    assert_eq!(alice.get("/dashboard/billing/checkout/success?session_id=cs_test_bobs").await.status, 404);
}

#[tokio::test]
async fn sql_and_script_injection_are_text() {
    let t = target().await;
    let (mut b, user, key) = person(&t, "mallory@example.com").await;
    let evil = "<script>alert(1)</script>' OR '1'='1'; DROP TABLE api_keys; --";
    let page = b.get("/dashboard/keys").await;
    let created = b.post("/dashboard/keys", &[("csrf", &page.csrf()), ("name", evil), ("env", "live")]).await;
    assert_eq!(created.status, 200);
    let list = b.get("/dashboard/keys").await;
    assert!(!list.body.contains("<script>alert(1)"), "rendered as text");
    assert!(list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(t.app.store().keys_of_user(user.id).await.unwrap().len(), 2, "the table is there, both keys too");
    for query in [
        "/dashboard/usage?model=%27%20OR%201%3D1--",
        "/dashboard/usage?provider=%3Cscript%3E",
        "/dashboard/usage?key=%27%3B--",
        "/dashboard/usage?from=%27&until=%3Cb%3E",
        "/dashboard/usage.csv?model=%27%20OR%20%271%27%3D%271",
        "/dashboard/security?type=%27%20OR%201%3D1--",
    ] {
        let p = b.get(query).await;
        assert!(p.status < 500, "{query}: {}", p.status);
        assert!(!p.body.contains("<script>"), "{query}: reflected as markup");
    }
    let filtered = b.get("/dashboard/usage?model=%27%20OR%201%3D1--").await;
    assert!(filtered.status == 200 || filtered.status == 400);
    for model in ["' OR 1=1 --", "<script>", "mock/exact'; --"] {
        let r = t
            .app
            .chat(&key, &json!({"model": model, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        assert!((400..500).contains(&r.status().as_u16()), "{model}: {}", r.status());
        // The error names the model, as OpenAI's does: as JSON, which no browser runs.
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let r = t.app.get("/api/v1/generation?id=%27%20OR%201%3D1--").bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 404);
    alive(&t.app).await;
}

#[tokio::test]
async fn oversized_and_deeply_nested_json_are_refused_cleanly() {
    let t = target().await;
    let (_, _, key) = person(&t, "big@example.com").await;
    let huge =
        format!(r#"{{"model":"mock/exact","messages":[{{"role":"user","content":"{}"}}]}}"#, "a".repeat(12 << 20));
    let r = chat_body(&t.app, &key, huge).await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may close the connection once the limit is passed: also a refusal.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!(r#"{{"model":"mock/exact","messages":{deep}}}"#);
    let r = chat_body(&t.app, &key, body).await.unwrap();
    assert_eq!(r.status(), 400);
    let deep_object = format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let r = chat_body(&t.app, &key, deep_object).await.unwrap();
    assert_eq!(r.status(), 400);
    alive(&t.app).await;
}

#[tokio::test]
async fn ambiguous_and_smuggled_requests_are_refused() {
    let t = target().await;
    let (_, _, key) = person(&t, "smuggle@example.com").await;
    let body = serde_json::to_string(&exact()).unwrap();
    // Two credentials: refused, not served as either.
    let chat = |headers: Vec<(&'static str, String)>| {
        let mut req =
            t.app.http.post(format!("{}/v1/chat/completions", t.app.url)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body.clone()).send()
    };
    let bearer = format!("Bearer {key}");
    // (headers, the answer, what it shows)
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("authorization", bearer.clone()), ("authorization", "Bearer lyr_live_sk_someoneelse".into())],
            401,
            "two Authorization headers",
        ),
        (
            vec![("authorization", bearer.clone()), ("x-api-key", "lyr_live_sk_someoneelse".into())],
            401,
            "Authorization and x-api-key naming different keys",
        ),
        (
            vec![("authorization", bearer.clone()), ("x-api-key", key.clone())],
            200,
            "the same key twice is not ambiguous",
        ),
        (
            vec![("authorization", format!("BEARER {key}")), ("x-api-key", key.clone())],
            200,
            "the same key in another case",
        ),
        (
            vec![("authorization", bearer.clone()), ("x-api-key", String::new())],
            200,
            "an empty x-api-key is no credential",
        ),
    ];
    for (headers, want, what) in cases {
        assert_eq!(chat(headers).await.unwrap().status(), want, "{what}");
    }
    // Request smuggling at the HTTP layer.
    let len = body.len();
    let both = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    assert_eq!(raw(&t.app, both.as_bytes()).await, 400, "Content-Length with Transfer-Encoding");
    let bare_cr =
        format!("GET /api/v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\rX-Injected: 1\r\n\r\n");
    assert_eq!(raw(&t.app, bare_cr.as_bytes()).await, 400, "a bare CR in a header");
    let lf_only_value = format!(
        "GET /api/v1/balance HTTP/1.1\r\nHost: x\r\nX-A: a\nInjected: b\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    let status = raw(&t.app, lf_only_value.as_bytes()).await;
    assert!(status == 400 || status == 200, "a bare LF splits headers at most: {status}");
    let two_lengths = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 2\r\nContent-Length: {len}\r\n\r\n{body}"
    );
    assert_eq!(raw(&t.app, two_lengths.as_bytes()).await, 400, "two different Content-Lengths");
    alive(&t.app).await;
}

#[tokio::test]
async fn cors_answers_only_listed_origins() {
    let t = target().await;
    let (_, _, key) = person(&t, "cors@example.com").await;
    for origin in ["https://evil.example", "null", "https://app.example.com.evil.example", "http://app.example.com"] {
        let pre = t
            .app
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/v1/chat/completions", t.app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(pre.headers().get("access-control-allow-origin").is_none(), "preflight from {origin}");
        let r = t.app.get("/api/v1/balance").bearer_auth(&key).header("origin", origin).send().await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{origin}");
        assert!(r.headers().get("access-control-allow-credentials").is_none());
    }
    let r = t
        .app
        .get("/api/v1/balance")
        .bearer_auth(&key)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com", "the listed origin is served");
    // Pages never answer cross-origin reads, and refuse cross-site posts.
    let page = t.app.get("/login").header("origin", "https://evil.example").send().await.unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
    let post = t
        .app
        .http
        .post(format!("{}/login", t.app.url))
        .header("sec-fetch-site", "cross-site")
        .form(&[("email", "cors@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
}

/// The audit trail of SPEC §8.4, as a person and their key produce it, each event written by
/// the code path that caused it.
#[tokio::test]
async fn the_audit_trail_has_every_event_spec_8_4_lists() {
    let t = target().await;
    let (mut b, user, key) = person(&t, "trail@example.com").await;
    // Login failed, then succeeded (the person logged in above).
    let mut stranger = Browser::new(&t.app.url);
    log_in(&mut stranger, "trail@example.com", "not the password", "").await;
    // Keys: created, deactivated, deleted (through the page).
    let page = b.get("/dashboard/keys").await;
    let shown = b.post("/dashboard/keys", &[("csrf", &page.csrf()), ("name", "audited"), ("env", "live")]).await;
    let at = shown.body.find("/dashboard/keys/").unwrap() + "/dashboard/keys/".len();
    let id = shown.body[at..at + 36].to_owned();
    let csrf = b.get("/dashboard/keys").await.csrf();
    b.post(&format!("/dashboard/keys/{id}/state"), &[("csrf", &csrf), ("action", "deactivate")]).await;
    b.post(&format!("/dashboard/keys/{id}/state"), &[("csrf", &csrf), ("action", "delete")]).await;
    // Tier changed; credits granted.
    t.app.core.accounts.set_tier(user.id, Tier::Starter).await.unwrap();
    // An expensive request (above the per-request cap) and a rate limit hit.
    t.app
        .core
        .accounts
        .set_caps(
            user.id,
            layers_store::CapOverrides { per_request: Some(layers_domain::MicroCredits(10_000)), per_hour: None },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = t
        .app
        .chat(&key, &json!({"model": "mock/exact", "max_tokens": 4000, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    t.app
        .core
        .accounts
        .set_rate(user.id, layers_store::RateOverrides { requests_per_minute: Some(1), tokens_per_minute: None })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        t.app.get("/api/v1/balance").bearer_auth(&key).send().await.unwrap();
    }
    // Data exported; password changed (other sessions end); sessions revoked everywhere.
    let settings = b.get("/dashboard/settings").await;
    b.post("/dashboard/settings/export", &[("csrf", &settings.csrf()), ("password", PASSWORD)]).await;
    let settings = b.get("/dashboard/settings").await;
    b.post(
        "/dashboard/settings/password",
        &[("csrf", &settings.csrf()), ("current", PASSWORD), ("new", "a much newer passphrase")],
    )
    .await;
    let settings = b.get("/dashboard/settings").await;
    b.post("/dashboard/settings/sessions/everywhere", &[("csrf", &settings.csrf())]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds: Vec<String> =
        t.app.store().audit_events(user.id, 500).await.unwrap().into_iter().map(|e| e.event_type).collect();
    for want in [
        "account_created",
        "login_failed",
        "login_succeeded",
        "key_created",
        "key_deactivated",
        "key_deleted",
        "tier_changed",
        "credits_granted",
        "expensive_request_refused",
        "rate_limit_exceeded",
        "data_exported",
        "password_changed",
        "sessions_revoked",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn no_header_opens_the_other_routes_and_pages_without_a_session_refuse_posts() {
    let t = target().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (method, path) in [("POST", "/api/v1/image"), ("POST", "/webhooks/stripe"), ("GET", "/v1/models?x=1")] {
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", t.app.url))
            .header("x-layers-test-mode", "layers-integration-test-2026")
            .json(&json!({"model": "mock/exact", "prompt": "x"}))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        // Images need a key (401); the Stripe webhook is off here (404) and would need a
        // signature; the model list is public by design and reveals no account.
        assert!(s == 401 || s == 404 || (path.starts_with("/v1/models") && s == 200), "{method} {path}: {s}");
    }
    for path in [
        "/dashboard/keys",
        "/dashboard/keys/alerts",
        "/dashboard/billing/buy",
        "/dashboard/security/lock-down",
        "/dashboard/settings/password",
        "/dashboard/settings/export",
        "/dashboard/settings/delete",
    ] {
        let r = client
            .post(format!("{}{path}", t.app.url))
            .header("x-layers-test-mode", "layers-integration-test-2026")
            .form(&[("csrf", "x"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        assert!(s == 303 || s == 403, "POST {path} without a session: {s}");
    }
}

#[tokio::test]
async fn injection_in_the_other_forms_and_parameters_is_refused_or_inert() {
    let t = target().await;
    let (mut b, _, key) = person(&t, "forms@example.com").await;
    // Sign-up with markup and header injection in the address.
    let mut visitor = Browser::new(&t.app.url);
    let page = visitor.get("/signup").await;
    for email in ["<script>alert(1)</script>@evil.example", "a@b.example\r\nBcc: victim@c.example", "' OR 1=1 --"] {
        let r = visitor.post("/signup", &[("csrf", &page.csrf()), ("email", email), ("password", PASSWORD)]).await;
        assert!(r.status < 500, "{email:?}: {}", r.status);
        assert!(!r.body.contains("<script>alert(1)"), "{email:?} reflected as markup");
    }
    // An alert webhook may only be a public https URL.
    let keys = b.get("/dashboard/keys").await;
    for url in
        ["javascript:alert(1)", "http://127.0.0.1:6379/", "https://user:pass@evil.example/", "file:///etc/passwd"]
    {
        let r = b
            .post(
                "/dashboard/keys/alerts",
                &[("csrf", &keys.csrf()), ("low_balance", ""), ("key_thresholds", ""), ("webhook_url", url)],
            )
            .await;
        assert_eq!(r.status, 422, "{url}");
    }
    // A new e-mail address with a header break.
    let settings = b.get("/dashboard/settings").await;
    let r = b
        .post(
            "/dashboard/settings/email",
            &[("csrf", &settings.csrf()), ("email", "x@y.example\r\nBcc: z@w.example"), ("password", PASSWORD)],
        )
        .await;
    // Answered on the settings page with the reason; no change is started, no mail sent.
    assert_eq!(r.status, 303);
    let notice = r.location().unwrap_or_default().to_owned();
    assert!(notice.starts_with("/dashboard/settings?notice=") && !notice.ends_with("email_sent"), "{notice}");
    let mine = t.app.core.accounts.user_by_email("forms@example.com").await.unwrap();
    assert_eq!(mine.email, "forms@example.com");
    assert!(
        t.mail.to("z@w.example").is_empty() && t.mail.to("x@y.example").is_empty(),
        "no mail to the injected addresses"
    );
    // API parameters.
    for query in [
        "/api/v1/usage?limit=%27%20OR%201%3D1",
        "/api/v1/usage?before=%3Cscript%3E",
        "/api/v1/usage?limit=99999999999999999999",
    ] {
        let r = t.app.get(query).bearer_auth(&key).send().await.unwrap();
        assert!((200..500).contains(&r.status().as_u16()), "{query}: {}", r.status());
    }
    // The OpenID Connect callback with forged or hostile parameters.
    for query in
        ["/auth/callback?code=%27%3B--&state=%3Cscript%3E", "/auth/callback?error=%3Cscript%3Ealert(1)%3C/script%3E"]
    {
        let r = t.app.get(query).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{query}: {}", r.status());
        assert!(!r.text().await.unwrap().contains("<script>alert(1)"), "{query}");
    }
    alive(&t.app).await;
}

#[tokio::test]
async fn one_person_cannot_end_another_persons_session() {
    let t = target().await;
    let (mut alice, _, _) = person(&t, "alice2@example.com").await;
    let (mut bob, bob_user, _) = person(&t, "bob2@example.com").await;
    let bob_session = t
        .app
        .store()
        .sessions_of_user(bob_user.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.revoked_at.is_none())
        .unwrap();
    let settings = alice.get("/dashboard/settings").await;
    let r = alice
        .post(
            "/dashboard/settings/sessions/revoke",
            &[("csrf", &settings.csrf()), ("session", &bob_session.id.to_string())],
        )
        .await;
    assert!(r.status < 500);
    assert_eq!(bob.get("/dashboard").await.status, 200, "Bob is still logged in");
    let still = t.app.store().sessions_of_user(bob_user.id).await.unwrap();
    assert!(still.iter().any(|s| s.id == bob_session.id && s.revoked_at.is_none()));
}

#[tokio::test]
async fn the_disclosure_contact_is_published_when_set() {
    let mut opts = AppOptions::default();
    opts.env.push(("LAYERS_SECURITY__DISCLOSURE_CONTACT".into(), "mailto:security@layers.example".into()));
    let app = TestApp::spawn_with(opts).await.unwrap();
    let r = app.get("/.well-known/security.txt").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("Contact: mailto:security@layers.example\n"), "{text}");
    assert!(text.contains("\nExpires: 20"), "{text}");
    let bare = TestApp::spawn().await;
    assert_eq!(bare.get("/.well-known/security.txt").send().await.unwrap().status(), 404);
}
