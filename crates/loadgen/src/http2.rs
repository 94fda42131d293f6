//! `herald-load http2-idle`: idle event streams over HTTP/2, a given number per connection,
//! over TLS (ALPN `h2`) or in cleartext (h2c with prior knowledge); reports the server's memory
//! per idle stream and per connection.

use std::net::SocketAddr;
use std::path::PathBuf;
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
}

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
        let scheme = if connector.is_some() { "https" } else { "http" };
        held.push(subscribe(sender, scheme, streams, n).await?);
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Let the server settle after the connection storm before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = procfs::memory(args.server_pid)?;
    let added = after.private_kib.saturating_sub(before.private_kib) as f64;
    let figures = Http2Idle {
        tls: connector.is_some(),
        streams: args.streams,
        per_connection: args.per_connection,
        connections,
        open_secs,
        kib_per_stream: added / args.streams as f64,
        kib_per_connection: added / connections as f64,
        server_private_mib: after.private_kib as f64 / 1024.0,
    };
    drop(held);
    Ok(figures)
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

/// Opens `streams` event streams on one connection and reads each one's greeting; the
/// responses are returned to be held open.
async fn subscribe(
    mut sender: SendRequest<Bytes>,
    scheme: &str,
    streams: usize,
    connection: usize,
) -> Result<(SendRequest<Bytes>, Vec<h2::RecvStream>)> {
    let mut pending = Vec::with_capacity(streams);
    for n in 0..streams {
        let request = http::Request::get(format!(
            "{scheme}://localhost/events?topic=idle-{connection}-{n}"
        ))
        .body(())?;
        sender = sender.ready().await?;
        let (response, _) = sender.send_request(request, true)?;
        pending.push(response);
    }
    let mut bodies = Vec::with_capacity(streams);
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
