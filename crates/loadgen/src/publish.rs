//! The publishing side: keep-alive HTTP/1.1 connections that send one publish at a time and wait
//! for its answer, so that events on one stream are published in the order they are numbered.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire;

#[derive(Debug)]
pub struct Publisher {
    target: SocketAddr,
    stream: Option<TcpStream>,
    token: Option<String>,
    buf: Vec<u8>,
    request: Vec<u8>,
    /// The body of the last answer.
    body: Vec<u8>,
}

impl Publisher {
    pub fn new(target: SocketAddr, token: Option<String>) -> Self {
        Self {
            target,
            stream: None,
            token,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
            body: Vec::new(),
        }
    }

    /// POSTs `body` to `path` and returns the status code. A broken connection is reopened
    /// once.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<u16> {
        match self.try_post(path, body).await {
            Ok(code) => Ok(code),
            Err(_) => {
                self.stream = None;
                self.try_post(path, body).await
            }
        }
    }

    async fn try_post(&mut self, path: &str, body: &[u8]) -> Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.target)
                .await
                .context("connecting the publisher")?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            unreachable!("connected above")
        };
        self.request.clear();
        self.request.extend_from_slice(b"POST ");
        self.request.extend_from_slice(path.as_bytes());
        self.request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.request
            .extend_from_slice(self.target.to_string().as_bytes());
        self.request
            .extend_from_slice(b"\r\nContent-Type: application/json\r\n");
        if let Some(token) = &self.token {
            self.request.extend_from_slice(b"Authorization: Bearer ");
            self.request.extend_from_slice(token.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.request.extend_from_slice(body);
        stream.write_all(&self.request).await?;
        read_response(stream, &mut self.buf, &mut self.body).await
    }

    /// The body of the last answer.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Reads one response (head and body, kept in `body`) and returns its status.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Result<u16> {
    buf.clear();
    body.clear();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = wire::head_end(buf) {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "the server closed the publisher's connection");
        buf.extend_from_slice(&chunk[..read]);
    };
    let head = &buf[..end];
    let code = wire::status(head).context("no status in the response")?;
    if wire::is_chunked(head) {
        let mut decoder = wire::Dechunker::default();
        decoder
            .feed(&buf[end..], body)
            .map_err(anyhow::Error::msg)?;
        while !decoder.finished {
            let read = stream.read(&mut chunk).await?;
            anyhow::ensure!(read > 0, "closed inside a chunked answer");
            decoder
                .feed(&chunk[..read], body)
                .map_err(anyhow::Error::msg)?;
        }
    } else {
        let length = wire::content_length(head).unwrap_or(0);
        body.extend_from_slice(&buf[end..]);
        while body.len() < length {
            let read = stream.read(&mut chunk).await?;
            anyhow::ensure!(read > 0, "closed inside an answer");
            body.extend_from_slice(&chunk[..read]);
        }
    }
    Ok(code)
}
