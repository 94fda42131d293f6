//! [`Tls`]: HTTPS on Herald's listener. The certificate and key are read from PEM files at
//! start-up, and read again on `SIGHUP` or when either file changes: a renewed certificate is
//! presented to every handshake from then on, while the connections already open keep the
//! session they have. A pair that cannot be used (missing, unreadable, not matching) is an
//! error at start-up and, later, a logged failure that leaves the pair in use in place.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, ResultLabels};

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {}: {source}", .path.display())]
    ReadCertificate { path: PathBuf, source: io::Error },
    #[error("cannot read the TLS key file {}: {source}", .path.display())]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("no certificate in {} (expected PEM blocks `-----BEGIN CERTIFICATE-----`): {reason}", .path.display())]
    NoCertificate { path: PathBuf, reason: String },
    #[error("no private key in {} (expected a PEM PKCS#8, PKCS#1 or SEC1 key): {reason}", .path.display())]
    NoKey { path: PathBuf, reason: String },
    #[error("the private key in {} does not belong to the certificate in {}", .key.display(), .certificate.display())]
    Mismatch { certificate: PathBuf, key: PathBuf },
    #[error("the TLS key in {} cannot be used: {reason}", .path.display())]
    Unusable { path: PathBuf, reason: String },
}

/// HTTPS: the acceptor for new connections, and the certificate it presents.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: Arc<Certificate>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// The certificate presented, replaced when its files change.
struct Certificate {
    files: (PathBuf, PathBuf),
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times and sizes when last read, to notice a change.
    seen: Mutex<Stamp>,
}

/// What tells a file changed: its modification time and size, and where the platform has them,
/// its inode and status-change time (a `chmod` that makes it readable, a copy keeping the
/// modification time, a rename of another file over it).
type Stamp = [Option<(SystemTime, u64, u64, i64)>; 2];

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl Tls {
    /// Reads the certificate chain and key, and checks that they belong together.
    pub fn load(certificate: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(&certificate, &key);
        let pair = read_pair(&certificate, &key, &provider)?;
        let certificate = Arc::new(Certificate {
            files: (certificate, key),
            provider: Arc::clone(&provider),
            current: RwLock::new(Arc::new(pair)),
            seen: Mutex::new(seen),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Unusable {
                path: certificate.files.1.clone(),
                reason: err.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again and presents what they hold from now on; on an error the pair in
    /// use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certificate = &self.certificate;
        let (cert_path, key_path) = &certificate.files;
        *certificate
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stamp(cert_path, key_path);
        let pair = read_pair(cert_path, key_path, &certificate.provider)?;
        *certificate
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// Whether either file changed since it was last read.
    fn changed(&self) -> bool {
        let (cert_path, key_path) = &self.certificate.files;
        *self
            .certificate
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            != stamp(cert_path, key_path)
    }

    /// Reloads the certificate on `SIGHUP`, and when its files change (looked at every
    /// `every`, if given), until `shutdown`.
    pub async fn watch(
        self,
        every: Option<Duration>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut hangups = hangups();
        let mut ticks = every.map(|every| {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let tick = async {
                match &mut ticks {
                    Some(ticks) => drop(ticks.tick().await),
                    None => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                () = shutdown.cancelled() => return,
                () = next_hangup(&mut hangups) => "SIGHUP",
                () = tick => {
                    if !self.changed() {
                        continue;
                    }
                    "the files changed"
                }
            };
            let result = match self.reload() {
                Ok(()) => {
                    tracing::info!(why, "TLS certificate loaded again");
                    "ok"
                }
                Err(err) => {
                    tracing::error!(why, %err, "TLS certificate not loaded again; the previous one stays in use");
                    "failed"
                }
            };
            metrics
                .transport
                .tls_certificate_loads
                .get_or_create(&ResultLabels { result })
                .inc();
        }
    }
}

/// Each file's [`Stamp`], `None` where it cannot be read.
fn stamp(certificate: &Path, key: &Path) -> Stamp {
    [certificate, key].map(|path| {
        let metadata = std::fs::metadata(path).ok()?;
        let (inode, changed) = identity(&metadata);
        Some((metadata.modified().ok()?, metadata.len(), inode, changed))
    })
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    (
        metadata.ino(),
        metadata.ctime_nsec() + metadata.ctime() * 1_000_000_000,
    )
}

#[cfg(not(unix))]
fn identity(_metadata: &std::fs::Metadata) -> (u64, i64) {
    (0, 0)
}

fn read_pair(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain_pem = std::fs::read(certificate).map_err(|source| TlsError::ReadCertificate {
        path: certificate.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let no_certificate = |reason: String| TlsError::NoCertificate {
        path: certificate.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| no_certificate(err.to_string()))?;
    if chain.is_empty() {
        return Err(no_certificate("the file holds none".into()));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::NoKey {
        path: key.to_owned(),
        reason: err.to_string(),
    })?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
        },
        other => TlsError::Unusable {
            path: key.to_owned(),
            reason: other.to_string(),
        },
    })
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
/// No signals where there is no SIGHUP.
#[cfg(not(unix))]
type Hangups = Option<std::convert::Infallible>;

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|err| tracing::warn!(%err, "cannot listen for SIGHUP; the certificate is still reloaded when its files change"))
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {
    None
}

/// Waits for the next `SIGHUP`; forever where there is none.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    let received = match hangups {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hangups: &mut Hangups) {
    std::future::pending().await
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A file replaced by another with the same size and modification time (copied with
    /// `cp -p`, say, then renamed over it) is still seen as a change.
    #[test]
    fn a_file_replaced_with_the_same_size_and_time_is_a_change() {
        let dir = std::env::temp_dir().join(format!("herald-tls-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, "certificate").unwrap();
        std::fs::write(&key, "key one").unwrap();
        let modified = std::fs::metadata(&key).unwrap().modified().unwrap();
        let before = stamp(&cert, &key);
        let renewed = dir.join("key.new");
        std::fs::write(&renewed, "key two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&renewed)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        std::fs::rename(&renewed, &key).unwrap();
        let metadata = std::fs::metadata(&key).unwrap();
        assert_eq!(
            (metadata.modified().unwrap(), metadata.len()),
            (modified, 7)
        );
        assert_ne!(stamp(&cert, &key), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
