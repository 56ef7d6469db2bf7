//! A mail catcher: a minimal SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
//! QUIT, no TLS, no auth) on a random port, keeping every message it receives, so tests send
//! real e-mail through the product's SMTP transport and read the links in it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as received.
#[derive(Clone, Debug)]
pub struct Caught {
    pub to: Vec<String>,
    /// The whole DATA: headers and body, dot-unstuffed.
    pub data: String,
}

impl Caught {
    /// The decoded text of the message (quoted-printable soft breaks and `=XX` undone), for
    /// finding links and words in it.
    pub fn text(&self) -> String {
        let joined = self.data.replace("=\r\n", "").replace("=\n", "");
        let mut out = String::with_capacity(joined.len());
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(char::from(b));
                    i += 3;
                    continue;
                }
            }
            out.push(char::from(bytes[i]));
            i += 1;
        }
        out
    }

    /// The first link in the message that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let text = self.text();
        let start = text.find(prefix)?;
        let end =
            text[start..].find(|c: char| c.is_whitespace() || c == '"' || c == '<').map_or(text.len(), |e| start + e);
        Some(text[start..end].to_owned())
    }

    /// The subject, unfolded (a long one continues on lines that start with white space).
    pub fn subject(&self) -> String {
        let mut lines = self.data.lines().skip_while(|l| !l.starts_with("Subject: "));
        let Some(first) = lines.next() else { return String::new() };
        let mut subject = first.trim_start_matches("Subject: ").to_owned();
        for more in lines.take_while(|l| l.starts_with([' ', '\t'])) {
            subject.push(' ');
            subject.push_str(more.trim());
        }
        subject
    }
}

#[derive(Clone, Debug)]
pub struct MailCatcher {
    /// `smtp://127.0.0.1:PORT`
    pub url: String,
    caught: Arc<Mutex<Vec<Caught>>>,
}

impl MailCatcher {
    pub async fn start() -> MailCatcher {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let caught = Arc::new(Mutex::new(Vec::new()));
        let store = caught.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, store.clone()));
            }
        });
        MailCatcher { url, caught }
    }

    pub fn all(&self) -> Vec<Caught> {
        self.caught.lock().unwrap().clone()
    }

    /// Messages to `to`.
    pub fn to(&self, to: &str) -> Vec<Caught> {
        self.all().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to))).collect()
    }

    /// Waits for the `n`th message to `to` (1-based) and returns it.
    pub async fn wait_for(&self, to: &str, n: usize) -> Caught {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.to(to);
            if got.len() >= n {
                return got[n - 1].clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "expected {n} message(s) to {to}, got {}", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn session(socket: tokio::net::TcpStream, store: Arc<Mutex<Vec<Caught>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 catcher ESMTP\r\n").await;
    let mut to = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-catcher\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("MAIL FROM") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("RSET") {
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO") {
            let addr = line[8..].trim().trim_start_matches(':').trim().trim_matches(|c| c == '<' || c == '>');
            to.push(addr.to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 end with .\r\n").await;
            let mut data = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push('\n');
            }
            store.lock().unwrap().push(Caught { to: std::mem::take(&mut to), data });
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
