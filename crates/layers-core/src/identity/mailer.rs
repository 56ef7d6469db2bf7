//! E-mail: a message in plain text and HTML, delivered in the background with retries over
//! SMTP (any provider; Resend's SMTP included), or written whole to the server log by the
//! console mailer of the embedded default (marked as development mail; production refuses it).
//! Invariant: sending never blocks or fails the request that asked for it, so the time and the
//! answer of a request do not depend on whether a message went out (or to whom).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::tasks::Tasks;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// Something that delivers a message, once.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    async fn deliver(&self, mail: &Mail) -> Result<(), SendError>;
}

/// The development transport: each whole message in the server log.
#[derive(Debug, Default)]
pub struct ConsoleTransport;

#[async_trait]
impl Transport for ConsoleTransport {
    async fn deliver(&self, mail: &Mail) -> Result<(), SendError> {
        // Development mail only (production refuses this transport): the log is the inbox.
        tracing::info!(
            target: "layers::dev_mail",
            to = %mail.to,
            subject = %mail.subject,
            "DEVELOPMENT MAIL (console mailer, not sent)\n{}",
            mail.text
        );
        Ok(())
    }
}

/// Attempts per message, and the wait before each retry.
const RETRIES: [Duration; 3] = [Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(60)];
/// Messages waiting at most; past it new ones are dropped (and logged), never blocking.
const QUEUE: usize = 1024;

/// The outbox: messages queued by requests, delivered by one background task.
#[derive(Clone, Debug)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
}

impl Mailer {
    pub fn start(transport: Arc<dyn Transport>, tasks: &Tasks) -> Mailer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tasks.spawn("mailer", deliver_all(transport, rx, tasks.cancelled()));
        Mailer { queue }
    }

    /// Queues `mail`; returns at once.
    pub fn send(&self, mail: Mail) {
        if self.queue.try_send(mail).is_err() {
            tracing::error!("the mail queue is full or closed: a message was dropped");
        }
    }
}

/// How long shutdown waits for the messages still queued (one attempt each).
const FLUSH: Duration = Duration::from_secs(5);

async fn deliver_all(transport: Arc<dyn Transport>, mut rx: mpsc::Receiver<Mail>, stop: CancellationToken) {
    loop {
        let mail = tokio::select! {
            mail = rx.recv() => match mail {
                Some(mail) => mail,
                None => return,
            },
            () = stop.cancelled() => break,
        };
        tokio::select! {
            () = deliver_with_retries(transport.as_ref(), &mail) => {}
            () = stop.cancelled() => {
                // Shutting down mid-retry: one last attempt below, with what is queued.
                let _ = tokio::time::timeout(FLUSH, transport.deliver(&mail)).await;
                break;
            }
        }
    }
    // Shutdown: what is queued gets one attempt each, within the flush deadline.
    let flush = async {
        while let Ok(mail) = rx.try_recv() {
            if let Err(err) = transport.deliver(&mail).await {
                tracing::error!(error = %err, "mail delivery failed at shutdown; a message was dropped");
            }
        }
    };
    if tokio::time::timeout(FLUSH, flush).await.is_err() {
        tracing::error!("shutdown left queued mail undelivered");
    }
}

async fn deliver_with_retries(transport: &dyn Transport, mail: &Mail) {
    let mut attempt = 0;
    loop {
        match transport.deliver(mail).await {
            Ok(()) => return,
            Err(err) if attempt < RETRIES.len() => {
                tracing::warn!(error = %err, attempt = attempt + 1, "mail delivery failed; retrying");
                tokio::time::sleep(RETRIES[attempt]).await;
                attempt += 1;
            }
            Err(err) => {
                tracing::error!(error = %err, "mail delivery failed; giving up on this message");
                return;
            }
        }
    }
}
