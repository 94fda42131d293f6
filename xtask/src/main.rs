//! `cargo xtask`: installs the tools Herald's build needs, builds the web app, runs the server
//! and the whole test suite.
//!
//! - `cargo xtask run [-- HERALD_ARGS...]`: build the console in release mode and serve it with
//!   the API on http://127.0.0.1:8080 in development mode (data under ./data).
//! - `cargo xtask test`: formatting, lints, unit and integration tests, and the browser tests.
//! - `cargo xtask setup`: only install the tools.
//! - `cargo xtask console`: only build the console into dist/.
//! - `cargo xtask dist`: the release archive, under target/dist/: the binary with the console
//!   built in, the README, the licence, an example configuration and a systemd unit.
//! - `cargo xtask types [--check]`: write (or check) the browser library's TypeScript
//!   declarations of the protocol types, `clients/js/src/protocol.ts`.
//! - `cargo xtask js`: test and build the browser library in `clients/js` (needs Node and npm).
//! - `cargo xtask bench [--quick] [--reps N] [--scenarios a,b]`: Herald against nchan.

mod bench;
mod dist;
mod tools;
mod types;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.skip_while(|arg| arg == "--").collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match command.as_str() {
        "run" => run(&rest),
        "test" => test(),
        "setup" => tools::ensure_build_tools().map(|_| ()),
        "bench" => bench::bench(&rest),
        "console" => {
            let path = tools::ensure_build_tools()?;
            build_console(&path)
        }
        "types" => types::types(&root, rest.iter().any(|arg| arg == "--check")),
        "js" => build_js_client(),
        "dist" => {
            let path = tools::ensure_build_tools()?;
            dist::dist(&path)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  run [-- ARGS]  build the console (release) and serve it with the API\n  \
                 test           fmt, clippy, unit, integration and browser tests\n  setup          install the build tools\n  \
                 console        build the console into dist/\n  \
                 dist           the release archive under target/dist/\n  \
                 types [--check] the browser library's protocol types (clients/js/src/protocol.ts)\n  \
                 js             test and build the browser library (clients/js)\n  \
                 bench [--quick] [--reps N] [--scenarios a,b]\n                 Herald against nchan, side by side"
            );
            if command.is_empty() || command == "help" || command == "--help" {
                Ok(())
            } else {
                bail!("unknown command {command:?}")
            }
        }
    }
}

/// The checkout this command was run in. `cargo xtask` runs this binary through `cargo run`,
/// which names the package's directory at run time: the path compiled in is only a fallback,
/// because checkouts sharing one `CARGO_TARGET_DIR` (as CI's clones do) may run a build made
/// in another, older one.
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(herald_args: &[String]) -> Result<()> {
    let path = tools::ensure_build_tools()?;
    build_console(&path)?;
    // A release build embeds dist/ by itself; leaving HERALD_EMBED_CONSOLE unset keeps this
    // build the same as the `cargo run --release` of `herald token` it suggests, so neither
    // rebuilds the other.
    step(
        "build and start herald (release, the console built in)",
        || {
            let mut command = Command::new("cargo");
            command
                .args([
                    "run",
                    "--release",
                    "--package",
                    "herald-server",
                    "--bin",
                    "herald",
                    "--",
                    // Development mode: loopback only, and the console signs in as a demo user.
                    "--dev",
                ])
                .args(herald_args);
            // Herald runs until Ctrl-C; its exit ends this command. Its log passes through, and
            // once it listens, where to go next is said below it.
            run_announcing(&mut command)
        },
    )
}

/// Runs `command` (Herald), passing its log through; once it logs `listening on ADDR`, says
/// where the console is and how to publish a first event.
fn run_announcing(command: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    if let Some(log) = child.stderr.take() {
        for line in BufReader::new(log).lines() {
            let line = line?;
            eprintln!("{line}");
            if let Some((_, address)) = line.split_once("listening on ") {
                let address = address.trim();
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", next_steps(address));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// What to do once Herald listens on `address`.
fn next_steps(address: &str) -> String {
    format!(
        "\n==> Herald is running: open http://{address}/ for the console.\n\
         ==> Publish a first event from another terminal:\n\
         \x20   TOKEN=$(cargo run -q --release -p herald-server --bin herald -- token --dev --sub backend --publish '*')\n\
         \x20   curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n\
         \x20        -d '{{\"topic\": \"news\", \"type\": \"note\", \"data\": \"hello\"}}' http://{address}/api/publish\n\
         ==> Ctrl-C stops it.\n"
    )
}

fn test() -> Result<()> {
    let started = Instant::now();
    let path = tools::ensure_build_tools()?;
    tools::ensure_test_services()?;
    step("cargo fmt --check", || {
        tools::run_command(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
    })?;
    step("cargo clippy (every crate and test, native)", || {
        tools::run_command(Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("cargo clippy (web console, wasm32)", || {
        tools::run_command(Command::new("cargo").args([
            "clippy",
            "--package",
            "herald-frontend",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step(
        "the browser library's protocol types are up to date",
        || types::types(&std::env::current_dir()?, true),
    )?;
    build_js_client()?;
    build_console(&path)?;
    step(
        "cargo test (unit, integration and browser tests; console state natively)",
        || {
            let dist = std::env::current_dir()?.join("dist");
            // The console is built into the test builds of `herald` too, so that the tests of
            // the single binary see it.
            let (totals, succeeded) = tools::run_tests(
                Command::new("cargo")
                    .args(["test", "--workspace"])
                    .env("HERALD_E2E_DIST", &dist)
                    .env("HERALD_EMBED_CONSOLE", &dist),
            )?;
            // A closing line that CI and people can read whatever the runner printed before.
            println!("{} passed, {} failed", totals.passed, totals.failed);
            if !succeeded {
                bail!("some tests failed");
            }
            Ok(())
        },
    )?;
    println!("==> all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The browser library in `clients/js`: installs its one build tool (TypeScript), runs its
/// tests under Node and builds it into `clients/js/dist`, which the browser tests load.
fn build_js_client() -> Result<()> {
    let dir = std::env::current_dir()?.join("clients/js");
    step(
        "browser library (clients/js): npm ci, node tests, tsc build",
        || {
            let npm = |args: &[&str]| {
                tools::run_command(Command::new("npm").args(args).current_dir(&dir))
            };
            npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"])?;
            npm(&["test", "--silent"])?;
            npm(&["run", "build", "--silent"])
        },
    )
}

fn build_console(path: &std::ffi::OsStr) -> Result<()> {
    // trunk runs cargo offline, so that a wrong tool version fails at once instead of trying to
    // download; the crates it builds are fetched first.
    step("cargo fetch", || {
        tools::run_command(Command::new("cargo").args(["fetch", "--locked"]))
    })?;
    step("trunk build --release (web console into dist/)", || {
        tools::run_command(
            Command::new("trunk")
                .args(["build", "--release", "--offline"])
                .env("PATH", path),
        )
    })
}

/// Runs one named step, printing its start and how long it took.
pub fn step(name: &str, action: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let started = Instant::now();
    action().with_context(|| format!("step failed: {name}"))?;
    println!("==> {name}: done in {:.1?}", started.elapsed());
    Ok(())
}
