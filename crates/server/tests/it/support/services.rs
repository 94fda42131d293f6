//! Real servers from Debian's packages for the cluster tests: `redis-server` and `nginx`, each on
//! a free loopback port with its data in a temporary folder. `cargo xtask test` installs them
//! when missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::tls::TestCertificate;
use super::{TIMEOUT, fresh_data_dir, holds_within};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The path of a program, failing the test with how to get it when it is missing.
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is needed: apt-get install {package} (cargo xtask test installs it)");
}

/// A `redis-server` of this test's own. It writes every change to its append-only file before
/// answering (`appendfsync always`), so a restart keeps everything Redis acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The certificate authority of its TLS certificate, when it speaks TLS only.
    tls_ca: Option<PathBuf>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port: free_port(),
            dir,
            child: None,
            tls_ca: None,
        };
        redis.run().await;
        redis
    }

    /// A `redis-server` speaking TLS only (`--port 0 --tls-port`), with a certificate for
    /// `localhost` and `127.0.0.1` issued by a certificate authority made now.
    pub async fn start_tls() -> Self {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, certificate, key) = super::tls::issued_by_new_authority();
        let tls_ca = dir.join("ca.pem");
        std::fs::write(&tls_ca, ca).unwrap();
        std::fs::write(dir.join("redis.pem"), certificate).unwrap();
        std::fs::write(dir.join("redis-key.pem"), key).unwrap();
        let mut redis = Self {
            port: free_port(),
            dir,
            child: None,
            tls_ca: Some(tls_ca),
        };
        redis.run().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` for one speaking TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The file holding the certificate authority of a TLS server's certificate.
    pub fn tls_ca(&self) -> &Path {
        self.tls_ca.as_deref().expect("a Redis speaking TLS")
    }

    /// How the server listens: on its port, or on its TLS port alone.
    fn listen_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        let Some(ca) = &self.tls_ca else {
            return vec!["--port".into(), port];
        };
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port,
            "--tls-cert-file".into(),
            file("redis.pem"),
            "--tls-key-file".into(),
            file("redis-key.pem"),
            "--tls-ca-cert-file".into(),
            ca.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// Starts the process and waits for its "Ready to accept connections".
    async fn run(&mut self) {
        let mut child = Command::new(program("redis-server", "redis-server"))
            .args(["--bind", "127.0.0.1"])
            .args(self.listen_args())
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = tokio::time::timeout(TIMEOUT, log.next_line())
                .await
                .expect("redis-server starts in time")
                .unwrap()
                .expect("redis-server gets ready before its log ends");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        self.child = Some(child);
    }

    /// Kills the server without warning, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    /// Starts it again on the same port with its data gone, as after a loss of the disk.
    pub async fn restart_empty(&mut self) {
        self.restart_from(&[]).await;
    }

    /// A copy of its data files as they are now, for [`RedisServer::restart_from`].
    pub fn copy_data(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(&self.dir).unwrap().to_owned();
                    files.push((relative, std::fs::read(&path).unwrap()));
                }
            }
        }
        files
    }

    /// Starts it again on the same port with the data of an earlier copy, as after restoring an
    /// old backup or failing over to a replica that lagged.
    pub async fn restart_from(&mut self, files: &[(PathBuf, Vec<u8>)]) {
        self.kill().await;
        std::fs::remove_dir_all(&self.dir).unwrap();
        std::fs::create_dir_all(&self.dir).unwrap();
        for (relative, bytes) in files {
            let path = self.dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        self.run().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nginx` in front of Herald nodes, configured from the sample in `docs/deploy/nginx.conf`:
/// the sample's `upstream` servers, `listen` ports and certificate files are replaced,
/// everything else is as documented.
pub struct Nginx {
    /// Plain HTTP.
    pub base: String,
    /// HTTPS (with HTTP/2) on this port, presenting `certificate`.
    pub https_port: u16,
    pub certificate: TestCertificate,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    pub async fn start(upstreams: &[&str]) -> Self {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let https_port = free_port();
        let certificate = TestCertificate::generate();
        let sample = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/nginx.conf"),
        )
        .unwrap();
        let mut site = String::new();
        for line in sample.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("server 10.") {
                continue;
            }
            if trimmed.starts_with("upstream herald") {
                site.push_str(line);
                site.push('\n');
                for upstream in upstreams {
                    site.push_str(&format!("    server {upstream};\n"));
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("listen 443 ") {
                site.push_str(&format!("    listen 127.0.0.1:{https_port} {rest}\n"));
                continue;
            }
            if trimmed.starts_with("listen ") {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
                continue;
            }
            if trimmed.starts_with("ssl_certificate ") {
                let file = certificate.cert_file.display();
                site.push_str(&format!("    ssl_certificate {file};\n"));
                continue;
            }
            if trimmed.starts_with("ssl_certificate_key ") {
                let file = certificate.key_file.display();
                site.push_str(&format!("    ssl_certificate_key {file};\n"));
                continue;
            }
            site.push_str(line);
            site.push('\n');
        }
        // What a distribution's nginx.conf provides around a site, with paths of this test's own.
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             {site}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(program("nginx", "nginx-light"))
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let nginx = Self {
            base: format!("http://127.0.0.1:{port}"),
            https_port,
            certificate,
            dir,
            child,
        };
        // nginx prints nothing when it is ready: wait until it accepts connections.
        let accepting = holds_within(TIMEOUT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(
            accepting,
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
        );
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `https://localhost:PORT{path}`, nginx's HTTPS address.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
