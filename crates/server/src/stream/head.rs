//! The request head of a connection served by Herald's own writer: telling event streams
//! apart from the first bytes, reading and parsing the rest (`httparse`) into a request for the
//! router, and the head of the answer.

use std::io;

use axum::body::Body;
use axum::http::{Request, Response, header};
use tokio::net::TcpStream;

use super::socket::read_more;

/// The request lines that send a connection here: `/events`, and the Mercure hub's
/// subscriptions (not its subscriptions API, whose path goes on with `/`).
const PREFIXES: [&[u8]; 2] = [b"GET /events", b"GET /.well-known/mercure"];
/// The most a request head may take; browsers send well under 2 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// How a connection is served, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /events` or `GET /.well-known/mercure`: Herald's own event-stream writer.
    Events,
    /// Any other HTTP/1 request: hyper.
    Http1,
    /// The HTTP/2 connection preface (h2c with prior knowledge).
    Http2,
}

/// How a cleartext HTTP/2 connection starts (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the start of a connection's first request: until it is known how the connection is
/// served, which is the answer, with the bytes read. Whoever serves it gets those bytes back
/// in front of the rest.
pub async fn first_bytes(stream: &TcpStream) -> io::Result<(Route, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        read_more(stream, &mut buf).await?;
        if let Some(route) = route(&buf) {
            return Ok((route, buf));
        }
    }
}

/// How a connection whose first bytes are `buf` is served; `None` while they could still go
/// more than one way.
fn route(buf: &[u8]) -> Option<Route> {
    if buf.starts_with(HTTP2_PREFACE) {
        return Some(Route::Http2);
    }
    if HTTP2_PREFACE.starts_with(buf) {
        return None;
    }
    let mut undecided = false;
    for prefix in PREFIXES {
        if buf.len() > prefix.len() {
            if buf.starts_with(prefix) && matches!(buf[prefix.len()], b' ' | b'?') {
                return Some(Route::Events);
            }
        } else if prefix.starts_with(buf) {
            undecided = true;
        }
    }
    (!undecided).then_some(Route::Http1)
}

/// Reads and parses the request head. `Ok(Err(answer))` is a complete refusal to send back.
pub async fn read_request(
    stream: &TcpStream,
    mut buf: Vec<u8>,
) -> io::Result<Result<Request<Body>, Vec<u8>>> {
    loop {
        if let Some(parsed) = parse_head(&buf) {
            return Ok(parsed);
        }
        read_more(stream, &mut buf).await?;
    }
}

/// The request in `buf` once its head is complete, or a refusal; `None` while more is needed.
fn parse_head(buf: &[u8]) -> Option<Result<Request<Body>, Vec<u8>>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Some(build_request(&parsed)),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
        Ok(httparse::Status::Partial) => Some(Err(refusal(
            431,
            "request_header_too_large",
            "the request head is larger than 16 KiB",
        ))),
        Err(httparse::Error::TooManyHeaders) => Some(Err(refusal(
            431,
            "request_header_too_large",
            "a request may carry at most 64 headers",
        ))),
        Err(err) => Some(Err(refusal(
            400,
            "bad_request",
            &format!("malformed request head: {err}"),
        ))),
    }
}

fn build_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<Body>, Vec<u8>> {
    let mut builder = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"));
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder
        .body(Body::empty())
        .map_err(|err| refusal(400, "bad_request", &format!("malformed request: {err}")))
}

/// A complete JSON error answer, in the shape of every other Herald error.
fn refusal(status: u16, code: &str, message: &str) -> Vec<u8> {
    refusal_with(status, code, message, None)
}

/// [`refusal`] with a `Retry-After` of `retry_after` seconds, if given.
pub fn refusal_with(status: u16, code: &str, message: &str, retry_after: Option<u64>) -> Vec<u8> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Error");
    let retry = retry_after.map_or_else(String::new, |secs| format!("retry-after: {secs}\r\n"));
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status line and headers of `response`, ending with `connection: close` but not with
/// the blank line.
pub fn response_head(response: &Response<Body>) -> Vec<u8> {
    let status = response.status();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n");
    head
}

