//! A worker process: holds a share of the subscriber connections, from one source address, and
//! answers the coordinator's commands (one JSON line each on stdin, one JSON line back on
//! stdout).

mod connection;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use connection::{open, subscriber};

/// Connections a worker opens at once; the rest wait for one of them to be greeted.
const CONNECTS_IN_FLIGHT: usize = 256;
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Opens these subscriptions and answers once each is greeted or failed.
    Connect {
        subs: Vec<SubSpec>,
    },
    /// Waits until every reading subscriber has received `counts[stream]` events (or the
    /// timeout), then answers with the statistics since the last answer.
    Expect {
        counts: Vec<u64>,
        timeout_ms: u64,
    },
    /// Closes every connection, keeping each one's last event id.
    Drop,
    /// Reconnects every reading subscriber with its last event id and waits as `Expect` does.
    Resume {
        counts: Vec<u64>,
        timeout_ms: u64,
    },
    /// Opens `per_sec` connections a second to `path` for `secs`, each closed `hold_ms` after
    /// its greeting.
    Churn {
        path: String,
        per_sec: f64,
        secs: f64,
        hold_ms: u64,
    },
    Exit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubSpec {
    /// The stream (topic or client) whose events this subscriber counts.
    pub stream: u32,
    /// Request path and query.
    pub path: String,
    /// Stops reading after its greeting.
    pub slow: bool,
    /// On resume, adds the `client_id` it was given (Herald's client streams).
    pub keep_client_id: bool,
}

/// A worker's answer. Counters cover the time since its previous answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub connected: u64,
    pub failed: u64,
    pub secs: f64,
    /// Client ids from `herald.connected`, in the order of the `Connect` command.
    pub client_ids: Vec<String>,
    /// Publish → receive latency in microseconds, as (value, count) pairs.
    pub latency: Vec<(u64, u64)>,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub lost: u64,
    /// Events stamped for a stream other than the one the connection receives.
    pub misrouted: u64,
    pub resets: u64,
    pub closings: u64,
    /// Connections that ended without being asked to, and the first reasons.
    pub disconnects: u64,
    pub errors: Vec<String>,
    /// Subscribers still behind when `Expect` or `Resume` gave up waiting.
    pub behind: u64,
    /// This worker's own CPU time so far, in nanoseconds.
    pub cpu_ns: u64,
    pub churned: u64,
    /// Connect → greeting time of churned connections, in microseconds.
    pub connect_latency: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Conn {
    spec: Option<SubSpec>,
    last_id: Option<String>,
    client_id: Option<String>,
    /// The number of the next event expected on the connection's stream.
    next: u64,
    received: u64,
    task: Option<JoinHandle<()>>,
    /// Closed on purpose (by `Drop`), so its end is not an error.
    dropping: bool,
}

struct Shared {
    target: SocketAddr,
    source: IpAddr,
    host: String,
    conns: RefCell<Vec<Conn>>,
    latency: RefCell<Histogram<u64>>,
    connect_latency: RefCell<Histogram<u64>>,
    counters: RefCell<Report>,
    greeted: Cell<u64>,
    failed: Cell<u64>,
    progress: Notify,
    connects: Semaphore,
}

pub fn histogram_pairs(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram
        .iter_recorded()
        .map(|value| (value.value_iterated_to(), value.count_at_value()))
        .collect()
}

/// Runs a worker until `Exit` or the end of its input.
pub fn main(target: SocketAddr, source: IpAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let shared = Rc::new(Shared {
            target,
            source,
            host: target.to_string(),
            conns: RefCell::new(Vec::new()),
            latency: RefCell::new(crate::pool::histogram()),
            connect_latency: RefCell::new(crate::pool::histogram()),
            counters: RefCell::new(Report::default()),
            greeted: Cell::new(0),
            failed: Cell::new(0),
            progress: Notify::new(),
            connects: Semaphore::new(CONNECTS_IN_FLIGHT),
        });
        let mut input = BufReader::new(tokio::io::stdin()).lines();
        let mut output = tokio::io::stdout();
        while let Some(line) = input.next_line().await? {
            let command: Command = serde_json::from_str(&line).context("bad command")?;
            let started = Instant::now();
            let mut report = match command {
                Command::Connect { subs } => connect(&shared, subs).await,
                Command::Expect { counts, timeout_ms } => {
                    expect(&shared, &counts, timeout_ms).await
                }
                Command::Drop => drop_all(&shared),
                Command::Resume { counts, timeout_ms } => {
                    resume(&shared, &counts, timeout_ms).await
                }
                Command::Churn {
                    path,
                    per_sec,
                    secs,
                    hold_ms,
                } => churn(&shared, &path, per_sec, secs, hold_ms).await,
                Command::Exit => break,
            };
            report.secs = started.elapsed().as_secs_f64();
            report.cpu_ns = crate::procfs::own_cpu_ns();
            let mut line = serde_json::to_vec(&report)?;
            line.push(b'\n');
            output.write_all(&line).await?;
            output.flush().await?;
        }
        for conn in shared.conns.borrow_mut().iter_mut() {
            if let Some(task) = conn.task.take() {
                task.abort();
            }
        }
        Ok(())
    })
}

/// Takes the counters gathered since the last report.
fn take_report(shared: &Shared) -> Report {
    let mut report = std::mem::take(&mut *shared.counters.borrow_mut());
    let mut latency = shared.latency.borrow_mut();
    report.latency = histogram_pairs(&latency);
    latency.reset();
    let mut connect_latency = shared.connect_latency.borrow_mut();
    report.connect_latency = histogram_pairs(&connect_latency);
    connect_latency.reset();
    report
}

