//! One subscriber connection: opened and greeted, then read event by event, each checked for
//! order and loss and timed from the publisher's stamp.

use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Shared, note_error};
use crate::wire::{self, Dechunker};

/// A slow consumer's receive buffer, so that it pushes back on the server within seconds.
const SLOW_RECEIVE_BUFFER: u32 = 4096;

/// What a greeting told: the client id Herald issued, if any.
pub(super) type Greeting = Option<String>;

/// Connects, sends the request and reads up to the first frame. Returns the stream and the
/// body bytes after the first frame together with the decoder state.
pub(super) async fn open(
    shared: &Shared,
    path: &str,
    last_id: Option<&str>,
    slow: bool,
) -> Result<(TcpStream, (Greeting, Body))> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(shared.source, 0))?;
    if slow {
        socket.set_recv_buffer_size(SLOW_RECEIVE_BUFFER)?;
    }
    let mut stream = socket.connect(shared.target).await?;
    stream.set_nodelay(true)?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
        shared.host
    );
    if let Some(id) = last_id {
        request.push_str("Last-Event-ID: ");
        request.push_str(id);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        let read = stream.read(&mut buf).await?;
        anyhow::ensure!(read > 0, "closed before the response head");
        head.extend_from_slice(&buf[..read]);
        if let Some(end) = wire::head_end(&head) {
            break end;
        }
        anyhow::ensure!(head.len() < 64 * 1024, "response head too large");
    };
    let code = wire::status(&head[..end]).unwrap_or(0);
    anyhow::ensure!(
        code == 200,
        "status {code}: {}",
        String::from_utf8_lossy(&head[end..]).trim()
    );
    let mut body = Body {
        chunked: wire::is_chunked(&head[..end]).then(Dechunker::default),
        data: Vec::with_capacity(4096),
        buf,
    };
    body.push(&head[end..])?;
    // Only the first frame is consumed here; later ones are left for the reader.
    let greeting = loop {
        if let Some(len) = first_frame_len(&body.data) {
            let mut client_id = None;
            wire::frames(&body.data[..len], |frame| {
                client_id = frame.data.and_then(wire::client_id);
            });
            body.data.drain(..len);
            break client_id;
        }
        let read = stream.read(&mut body.buf).await?;
        anyhow::ensure!(read > 0, "closed before the first frame");
        let Body { chunked, data, buf } = &mut body;
        feed(chunked, &buf[..read], data)?;
    };
    Ok((stream, (greeting, body)))
}

fn first_frame_len(data: &[u8]) -> Option<usize> {
    data.windows(2)
        .position(|window| window == b"\n\n")
        .map(|at| at + 2)
}

/// A response body being read: the dechunker (when chunked), the decoded bytes not yet parsed,
/// and the read buffer.
pub(super) struct Body {
    chunked: Option<Dechunker>,
    data: Vec<u8>,
    buf: Vec<u8>,
}

impl Body {
    fn push(&mut self, input: &[u8]) -> Result<()> {
        feed(&mut self.chunked, input, &mut self.data)
    }
}

fn feed(chunked: &mut Option<Dechunker>, input: &[u8], data: &mut Vec<u8>) -> Result<()> {
    match chunked {
        Some(decoder) => decoder.feed(input, data).map_err(anyhow::Error::msg),
        None => {
            data.extend_from_slice(input);
            Ok(())
        }
    }
}

/// One subscriber connection, from connect to its end.
pub(super) async fn subscriber(shared: Rc<Shared>, index: usize) {
    let (spec, last_id, client_id) = {
        let conns = shared.conns.borrow();
        let conn = &conns[index];
        (
            conn.spec
                .clone()
                .unwrap_or_else(|| unreachable!("spec set")),
            conn.last_id.clone(),
            conn.client_id.clone(),
        )
    };
    let mut path = spec.path.clone();
    if spec.keep_client_id
        && let Some(client_id) = &client_id
    {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("client_id=");
        path.push_str(client_id);
    }
    let permit = shared.connects.acquire().await;
    let opened = open(&shared, &path, last_id.as_deref(), spec.slow).await;
    drop(permit);
    let (mut stream, (greeting, mut body)) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            shared.failed.set(shared.failed.get() + 1);
            note_error(&shared, format!("connect: {err:#}"));
            shared.progress.notify_one();
            return;
        }
    };
    if let Some(client_id) = greeting {
        shared.conns.borrow_mut()[index].client_id = Some(client_id);
    }
    shared.greeted.set(shared.greeted.get() + 1);
    shared.progress.notify_one();
    if spec.slow {
        // Holds the connection open without reading another byte.
        std::future::pending::<()>().await;
    }
    let end = read_events(&shared, index, spec.stream, &mut stream, &mut body).await;
    let dropping = shared.conns.borrow()[index].dropping;
    if !dropping {
        note_error(
            &shared,
            match end {
                Ok(()) => "server closed the stream".to_owned(),
                Err(err) => format!("read: {err:#}"),
            },
        );
    }
}

async fn read_events(
    shared: &Shared,
    index: usize,
    stream_index: u32,
    stream: &mut TcpStream,
    body: &mut Body,
) -> Result<()> {
    loop {
        let used = {
            let mut conns = shared.conns.borrow_mut();
            let conn = &mut conns[index];
            let mut counters = shared.counters.borrow_mut();
            let mut latency = shared.latency.borrow_mut();
            let now = wire::now_us();
            wire::frames(&body.data, |frame| {
                if let Some(id) = frame.id {
                    conn.last_id = Some(String::from_utf8_lossy(id).into_owned());
                }
                if let Some(event) = frame.event
                    && event.starts_with(b"herald.")
                {
                    match event {
                        b"herald.reset" => counters.resets += 1,
                        b"herald.closing" => counters.closings += 1,
                        _ => {}
                    }
                    return;
                }
                let Some(stamp) = frame.data.and_then(wire::stamp) else {
                    return;
                };
                if stamp.stream != stream_index {
                    counters.misrouted += 1;
                    return;
                }
                if stamp.number < conn.next {
                    counters.duplicated += 1;
                    return;
                }
                if stamp.number > conn.next {
                    counters.out_of_order += 1;
                }
                conn.next = stamp.number + 1;
                conn.received += 1;
                counters.received += 1;
                let _ = latency.record(now.saturating_sub(stamp.sent_us).max(1));
            })
        };
        body.data.drain(..used);
        let read = stream.read(&mut body.buf).await?;
        if read == 0 {
            return Ok(());
        }
        let Body { chunked, data, buf } = body;
        feed(chunked, &buf[..read], data)?;
        if chunked.as_ref().is_some_and(|decoder| decoder.finished) {
            return Ok(());
        }
    }
}
