//! The scenarios: what is connected, what is published, and which figures come out.

mod batch;
mod churn;
mod idle;
mod rates;
mod resume;
mod slow;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pool::{self, Merged, Pool};
use crate::procfs;
use crate::publish::Publisher;
use crate::worker::{Command, SubSpec};
use crate::{RunArgs, Scenario, Target};

/// A load generator using more of its core than this is the bottleneck: its figures are flagged.
const SATURATED: f64 = 0.9;
/// p99 under which a broadcast rate counts as sustained.
const MAX_P99_MS: f64 = 100.0;
/// Publishing connections opened per this many events a second (see [`Run::publish`]).
const PUBLISHES_PER_CONNECTION: f64 = 50.0;
/// At most this many publishes in flight at once.
const MAX_PUBLISH_CONNECTIONS: usize = 128;
/// How long subscribers may take to receive everything after publishing stops.
const DRAIN_TIMEOUT_MS: u64 = 15_000;
/// How long the churn scenario waits after connections close before it reads memory: servers
/// give freed memory back to the system a moment after the closes (Herald checks every 2 s).
const SETTLE: Duration = Duration::from_secs(5);

/// One figure of a run.
#[derive(Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    /// `lower`, `higher`, or `zero` for a count that must be zero.
    pub better: &'static str,
    /// Measured while the load generator's core was saturated: not to be quoted.
    pub saturated: bool,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: Scenario,
    pub target: Target,
    pub metrics: Vec<Metric>,
    /// The highest share of its core the load generator used in any measured step.
    pub loadgen_cpu_share: f64,
    pub errors: Vec<String>,
}

impl Outcome {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{:?} on {:?} (load generator CPU share up to {:.0}%)\n",
            self.scenario,
            self.target,
            self.loadgen_cpu_share * 100.0
        );
        for metric in &self.metrics {
            let _ = writeln!(
                text,
                "  {:<40} {:>12.3} {}{}",
                metric.name,
                metric.value,
                metric.unit,
                if metric.saturated {
                    "  (load generator saturated)"
                } else {
                    ""
                }
            );
        }
        for error in &self.errors {
            let _ = writeln!(text, "  error: {error}");
        }
        text
    }
}

/// The streams of a run and how each is subscribed to and published on.
#[derive(Debug, Clone)]
struct Plan {
    target: Target,
    /// Topic or channel names; for Herald client streams, the client ids once known.
    streams: Vec<String>,
    /// Herald client streams rather than topics.
    clients: bool,
    padding: String,
}

impl Plan {
    fn topics(target: Target, count: usize, payload: usize) -> Self {
        Self {
            target,
            streams: (0..count).map(|index| format!("t{index}")).collect(),
            clients: false,
            padding: "x".repeat(payload),
        }
    }

    fn clients(target: Target, count: usize) -> Self {
        Self {
            target,
            streams: (0..count).map(|index| format!("c{index}")).collect(),
            clients: target == Target::Herald,
            padding: String::new(),
        }
    }

    fn sub(&self, stream: usize, slow: bool) -> SubSpec {
        let path = match (self.target, self.clients) {
            (Target::Herald, true) => "/events".to_owned(),
            (Target::Herald, false) => format!("/events?topic={}", self.streams[stream]),
            (Target::Nchan, _) => format!("/sub/{}", self.streams[stream]),
        };
        SubSpec {
            stream: u32::try_from(stream).unwrap_or(u32::MAX),
            path,
            slow,
            keep_client_id: self.clients,
        }
    }

    fn publish_path(&self, stream: usize) -> String {
        match (self.target, self.clients) {
            (Target::Herald, true) => format!("/api/clients/{}/events", self.streams[stream]),
            (Target::Herald, false) => "/api/publish".to_owned(),
            (Target::Nchan, _) => format!("/pub/{}", self.streams[stream]),
        }
    }

    /// The publish body of event `number` on `stream`, stamped `due_us` (when it was due to be
    /// sent, in microseconds since the Unix epoch).
    fn body(&self, stream: usize, number: u64, due_us: u64) -> Vec<u8> {
        let mut stamp = format!("{{\"s\":{stream},\"n\":{number},\"t\":{due_us}");
        if !self.padding.is_empty() {
            let _ = write!(stamp, ",\"p\":\"{}\"", self.padding);
        }
        stamp.push('}');
        match (self.target, self.clients) {
            (Target::Herald, true) => format!("{{\"type\":\"bench\",\"data\":{stamp}}}"),
            (Target::Herald, false) => format!(
                "{{\"topic\":\"{}\",\"type\":\"bench\",\"data\":{stamp}}}",
                self.streams[stream]
            ),
            (Target::Nchan, _) => stamp,
        }
        .into_bytes()
    }
}

