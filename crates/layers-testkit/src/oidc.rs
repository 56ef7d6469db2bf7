//! A local OpenID Connect provider (what Google is to Layers), speaking the documented flow:
//! discovery, `/authorize` (which consents at once and sends the browser back with a code),
//! `/token` (client authentication, single-use codes, PKCE S256) and `/jwks`. ID tokens are
//! signed ES256 with a key made at start-up. Knobs let a test choose who signs in and make the
//! provider misbehave the ways an attacker would (wrong nonce, audience or issuer, `alg: none`,
//! HS256 keyed with the public key, an expired token).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "layers-test-client";
pub const CLIENT_SECRET: &str = "layers-test-client-secret";

/// Who signs in at the provider.
#[derive(Clone, Debug)]
pub struct OidcUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
}

/// How the provider misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    None,
    WrongNonce,
    WrongAudience,
    WrongIssuer,
    AlgNone,
    Hs256WithPublicKey,
    Expired,
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: OidcUser,
    used: bool,
}

struct Inner {
    base: String,
    key: EcdsaKeyPair,
    user: Mutex<OidcUser>,
    attack: Mutex<Attack>,
    grants: Mutex<HashMap<String, Grant>>,
}

#[derive(Clone)]
pub struct MockOidc {
    /// The issuer: `http://127.0.0.1:PORT`.
    pub issuer: String,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOidc").field("issuer", &self.issuer).finish()
    }
}

impl MockOidc {
    pub async fn start() -> MockOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let inner = Arc::new(Inner {
            base: issuer.clone(),
            key,
            user: Mutex::new(OidcUser {
                sub: "1001".into(),
                email: "person@gmail.example".into(),
                email_verified: true,
            }),
            attack: Mutex::new(Attack::None),
            grants: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockOidc { issuer, inner }
    }

    /// The `[oidc]` settings that point Layers here.
    pub fn config(&self) -> String {
        format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n",
            self.issuer
        )
    }

    pub fn sign_in_as(&self, user: OidcUser) {
        *self.inner.user.lock().unwrap() = user;
    }

    pub fn misbehave(&self, attack: Attack) {
        *self.inner.attack.lock().unwrap() = attack;
    }
}

async fn discovery(State(s): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "jwks_uri": format!("{}/jwks", s.base),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn authorize(State(s): State<Arc<Inner>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID || get("response_type") != "code" || get("code_challenge_method") != "S256" {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = format!("code-{}", uuid_like());
    let user = s.user.lock().unwrap().clone();
    let grant = Grant {
        nonce: get("nonce"),
        challenge: get("code_challenge"),
        redirect_uri: get("redirect_uri"),
        user,
        used: false,
    };
    s.grants.lock().unwrap().insert(code.clone(), grant);
    let back = format!("{}?code={code}&state={}", get("redirect_uri"), urlencode(&get("state")));
    Redirect::to(&back).into_response()
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn invalid(what: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant", "error_description": what}))).into_response()
}

async fn token(State(s): State<Arc<Inner>>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    // Client authentication: HTTP Basic, or the secret in the body.
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authenticated = basic.as_deref() == Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        || (get("client_id") == CLIENT_ID && get("client_secret") == CLIENT_SECRET);
    if !authenticated {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    if get("grant_type") != "authorization_code" {
        return invalid("grant_type");
    }
    let mut grants = s.grants.lock().unwrap();
    let Some(grant) = grants.get_mut(&get("code")) else { return invalid("unknown code") };
    if grant.used {
        return invalid("the code was already used");
    }
    grant.used = true;
    if grant.redirect_uri != get("redirect_uri") {
        return invalid("redirect_uri");
    }
    let challenge =
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, get("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return invalid("PKCE verification failed");
    }
    let attack = *s.attack.lock().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = json!({
        "iss": if attack == Attack::WrongIssuer { "https://evil.example".to_owned() } else { s.base.clone() },
        "sub": grant.user.sub,
        "aud": if attack == Attack::WrongAudience { "someone-else" } else { CLIENT_ID },
        "iat": now,
        "exp": if attack == Attack::Expired { now - 3600 } else { now + 600 },
        "nonce": if attack == Attack::WrongNonce { "not-the-nonce".to_owned() } else { grant.nonce.clone() },
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
    });
    let id_token = sign(&s, attack, &claims);
    Json(json!({"access_token": "at-unused", "token_type": "Bearer", "expires_in": 600, "id_token": id_token}))
        .into_response()
}

fn sign(s: &Inner, attack: Attack, claims: &Value) -> String {
    let alg = match attack {
        Attack::AlgNone => "none",
        Attack::Hs256WithPublicKey => "HS256",
        _ => "ES256",
    };
    let header = json!({"alg": alg, "kid": "k1", "typ": "JWT"});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = match attack {
        Attack::AlgNone => Vec::new(),
        Attack::Hs256WithPublicKey => {
            // The classic confusion: an HMAC keyed with the (public) verification key.
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.key.public_key().as_ref());
            ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
        }
        _ => s.key.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn jwks(State(s): State<Arc<Inner>>) -> Json<Value> {
    let point = s.key.public_key().as_ref();
    Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]}))
}
