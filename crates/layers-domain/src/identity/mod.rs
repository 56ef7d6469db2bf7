//! People's accounts as rules: what a password must be, where a login may send the browser,
//! when a session is alive. (The hashing, the tokens and the pages are services and the server.)

pub mod password;
pub mod redirect;
pub mod session;
