//! People's accounts as rules: what a password must be, where a login may send the browser,
//! when a session is alive, and the one-time codes of two-factor login. (The hashing, the tokens and the pages are services and the server.)

pub mod password;
pub mod redirect;
pub mod session;
pub mod totp;
