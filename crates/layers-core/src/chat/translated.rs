//! A chat stream translated, as it arrives, into another dialect's events (Anthropic Messages,
//! OpenAI Responses). Invariant: the chat stream underneath is polled to its end, so metering,
//! settlement and the disconnect drain work exactly as for a chat client.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::ClientStream;

/// Turns bytes of the chat SSE into bytes of a dialect's SSE (whatever events they complete):
/// a translator decodes the chat events with its `decoder` and writes each one's translation.
pub trait SseTranslator: Send + Unpin {
    fn decoder(&mut self) -> &mut layers_providers::sse::SseDecoder;

    /// Translates one chat event (its `data`) into `out`.
    fn event(&mut self, data: &str, out: &mut Vec<u8>);

    /// Ends the dialect's stream with its error event: the chat stream could not be read.
    fn unreadable(&mut self, out: &mut Vec<u8>);

    fn push(&mut self, chat_bytes: &[u8]) -> Vec<u8> {
        let mut events = Vec::new();
        let mut out = Vec::new();
        if self.decoder().push(chat_bytes, &mut events).is_err() {
            self.unreadable(&mut out);
            return out;
        }
        for e in events {
            self.event(&e.data, &mut out);
        }
        out
    }
}

/// The chat stream of a request, as a dialect's events.
pub struct TranslatedStream<T> {
    chat: Box<ClientStream>,
    translator: T,
}

impl<T: SseTranslator> TranslatedStream<T> {
    pub fn new(chat: Box<ClientStream>, translator: T) -> Self {
        TranslatedStream { chat, translator }
    }
}

impl<T: SseTranslator> Stream for TranslatedStream<T> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut *this.chat).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Bytes::from(this.translator.push(&chunk))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
