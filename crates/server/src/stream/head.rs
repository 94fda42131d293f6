//! The request head of a connection served by Herald's own writer: telling event streams
//! apart from the first bytes, reading and parsing the rest (`httparse`) into a request for the
//! router, and the head of the answer.

use std::io;

use axum::body::Body;
use axum::http::{Request, Response, header};
use tokio::net::TcpStream;

use super::socket::read_more;

/// The request line that sends a connection here.
const PREFIX: &[u8] = b"GET /events";
/// The most a request head may take; browsers send well under 2 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// Reads the start of a connection's first request: until it is known whether it is
/// `GET /events` (followed by a space or a query), which is the answer, with the bytes read.
/// Whatever is not an event stream goes to hyper with those bytes put back in front.
pub async fn first_bytes(stream: &TcpStream) -> io::Result<(bool, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        read_more(stream, &mut buf).await?;
        if buf.len() > PREFIX.len() {
            let wants = buf.starts_with(PREFIX) && matches!(buf[PREFIX.len()], b' ' | b'?');
            return Ok((wants, buf));
        }
        if !PREFIX.starts_with(&buf) {
            return Ok((false, buf));
        }
    }
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
