//! `cargo xtask dist`: the release archive. Builds the console, then the release binary with
//! the console built in, checks that the binary serves it, and packs the binary with the
//! README, the licence, an example configuration and a systemd unit into
//! `target/dist/herald-VERSION-TARGET.tar.gz`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{build_console, step, tools};

/// The files packed beside the binary: (where in the checkout, name in the archive).
const PACKED: &[(&str, &str)] = &[
    ("README.md", "README.md"),
    ("LICENSE", "LICENSE"),
    ("docs/herald.example.toml", "herald.example.toml"),
    ("docs/deploy/herald.service", "herald.service"),
];

pub fn dist(tool_path: &OsStr) -> Result<()> {
    build_console(tool_path)?;
    let console = std::env::current_dir()?.join("dist");
    step(
        "cargo build --release (herald, the console built in)",
        || {
            tools::run_command(
                Command::new("cargo")
                    .args([
                        "build",
                        "--release",
                        "--package",
                        "herald-server",
                        "--bin",
                        "herald",
                    ])
                    .env("HERALD_EMBED_CONSOLE", &console),
            )
        },
    )?;
    let target_dir = target_dir();
    let binary = target_dir.join("release").join("herald");
    step("check that the binary serves its console", || {
        serves_console(&binary)
    })?;
    let name = format!("herald-{}-{}", env!("CARGO_PKG_VERSION"), host_triple()?);
    let out = target_dir.join("dist");
    let staging = out.join(&name);
    let archive = out.join(format!("{name}.tar.gz"));
    step("pack the archive", || {
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        std::fs::copy(&binary, staging.join("herald"))?;
        for (from, to) in PACKED {
            std::fs::copy(from, staging.join(to)).with_context(|| format!("cannot copy {from}"))?;
        }
        tools::run_command(
            Command::new("tar")
                .arg("-czf")
                .arg(&archive)
                .arg("-C")
                .arg(&out)
                .arg(&name),
        )?;
        std::fs::remove_dir_all(&staging)?;
        Ok(())
    })?;
    let bytes = std::fs::metadata(&archive)?.len();
    println!(
        "==> {} ({:.1} MiB)",
        archive.display(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or `target/` in the checkout.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// The platform the binary was built for: rustc's host.
fn host_triple() -> Result<String> {
    let output = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}

/// Runs `binary` from an empty directory, with nothing but a key, and asks it for `/`: the
/// console's page must come back.
fn serves_console(binary: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-dist-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = Command::new(binary)
        .current_dir(&dir)
        .args(["--listen", "127.0.0.1:0", "--jwt-secret"])
        .arg("a-key-of-at-least-thirty-two-bytes-for-the-check")
        .env("HERALD_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let result = (|| {
        let log = child.stderr.take().context("herald's log")?;
        let address = BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| Some(line.split_once("listening on ")?.1.trim().to_owned()))
            .context("herald stopped before it listened")?;
        let mut stream = TcpStream::connect(&address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") || !answer.contains("<html") {
            bail!(
                "GET / did not answer with the console: {}",
                answer.lines().next().unwrap_or_default()
            );
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
