//! `herald-load`: a load generator for SSE servers, aimed at Herald or at nchan.
//!
//! `herald-load run --scenario S --target herald|nchan --addr HOST:PORT --server-pid PID` runs one
//! scenario against a server that is already running and prints its figures as JSON on stdout
//! (a summary goes to stderr). Subscribers are spread over worker processes of this binary, each
//! with its own source address; the publisher and the measurements run in this process.
//!
//! `herald-load floor` measures what no server can go under: the CPU time of a plain loop
//! writing each event to every loopback connection.
//!
//! `herald-load http2` holds event streams over HTTP/2, a given number per connection, and
//! reports the server's memory per idle stream and, with `--broadcasts`, its CPU time per
//! delivery.

mod floor;
mod http2;
mod pool;
mod procfs;
mod publish;
mod scenarios;
mod streams;
mod wire;
mod worker;

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "herald-load", about = "Load generator for Herald and nchan")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one scenario and prints its figures as JSON.
    Run(RunArgs),
    /// Measures the kernel's floor for a broadcast (a plain write loop, no server) and prints
    /// it as JSON. Run it pinned where the servers run.
    Floor(floor::FloorArgs),
    /// The reading side of `floor` (started by it).
    #[command(hide = true)]
    FloorRead {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        bytes: u64,
    },
    /// Holds event streams over HTTP/2 (h2c, or TLS with --tls-ca) and prints the server's
    /// memory per idle stream and, with --broadcasts, CPU time per delivery, as JSON.
    Http2(http2::Http2IdleArgs),
    /// Measures response streams: appends per second with one and several writers, and a late
    /// reader's catch-up with a long stream; prints the figures as JSON.
    Streams(streams::StreamsArgs),
    /// A worker process (started by `run`; reads commands on stdin).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        source: IpAddr,
    },
}

/// Which server is measured: they differ in paths, publish bodies and how memory is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Herald,
    Nchan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Subscribers connect and stay idle: connect rate and memory per subscriber.
    Idle,
    /// Every subscriber on one topic, published at each rate in turn; then the highest rate
    /// whose p99 stays under 100 ms.
    Broadcast,
    /// Many topics with a few subscribers each.
    Groups,
    /// Groups, with Herald's publisher sending every event due at once in one batch
    /// (`POST /api/publish` with `{"events": [...]}`); nchan has none and is published to one
    /// event at a time.
    GroupsBatch,
    /// One stream per subscriber (Herald client streams, nchan channels).
    Unicast,
    /// Everyone disconnects, events are published, everyone reconnects with its last event id.
    Resume,
    /// A share of the subscribers stops reading.
    Slow,
    /// Connections opened and closed at a steady rate beside a base of subscribers.
    Churn,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    #[arg(long, value_enum)]
    pub target: Target,
    /// The server's address (loopback only).
    #[arg(long)]
    pub addr: SocketAddr,
    /// The server process whose CPU time and memory are read from /proc (nchan: its worker).
    #[arg(long)]
    pub server_pid: u32,
    /// A credential allowed to publish everywhere (Herald).
    #[arg(long, env = "HERALD_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Subscribers (for groups: topics x --per-topic).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Publish rates, events per second, one step each.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Seconds each publishing step lasts.
    #[arg(long, default_value_t = 8.0)]
    pub step_secs: f64,
    /// Broadcast: after the listed rates, keep raising the rate until p99 reaches 100 ms.
    #[arg(long)]
    pub find_max: bool,
    /// Groups: topics; resume: topics the subscribers are spread over.
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// Bytes of padding added to each event.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Slow: the share of subscribers that stop reading.
    #[arg(long, default_value_t = 0.1)]
    pub slow_share: f64,
    /// Churn: connections opened (and closed) per second, and for how long.
    #[arg(long, default_value_t = 500.0)]
    pub churn_per_sec: f64,
    #[arg(long, default_value_t = 60.0)]
    pub churn_secs: f64,
    /// Churn: seconds of churn before memory is first sampled, so what a server does once (code
    /// paged in for the first time, caches filled up to their size) is not counted as growth.
    /// The growth from before the warm-up is reported too.
    #[arg(long, default_value_t = 20.0)]
    pub churn_warmup_secs: f64,
    /// Subscribers per worker process.
    #[arg(long, default_value_t = 5000)]
    pub per_worker: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Every connection is a descriptor: use the whole open-files limit.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    match cli.command {
        Cmd::Worker { target, source } => worker::main(target, source),
        Cmd::FloorRead {
            addr,
            connections,
            bytes,
        } => floor::read(addr, connections, bytes),
        Cmd::Floor(args) => {
            let floor = floor::run(&args)?;
            eprintln!(
                "floor: {} connections, {} events of {} B at {}/s: {:.2} µs CPU per write, fan-out {:.1} ms median, {:.1} ms slowest",
                floor.connections,
                floor.events,
                floor.frame,
                floor.rate,
                floor.cpu_per_write_us,
                floor.fan_out_median_ms,
                floor.fan_out_max_ms
            );
            println!("{}", serde_json::to_string(&floor)?);
            Ok(())
        }
        Cmd::Http2(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            let figures = local.block_on(&runtime, http2::run(args))?;
            eprintln!(
                "http2: {} streams, {} per connection{}: {:.2} KiB per idle stream, {:.1} KiB per connection (server {:.1} MiB)",
                figures.streams,
                figures.per_connection,
                if figures.tls { ", TLS" } else { ", h2c" },
                figures.kib_per_stream,
                figures.kib_per_connection,
                figures.server_private_mib
            );
            if figures.broadcasts > 0 {
                eprintln!(
                    "http2: {} broadcasts, {} of {} deliveries: {:.2} µs server CPU per delivery (load generator at {:.2} of the server's CPU)",
                    figures.broadcasts,
                    figures.deliveries,
                    figures.broadcasts * figures.streams as u64,
                    figures.cpu_per_delivery_us,
                    figures.loadgen_cpu_share
                );
            }
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Cmd::Streams(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            let figures = local.block_on(&runtime, streams::run(args))?;
            for appends in &figures.appends {
                eprintln!(
                    "streams: {} writer(s): {:.0} appends/s (p50 {:.2} ms, p99 {:.2} ms per acknowledged append)",
                    appends.writers, appends.per_second, appends.p50_ms, appends.p99_ms
                );
            }
            eprintln!(
                "streams: a late reader catches up with {} chunks in {:.1} ms (open), {:.1} ms after the end (compacted)",
                figures.catch_up_chunks, figures.catch_up_open_ms, figures.catch_up_ended_ms
            );
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Cmd::Run(args) => {
            anyhow::ensure!(
                args.addr.ip().is_loopback(),
                "load is only ever aimed at a loopback address"
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            let outcome = local.block_on(&runtime, scenarios::run(args))?;
            eprintln!("{}", outcome.summary());
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(())
        }
    }
}
