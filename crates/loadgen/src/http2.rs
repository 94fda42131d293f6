//! `herald-load http2`: event streams over HTTP/2, a given number per connection, over TLS
//! (ALPN `h2`) or in cleartext (h2c with prior knowledge). Reports the server's memory per idle
//! stream and per connection, then, with `--broadcasts`, publishes to every stream at a steady
//! rate and reports the server's CPU time per delivery.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use h2::client::SendRequest;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::procfs;

#[derive(Debug, Clone, clap::Args)]
pub struct Http2IdleArgs {
    /// The server's address (loopback only).
    #[arg(long)]
    pub addr: SocketAddr,
    /// The server process whose memory is read from /proc.
    #[arg(long)]
    pub server_pid: u32,
    /// Idle event streams in all.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// Streams on each HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
    /// Speak TLS, trusting this PEM certificate (its name: localhost); without it, h2c.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Events then published to every stream (one topic for all); 0: memory only.
    #[arg(long, default_value_t = 0)]
    pub broadcasts: u64,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// A credential allowed to publish to the topic.
    #[arg(long, env = "HERALD_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The topic every stream subscribes to when broadcasts are published.
const BROADCAST_TOPIC: &str = "broadcast";
/// The type of the events published, counted by the readers.
const MARK: &[u8] = b"event: tick\n";

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Http2Idle {
    pub tls: bool,
    pub streams: usize,
    pub per_connection: usize,
    pub connections: usize,
    pub open_secs: f64,
    /// Server memory (private) added per idle stream.
    pub kib_per_stream: f64,
    /// The same, per connection.
    pub kib_per_connection: f64,
    pub server_private_mib: f64,
    /// With broadcasts: the events each stream was sent and what arrived in all.
    pub broadcasts: u64,
    pub deliveries: u64,
    /// Server CPU time per delivery, in microseconds.
    pub cpu_per_delivery_us: f64,
    /// This process's CPU time over the server's, while publishing: above 0.8 the figures
    /// measure the load generator rather than the server.
    pub loadgen_cpu_share: f64,
}

pub async fn run(args: Http2IdleArgs) -> Result<Http2Idle> {
    ensure!(
        args.addr.ip().is_loopback(),
        "load is only ever aimed at a loopback address"
    );
    ensure!(
        args.per_connection > 0,
        "--per-connection must be at least 1"
    );
    let connector = args.tls_ca.as_deref().map(connector).transpose()?;
    let connections = args.streams.div_ceil(args.per_connection);
    let before = procfs::memory(args.server_pid)?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(connections);
    let mut left = args.streams;
    for n in 0..connections {
        let streams = left.min(args.per_connection);
        left -= streams;
        let sender = open(args.addr, connector.as_ref()).await?;
        let topics = (0..streams)
            .map(|i| {
                if args.broadcasts > 0 {
                    BROADCAST_TOPIC.to_owned()
                } else {
                    format!("idle-{n}-{i}")
                }
            })
            .collect();
        held.push(subscribe(sender, scheme(&connector), topics).await?);
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Let the server settle after the connection storm before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = procfs::memory(args.server_pid)?;
    let added = after.private_kib.saturating_sub(before.private_kib) as f64;
    let mut figures = Http2Idle {
        tls: connector.is_some(),
        streams: args.streams,
        per_connection: args.per_connection,
        connections,
        open_secs,
        kib_per_stream: added / args.streams as f64,
        kib_per_connection: added / connections as f64,
        server_private_mib: after.private_kib as f64 / 1024.0,
        broadcasts: 0,
        deliveries: 0,
        cpu_per_delivery_us: 0.0,
        loadgen_cpu_share: 0.0,
    };
    if args.broadcasts > 0 {
        broadcast(&args, connector.as_ref(), held, &mut figures).await?;
    }
    Ok(figures)
}

fn scheme(tls: &Option<TlsConnector>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Reads every stream, publishes `--broadcasts` events at `--rate`, waits for every delivery
/// (or 30 s after the last publish) and records the server's CPU time per delivery.
async fn broadcast(
    args: &Http2IdleArgs,
    tls: Option<&TlsConnector>,
    held: Vec<(SendRequest<Bytes>, Vec<h2::RecvStream>)>,
    figures: &mut Http2Idle,
) -> Result<()> {
    let token = args
        .token
        .as_deref()
        .context("--broadcasts needs --token (or HERALD_LOAD_TOKEN)")?;
    let received = Rc::new(Cell::new(0u64));
    let mut senders = Vec::with_capacity(held.len());
    for (sender, bodies) in held {
        senders.push(sender);
        for body in bodies {
            tokio::task::spawn_local(read(body, Rc::clone(&received)));
        }
    }
    let mut publisher = open(args.addr, tls).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server_before = procfs::cpu_ns(args.server_pid)?;
    let own_before = procfs::own_cpu_ns();
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    for n in 0..args.broadcasts {
        every.tick().await;
        publisher = publish(publisher, scheme, token, n).await?;
    }
    let expected = args.broadcasts * args.streams as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.get() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_ns = procfs::cpu_ns(args.server_pid)?.saturating_sub(server_before);
    let own_ns = procfs::own_cpu_ns().saturating_sub(own_before);
    figures.broadcasts = args.broadcasts;
    figures.deliveries = received.get();
    figures.cpu_per_delivery_us = server_ns as f64 / received.get().max(1) as f64 / 1000.0;
    figures.loadgen_cpu_share = own_ns as f64 / server_ns.max(1) as f64;
    drop(senders);
    Ok(())
}

/// Counts the published events arriving on one stream, giving its window back as it reads.
async fn read(mut body: h2::RecvStream, received: Rc<Cell<u64>>) {
    // The end of the previous chunk, in case a mark is cut between two.
    let mut carry: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        carry.extend_from_slice(&chunk);
        let found = memchr::memmem::find_iter(&carry, MARK).count() as u64;
        received.set(received.get() + found);
        let keep = carry.len().min(MARK.len() - 1);
        carry.drain(..carry.len() - keep);
    }
}

/// Publishes broadcast `n` on `sender`'s connection and waits for its acknowledgement.
async fn publish(
    sender: SendRequest<Bytes>,
    scheme: &str,
    token: &str,
    n: u64,
) -> Result<SendRequest<Bytes>> {
    let mut sender = sender.ready().await?;
    let body = Bytes::from(format!(
        r#"{{"topic":"{BROADCAST_TOPIC}","type":"tick","data":{n}}}"#
    ));
    let request = http::Request::post(format!("{scheme}://localhost/api/publish"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .header("content-length", body.len())
        .body(())?;
    let (response, mut stream) = sender.send_request(request, false)?;
    stream.send_data(body, true)?;
    let status = response.await?.status();
    ensure!(status == 200, "publishing answered {status}");
    Ok(sender)
}

fn connector(ca: &std::path::Path) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).context("reading --tls-ca")? {
        roots.add(certificate.context("a PEM certificate in --tls-ca")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens an HTTP/2 connection, its driver running in a task of its own.
async fn open(addr: SocketAddr, tls: Option<&TlsConnector>) -> Result<SendRequest<Bytes>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let builder = h2::client::Builder::new();
    let sender = match tls {
        Some(connector) => {
            let name = ServerName::try_from("localhost")?;
            let stream = connector.connect(name, tcp).await?;
            let (sender, connection) = builder.handshake(stream).await?;
            tokio::task::spawn_local(async move {
                let _ = connection.await;
            });
            sender
        }
        None => {
            let (sender, connection) = builder.handshake(tcp).await?;
            tokio::task::spawn_local(async move {
                let _ = connection.await;
            });
            sender
        }
    };
    Ok(sender.ready().await?)
}

/// Opens an event stream for each of `topics` on one connection and reads each one's
/// greeting; the responses are returned to be held open.
async fn subscribe(
    mut sender: SendRequest<Bytes>,
    scheme: &str,
    topics: Vec<String>,
) -> Result<(SendRequest<Bytes>, Vec<h2::RecvStream>)> {
    let mut pending = Vec::with_capacity(topics.len());
    for topic in &topics {
        let request =
            http::Request::get(format!("{scheme}://localhost/events?topic={topic}")).body(())?;
        sender = sender.ready().await?;
        let (response, _) = sender.send_request(request, true)?;
        pending.push(response);
    }
    let mut bodies = Vec::with_capacity(topics.len());
    for response in pending {
        let response = response.await?;
        if response.status() != 200 {
            bail!("GET /events answered {}", response.status());
        }
        let mut body = response.into_body();
        // The greeting: the stream is open and registered.
        let greeting = body.data().await.context("the stream's greeting")??;
        let _ = body.flow_control().release_capacity(greeting.len());
        bodies.push(body);
    }
    Ok((sender, bodies))
}
