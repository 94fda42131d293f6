//! The coordinator's side of the worker processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::worker::{self, Command, Report, SubSpec};

#[derive(Debug)]
struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// CPU time the worker reported last, in nanoseconds.
    cpu_ns: u64,
}

/// Worker processes, each on its own loopback source address: one process holds
/// at most ~19,900 sockets, and one source address ~28,000 ports towards one server.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    pub fn spawn(count: usize, target: SocketAddr) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut workers = Vec::with_capacity(count);
        // Each run takes addresses of its own: binding a source address to an ephemeral port
        // has to avoid every port still in TIME_WAIT from an earlier run on that address, and
        // that search grows slow as they pile up.
        let [_, _, high, low] = std::process::id().to_be_bytes();
        for index in 0..count {
            let last = u8::try_from(10 + index).context("too many workers")?;
            let source = IpAddr::V4(Ipv4Addr::new(127, 1 + (high & 0x7f), low, last));
            let mut child = worker::spawn(&exe, target, source)?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            workers.push(Worker {
                _child: child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
                cpu_ns: 0,
            });
        }
        Ok(Self { workers })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// CPU time of all workers as last reported.
    pub fn cpu_ns(&self) -> u64 {
        self.workers.iter().map(|worker| worker.cpu_ns).sum()
    }

    /// Sends `commands[i]` to worker `i` and collects the answers.
    pub async fn each(&mut self, commands: Vec<Command>) -> Result<Vec<Report>> {
        for (worker, command) in self.workers.iter_mut().zip(&commands) {
            let mut line = serde_json::to_vec(command)?;
            line.push(b'\n');
            worker.stdin.write_all(&line).await?;
            worker.stdin.flush().await?;
        }
        let mut reports = Vec::with_capacity(commands.len());
        for worker in self.workers.iter_mut().take(commands.len()) {
            let Some(line) = worker.stdout.next_line().await? else {
                bail!("a worker exited");
            };
            let report: Report = serde_json::from_str(&line).context("bad worker report")?;
            worker.cpu_ns = report.cpu_ns;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Sends the same command to every worker.
    pub async fn all(&mut self, command: impl Fn() -> Command) -> Result<Vec<Report>> {
        let commands = (0..self.workers.len()).map(|_| command()).collect();
        self.each(commands).await
    }

    /// Deals subscriptions round-robin over the workers and opens them. Returns the reports and
    /// the subscriptions each worker got, in order.
    pub async fn connect(
        &mut self,
        subs: Vec<SubSpec>,
    ) -> Result<(Vec<Report>, Vec<Vec<SubSpec>>)> {
        let mut shares: Vec<Vec<SubSpec>> = vec![Vec::new(); self.workers.len()];
        for (index, sub) in subs.into_iter().enumerate() {
            shares[index % self.workers.len()].push(sub);
        }
        let commands = shares
            .iter()
            .map(|subs| Command::Connect { subs: subs.clone() })
            .collect();
        let reports = self.each(commands).await?;
        Ok((reports, shares))
    }

    pub async fn exit(mut self) {
        for worker in &mut self.workers {
            let _ = worker.stdin.write_all(b"{\"cmd\":\"exit\"}\n").await;
        }
    }
}

/// The reports of all workers added up.
#[derive(Debug)]
pub struct Merged {
    pub latency: Histogram<u64>,
    pub connect_latency: Histogram<u64>,
    pub connected: u64,
    pub failed: u64,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub lost: u64,
    pub misrouted: u64,
    pub resets: u64,
    pub closings: u64,
    pub disconnects: u64,
    pub behind: u64,
    pub churned: u64,
    pub errors: Vec<String>,
}

pub fn merge(reports: &[Report]) -> Merged {
    let mut merged = Merged {
        latency: histogram(),
        connect_latency: histogram(),
        connected: 0,
        failed: 0,
        received: 0,
        duplicated: 0,
        out_of_order: 0,
        lost: 0,
        misrouted: 0,
        resets: 0,
        closings: 0,
        disconnects: 0,
        behind: 0,
        churned: 0,
        errors: Vec::new(),
    };
    for report in reports {
        for &(value, count) in &report.latency {
            let _ = merged.latency.record_n(value, count);
        }
        for &(value, count) in &report.connect_latency {
            let _ = merged.connect_latency.record_n(value, count);
        }
        merged.connected += report.connected;
        merged.failed += report.failed;
        merged.received += report.received;
        merged.duplicated += report.duplicated;
        merged.out_of_order += report.out_of_order;
        merged.lost += report.lost;
        merged.misrouted += report.misrouted;
        merged.resets += report.resets;
        merged.closings += report.closings;
        merged.disconnects += report.disconnects;
        merged.behind += report.behind;
        merged.churned += report.churned;
        for error in &report.errors {
            if merged.errors.len() < 5 {
                merged.errors.push(error.clone());
            }
        }
    }
    merged
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}