/// The server's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    server_cpu_ns: u64,
    /// Private memory, plus nchan's used shared memory, in KiB.
    memory_kib: u64,
    loadgen_cpu_ns: u64,
}

struct Run {
    args: RunArgs,
    plan: Plan,
    pool: Pool,
    /// Events acknowledged per stream so far.
    counts: Rc<RefCell<Vec<u64>>>,
    metrics: Vec<Metric>,
    errors: Vec<String>,
    loadgen_share: f64,
    /// Correctness counters over the whole run.
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    misrouted: u64,
    disconnects: u64,
    publish_failures: u64,
}

pub async fn run(args: RunArgs) -> Result<Outcome> {
    let scenario = args.scenario;
    let target = args.target;
    let (plan, conns, min_workers) = match scenario {
        Scenario::Idle | Scenario::Broadcast | Scenario::Slow => {
            (Plan::topics(target, 1, args.payload), args.subscribers, 1)
        }
        Scenario::Groups | Scenario::GroupsBatch | Scenario::Resume => (
            Plan::topics(target, args.topics, args.payload),
            args.subscribers,
            1,
        ),
        Scenario::Unicast => (Plan::clients(target, args.subscribers), args.subscribers, 1),
        // Each closed connection holds its port for a minute (TIME_WAIT): spread the churn
        // over four source addresses.
        Scenario::Churn => (Plan::topics(target, 1, args.payload), args.subscribers, 4),
    };
    let workers = conns.div_ceil(args.per_worker).max(min_workers);
    let pool = Pool::spawn(workers, args.addr)?;
    let streams = plan.streams.len();
    let mut run = Run {
        args,
        plan,
        pool,
        counts: Rc::new(RefCell::new(vec![0; streams])),
        metrics: Vec::new(),
        errors: Vec::new(),
        loadgen_share: 0.0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
        misrouted: 0,
        disconnects: 0,
        publish_failures: 0,
    };
    match scenario {
        Scenario::Idle => run.idle().await?,
        Scenario::Broadcast => run.rates("broadcast", &[1.0, 5.0, 10.0, 20.0]).await?,
        Scenario::Groups => {
            run.rates("groups", &[1000.0, 2000.0, 5000.0, 10000.0])
                .await?
        }
        Scenario::GroupsBatch => {
            run.rates("groups-batch", &[1000.0, 2000.0, 5000.0, 10000.0])
                .await?
        }
        Scenario::Unicast => run.rates("unicast", &[1000.0, 5000.0]).await?,
        Scenario::Resume => run.resume().await?,
        Scenario::Slow => run.slow().await?,
        Scenario::Churn => run.churn().await?,
    }
    run.finish_checks();
    let Run {
        pool,
        metrics,
        errors,
        loadgen_share,
        ..
    } = run;
    pool.exit().await;
    Ok(Outcome {
        scenario,
        target,
        metrics,
        loadgen_cpu_share: loadgen_share,
        errors,
    })
}

impl Run {
    fn metric(
        &mut self,
        name: impl Into<String>,
        unit: &'static str,
        value: f64,
        better: &'static str,
        saturated: bool,
    ) {
        self.metrics.push(Metric {
            name: name.into(),
            unit,
            value,
            better,
            saturated,
        });
    }

    async fn sample(&self) -> Result<Sample> {
        let memory = procfs::memory(self.args.server_pid)?;
        let shared_used = match self.args.target {
            Target::Nchan => nchan_shared_kib(self.args.addr).await?,
            Target::Herald => 0,
        };
        Ok(Sample {
            at: Instant::now(),
            server_cpu_ns: procfs::cpu_ns(self.args.server_pid)?,
            memory_kib: memory.private_kib + shared_used,
            loadgen_cpu_ns: procfs::own_cpu_ns() + self.pool.cpu_ns(),
        })
    }

