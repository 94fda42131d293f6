//! The servers under test: Herald and nchan started pinned, waited for, and stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{HERALD_PORT, NCHAN_PORT, SERVER_CPU, Server};

const SECRET: &str = "herald-benchmark-signing-key-0123456789abcdef";

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

pub(super) fn herald_token(release: &Path) -> Result<String> {
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
pub(super) struct Running {
    child: Option<Child>,
    master_pid: u32,
    pub(super) measured_pid: u32,
    pub(super) addr: SocketAddr,
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

pub(super) fn start(release: &Path, work: &Path, server: Server) -> Result<Running> {
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
                .args(["--publish-byte-rate", "0"])
                .args(["--new-client-rate", "0"])
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
