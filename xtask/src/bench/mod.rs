//! `cargo xtask bench`: Herald against nchan, side by side in one run.
//!
//! Both servers are pinned to CPU 0 and the load generator (`herald-load`) to CPU 1. Every
//! scenario runs on a fresh server, Herald and nchan alternating which goes first, for each
//! repetition; the table shows the median of each figure and the Herald/nchan ratio.

mod report;
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::tools;
use report::{floor_report, report};
use servers::{herald_token, start};

const HERALD_PORT: u16 = 18_480;
const NCHAN_PORT: u16 = 18_490;
const SERVER_CPU: &str = "0";
const LOAD_CPU: &str = "1";

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
        name: "groups-batch",
        args: &[
            "--scenario",
            "groups-batch",
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