    /// The load generator's share of its core between two samples; remembers the highest.
    fn loadgen_share(&mut self, from: &Sample, to: &Sample) -> f64 {
        let wall = to.at.duration_since(from.at).as_nanos().max(1) as f64;
        let share = to.loadgen_cpu_ns.saturating_sub(from.loadgen_cpu_ns) as f64 / wall;
        self.loadgen_share = self.loadgen_share.max(share);
        share
    }

    fn absorb(&mut self, merged: &Merged) {
        self.lost += merged.lost;
        self.duplicated += merged.duplicated;
        self.out_of_order += merged.out_of_order;
        self.misrouted += merged.misrouted;
        self.disconnects += merged.disconnects;
        for error in &merged.errors {
            if self.errors.len() < 10 {
                self.errors.push(error.clone());
            }
        }
    }

    fn finish_checks(&mut self) {
        let checks = [
            ("lost events", self.lost),
            ("duplicated events", self.duplicated),
            ("out-of-order events", self.out_of_order),
            ("misrouted events", self.misrouted),
            ("unexpected disconnects", self.disconnects),
            ("failed publishes", self.publish_failures),
        ];
        for (name, value) in checks {
            self.metric(name, "", value as f64, "zero", false);
        }
    }

    async fn connect(&mut self, subs: Vec<SubSpec>) -> Result<(Merged, f64)> {
        let started = Instant::now();
        let (reports, shares) = self.pool.connect(subs).await?;
        let secs = started.elapsed().as_secs_f64();
        if self.plan.clients {
            // Herald issues client ids: the publisher addresses each stream by its id.
            for (report, subs) in reports.iter().zip(&shares) {
                for (id, sub) in report.client_ids.iter().zip(subs) {
                    self.plan.streams[sub.stream as usize].clone_from(id);
                }
            }
        }
        let merged = pool::merge(&reports);
        self.absorb(&merged);
        anyhow::ensure!(
            merged.failed == 0,
            "{} of {} subscribers could not connect: {:?}",
            merged.failed,
            merged.failed + merged.connected,
            merged.errors
        );
        Ok((merged, secs))
    }

    /// Subscribers spread evenly over the plan's streams.
    fn subscribers(&self, count: usize, slow: bool) -> Vec<SubSpec> {
        (0..count)
            .map(|index| self.plan.sub(index % self.plan.streams.len(), slow))
            .collect()
    }

    /// Publishes at `rate` for the step duration and waits until every reading subscriber has
    /// everything. Returns the merged reports and the samples around the step.
    async fn step(&mut self, rate: f64, secs: f64) -> Result<(Merged, Sample, Sample, f64)> {
        let before = self.sample().await?;
        let total = (rate * secs).round().max(1.0) as u64;
        let achieved = self.publish(rate, total).await?;
        let merged = self.drain().await?;
        let after = self.sample().await?;
        Ok((merged, before, after, achieved))
    }

    /// Waits until every subscriber has what was published (or the drain timeout passes),
    /// merges the workers' reports and adds them to the run's counts.
    async fn drain(&mut self) -> Result<Merged> {
        let counts = self.counts.borrow().clone();
        let reports = self
            .pool
            .all(|| Command::Expect {
                counts: counts.clone(),
                timeout_ms: DRAIN_TIMEOUT_MS,
            })
            .await?;
        let merged = pool::merge(&reports);
        self.absorb(&merged);
        Ok(merged)
    }

