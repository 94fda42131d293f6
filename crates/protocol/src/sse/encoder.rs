use std::fmt;

/// One frame of an event stream, built field by field and then encoded.
///
/// ```
/// use herald_protocol::sse::Frame;
/// let bytes = Frame::new().id("7").event("greeting").data("hello\nworld").encode().unwrap();
/// assert_eq!(bytes, b"id: 7\nevent: greeting\ndata: hello\ndata: world\n\n");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frame<'a> {
    comment: Option<&'a str>,
    retry_ms: Option<u64>,
    id: Option<&'a str>,
    event: Option<&'a str>,
    data: Option<&'a str>,
}

/// A field value that the wire format cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// `id` contains CR, LF or NUL: a client would split or ignore it.
    InvalidId,
    /// `event` contains CR or LF: a client would split it.
    InvalidEvent,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId => write!(f, "an event id must not contain CR, LF or NUL"),
            Self::InvalidEvent => write!(f, "an event name must not contain CR or LF"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl<'a> Frame<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A comment: ignored by clients, used for heartbeats. May span several lines.
    pub fn comment(mut self, text: &'a str) -> Self {
        self.comment = Some(text);
        self
    }

    /// The reconnection delay the client should use, in milliseconds.
    pub fn retry(mut self, milliseconds: u64) -> Self {
        self.retry_ms = Some(milliseconds);
        self
    }

    pub fn id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }

    pub fn event(mut self, event: &'a str) -> Self {
        self.event = Some(event);
        self
    }

    /// The data; line breaks (CR, LF or CRLF) become separate `data:` lines, which a client joins
    /// with LF.
    pub fn data(mut self, data: &'a str) -> Self {
        self.data = Some(data);
        self
    }

    /// Appends the encoded frame to `out`. A frame with data ends with a blank line, so a client
    /// dispatches it; a frame of only a comment or `retry` ends the same way, which is harmless.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(id) = self.id
            && id.contains(['\r', '\n', '\0'])
        {
            return Err(EncodeError::InvalidId);
        }
        if let Some(event) = self.event
            && event.contains(['\r', '\n'])
        {
            return Err(EncodeError::InvalidEvent);
        }
        if let Some(comment) = self.comment {
            for line in lines(comment) {
                out.push(b':');
                if !line.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(line.as_bytes());
                }
                out.push(b'\n');
            }
        }
        if let Some(retry) = self.retry_ms {
            out.extend_from_slice(b"retry: ");
            out.extend_from_slice(retry.to_string().as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = self.id {
            field(out, "id", id);
        }
        if let Some(event) = self.event {
            field(out, "event", event);
        }
        if let Some(data) = self.data {
            for line in lines(data) {
                field(out, "data", line);
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// The encoded frame as a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.data.map_or(0, str::len) + 64);
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Splits on CRLF, CR or LF, the three line ends a client recognises. An empty string is one
/// empty line, so empty data still produces a `data:` field.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_kind_of_line_break_into_data_lines() {
        let bytes = Frame::new().data("a\r\nb\rc\nd").encode().unwrap();
        assert_eq!(bytes, b"data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn empty_data_is_still_an_event() {
        assert_eq!(Frame::new().data("").encode().unwrap(), b"data: \n\n");
    }

    #[test]
    fn refuses_line_breaks_in_id_and_event() {
        assert_eq!(
            Frame::new().id("a\nb").encode(),
            Err(EncodeError::InvalidId)
        );
        assert_eq!(
            Frame::new().id("a\0b").encode(),
            Err(EncodeError::InvalidId)
        );
        assert_eq!(
            Frame::new().event("a\rb").encode(),
            Err(EncodeError::InvalidEvent)
        );
    }

    #[test]
    fn writes_fields_in_a_fixed_order() {
        let bytes = Frame::new()
            .comment("hello")
            .retry(2500)
            .id("1")
            .event("herald.connected")
            .data("{}")
            .encode()
            .unwrap();
        assert_eq!(
            bytes,
            b": hello\nretry: 2500\nid: 1\nevent: herald.connected\ndata: {}\n\n"
        );
    }

    #[test]
    fn multi_line_comments_stay_comments() {
        assert_eq!(
            Frame::new().comment("a\nb").encode().unwrap(),
            b": a\n: b\n\n"
        );
        assert_eq!(Frame::new().comment("").encode().unwrap(), b":\n\n");
    }
}