/// Fuzzing the request-head path of `/events` with generated input: whatever arrives, the
/// routing and the parser answer (a request, a refusal, or a wait for more within the size
/// limit) and never panic.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Request heads that look like the real thing, with hostile parts: any method, a path
    /// with any bytes, headers with any names and values, sometimes no end.
    fn heads() -> impl Strategy<Value = Vec<u8>> {
        let method = prop_oneof![
            Just(b"GET".to_vec()),
            Just(b"HEAD".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        let path = proptest::collection::vec(any::<u8>(), 0..64);
        let header = (
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..64),
        );
        let headers = proptest::collection::vec(header, 0..80);
        (method, path, headers, any::<bool>()).prop_map(|(method, path, headers, ends)| {
            let mut head = method;
            head.extend_from_slice(b" /events?topic=");
            head.extend_from_slice(&path);
            head.extend_from_slice(b" HTTP/1.1\r\n");
            for (name, value) in headers {
                head.extend_from_slice(&name);
                head.extend_from_slice(b": ");
                head.extend_from_slice(&value);
                head.extend_from_slice(b"\r\n");
            }
            if ends {
                head.extend_from_slice(b"\r\n");
            }
            head
        })
    }

    fn check(buf: &[u8]) -> Result<(), TestCaseError> {
        match parse_head(buf) {
            None => prop_assert!(buf.len() < MAX_HEAD, "waits for more past the limit"),
            Some(Ok(request)) => prop_assert!(request.uri().path().starts_with('/')),
            Some(Err(refusal)) => {
                let text = String::from_utf8_lossy(&refusal);
                prop_assert!(text.starts_with("HTTP/1.1 4"), "{}", text);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn any_bytes_are_answered_or_waited_for(buf in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            check(&buf)?;
        }

        #[test]
        fn hostile_request_heads_are_answered_or_waited_for(head in heads()) {
            check(&head)?;
        }

        /// Routing never changes its mind as more bytes arrive, however they are cut.
        #[test]
        fn routing_is_decided_once(buf in proptest::collection::vec(any::<u8>(), 0..32), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut longer = buf.clone();
            longer.extend_from_slice(&tail);
            if let Some(decided) = route(&buf) {
                prop_assert_eq!(route(&longer), Some(decided));
            }
            let mut preface = HTTP2_PREFACE[..buf.len().min(HTTP2_PREFACE.len())].to_vec();
            preface.extend_from_slice(&tail);
            if let Some(decided) = route(&preface) {
                let mut longer = preface.clone();
                longer.extend_from_slice(&buf);
                prop_assert_eq!(route(&longer), Some(decided));
            }
        }
    }

    #[test]
    fn connections_are_routed_by_their_first_bytes() {
        assert_eq!(route(b"GET /events?topic=a"), Some(Route::Events));
        assert_eq!(route(b"GET /events HTTP/1.1"), Some(Route::Events));
        assert_eq!(route(b"GET /eventsx"), Some(Route::Http1));
        assert_eq!(route(b"GET /ev"), None);
        assert_eq!(route(b"POST /events"), Some(Route::Http1));
        assert_eq!(route(b""), None);
        assert_eq!(route(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(
            route(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Route::Http2)
        );
        assert_eq!(route(b"PRI * HTTP/1.1\r\n"), Some(Route::Http1));
        assert_eq!(route(b"PUT /x"), Some(Route::Http1));
        assert_eq!(
            route(b"GET /.well-known/mercure?topic=a"),
            Some(Route::Events)
        );
        assert_eq!(route(b"GET /.well-known/merc"), None);
        assert_eq!(
            route(b"GET /.well-known/mercure/subscriptions"),
            Some(Route::Http1)
        );
        assert_eq!(route(b"POST /.well-known/mercure"), Some(Route::Http1));
        assert_eq!(route(b"GET /.well-known/openid"), Some(Route::Http1));
    }
}