    /// Publishes `total` events at `rate`, round-robin over the plan's streams, numbering each
    /// stream's events from where it stands.
    ///
    /// The schedule is open: each event is sent when it is due, on whichever of the publishing
    /// connections is free, without waiting for the answers to earlier events on other streams.
    /// A back-end publishing at a rate does not slow down because one answer is slow, and a
    /// fixed number of one-at-a-time connections would measure its own round trips rather than
    /// the server. Events of one stream are still sent one at a time, each after the previous
    /// one's answer, so they reach the server in the order they are numbered.
    async fn publish(&mut self, rate: f64, total: u64) -> Result<f64> {
        if self.args.scenario == Scenario::GroupsBatch && self.plan.target == Target::Herald {
            return self.publish_batches(rate, total).await;
        }
        let streams = self.plan.streams.len();
        let connections =
            ((rate / PUBLISHES_PER_CONNECTION).ceil() as usize).clamp(1, MAX_PUBLISH_CONNECTIONS);
        let plan = Rc::new(PlanView {
            paths: (0..streams)
                .map(|stream| self.plan.publish_path(stream))
                .collect(),
            plan: self.plan.clone(),
        });
        // A stream's turn is taken when its event is handed out, before that event is due: the
        // lock is first come, first served, so a stream's events leave in the order handed out.
        let turns: Rc<Vec<tokio::sync::Mutex<()>>> =
            Rc::new((0..streams).map(|_| tokio::sync::Mutex::new(())).collect());
        let next = Rc::new(std::cell::Cell::new(0u64));
        let pace = Pace::start(rate);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let plan = Rc::clone(&plan);
            let counts = Rc::clone(&self.counts);
            let turns = Rc::clone(&turns);
            let next = Rc::clone(&next);
            let mut publisher = Publisher::new(self.args.addr, self.args.token.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut failures = 0u64;
                let mut first_error = None;
                loop {
                    let index = next.get();
                    if index >= total {
                        break;
                    }
                    next.set(index + 1);
                    let stream = (index % streams as u64) as usize;
                    let _turn = turns[stream].lock().await;
                    let due_us = pace.wait(index).await;
                    let number = counts.borrow()[stream];
                    let body = plan.plan.body(stream, number, due_us);
                    match publisher.post(&plan.paths[stream], &body).await {
                        Ok(code) if (200..300).contains(&code) => counts.borrow_mut()[stream] += 1,
                        Ok(code) => {
                            failures += 1;
                            first_error.get_or_insert(format!("publish answered {code}"));
                        }
                        Err(err) => {
                            failures += 1;
                            first_error.get_or_insert(format!("publish failed: {err:#}"));
                        }
                    }
                }
                (failures, first_error)
            }));
        }
        self.join_publishers(tasks).await?;
        // A server that answers a publish only after delivering it holds the publisher back:
        // the rate reached is what counts, not the one asked for.
        let span = pace.started.elapsed().as_secs_f64().max(1.0 / rate);
        Ok((total as f64 / span).min(rate))
    }
}

impl Run {
    /// Waits for the publishing tasks and counts their failures.
    async fn join_publishers(
        &mut self,
        tasks: Vec<tokio::task::JoinHandle<(u64, Option<String>)>>,
    ) -> Result<()> {
        for task in tasks {
            let (failures, error) = task.await.context("publisher task")?;
            self.publish_failures += failures;
            if let Some(error) = error
                && self.errors.len() < 10
            {
                self.errors.push(error);
            }
        }
        Ok(())
    }
}

/// A plan with every stream's publish path worked out once.
/// The publisher's schedule: event `index` is due `index / rate` seconds after the start.
///
/// Events are stamped with when they were due, not when they left: a server that answers a
/// publish only once it has delivered it makes the next publish late, and latency counted from
/// the late send would leave that wait out (coordinated omission).
#[derive(Debug, Clone, Copy)]
struct Pace {
    started: tokio::time::Instant,
    started_us: u64,
    rate: f64,
}

impl Pace {
    fn start(rate: f64) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            started_us: crate::wire::now_us(),
            rate,
        }
    }

    /// Waits until event `index` is due (not at all if it is late) and returns its stamp.
    async fn wait(&self, index: u64) -> u64 {
        let after = Duration::from_secs_f64(index as f64 / self.rate);
        tokio::time::sleep_until(self.started + after).await;
        self.started_us + u64::try_from(after.as_micros()).unwrap_or(u64::MAX)
    }

    /// Event `index`'s stamp if it is due already.
    fn due_now(&self, index: u64) -> Option<u64> {
        let after = Duration::from_secs_f64(index as f64 / self.rate);
        (self.started + after <= tokio::time::Instant::now())
            .then(|| self.started_us + u64::try_from(after.as_micros()).unwrap_or(u64::MAX))
    }
}

struct PlanView {
    plan: Plan,
    paths: Vec<String>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// nchan's used shared memory in KiB, from its status page.
async fn nchan_shared_kib(addr: SocketAddr) -> Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /nchan_status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("shared memory used:"))
        .context("no shared memory figure in /nchan_status")?;
    let line = line.trim();
    let (number, unit) = line.split_at(
        line.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(line.len()),
    );
    let number: u64 = number.parse().context("bad shared memory figure")?;
    Ok(match unit.trim() {
        "M" => number * 1024,
        "G" => number * 1024 * 1024,
        "" => number / 1024,
        _ => number,
    })
}
