//! The real `herald` binary in a child process: started, crashed, terminated, or expected to
//! refuse to start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::TIMEOUT;
use super::tokens::TEST_SECRET;

/// The real `herald` binary running in a child process.
pub struct HeraldProcess {
    pub base: String,
    pub child: tokio::process::Child,
    /// Every line the process has logged since it listened, and a signal for each new one.
    log: Arc<(Mutex<Vec<String>>, Notify)>,
    /// A data directory of the process's own, removed with it.
    own_data_dir: Option<std::path::PathBuf>,
}

impl HeraldProcess {
    /// Starts `herald` as [`HeraldProcess::start`] does, in a data directory of its own that
    /// is removed when the process is dropped.
    pub async fn start_fresh(args: &[&str]) -> Self {
        let data_dir = super::fresh_data_dir();
        let mut herald = Self::start(&data_dir, args).await;
        herald.own_data_dir = Some(data_dir);
        herald
    }

    /// Starts `herald --listen 127.0.0.1:0 --data-dir <data_dir> ARGS` and waits until it listens.
    pub async fn start(data_dir: &std::path::Path, args: &[&str]) -> Self {
        let no_web_app = data_dir.join("no-web-app");
        let mut with_args = vec!["--static-dir", no_web_app.to_str().unwrap()];
        with_args.extend_from_slice(args);
        Self::launch(data_dir, &with_args, None).await
    }

    /// Starts `herald --listen 127.0.0.1:0 ARGS` in a fresh, empty working directory that is
    /// also its data directory, with no `--static-dir`: as an operator runs the one binary.
    pub async fn start_bare(args: &[&str]) -> Self {
        let data_dir = super::fresh_data_dir();
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut herald = Self::launch(&data_dir, args, Some(&data_dir)).await;
        herald.own_data_dir = Some(data_dir);
        herald
    }

    /// Starts `herald --listen 127.0.0.1:0 --data-dir <data_dir> ARGS`, in `cwd` if given.
    async fn launch(
        data_dir: &std::path::Path,
        args: &[&str],
        cwd: Option<&std::path::Path>,
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("HERALD_LOG", "info")
            .env("HERALD_JWT_SECRET", TEST_SECRET)
            .env("HERALD_PUBLISH_RATE", "0")
            .env("HERALD_PUBLISH_BYTE_RATE", "0")
            .env("HERALD_NEW_CLIENT_RATE", "0")
            .env("HERALD_MAX_CONNECTIONS_PER_ADDRESS", "0")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut before = Vec::new();
        let address = loop {
            let line = tokio::time::timeout(TIMEOUT, log.next_line())
                .await
                .expect("herald logs in time")
                .unwrap()
                .expect("herald starts listening before its log ends");
            if let Some((_, address)) = line.split_once("listening on ") {
                break address.trim().to_owned();
            }
            before.push(line);
        };
        // Keep draining the log so the server never blocks on a full pipe, keeping its lines.
        let lines = Arc::new((Mutex::new(before), Notify::new()));
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = log.next_line().await {
                kept.0.lock().unwrap().push(line);
                kept.1.notify_waiters();
            }
        });
        Self {
            base: format!("http://{address}"),
            child,
            log: lines,
            own_data_dir: None,
        }
    }

    /// The first line the process logged that contains `text`, waiting
    /// for it for at most [`TIMEOUT`].
    pub async fn log_line_containing(&self, text: &str) -> String {
        let (lines, added) = &*self.log;
        let wait = async {
            loop {
                let notified = added.notified();
                if let Some(line) = lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|line| line.contains(text))
                {
                    return line.clone();
                }
                notified.await;
            }
        };
        tokio::time::timeout(TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("herald logs a line containing {text:?} in time"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Resident memory of the process, in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn crash(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

/// Runs `herald ARGS` (with [`TEST_SECRET`] as its key) expecting it to refuse to start;
/// returns what it printed on stderr.
pub async fn herald_refuses(args: &[&str]) -> String {
    herald_refuses_with(args, &[("HERALD_JWT_SECRET", TEST_SECRET)]).await
}

/// Runs `herald ARGS` with only the environment variables `env` of Herald's own, expecting it
/// to refuse to start; returns what it printed on stderr.
pub async fn herald_refuses_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("HERALD_LOG", "info")
        .envs(env.iter().copied());
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("herald exits in time")
        .unwrap();
    assert!(!output.status.success(), "herald started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        if let Some(dir) = &self.own_data_dir {
            // The child is killed on drop too; what it wrote meanwhile is removed either way.
            let _ = self.child.start_kill();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
