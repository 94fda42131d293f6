//! The bytes a subscriber reads: an HTTP/1.1 response head, a body that may be chunked, and
//! Server-Sent Events frames in it. Written for speed and for the two servers measured, not as a
//! general client: a load generator that parses slowly measures itself.

use memchr::{memchr, memmem};

/// Where the response head ends, if it has arrived: the index just past `\r\n\r\n`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    memmem::find(buf, b"\r\n\r\n").map(|at| at + 4)
}

/// The status code of a response head.
pub fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let code = line.split(|&byte| byte == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.trim().parse().ok()
}

/// Whether a response head declares `Transfer-Encoding: chunked`.
pub fn is_chunked(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"))
}

/// The value of `Content-Length`, if any.
pub fn content_length(head: &[u8]) -> Option<usize> {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
}

/// Incremental decoder of a chunked body.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Data bytes left in the current chunk; 0 between chunks.
    left: usize,
    /// Bytes of the `\r\n` after a chunk's data still to skip.
    trailer: usize,
    /// A chunk-size line split across reads.
    line: Vec<u8>,
    /// The terminating zero-size chunk was seen.
    pub finished: bool,
}

impl Dechunker {
    /// Appends the body bytes in `input` to `out`. Fails on a malformed size line.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() && !self.finished {
            if self.trailer > 0 {
                let skip = self.trailer.min(input.len());
                self.trailer -= skip;
                input = &input[skip..];
                continue;
            }
            if self.left > 0 {
                let take = self.left.min(input.len());
                out.extend_from_slice(&input[..take]);
                self.left -= take;
                input = &input[take..];
                if self.left == 0 {
                    self.trailer = 2;
                }
                continue;
            }
            match memchr(b'\n', input) {
                Some(end) => {
                    self.line.extend_from_slice(&input[..end]);
                    input = &input[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let text = String::from_utf8_lossy(&line);
                    let size = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| format!("bad chunk size line {text:?}"))?;
                    if size == 0 {
                        self.finished = true;
                    }
                    self.left = size;
                }
                None => {
                    self.line.extend_from_slice(input);
                    input = &[];
                }
            }
        }
        Ok(())
    }
}

/// One Server-Sent Events frame, borrowed from the body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame<'a> {
    pub id: Option<&'a [u8]>,
    pub event: Option<&'a [u8]>,
    pub data: Option<&'a [u8]>,
    /// Only comment lines (`: hi`, heartbeats).
    pub comment_only: bool,
}

/// Calls `each` with every complete frame at the front of `body` and returns how many bytes
/// they took. Both servers end lines with `\n` and keep `data` on one line.
pub fn frames<'a>(body: &'a [u8], mut each: impl FnMut(Frame<'a>)) -> usize {
    let mut consumed = 0;
    while let Some(end) = find_blank_line(&body[consumed..]) {
        let raw = &body[consumed..consumed + end];
        consumed += end + 2;
        let mut frame = Frame {
            comment_only: true,
            ..Frame::default()
        };
        for line in Lines(raw) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line[0] == b':' {
                continue;
            }
            frame.comment_only = false;
            let (field, value) = match memchr(b':', line) {
                Some(at) => {
                    let value = &line[at + 1..];
                    (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &line[line.len()..]),
            };
            match field {
                b"id" => frame.id = Some(value),
                b"event" => frame.event = Some(value),
                b"data" => frame.data = Some(value),
                _ => {}
            }
        }
        each(frame);
    }
    consumed
}

fn find_blank_line(body: &[u8]) -> Option<usize> {
    memmem::find(body, b"\n\n")
}

/// The lines of a frame, split at `\n` (a frame is scanned once per event, so with `memchr`).
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        match memchr(b'\n', self.0) {
            Some(end) => {
                let line = &self.0[..end];
                self.0 = &self.0[end + 1..];
                Some(line)
            }
            None => Some(std::mem::take(&mut self.0)),
        }
    }
}

/// The numbers the publisher stamps into every event: which stream, the event's number on that
/// stream, and the send time in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u32,
    pub number: u64,
    pub sent_us: u64,
}

/// Finds the stamp in an event's data: Herald wraps it in an envelope (`"data":{...}`), nchan
/// sends the published body as it is.
pub fn stamp(data: &[u8]) -> Option<Stamp> {
    let inner = match find(data, b"\"data\":") {
        Some(at) => &data[at..],
        None => data,
    };
    Some(Stamp {
        stream: u32::try_from(number_after(inner, b"\"s\":")?).ok()?,
        number: number_after(inner, b"\"n\":")?,
        sent_us: number_after(inner, b"\"t\":")?,
    })
}

/// The `client_id` in a `herald.connected` frame.
pub fn client_id(data: &[u8]) -> Option<String> {
    let start = find(data, b"\"client_id\":\"")? + 13;
    let len = data[start..].iter().position(|&byte| byte == b'"')?;
    String::from_utf8(data[start..start + len].to_vec()).ok()
}

fn number_after(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(haystack, key)? + key.len();
    let digits = haystack[start..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&haystack[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

/// Microseconds since the Unix epoch: the clock every process of a run shares.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_arbitrary_cuts() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let mut decoder = Dechunker::default();
            let mut out = Vec::new();
            decoder.feed(&body[..cut], &mut out).unwrap();
            decoder.feed(&body[cut..], &mut out).unwrap();
            assert_eq!(out, b"hello, world", "cut at {cut}");
            assert!(decoder.finished);
        }
        let mut decoder = Dechunker::default();
        assert!(decoder.feed(b"zz\r\n", &mut Vec::new()).is_err());
    }

    #[test]
    fn splits_frames_and_leaves_a_partial_one() {
        let body = b": hi\n\nid: 7\nevent: bench\ndata: {\"s\":1}\n\nid: 8\nda";
        let mut seen = Vec::new();
        let used = frames(body, |frame| {
            seen.push((frame.comment_only, frame.id.map(<[u8]>::to_vec)))
        });
        assert_eq!(seen, vec![(true, None), (false, Some(b"7".to_vec()))]);
        assert_eq!(&body[used..], b"id: 8\nda");
    }

    #[test]
    fn reads_stamps_from_both_servers() {
        let herald = br#"{"id":"9","topic":"t1","type":"bench","data":{"s":12,"n":3,"t":1700000000123456},"time":"x"}"#;
        let nchan = br#"{"s":12,"n":3,"t":1700000000123456,"p":"xx"}"#;
        let expected = Stamp {
            stream: 12,
            number: 3,
            sent_us: 1_700_000_000_123_456,
        };
        assert_eq!(stamp(herald), Some(expected));
        assert_eq!(stamp(nchan), Some(expected));
        assert_eq!(stamp(b"{}"), None);
        assert_eq!(
            client_id(br#"{"client_id":"abc","connection_id":"d"}"#).as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn reads_response_heads() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(status(head), Some(200));
        assert!(is_chunked(head));
        assert_eq!(content_length(head), Some(12));
    }
}
