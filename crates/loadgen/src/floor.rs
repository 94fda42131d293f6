//! The kernel's floor for a broadcast: the CPU time of writing one small frame to each of many
//! loopback sockets with nothing else done, the cost no server can go under, to set the
//! servers' CPU per delivery against.
//!
//! `floor` (run it pinned where the servers run) listens on loopback, starts a `floor-read`
//! process (pinned where the load generator runs) that opens the connections and drains them,
//! then writes each event to every connection in a plain loop and measures its own CPU time.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};

use crate::procfs;

/// Connections the reader opens at once.
const CONNECTS_IN_FLIGHT: usize = 256;
/// How long the reader may take to open its connections.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Connections written to, one frame each per event (at most 19,000: each process here
    /// holds one descriptor per connection).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Events written.
    #[arg(long, default_value_t = 50)]
    pub events: usize,
    /// Events per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Bytes of each frame (a broadcast frame of Herald's is about 200).
    #[arg(long, default_value_t = 200)]
    pub frame: usize,
    /// The CPU the reader process is pinned to (with `taskset`); unpinned without it.
    #[arg(long)]
    pub reader_cpu: Option<String>,
}

/// What the writer measured.
#[derive(Debug, Serialize)]
pub struct Floor {
    pub connections: usize,
    pub events: usize,
    pub frame: usize,
    pub rate: f64,
    /// The writer's CPU time per frame written, in microseconds.
    pub cpu_per_write_us: f64,
    /// Wall time of writing one event to every connection: median and slowest, in ms.
    pub fan_out_median_ms: f64,
    pub fan_out_max_ms: f64,
}

pub fn run(args: &FloorArgs) -> Result<Floor> {
    anyhow::ensure!(
        (1..=19_000).contains(&args.connections),
        "--connections must be between 1 and 19000"
    );
    anyhow::ensure!(
        args.events > 0 && args.rate > 0.0 && args.frame > 0,
        "--events, --rate and --frame must be positive"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.listen(4096)
    })?;
    let expected = (args.events * args.frame) as u64;
    let mut reader = start_reader(args, listener.local_addr()?, expected)?;
    let mut lines = BufReader::new(reader.stdout.take().context("reader's stdout")?).lines();
    let sockets = match runtime.block_on(accept_all(&listener, args.connections)) {
        Ok(sockets) => sockets?,
        Err(_) => {
            let _ = reader.kill();
            let _ = reader.wait();
            anyhow::bail!("the reader did not open its connections within {ACCEPT_TIMEOUT:?}")
        }
    };
    drop(listener);
    let ready = lines
        .next()
        .context("the reader ended before connecting")??;
    anyhow::ensure!(ready == "ready", "the reader said {ready:?}");

    let cpu_before = procfs::own_cpu_ns();
    let (mut fan_outs, writes) = write_events(args, &sockets)?;
    let cpu = procfs::own_cpu_ns().saturating_sub(cpu_before);
    drop(sockets);
    let read = lines.next().context("the reader ended without a count")??;
    let status = reader.wait()?;
    anyhow::ensure!(status.success(), "the floor reader failed: {status}");
    anyhow::ensure!(
        read == format!("read {}", expected * args.connections as u64),
        "the reader did not receive every frame: {read}"
    );
    fan_outs.sort();
    Ok(Floor {
        connections: args.connections,
        events: args.events,
        frame: args.frame,
        rate: args.rate,
        cpu_per_write_us: cpu as f64 / 1e3 / writes as f64,
        fan_out_median_ms: fan_outs[fan_outs.len() / 2].as_secs_f64() * 1e3,
        fan_out_max_ms: fan_outs.last().map_or(0.0, Duration::as_secs_f64) * 1e3,
    })
}

/// Starts the reader process (pinned to `--reader-cpu` when given), to connect to `addr` and
/// read `expected` bytes on each connection.
fn start_reader(args: &FloorArgs, addr: SocketAddr, expected: u64) -> Result<Child> {
    let exe = std::env::current_exe().context("locating herald-load")?;
    let mut command = match &args.reader_cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .args(["floor-read", "--addr", &addr.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--bytes", &expected.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the floor reader")
}

/// The reader's `connections` connections as blocking sockets, or a timeout.
async fn accept_all(
    listener: &TcpListener,
    connections: usize,
) -> Result<std::io::Result<Vec<std::net::TcpStream>>, tokio::time::error::Elapsed> {
    tokio::time::timeout(ACCEPT_TIMEOUT, async {
        let mut sockets = Vec::with_capacity(connections);
        while sockets.len() < connections {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let stream = stream.into_std()?;
            // Blocking: a write waits for the reader rather than being cut short.
            stream.set_nonblocking(false)?;
            sockets.push(stream);
        }
        std::io::Result::Ok(sockets)
    })
    .await
}

/// Writes each event, when due, to every socket; returns how long each event's fan-out took
/// and how many writes there were.
fn write_events(args: &FloorArgs, sockets: &[std::net::TcpStream]) -> Result<(Vec<Duration>, u64)> {
    let mut frame = vec![b'x'; args.frame];
    frame[args.frame - 1] = b'\n';
    let mut fan_outs = Vec::with_capacity(args.events);
    let mut writes = 0u64;
    let started = Instant::now();
    for event in 0..args.events {
        let due = started + Duration::from_secs_f64(event as f64 / args.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let begun = Instant::now();
        for mut socket in sockets {
            socket
                .write_all(&frame)
                .context("writing to a connection")?;
            writes += 1;
        }
        fan_outs.push(begun.elapsed());
    }
    Ok((fan_outs, writes))
}

/// The reader: opens `connections` to `addr`, says `ready`, reads until each has delivered
/// `bytes` or closed, and says how much it read in all.
pub fn read(addr: SocketAddr, connections: usize, bytes: u64) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let total = local.block_on(&runtime, async move {
        let permits = std::rc::Rc::new(tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT));
        let mut opening = Vec::with_capacity(connections);
        for _ in 0..connections {
            let permits = std::rc::Rc::clone(&permits);
            opening.push(tokio::task::spawn_local(async move {
                let _permit = permits.acquire().await;
                TcpSocket::new_v4()?.connect(addr).await
            }));
        }
        let mut streams = Vec::with_capacity(connections);
        for task in opening {
            streams.push(task.await??);
        }
        println!("ready");
        std::io::stdout().flush()?;
        let mut reading = Vec::with_capacity(connections);
        for mut stream in streams {
            reading.push(tokio::task::spawn_local(async move {
                let mut buf = [0u8; 16 * 1024];
                let mut got = 0u64;
                while got < bytes {
                    match stream.read(&mut buf).await? {
                        0 => break,
                        read => got += read as u64,
                    }
                }
                std::io::Result::Ok(got)
            }));
        }
        let mut total = 0u64;
        for task in reading {
            total += task.await??;
        }
        anyhow::Ok(total)
    })?;
    println!("read {total}");
    Ok(())
}
