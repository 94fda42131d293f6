/// An event dispatched by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id in force when the event was dispatched (empty when none was set).
    pub id: String,
    /// The event type; `message` when the frame had no `event:` field.
    pub event: String,
    /// The `data:` lines joined with LF.
    pub data: String,
}

/// What the decoder found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(SseEvent),
    /// A comment line, without the colon and one following space; heartbeats arrive as these.
    Comment(String),
    /// A valid `retry:` field, in milliseconds.
    Retry(u64),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental decoder following the WHATWG EventSource parsing rules: CR, LF and CRLF line
/// ends (also when a CRLF is split between two reads), one leading byte order mark, comments,
/// fields without a colon, multi-line `data`, `retry` only when all ASCII digits, and an `id`
/// containing NUL ignored. Bytes may be fed in pieces of any size, even inside a UTF-8 sequence.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes received but not yet part of a complete line.
    pending: Vec<u8>,
    /// How far `pending` has been searched for a line end, so a long line is scanned once.
    scanned: usize,
    /// Whether the start of the stream has been checked for a byte order mark.
    past_bom: bool,
    /// The previous line ended with CR at the end of a read: an LF that follows belongs to it.
    skip_lf: bool,
    data: String,
    event_type: String,
    /// Set by `id` fields; becomes the last event id when a frame ends.
    id_buffer: String,
    last_event_id: String,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id of the frames completed so far (a frame with an `id` but no data counts
    /// too), what a client sends as `Last-Event-ID` when it reconnects.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Feeds the next bytes of the stream and returns what they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        self.feed_with(bytes, |item| items.push(item));
        items
    }

    /// Like [`Decoder::feed`], handing each item to `sink` instead of collecting them.
    pub fn feed_with(&mut self, mut bytes: &[u8], mut sink: impl FnMut(Item)) {
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        self.pending.extend_from_slice(bytes);
        if !self.past_bom {
            let n = self.pending.len().min(BOM.len());
            if self.pending[..n] != BOM[..n] {
                self.past_bom = true;
            } else if n == BOM.len() {
                self.pending.drain(..BOM.len());
                self.past_bom = true;
            } else {
                // A prefix of the byte order mark: wait for more bytes to decide.
                return;
            }
        }

        let mut start = 0;
        let mut at = self.scanned;
        while let Some(offset) = self.pending[at..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        {
            let end = at + offset;
            let mut next = end + 1;
            if self.pending[end] == b'\r' {
                match self.pending.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            self.process_line(&line, &mut sink);
            start = next;
            at = next;
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
    }

    fn process_line(&mut self, line: &str, sink: &mut impl FnMut(Item)) {
        if line.is_empty() {
            self.dispatch(sink);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            sink(Item::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so parsing fails only on overflow, which a client ignores too.
                if let Ok(ms) = value.parse() {
                    sink(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, sink: &mut impl FnMut(Item)) {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event = match std::mem::take(&mut self.event_type) {
            kind if kind.is_empty() => "message".to_owned(),
            kind => kind,
        };
        sink(Item::Event(SseEvent {
            id: self.last_event_id.clone(),
            event,
            data,
        }));
    }
}
