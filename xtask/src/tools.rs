//! Installing the tools the build needs, each only when it is missing or the wrong version.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const TRUNK_VERSION: &str = "0.21.14";
/// Must equal the `wasm-bindgen` crate version pinned in crates/frontend/Cargo.toml.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// wasm-opt from npm; Debian's binaryen produces modules that fail in the browser.
const BINARYEN_VERSION: &str = "132.0.0";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Runs a command with inherited output; fails unless it exits with success.
pub fn run_command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Test counts summed over every `test result:` line of a cargo test run.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
}

/// Runs `cargo test`, passing its output through while adding up its results; also says
/// whether it succeeded.
pub fn run_tests(command: &mut Command) -> Result<(TestTotals, bool)> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().context("test output")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading test output")?;
        writeln!(out, "{line}")?;
        if let Some(summary) = line.strip_prefix("test result: ") {
            totals.passed += count_before(summary, " passed");
            totals.failed += count_before(summary, " failed");
        }
    }
    let status = child.wait()?;
    Ok((totals, status.success()))
}

/// The number just before `label` in a line such as `ok. 5 passed; 0 failed; ...`.
fn count_before(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// What a command prints on stdout, or `None` if it cannot run.
fn output_of(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Where downloaded tools that are not cargo binaries live, outside any clone.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/herald")
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

/// Installs rustfmt and clippy, the wasm target, trunk, wasm-bindgen-cli and wasm-opt when
/// missing; returns the `PATH` to run trunk with (the npm wasm-opt and cargo's binaries first).
pub fn ensure_build_tools() -> Result<OsString> {
    ensure_components()?;
    ensure_wasm_target()?;
    ensure_cargo_tool(
        "trunk",
        TRUNK_VERSION,
        "trunk",
        &format!("trunk {TRUNK_VERSION}"),
        true,
    )?;
    ensure_cargo_tool(
        "wasm-bindgen-cli",
        WASM_BINDGEN_VERSION,
        "wasm-bindgen",
        &format!("wasm-bindgen {WASM_BINDGEN_VERSION}"),
        false,
    )?;
    let binaryen_bin = ensure_binaryen()?;
    let mut paths = vec![binaryen_bin, cargo_bin()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).context("cannot build PATH")
}

/// rustfmt and clippy, which a minimal Rust installation lacks.
fn ensure_components() -> Result<()> {
    let installed = output_of("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|component| !installed.lines().any(|line| line.starts_with(component)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("==> installing the Rust components {}", missing.join(", "));
    run_command(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing),
    )
}

fn ensure_wasm_target() -> Result<()> {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    println!("==> installing the {WASM_TARGET} target");
    run_command(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn ensure_cargo_tool(
    package: &str,
    version: &str,
    binary: &str,
    expected: &str,
    try_locked: bool,
) -> Result<()> {
    // Look in cargo's install folder first: it may not be on PATH.
    let installed = cargo_bin().join(binary);
    let current = output_of(&installed, &["--version"])
        .or_else(|| output_of(binary, &["--version"]))
        .unwrap_or_default();
    if current.trim() == expected {
        return Ok(());
    }
    println!(
        "==> installing {package} {version} with cargo (takes several minutes, once per machine)"
    );
    if try_locked
        && run_command(Command::new("cargo").args([
            "install",
            package,
            "--version",
            version,
            "--locked",
        ]))
        .is_ok()
    {
        return Ok(());
    }
    // Some versions' lock files name a dependency this registry no longer serves.
    run_command(Command::new("cargo").args(["install", package, "--version", version]))
}

fn ensure_binaryen() -> Result<PathBuf> {
    let prefix = cache_dir().join(format!("binaryen-{BINARYEN_VERSION}"));
    let bin = prefix.join("node_modules/.bin");
    let wanted = format!(
        "version_{}",
        BINARYEN_VERSION.split('.').next().unwrap_or_default()
    );
    let current = output_of(bin.join("wasm-opt"), &["--version"]).unwrap_or_default();
    if current.contains(&wanted) {
        return Ok(bin);
    }
    println!(
        "==> installing wasm-opt (npm binaryen@{BINARYEN_VERSION}) into {}",
        prefix.display()
    );
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    run_command(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("binaryen@{BINARYEN_VERSION}")),
    )?;
    Ok(bin)
}

/// Installs from Debian's packages what the tests run for real when it is missing: Chromium and
/// ChromeDriver for the browser tests, `redis-server` and nginx for the cluster tests.
pub fn ensure_test_services() -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let chromedriver =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    ensure_packages(&[
        ("chromium", chromium.as_str()),
        ("chromium-driver", chromedriver.as_str()),
        ("redis-server", "/usr/bin/redis-server"),
        ("nginx-light", "/usr/sbin/nginx"),
        ("curl", "/usr/bin/curl"),
    ])
}

/// nginx with the nchan module, which the benchmark measures Herald against.
pub fn ensure_nchan() -> Result<()> {
    ensure_packages(&[
        ("nginx-light", "/usr/sbin/nginx"),
        (
            "libnginx-mod-nchan",
            "/usr/lib/nginx/modules/ngx_nchan_module.so",
        ),
    ])
}

/// Installs each `(package, file)` whose file is missing.
fn ensure_packages(needed: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = output_of("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    if !is_root {
        bail!(
            "the tests need Debian packages that are missing: sudo apt-get install {}",
            missing.join(" ")
        );
    }
    println!("==> installing {} with apt-get", missing.join(", "));
    run_command(Command::new("apt-get").args(["update", "-q"]))?;
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
