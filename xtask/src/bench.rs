//! `cargo xtask bench`: Herald against nchan, side by side in one run.
//!
//! Both servers are pinned to CPU 0 and the load generator (`herald-load`) to CPU 1. Every
//! scenario runs on a fresh server, Herald and nchan alternating which goes first, for each
//! repetition; the table shows the median of each figure and the Herald/nchan ratio.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::tools;

const HERALD_PORT: u16 = 18_480;
const NCHAN_PORT: u16 = 18_490;
const SECRET: &str = "herald-benchmark-signing-key-0123456789abcdef";
const SERVER_CPU: &str = "0";
const LOAD_CPU: &str = "1";

/// nchan as the baseline: one worker, SSE subscribers at `/sub/<channel>`, publishes at
/// `/pub/<channel>`, a 16-message backlog for `Last-Event-ID` resumes.
const NCHAN_CONF: &str = r"load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid nginx.pid;
error_log error.log warn;
events {
  worker_connections 524288;
  multi_accept on;
}
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path tmp_body;
  nchan_shared_memory_size 1024M;
  server {
    listen 127.0.0.1:PORT reuseport backlog=65535;
    location ~ ^/sub/(\w+)$ {
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
      nchan_eventsource_ping_interval 15;
    }
    location ~ ^/pub/(\w+)$ {
      nchan_publisher http;
      nchan_channel_id $1;
      nchan_message_buffer_length 16;
      nchan_message_timeout 60s;
      client_max_body_size 64k;
      client_body_buffer_size 64k;
    }
    location = /nchan_status { nchan_stub_status; }
  }
}
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Herald,
    Nchan,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Self::Herald => "herald",
            Self::Nchan => "nchan",
        }
    }
}

/// A scenario: its name, the load generator's arguments, and the values `--quick` changes.
struct Scenario {
    name: &'static str,
    args: &'static [&'static str],
    quick: &'static [(&'static str, &'static str)],
}

impl Scenario {
    fn args(&self, quick: bool) -> Vec<&'static str> {
        let mut args = self.args.to_vec();
        if quick {
            for (flag, value) in self.quick {
                match args.iter().position(|arg| arg == flag) {
                    Some(at) => args[at + 1] = value,
                    None => args.extend([*flag, *value]),
                }
            }
        }
        args
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "idle-10k",
        args: &["--scenario", "idle", "--subscribers", "10000"],
        quick: &[],
    },
    Scenario {
        name: "idle-19k",
        args: &["--scenario", "idle", "--subscribers", "19000"],
        quick: &[],
    },
    Scenario {
        name: "broadcast",
        args: &[
            "--scenario",
            "broadcast",
            "--subscribers",
            "10000",
            "--rates",
            "1,5,10,20",
            "--step-secs",
            "8",
            "--find-max",
        ],
        quick: &[("--step-secs", "4")],
    },
    Scenario {
        name: "groups",
        args: &[
            "--scenario",
            "groups",
            "--subscribers",
            "10000",
            "--topics",
            "1000",
            "--rates",
            "1000,2000,5000,10000",
            "--step-secs",
            "6",
        ],
        quick: &[("--rates", "1000,5000,10000"), ("--step-secs", "3")],
    },
    Scenario {
        name: "unicast",
        args: &[
            "--scenario",
            "unicast",
            "--subscribers",
            "10000",
            "--rates",
            "1000,5000",
            "--step-secs",
            "6",
        ],
        quick: &[("--step-secs", "3")],
    },
    Scenario {
        name: "resume",
        args: &[
            "--scenario",
            "resume",
            "--subscribers",
            "10000",
            "--topics",
            "100",
        ],
        quick: &[],
    },
    Scenario {
        name: "slow",
        args: &[
            "--scenario",
            "slow",
            "--subscribers",
            "10000",
            "--slow-share",
            "0.1",
            "--rates",
            "5",
            "--step-secs",
            "15",
            "--payload",
            "4096",
        ],
        quick: &[("--step-secs", "8")],
    },
    Scenario {
        name: "churn",
        args: &[
            "--scenario",
            "churn",
            "--subscribers",
            "1000",
            "--churn-per-sec",
            "500",
            "--churn-secs",
            "60",
        ],
        quick: &[("--churn-secs", "15"), ("--churn-warmup-secs", "10")],
    },
];