async fn connect(shared: &Rc<Shared>, subs: Vec<SubSpec>) -> Report {
    let first = shared.conns.borrow().len();
    let count = subs.len();
    shared.greeted.set(0);
    shared.failed.set(0);
    for spec in subs {
        let index = {
            let mut conns = shared.conns.borrow_mut();
            conns.push(Conn {
                spec: Some(spec),
                ..Conn::default()
            });
            conns.len() - 1
        };
        let task = tokio::task::spawn_local(subscriber(Rc::clone(shared), index));
        shared.conns.borrow_mut()[index].task = Some(task);
    }
    wait_greetings(shared, count as u64).await;
    let mut report = take_report(shared);
    report.connected = shared.greeted.get();
    report.failed = shared.failed.get();
    report.client_ids = shared.conns.borrow()[first..]
        .iter()
        .map(|conn| conn.client_id.clone().unwrap_or_default())
        .collect();
    report
}

async fn wait_greetings(shared: &Shared, count: u64) {
    while shared.greeted.get() + shared.failed.get() < count {
        shared.progress.notified().await;
    }
}

/// Subscribers (reading ones only) that have not yet received their stream's count.
fn behind(shared: &Shared, counts: &[u64]) -> u64 {
    shared
        .conns
        .borrow()
        .iter()
        .filter_map(|conn| conn.spec.as_ref().map(|spec| (conn, spec)))
        .filter(|(conn, spec)| {
            !spec.slow && conn.next < counts.get(spec.stream as usize).copied().unwrap_or(0)
        })
        .count() as u64
}

async fn wait_caught_up(shared: &Shared, counts: &[u64], timeout_ms: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let behind = behind(shared, counts);
        if behind == 0 || Instant::now() >= deadline {
            return behind;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn expect(shared: &Shared, counts: &[u64], timeout_ms: u64) -> Report {
    let behind = wait_caught_up(shared, counts, timeout_ms).await;
    finish(shared, counts, behind)
}

/// The report after waiting: adds what reading subscribers never received.
fn finish(shared: &Shared, counts: &[u64], behind: u64) -> Report {
    let lost: u64 = shared
        .conns
        .borrow()
        .iter()
        .filter_map(|conn| conn.spec.as_ref().map(|spec| (conn, spec)))
        .filter(|(_, spec)| !spec.slow)
        .map(|(conn, spec)| {
            counts
                .get(spec.stream as usize)
                .copied()
                .unwrap_or(0)
                .saturating_sub(conn.received)
        })
        .sum();
    let mut report = take_report(shared);
    report.lost = lost;
    report.behind = behind;
    report
}

fn drop_all(shared: &Shared) -> Report {
    for conn in shared.conns.borrow_mut().iter_mut() {
        conn.dropping = true;
        if let Some(task) = conn.task.take() {
            task.abort();
        }
    }
    take_report(shared)
}

async fn resume(shared: &Rc<Shared>, counts: &[u64], timeout_ms: u64) -> Report {
    let started = Instant::now();
    let indices: Vec<usize> = shared
        .conns
        .borrow()
        .iter()
        .enumerate()
        .filter(|(_, conn)| conn.spec.as_ref().is_some_and(|spec| !spec.slow))
        .map(|(index, _)| index)
        .collect();
    shared.greeted.set(0);
    shared.failed.set(0);
    for &index in &indices {
        shared.conns.borrow_mut()[index].dropping = false;
        let task = tokio::task::spawn_local(subscriber(Rc::clone(shared), index));
        shared.conns.borrow_mut()[index].task = Some(task);
    }
    wait_greetings(shared, indices.len() as u64).await;
    let behind = wait_caught_up(shared, counts, timeout_ms).await;
    let mut report = finish(shared, counts, behind);
    report.connected = shared.greeted.get();
    report.failed = shared.failed.get();
    report.secs = started.elapsed().as_secs_f64();
    report
}

async fn churn(shared: &Rc<Shared>, path: &str, per_sec: f64, secs: f64, hold_ms: u64) -> Report {
    let started = Instant::now();
    let total = (per_sec * secs).round() as u64;
    let done = Rc::new(Cell::new(0u64));
    let ok = Rc::new(Cell::new(0u64));
    let mut opened = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while opened < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * per_sec) as u64).min(total);
        while opened < due {
            opened += 1;
            let shared = Rc::clone(shared);
            let path = path.to_owned();
            let done = Rc::clone(&done);
            let ok = Rc::clone(&ok);
            tokio::task::spawn_local(async move {
                let begun = Instant::now();
                match open(&shared, &path, None, false).await {
                    Ok((stream, _)) => {
                        let micros = begun.elapsed().as_micros() as u64;
                        let _ = shared.connect_latency.borrow_mut().record(micros.max(1));
                        ok.set(ok.get() + 1);
                        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                        drop(stream);
                    }
                    Err(err) => note_error(&shared, format!("churn connect: {err}")),
                }
                done.set(done.get() + 1);
            });
        }
    }
    while done.get() < total {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut report = take_report(shared);
    report.churned = ok.get();
    report.failed = total - ok.get();
    report
}

fn note_error(shared: &Shared, error: String) {
    let mut counters = shared.counters.borrow_mut();
    counters.disconnects += 1;
    if counters.errors.len() < 5 {
        counters.errors.push(error);
    }
}

/// Spawns a worker process of this binary. It inherits this process's CPU affinity.
pub fn spawn(
    exe: &std::path::Path,
    target: SocketAddr,
    source: IpAddr,
) -> Result<tokio::process::Child> {
    tokio::process::Command::new(exe)
        .args(["worker", "--target", &target.to_string(), "--source"])
        .arg(source.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker process")
}
