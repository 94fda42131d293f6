//! `herald-load streams`: response streams under load. Appends per second with one writer and
//! with several, each appending one chunk per request and waiting for its acknowledgement (a
//! chunk is acknowledged once stored); and how long a reader that arrives late takes to catch up
//! with a long stream, while it is open (every chunk) and after its end (compacted).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::publish::Publisher;
use crate::wire;

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    /// Herald's address (loopback only).
    #[arg(long)]
    pub addr: SocketAddr,
    /// A publisher's credential (`publish: ["*"]`); also read from HERALD_LOAD_TOKEN.
    #[arg(long, env = "HERALD_LOAD_TOKEN")]
    pub token: String,
    /// Writer counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub writers: Vec<usize>,
    /// Appends per writer.
    #[arg(long, default_value_t = 2000)]
    pub appends: usize,
    /// Chunks of the stream a late reader catches up with.
    #[arg(long, default_value_t = 10_000)]
    pub catch_up: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct AppendFigures {
    pub writers: usize,
    pub appends: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub appends: Vec<AppendFigures>,
    pub catch_up_chunks: usize,
    /// From the request to the last chunk, the stream open.
    pub catch_up_open_ms: f64,
    /// From the request to `stream.end`, after the end (one compacted frame).
    pub catch_up_ended_ms: f64,
}

/// A chunk of about 16 bytes, as a token or two of an answer.
const CHUNK: &str = "token-ish text. ";

async fn create(publisher: &mut Publisher) -> Result<String> {
    let code = publisher.post("/api/streams", br#"{"ttl": "1h"}"#).await?;
    anyhow::ensure!(code == 201, "creating a stream answered {code}");
    let created: serde_json::Value = serde_json::from_slice(publisher.body())?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .context("no id in the answer")
}

async fn append(publisher: &mut Publisher, id: &str, chunks: usize) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({"chunks": vec![CHUNK; chunks]}))?;
    let code = publisher
        .post(&format!("/api/streams/{id}/append"), &body)
        .await?;
    anyhow::ensure!(code == 200, "appending answered {code}");
    Ok(())
}

/// One writer appending `appends` single chunks to a stream of its own; the latencies.
async fn writer(addr: SocketAddr, token: String, appends: usize) -> Result<Histogram<u64>> {
    let mut publisher = Publisher::new(addr, Some(token));
    let id = create(&mut publisher).await?;
    let mut latencies = Histogram::<u64>::new(3)?;
    for _ in 0..appends {
        let started = Instant::now();
        append(&mut publisher, &id, 1).await?;
        latencies.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
    }
    let code = publisher
        .post(&format!("/api/streams/{id}/end"), br#"{"status": "done"}"#)
        .await?;
    anyhow::ensure!(code == 200, "ending answered {code}");
    Ok(latencies)
}

async fn appends(args: &StreamsArgs, writers: usize) -> Result<AppendFigures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| tokio::task::spawn_local(writer(args.addr, args.token.clone(), args.appends)))
        .collect();
    let mut all = Histogram::<u64>::new(3)?;
    for task in tasks {
        all.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = writers * args.appends;
    Ok(AppendFigures {
        writers,
        appends: total,
        per_second: total as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Reads `/streams/{id}` until `wanted` appears `count` times in the body; the time taken.
async fn read_until(addr: SocketAddr, id: &str, wanted: &[u8], count: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /streams/{id} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(end) = wire::head_end(&raw) {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "closed before the answer's head");
        raw.extend_from_slice(&chunk[..read]);
    };
    anyhow::ensure!(
        wire::status(&raw[..end]) == Some(200),
        "the reader was refused"
    );
    let chunked = wire::is_chunked(&raw[..end]);
    let mut decoder = wire::Dechunker::default();
    let mut body = Vec::new();
    let mut feed = |input: &[u8], body: &mut Vec<u8>| -> Result<()> {
        if chunked {
            decoder.feed(input, body).map_err(anyhow::Error::msg)
        } else {
            body.extend_from_slice(input);
            Ok(())
        }
    };
    feed(&raw[end..], &mut body)?;
    let finder = memchr::memmem::Finder::new(wanted);
    let mut seen = 0;
    let mut searched = 0;
    loop {
        let from = searched;
        seen += finder.find_iter(&body[from..]).count();
        searched = body.len().saturating_sub(wanted.len() - 1).max(from);
        if seen >= count {
            return Ok(started.elapsed());
        }
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "the stream ended after {seen} of {count}");
        feed(&chunk[..read], &mut body)?;
    }
}

async fn catch_up(args: &StreamsArgs) -> Result<(Duration, Duration)> {
    let mut publisher = Publisher::new(args.addr, Some(args.token.clone()));
    let id = create(&mut publisher).await?;
    let batch = 100;
    for _ in 0..args.catch_up.div_ceil(batch) {
        append(&mut publisher, &id, batch).await?;
    }
    let total = args.catch_up.div_ceil(batch) * batch;
    let open = read_until(args.addr, &id, b"event: stream.chunk\n", total).await?;
    let code = publisher
        .post(&format!("/api/streams/{id}/end"), br#"{"status": "done"}"#)
        .await?;
    anyhow::ensure!(code == 200, "ending answered {code}");
    let ended = read_until(args.addr, &id, b"event: stream.end\n", 1).await?;
    Ok((open, ended))
}

pub async fn run(args: StreamsArgs) -> Result<Figures> {
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "load is only ever aimed at a loopback address"
    );
    let mut figures = Vec::new();
    for &writers in &args.writers {
        figures.push(appends(&args, writers).await?);
    }
    let (open, ended) = catch_up(&args).await?;
    Ok(Figures {
        appends: figures,
        catch_up_chunks: args.catch_up.div_ceil(100) * 100,
        catch_up_open_ms: open.as_secs_f64() * 1000.0,
        catch_up_ended_ms: ended.as_secs_f64() * 1000.0,
    })
}