#[derive(Debug)]
struct Options {
    repetitions: usize,
    quick: bool,
    only: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        repetitions: 3,
        quick: false,
        only: Vec::new(),
    };
    let mut repetitions = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--reps" => {
                let reps: usize = args
                    .next()
                    .context("--reps needs a number")?
                    .parse()
                    .context("--reps needs a number")?;
                if reps == 0 {
                    bail!("--reps needs at least 1");
                }
                repetitions = Some(reps);
            }
            "--scenarios" => {
                options.only = args
                    .next()
                    .context("--scenarios needs a list")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
            }
            other => bail!(
                "unknown option {other:?} (options: --quick, --reps N, --scenarios a,b; scenarios: {})",
                scenario_names()
            ),
        }
    }
    // A quick run is one repetition unless asked otherwise.
    options.repetitions = repetitions.unwrap_or(if options.quick { 1 } else { 3 });
    if let Some(unknown) = options
        .only
        .iter()
        .find(|name| !SCENARIOS.iter().any(|scenario| scenario.name == *name))
    {
        bail!(
            "unknown scenario {unknown:?} (scenarios: {})",
            scenario_names()
        );
    }
    Ok(options)
}

/// The scenarios' names, for error messages.
fn scenario_names() -> String {
    SCENARIOS
        .iter()
        .map(|scenario| scenario.name)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn bench(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        bail!("the benchmark pins the servers and the load generator to two different CPUs");
    }
    tools::ensure_nchan()?;
    crate::step("cargo build --release (herald, herald-load)", || {
        tools::run_command(Command::new("cargo").args([
            "build",
            "--release",
            "--package",
            "herald-server",
            "--package",
            "herald-loadgen",
        ]))
    })?;
    let release = target_dir().join("release");
    // Every subscriber is a socket on both sides: use the whole open-files limit.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    let work = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let token = herald_token(&release)?;
    let scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|scenario| {
            options.only.is_empty() || options.only.iter().any(|name| name == scenario.name)
        })
        .collect();
    let started = Instant::now();
    let mut results: Vec<(String, Server, Value)> = Vec::new();
    let mut floors: Vec<Value> = Vec::new();
    for repetition in 0..options.repetitions {
        for (index, scenario) in scenarios.iter().enumerate() {
            let order = if (repetition + index) % 2 == 0 {
                [Server::Herald, Server::Nchan]
            } else {
                [Server::Nchan, Server::Herald]
            };
            for server in order {
                println!(
                    "==> repetition {}/{}: {} on {}",
                    repetition + 1,
                    options.repetitions,
                    scenario.name,
                    server.name()
                );
                let args = scenario.args(options.quick);
                let outcome = run_one(&release, &work, server, &args, &token)?;
                results.push((scenario.name.to_owned(), server, outcome));
            }
            if scenario.name == "broadcast" {
                println!(
                    "==> repetition {}/{}: loopback floor",
                    repetition + 1,
                    options.repetitions
                );
                floors.push(floor(&release)?);
            }
        }
    }
    let mut table = report(&results, &scenarios, options.repetitions);
    table.push_str(&floor_report(&floors));
    println!("\n{table}");
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &table)?;
    let raw: Vec<Value> = results
        .iter()
        .map(|(scenario, server, outcome)| {
            serde_json::json!({"scenario": scenario, "server": server.name(), "outcome": outcome})
        })
        .chain(floors.iter().map(|floor| serde_json::json!({"scenario": "floor", "outcome": floor})))
        .collect();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&raw)?,
    )?;
    println!(
        "==> benchmark done in {:.0?}; table in {}",
        started.elapsed(),
        out.join("results.md").display()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

fn herald_token(release: &Path) -> Result<String> {
    let output = Command::new(release.join("herald"))
        .args(["token", "--sub", "bench", "--publish", "*", "--ttl", "24h"])
        .args(["--jwt-secret", SECRET])
        .output()
        .context("running herald token")?;
    if !output.status.success() {
        bail!(
            "herald token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A server under test: the process to stop, and the one to measure.
struct Running {
    child: Option<Child>,
    master_pid: u32,
    measured_pid: u32,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.master_pid.to_string())
            .status();
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        } else {
            // nginx's master is not our child: wait for it to go.
            let proc = PathBuf::from(format!("/proc/{}", self.master_pid));
            let deadline = Instant::now() + Duration::from_secs(10);
            while proc.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn start(release: &Path, work: &Path, server: Server) -> Result<Running> {
    let dir = work.join(server.name());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let running = match server {
        Server::Herald => {
            let addr = SocketAddr::from(([127, 0, 0, 1], HERALD_PORT));
            let log = std::fs::File::create(dir.join("herald.log"))?;
            let child = Command::new("taskset")
                .args(["-c", SERVER_CPU])
                .arg(release.join("herald"))
                .args(["--listen", &addr.to_string(), "--data-dir"])
                .arg(dir.join("data"))
                .args(["--jwt-secret", SECRET])
                // Every subscriber comes from a handful of loopback addresses, and the
                // publisher sends thousands a second: lift the per-address and rate limits.
                .args(["--max-connections-per-address", "0", "--publish-rate", "0"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting herald")?;
            let pid = child.id();
            Running {
                child: Some(child),
                master_pid: pid,
                measured_pid: pid,
                addr,
            }
        }
        Server::Nchan => {
            let addr = SocketAddr::from(([127, 0, 0, 1], NCHAN_PORT));
            std::fs::create_dir_all(dir.join("tmp_body"))?;
            std::fs::write(
                dir.join("nginx.conf"),
                NCHAN_CONF.replace("PORT", &NCHAN_PORT.to_string()),
            )?;
            let status = Command::new("taskset")
                .args(["-c", SERVER_CPU, "nginx", "-p"])
                .arg(&dir)
                .args(["-c", "nginx.conf", "-e", "error.log"])
                .stderr(Stdio::null())
                .status()
                .context("starting nginx")?;
            if !status.success() {
                bail!(
                    "nginx did not start: see {}",
                    dir.join("error.log").display()
                );
            }
            let master: u32 = wait_for(|| {
                std::fs::read_to_string(dir.join("nginx.pid"))
                    .ok()
                    .and_then(|pid| pid.trim().parse().ok())
            })?;
            let worker: u32 = wait_for(|| {
                std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                    .ok()
                    .and_then(|children| children.split_whitespace().next()?.parse().ok())
            })?;
            Running {
                child: None,
                master_pid: master,
                measured_pid: worker,
                addr,
            }
        }
    };
    let probe = match server {
        Server::Herald => "/readyz",
        Server::Nchan => "/nchan_status",
    };
    wait_for(|| http_ok(running.addr, probe).then_some(()))?;
    Ok(running)
}

fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("a server did not come up within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn run_one(
    release: &Path,
    work: &Path,
    server: Server,
    args: &[&str],
    token: &str,
) -> Result<Value> {
    let running = start(release, work, server)?;
    let output = Command::new("taskset")
        .args(["-c", LOAD_CPU])
        .arg(release.join("herald-load"))
        .arg("run")
        .args(args)
        .args(["--target", server.name(), "--addr"])
        .arg(running.addr.to_string())
        .arg("--server-pid")
        .arg(running.measured_pid.to_string())
        .env("HERALD_LOAD_TOKEN", token)
        .stderr(Stdio::inherit())
        .output()
        .context("running herald-load")?;
    drop(running);
    if !output.status.success() {
        bail!("herald-load failed on {}", server.name());
    }
    let line = String::from_utf8(output.stdout)?;
    serde_json::from_str(line.trim()).context("herald-load printed no result")
}

/// The kernel's floor for the broadcast scenario: a plain loop writing one frame to each of
/// 10,000 loopback connections at 10 events/s, pinned like a server, with its reader pinned
/// like the load generator.
fn floor(release: &Path) -> Result<Value> {
    let output = Command::new("taskset")
        .args(["-c", SERVER_CPU])
        .arg(release.join("herald-load"))
        .args([
            "floor",
            "--connections",
            "10000",
            "--rate",
            "10",
            "--events",
            "50",
        ])
        .args(["--reader-cpu", LOAD_CPU])
        .stderr(Stdio::inherit())
        .output()
        .context("running herald-load floor")?;
    if !output.status.success() {
        bail!("herald-load floor failed");
    }
    let line = String::from_utf8(output.stdout)?;
    serde_json::from_str(line.trim()).context("herald-load floor printed no result")
}

/// The floor's medians, to read the broadcast's CPU per delivery against.
fn floor_report(floors: &[Value]) -> String {
    if floors.is_empty() {
        return String::new();
    }
    let figure = |name: &str| {
        median(
            &floors
                .iter()
                .map(|floor| floor[name].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    };
    format!(
        "\nLoopback floor (`herald-load floor`: a plain loop writing a 200-byte frame to each of \
         10,000 loopback connections, 10 events/s, no server; medians of {} runs): {} µs CPU per \
         write; one event's fan-out {} ms median, {} ms slowest.\n",
        floors.len(),
        format_value(figure("cpu_per_write_us")),
        format_value(figure("fan_out_median_ms")),
        format_value(figure("fan_out_max_ms")),
    )
}

/// One figure across runs: unit, which way is better, Herald's and nchan's values, and whether
/// any was measured with the load generator saturated.
type Figure = (String, String, Vec<f64>, Vec<f64>, bool);

/// The median of each figure per server, and the ratio, as a Markdown table.
fn report(results: &[(String, Server, Value)], scenarios: &[&Scenario], reps: usize) -> String {
    let mut table = String::from(
        "| scenario | figure | herald | nchan | herald / nchan |\n|---|---|---|---|---|\n",
    );
    let mut flagged = Vec::new();
    for scenario in scenarios {
        let mut figures: BTreeMap<String, Figure> = BTreeMap::new();
        let mut order = Vec::new();
        let mut loadgen = [0f64; 2];
        for (name, server, outcome) in results {
            if name != scenario.name {
                continue;
            }
            let slot = usize::from(*server == Server::Nchan);
            let share = outcome["loadgen_cpu_share"].as_f64().unwrap_or(0.0);
            loadgen[slot] = loadgen[slot].max(share);
            for metric in outcome["metrics"].as_array().into_iter().flatten() {
                let figure = metric["name"].as_str().unwrap_or("?").to_owned();
                let entry = figures.entry(figure.clone()).or_insert_with(|| {
                    order.push(figure.clone());
                    (
                        metric["unit"].as_str().unwrap_or("").to_owned(),
                        metric["better"].as_str().unwrap_or("").to_owned(),
                        Vec::new(),
                        Vec::new(),
                        false,
                    )
                });
                let value = metric["value"].as_f64().unwrap_or(f64::NAN);
                if *server == Server::Herald {
                    entry.2.push(value);
                } else {
                    entry.3.push(value);
                }
                entry.4 |= metric["saturated"].as_bool().unwrap_or(false);
            }
        }
        for figure in order {
            let (unit, better, herald, nchan, saturated) = &figures[&figure];
            let (h, n) = (median(herald), median(nchan));
            let ratio = if better == "zero" || n == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.2}x", h / n)
            };
            let mark = if *saturated {
                flagged.push(format!("{} / {figure}", scenario.name));
                " (saturated)"
            } else {
                ""
            };
            table.push_str(&format!(
                "| {} | {figure}{} | {} | {} | {ratio}{mark} |\n",
                scenario.name,
                if unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({unit})")
                },
                format_value(h),
                format_value(n),
            ));
        }
        table.push_str(&format!(
            "| {} | load generator CPU share (max) | {:.0}% | {:.0}% | - |\n",
            scenario.name,
            loadgen[0] * 100.0,
            loadgen[1] * 100.0
        ));
    }
    table.push_str(&format!(
        "\nMedians of {reps} repetition(s). Load generator on CPU {LOAD_CPU}, servers on CPU {SERVER_CPU}.\n"
    ));
    if !flagged.is_empty() {
        table.push_str(&format!(
            "Measured with the load generator above 90% of its CPU (not to be quoted): {}\n",
            flagged.join("; ")
        ));
    }
    table
}

fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn format_value(value: f64) -> String {
    if !value.is_finite() {
        "-".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
