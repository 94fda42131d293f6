//! [`Protocols`]: HTTPS and HTTP/2, the settings of how Herald speaks on its listener.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// HTTPS and HTTP/2. Without a certificate Herald speaks HTTP/1.1, and HTTP/2 to clients that
/// open with its preface (h2c with prior knowledge, as a proxy in front may); with one it
/// speaks HTTPS only, offering `h2` and `http/1.1` to the client (ALPN).
#[derive(Debug, Clone, Args)]
pub struct Protocols {
    /// PEM file with the certificate chain Herald presents, its own certificate first; serves
    /// HTTPS (with --tls-key). Read again on SIGHUP and whenever the file changes, without
    /// closing a connection.
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "PEM_FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "PEM_FILE")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate and key files are looked at for a change, which reads them
    /// again; 0: only on SIGHUP.
    #[arg(
        long,
        env = "HERALD_TLS_WATCH",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub tls_watch: Duration,

    /// The most requests (event streams among them) one HTTP/2 connection may have open at
    /// once: a browser's tabs share one connection up to this many.
    #[arg(
        long,
        env = "HERALD_HTTP2_MAX_STREAMS",
        value_name = "COUNT",
        default_value = "100"
    )]
    pub http2_max_streams: u32,
}

impl Protocols {
    /// An empty path means "none", so `--tls-cert=` turns off what a file turned on.
    pub(super) fn normalize(&mut self) {
        for path in [&mut self.tls_cert, &mut self.tls_key] {
            *path = path.take().filter(|path| !path.as_os_str().is_empty());
        }
    }

    /// The certificate and key files, when HTTPS is on.
    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.tls_cert.clone()?, self.tls_key.clone()?))
    }

    pub(super) fn check(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err("tls_cert needs tls_key (the certificate's private key)".into());
            }
            (None, Some(_)) => {
                return Err("tls_key needs tls_cert (the certificate it belongs to)".into());
            }
            _ => {}
        }
        if self.tls_watch > Duration::from_secs(86_400) {
            return Err("tls_watch must be at most 1day".into());
        }
        if !(1..=10_000).contains(&self.http2_max_streams) {
            return Err("http2_max_streams must be between 1 and 10000".into());
        }
        Ok(())
    }
}
