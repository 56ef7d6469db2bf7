//! Server-Sent Events, parsed byte-exactly. Invariant: the events produced do not depend on how
//! the input was split into reads — a `\r\n`, an event boundary or a multi-byte UTF-8 character
//! may arrive in pieces, and only a complete event is ever decoded as text.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the stream named one.
    pub event: Option<String>,
    /// All `data:` lines joined with `\n`.
    pub data: String,
}

/// Largest line or event accepted from an upstream (a stream that never ends a line must not
/// grow memory without bound).
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// The stream exceeded [`MAX_EVENT_BYTES`] in one line or event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of the stream exceeds {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

/// Incremental SSE parser (the WHATWG event-stream grammar).
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    event: Option<Vec<u8>>,
    has_data: bool,
    /// The previous read ended in `\r`; a `\n` starting the next one belongs to it.
    skip_lf: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(pos) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&bytes[..pos]);
            let terminator = bytes[pos];
            bytes = &bytes[pos + 1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            if self.data.len() > MAX_EVENT_BYTES {
                return Err(EventTooLarge);
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// Bytes held for the event (and line) not yet complete.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// End of input: an unterminated event is discarded, as the grammar requires.
    pub fn has_partial_event(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.to_vec()),
            _ => {} // id, retry and unknown fields do not matter to a proxy of LLM streams
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        out.push(SseEvent {
            event: event.map(|e| String::from_utf8_lossy(&e).into_owned()),
            data: String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        });
    }
}

/// Appends `data: <payload>\n\n` (one line: JSON never contains raw newlines).
pub fn write_data(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(payload);
    buf.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <payload>\n\n`.
pub fn write_event(buf: &mut Vec<u8>, name: &str, payload: &[u8]) {
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    write_data(buf, payload);
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
