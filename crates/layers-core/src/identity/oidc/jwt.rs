//! ID tokens (JWS compact serialization, RFC 7515) verified against the issuer's JWKS (RFC 7517):
//! the signature with the key's own algorithm only (RS256 or ES256 — never `none`, never an HMAC
//! keyed with a public key), then `iss`, `aud` (and `azp`), `exp` and `nonce` (OpenID Connect
//! Core §3.1.3.7). Invariant: a token is either verified in full or refused; nothing of an
//! unverified token is used.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// Seconds of clock skew allowed on `exp` and `iat`.
const SKEW_SECS: i64 = 60;

/// A public key of the issuer.
#[derive(Clone, Debug, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    // RSA
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    // EC
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Jwks {
    #[serde(default)]
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A boolean, or (as some issuers send it) the string "true".
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// What a verified ID token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// What the token must say.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_secs: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    Algorithm,
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the signature is not valid")]
    Signature,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token is for another client")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token's nonce does not match this login")]
    Nonce,
}

fn b64(s: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| JwtError::Malformed)
}

/// The key the token names, fit for its algorithm.
fn key_for<'a>(jwks: &'a Jwks, header: &Header) -> Result<&'a Jwk, JwtError> {
    let family = match header.alg.as_str() {
        "RS256" => "RSA",
        "ES256" => "EC",
        _ => return Err(JwtError::Algorithm),
    };
    let candidates = jwks.keys.iter().filter(|k| k.kty == family && k.use_.as_deref().is_none_or(|u| u == "sig"));
    let key = match &header.kid {
        Some(kid) => candidates.into_iter().find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let all: Vec<&Jwk> = candidates.collect();
            if all.len() == 1 {
                Some(all[0])
            } else {
                None
            }
        }
    }
    .ok_or(JwtError::UnknownKey)?;
    // The key's declared algorithm, if any, is the only one it verifies.
    if key.alg.as_deref().is_some_and(|a| a != header.alg) {
        return Err(JwtError::Algorithm);
    }
    Ok(key)
}

fn check_signature(key: &Jwk, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let ok = match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (&key.n, &key.e) else { return Err(JwtError::UnknownKey) };
            let (n, e) = (b64(n)?, b64(e)?);
            RsaPublicKeyComponents { n: &n, e: &e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig).is_ok()
        }
        "ES256" => {
            let (Some(x), Some(y)) = (&key.x, &key.y) else { return Err(JwtError::UnknownKey) };
            if key.crv.as_deref() != Some("P-256") {
                return Err(JwtError::UnknownKey);
            }
            let point = [&[0x04][..], &b64(x)?, &b64(y)?].concat();
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig).is_ok()
        }
        _ => return Err(JwtError::Algorithm),
    };
    if ok {
        Ok(())
    } else {
        Err(JwtError::Signature)
    }
}

/// Verifies an ID token.
pub fn verify(token: &str, jwks: &Jwks, expect: &Expect<'_>) -> Result<IdClaims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Malformed)?;
    let key = key_for(jwks, &header)?;
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    check_signature(key, &header.alg, message, &b64(s)?)?;
    let claims: RawClaims = serde_json::from_slice(&b64(p)?).map_err(|_| JwtError::Malformed)?;
    if claims.iss != expect.issuer {
        return Err(JwtError::Issuer);
    }
    let audiences = match &claims.aud {
        Audience::One(a) => vec![a.as_str()],
        Audience::Many(list) => list.iter().map(String::as_str).collect(),
    };
    if !audiences.contains(&expect.client_id)
        || (audiences.len() > 1 && claims.azp.as_deref() != Some(expect.client_id))
    {
        return Err(JwtError::Audience);
    }
    if claims.exp + SKEW_SECS <= expect.now_secs || claims.iat.is_some_and(|iat| iat > expect.now_secs + SKEW_SECS) {
        return Err(JwtError::Expired);
    }
    // Compared in constant time: the nonce binds the token to this browser's login.
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| subtle::ConstantTimeEq::ct_eq(n.as_bytes(), expect.nonce.as_bytes()).into());
    if !nonce_ok {
        return Err(JwtError::Nonce);
    }
    let email_verified = match claims.email_verified {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    Ok(IdClaims { issuer: claims.iss, subject: claims.sub, email: claims.email, email_verified })
}
