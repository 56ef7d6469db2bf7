//! SMTP delivery (lettre, rustls): any provider, from one URL —
//! `smtps://user:password@smtp.resend.com:465` (implicit TLS), `smtp://…:587?tls=required`
//! (STARTTLS), or plain `smtp://localhost:1025` for a local catcher.
//! Invariant: the URL (which holds the password) is never logged or shown.

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::mailer::{Mail, SendError, Transport};

#[derive(Debug)]
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("`email.smtp_url` is not a valid SMTP URL (smtp:// or smtps://)")]
    Url,
    #[error("`email.from` is not a valid address (e.g. `Layers <no-reply@example.com>`)")]
    From,
}

impl SmtpTransport {
    pub fn new(url: &str, from: &str) -> Result<SmtpTransport, SmtpError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|_| SmtpError::Url)?.build();
        let from = from.parse().map_err(|_| SmtpError::From)?;
        Ok(SmtpTransport { transport, from })
    }
}

#[async_trait]
impl Transport for SmtpTransport {
    async fn deliver(&self, mail: &Mail) -> Result<(), SendError> {
        let to: Mailbox = mail.to.parse().map_err(|_| SendError("the recipient is not a valid address".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(mail.text.clone()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(mail.html.clone())),
            )
            .map_err(|_| SendError("the message could not be built".into()))?;
        // Only the status code: a server's answer may quote the recipient's address.
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            SendError(match e.status() {
                Some(code) => format!("the SMTP server answered {code}"),
                None => "the SMTP server could not be reached, or TLS failed".to_owned(),
            })
        })
    }
}
