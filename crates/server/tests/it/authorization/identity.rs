//! Tokens from an identity provider: a real HTTP server serves a JSON Web Key Set of keys made
//! at test time (RSA, EC P-256, Ed25519), and Herald verifies tokens signed with them, checks
//! their audience and issuer, reads the grants from a namespaced claim, fetches the set again
//! when a new key appears, and keeps the keys it holds while the provider is down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{HeraldProcess, TestServer, eventually, fresh_data_dir};

const AUDIENCE: &str = "https://api.example.com";
const ISSUER: &str = "https://id.example.com/";
const CLAIMS_KEY: &str = "https://example.com/herald";

/// A signing key made now, and its public half as a JSON Web Key.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The uncompressed point: 0x04, then x and y.
        let point = pair.public_key_raw();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        }
    }

    fn eddsa(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64(pair.public_key_raw()),
            }),
        }
    }

    /// An RSA key from `openssl genpkey`; its JWK has no `alg`, as Entra's do.
    fn rs256(kid: &str) -> Self {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rsa.pem");
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(output.status.success(), "openssl {args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        let key = path.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key,
        ]);
        let modulus = openssl(&["rsa", "-in", key, "-noout", "-modulus"]);
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect();
        let pem = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Self {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
            jwk: json!({"kty": "RSA", "use": "sig", "kid": kid, "n": b64(&n), "e": "AQAB"}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signed with this key, naming `kid` in the header.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Claims as the provider issues them, for `sub`, valid for ten minutes, with `grants` in the
/// namespaced claim.
fn claims(sub: &str, grants: Value) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600,
        CLAIMS_KEY: grants,
    })
}

fn publisher() -> Value {
    json!({"publish": ["*"]})
}

/// What the provider serves, and how often it was asked.
#[derive(Default)]
struct Published {
    keys: Vec<Value>,
    down: bool,
    fetches: usize,
}

/// A real HTTP server serving a key set at `/.well-known/jwks.json`.
struct Provider {
    url: String,
    published: Arc<Mutex<Published>>,
}

impl Provider {
    async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Mutex::new(Published::default()));
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(serve_keys))
            .with_state(Arc::clone(&published));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let provider = Self { url, published };
        provider.publish(keys);
        provider
    }

    fn publish(&self, keys: &[&SigningKey]) {
        self.published.lock().unwrap().keys = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    fn set_down(&self, down: bool) {
        self.published.lock().unwrap().down = down;
    }

    fn fetches(&self) -> usize {
        self.published.lock().unwrap().fetches
    }

    /// A Herald verifying this provider's tokens (and, for the test's own requests, HS256
    /// tokens), with the audience, issuer and claim of these tests.
    async fn herald(&self, adjust: impl FnOnce(&mut herald_server::Config)) -> TestServer {
        let server = TestServer::start_with(|config| {
            config.identity.jwks_url = Some(self.url.clone());
            config.identity.jwt_audience = vec!["someone-else".into(), AUDIENCE.into()];
            config.identity.jwt_issuer = vec![ISSUER.into()];
            config.identity.jwt_claims_key = CLAIMS_KEY.into();
            adjust(config);
        })
        .await;
        eventually("Herald fetches the key set at start", || async {
            self.fetches() >= 1
        })
        .await;
        server
    }
}

async fn serve_keys(State(published): State<Arc<Mutex<Published>>>) -> Response {
    let mut published = published.lock().unwrap();
    published.fetches += 1;
    if published.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    axum::Json(json!({"keys": published.keys})).into_response()
}

/// How Herald answers `POST /api/publish` with `token`: the status and the error message.
async fn publish_with(server: &TestServer, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.url("/api/publish"))
        .bearer_auth(token)
        .json(&json!({"topic": "orders", "data": 1}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, message)
}

