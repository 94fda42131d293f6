//! Certificates made at test time, and clients that trust them: HTTPS and HTTP/2 tests.

use std::path::{Path, PathBuf};

use super::fresh_data_dir;
use super::server::TestServer;

/// A self-signed certificate for `localhost` and `127.0.0.1`, its key, and the files Herald
/// reads them from.
pub struct TestCertificate {
    pub dir: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate, which a client trusts as its own root.
    pub pem: String,
}

impl TestCertificate {
    /// A new certificate and key, written to a fresh directory.
    pub fn generate() -> Self {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut certificate = Self {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            dir,
            pem: String::new(),
        };
        certificate.replace();
        certificate
    }

    /// Writes a new certificate and key over the files (as a renewal does).
    pub fn replace(&mut self) {
        let (cert, key) = self_signed();
        write_atomically(&self.key_file, &key);
        write_atomically(&self.cert_file, &cert);
        self.pem = cert;
    }

    /// Turns HTTPS on in `config` with this certificate.
    pub fn configure(&self, config: &mut herald_server::Config) {
        config.protocols.tls_cert = Some(self.cert_file.clone());
        config.protocols.tls_key = Some(self.key_file.clone());
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new certificate authority, and a certificate for `localhost` and `127.0.0.1` it issued
/// with its key: (authority, certificate, key), each PEM.
pub fn issued_by_new_authority() -> (String, String, String) {
    let authority_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Herald test authority");
    let authority = params.self_signed(&authority_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &authority, &authority_key)
            .unwrap();
    (authority.pem(), certificate.pem(), key.serialize_pem())
}

/// A self-signed certificate and its key, both PEM.
pub fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

/// Replaces `path` with `contents` in one rename, so a reader never sees half a file.
pub fn write_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A client trusting only `pem`, speaking HTTP/2 when the server offers it (ALPN), with
/// `localhost` resolved to the server's address. Each stream's receive window is 64 KiB, so
/// a stream it does not read stops the server's sending soon.
pub fn https_builder(server: &TestServer, pem: &str) -> reqwest::ClientBuilder {
    trusting(pem, server.address())
        .http2_initial_stream_window_size(64 * 1024)
        .http2_initial_connection_window_size(8 * 1024 * 1024)
        .http2_adaptive_window(false)
}

/// A client trusting only `pem`, with `localhost` resolved to `address` (a server of any kind:
/// a Herald process, nginx).
pub fn trusting(pem: &str, address: std::net::SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("localhost", address)
}

/// `https://localhost:PORT{path}` on `server`.
pub fn https_url(server: &TestServer, path: &str) -> String {
    format!("https://localhost:{}{path}", server.address().port())
}