async fn metric(server: &TestServer, sample: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_the_providers_keys_verify_with_audience_issuer_and_namespaced_grants() {
    let keys = [
        SigningKey::rs256("rsa-1"),
        SigningKey::es256("ec-1"),
        SigningKey::eddsa("ed-1"),
    ];
    let provider = Provider::start(&keys.iter().collect::<Vec<_>>()).await;
    let server = provider.herald(|_| {}).await;
    for key in &keys {
        let token = key.sign(&claims("auth0|alice", publisher()));
        assert_eq!(
            publish_with(&server, &token).await,
            (200, String::new()),
            "{:?}",
            key.algorithm
        );
        let me: Value = reqwest::Client::new()
            .get(server.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["user"], "auth0|alice", "{me}");
    }
    let key = &keys[1];
    let server = &server;
    let refused = |claims: Value| async move { publish_with(server, &key.sign(&claims)).await };
    let mut wrong_audience = claims("alice", publisher());
    wrong_audience["aud"] = json!("https://other.example.com");
    let (status, message) = refused(wrong_audience).await;
    assert_eq!(status, 401);
    assert!(message.contains("audience"), "{message}");
    let mut wrong_issuer = claims("alice", publisher());
    wrong_issuer["iss"] = json!("https://evil.example.com/");
    let (status, message) = refused(wrong_issuer).await;
    assert_eq!(status, 401);
    assert!(message.contains("issuer"), "{message}");
    let mut no_audience = claims("alice", publisher());
    no_audience.as_object_mut().unwrap().remove("aud");
    let (status, message) = refused(no_audience).await;
    assert_eq!(status, 401);
    assert!(message.contains("aud"), "{message}");
    // `aud` may be a list; naming one accepted audience is enough.
    let mut several = claims("alice", publisher());
    several["aud"] = json!(["https://other.example.com", AUDIENCE]);
    assert_eq!(refused(several).await.0, 200);
    // Grants as JSON text, as providers whose custom claims are strings send them.
    let as_text = claims("alice", json!(publisher().to_string()));
    assert_eq!(refused(as_text).await.0, 200);
    // Grants under another claim than the configured one are no grants.
    let mut elsewhere = claims("alice", Value::Null);
    elsewhere["herald"] = publisher();
    assert_eq!(refused(elsewhere).await.0, 403);
    // A token naming the RSA key but signed with the EC key is refused for its algorithm.
    let confused = keys[1].sign_as("rsa-1", &claims("alice", publisher()));
    let (status, message) = publish_with(server, &confused).await;
    assert_eq!(status, 401);
    assert!(message.contains("ES256"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_fetched_when_a_token_names_it_and_unknown_keys_are_refused() {
    let old = SigningKey::es256("2026-11");
    let new = SigningKey::eddsa("2026-12");
    let provider = Provider::start(&[&old]).await;
    let server = provider.herald(|_| {}).await;
    assert_eq!(
        publish_with(&server, &old.sign(&claims("alice", publisher())))
            .await
            .0,
        200
    );
    assert_eq!(provider.fetches(), 1);

    // The provider rotates: a token signed with the new key makes Herald fetch the set again,
    // no sooner than a few seconds after the last fetch, however many tokens ask.
    provider.publish(&[&old, &new]);
    let rotated = new.sign(&claims("alice", publisher()));
    let refused_meanwhile = AtomicUsize::new(0);
    eventually("a token signed with the new key verifies", || async {
        let (status, message) = publish_with(&server, &rotated).await;
        if status == 401 {
            assert!(message.contains("2026-12"), "{message}");
            refused_meanwhile.fetch_add(1, Ordering::Relaxed);
        }
        status == 200
    })
    .await;
    assert_eq!(
        provider.fetches(),
        2,
        "one fetch for the new key, though {} tokens named it before it",
        refused_meanwhile.load(Ordering::Relaxed)
    );
    assert_eq!(
        publish_with(&server, &old.sign(&claims("bob", publisher())))
            .await
            .0,
        200,
        "the old key still verifies while the set holds it"
    );

    // A flood of made-up keys is refused, costing the provider at most one more fetch.
    for attempt in 0..50 {
        let forged = new.sign_as(
            &format!("made-up-{attempt}"),
            &claims("mallory", publisher()),
        );
        let (status, message) = publish_with(&server, &forged).await;
        assert_eq!(status, 401);
        assert!(message.contains("unknown"), "{message}");
    }
    assert!(provider.fetches() <= 3, "{} fetches", provider.fetches());
    assert!(metric(&server, "herald_jwks_fetches_total{result=\"ok\"}").await >= 2.0);
    assert_eq!(metric(&server, "herald_jwks_keys").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_held_keep_working_while_the_provider_is_down() {
    let key = SigningKey::rs256("only");
    let provider = Provider::start(&[&key]).await;
    // Fetched again often, so that failures show at once.
    let server = provider
        .herald(|config| config.identity.jwks_refresh = Duration::from_millis(100))
        .await;
    let token = key.sign(&claims("alice", publisher()));
    assert_eq!(publish_with(&server, &token).await.0, 200);

    provider.set_down(true);
    eventually("a failed fetch is counted", || async {
        metric(&server, "herald_jwks_fetches_total{result=\"failed\"}").await >= 2.0
    })
    .await;
    assert_eq!(
        publish_with(&server, &token).await.0,
        200,
        "the cached key verifies"
    );
    assert_eq!(metric(&server, "herald_jwks_keys").await, 1.0);

    provider.set_down(false);
    let ok_before = metric(&server, "herald_jwks_fetches_total{result=\"ok\"}").await;
    eventually("fetching works again", || async {
        metric(&server, "herald_jwks_fetches_total{result=\"ok\"}").await > ok_before
    })
    .await;
    assert_eq!(publish_with(&server, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_says_in_its_log_when_the_key_set_cannot_be_fetched() {
    // A port nothing listens on: bound, then closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}/jwks.json");
    let herald = HeraldProcess::start_fresh(&["--jwks-url", &url]).await;
    let line = herald
        .log_line_containing("cannot fetch the JSON Web Key Set")
        .await;
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("refused"), "names the cause: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_fetches_the_key_set() {
    let keys = [SigningKey::es256("ec-1"), SigningKey::eddsa("ed-1")];
    let provider = Provider::start(&keys.iter().collect::<Vec<_>>()).await;
    let args = ["config", "check", "--jwks-url", provider.url.as_str()];
    let check = || crate::config_tools::herald(&args, &[]);
    let valid = check().await;
    let said = String::from_utf8_lossy(&valid.stderr).into_owned();
    assert!(valid.status.success(), "{said}");
    assert!(
        said.contains("holds 2 usable keys: ec-1 (ES256), ed-1 (EdDSA)"),
        "{said}"
    );
    provider.set_down(true);
    let down = check().await;
    let said = String::from_utf8_lossy(&down.stderr).into_owned();
    assert!(!down.status.success(), "{said}");
    assert!(said.contains("503"), "{said}");
}

/// Serves `document` at `/jwks.json` over HTTPS, its certificate (for `127.0.0.1`) issued by
/// an authority made now: the URL, and the authority's PEM file.
async fn serve_over_https(document: Value) -> (String, std::path::PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (authority, certificate, key) = crate::support::tls::issued_by_new_authority();
    let dir = fresh_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let authority_file = dir.join("authority.pem");
    std::fs::write(&authority_file, authority).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    let body = document.to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                // A handshake the client refuses ends here.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, authority_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_fetched_over_https_with_a_trusted_certificate_only() {
    let key = SigningKey::es256("tls-1");
    let (url, authority) = serve_over_https(json!({"keys": [key.jwk]})).await;
    let args = ["config", "check", "--jwks-url", url.as_str()];
    // The system's roots (which SSL_CERT_FILE replaces) and the public ones.
    let trusted =
        crate::config_tools::herald(&args, &[("SSL_CERT_FILE", authority.to_str().unwrap())]).await;
    let said = String::from_utf8_lossy(&trusted.stderr).into_owned();
    assert!(trusted.status.success(), "{said}");
    assert!(
        said.contains("holds 1 usable keys: tls-1 (ES256)"),
        "{said}"
    );
    let untrusted = crate::config_tools::herald(&args, &[]).await;
    let said = String::from_utf8_lossy(&untrusted.stderr).into_owned();
    assert!(!untrusted.status.success(), "{said}");
    assert!(said.contains("certificate"), "names the cause: {said}");
}
