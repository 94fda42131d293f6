//! Helpers for driving the served Herald console in headless Chromium over WebDriver.
//!
//! The browser tests need the web app built by trunk (`cargo xtask test` builds it and sets
//! `HERALD_E2E_DIST`), Chromium and ChromeDriver (`CHROMIUM`, `CHROMEDRIVER`, by default the
//! Debian paths). A failing step leaves a screenshot under `HERALD_E2E_ARTIFACTS`
//! (default `artifacts/e2e` in the workspace).

#![allow(clippy::missing_panics_doc)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use herald_protocol::api::ClientInfo;
use herald_protocol::auth::Grants;
use herald_server::Config;
use herald_server::auth::{Authenticator, claims_for};
use herald_server::storage::MemoryStorage;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long one step may take before the test fails with a screenshot.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built web app: `HERALD_E2E_DIST`, or `dist/` in the workspace.
pub fn dist_dir() -> PathBuf {
    let dir = std::env::var_os("HERALD_E2E_DIST")
        .map_or_else(|| workspace_root().join("dist"), PathBuf::from);
    assert!(
        dir.join("index.html").is_file(),
        "no built web app in {}: run the browser tests through `cargo xtask test`, which builds it",
        dir.display()
    );
    dir
}

/// Herald serving the built web app on a free loopback port, in this test's runtime.
#[derive(Debug)]
pub struct Server {
    pub base: String,
    /// An HTTP client holding an operator's credential (publish anywhere, admin), for the
    /// test's own back-end calls.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    data_dir: PathBuf,
    /// The certificate's folder of an HTTPS server.
    tls_dir: Option<PathBuf>,
}

impl Server {
    pub async fn start(static_dir: PathBuf) -> Self {
        Self::start_with(static_dir, |_| {}).await
    }

    /// Like [`Server::start`], with settings adjusted by `adjust`.
    pub async fn start_with(static_dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("bound address");
        let data_dir = std::env::temp_dir().join(format!(
            "herald-e2e-{}-{}",
            std::process::id(),
            address.port()
        ));
        // Development mode, as `cargo xtask run` serves the console, with a known key so the
        // test can sign its own operator credential.
        let mut config = Config {
            static_dir: Some(static_dir),
            data_dir: data_dir.clone(),
            dev: true,
            jwt_secret: Some(SECRET.to_owned()),
            // Tokens are signed with the server's own clock: no leeway, so an expired
            // credential closes its stream when it expires.
            jwt_leeway: std::time::Duration::ZERO,
            publish_rate: 0,
            ..Config::default()
        };
        adjust(&mut config);
        let storage = Arc::new(MemoryStorage::new(config.history_max_events));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(herald_server::run_with_storage(
            listener,
            config,
            storage,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            base: format!("http://{address}"),
            http: operator_client(reqwest::Client::builder()),
            stop: Some(stop),
            data_dir,
            tls_dir: None,
        }
    }

    /// Like [`Server::start_with`], serving HTTPS (HTTP/2 and HTTP/1.1) with a self-signed
    /// certificate for `127.0.0.1` made for the test: a browser must be launched with
    /// `--ignore-certificate-errors`.
    pub async fn start_https(static_dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a test certificate");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("herald-e2e-tls-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the certificate's folder");
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        let pem = certified.cert.pem();
        std::fs::write(&cert_file, &pem).expect("the certificate is written");
        std::fs::write(&key_file, certified.key_pair.serialize_pem()).expect("the key is written");
        let mut server = Self::start_with(static_dir, |config| {
            config.protocols.tls_cert = Some(cert_file);
            config.protocols.tls_key = Some(key_file);
            adjust(config);
        })
        .await;
        server.base = server.base.replacen("http://", "https://", 1);
        let root = reqwest::Certificate::from_pem(pem.as_bytes()).expect("the test certificate");
        server.http = operator_client(
            reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(root),
        );
        server.tls_dir = Some(dir);
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The live connections, as `GET /api/clients` lists them.
    pub async fn clients(&self) -> Vec<ClientInfo> {
        self.http
            .get(self.url("/api/clients"))
            .send()
            .await
            .expect("list clients")
            .json()
            .await
            .expect("a client list")
    }
}

/// The console's status once its stream is open.
pub const OPEN: &str = "[data-testid=status][data-state=open]";

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The key the test servers sign and verify tokens with.
const SECRET: &str = "e2e-secret-of-at-least-thirty-two-bytes";

/// A Mercure credential signed with the key every test server verifies: its `mercure` claim
/// lists `publish` and `subscribe` selectors, and it has no `exp`.
pub fn mercure_token(publish: &[&str], subscribe: &[&str]) -> String {
    let claims = serde_json::json!({"mercure": {"publish": publish, "subscribe": subscribe}});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token is signed")
}

/// A client, built from `builder`, whose requests carry a credential that may publish
/// anywhere and use the admin endpoints.
fn operator_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    let grants = Grants {
        publish: vec!["*".into()],
        subscribe: vec!["*".into()],
        admin: true,
    };
    let token = Authenticator::with_secret(SECRET)
        .sign(&claims_for("operator", grants, Duration::from_secs(3600)))
        .expect("the test key signs");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token is a header value"),
    );
    builder
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A headless Chromium session driven through its own ChromeDriver.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    /// Kept so the driver lives as long as the session; killed on drop.
    _driver: Child,
    profile: PathBuf,
    artifacts: PathBuf,
}

impl Browser {
    pub async fn launch(test_name: &str) -> Self {
        Self::launch_with(test_name, &[]).await
    }

    /// Like [`Browser::launch`], with Chromium given `extra_args` too.
    pub async fn launch_with(test_name: &str, extra_args: &[&str]) -> Self {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("bound address").port()
        };
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {chromedriver}: {err}; install chromium-driver")
            });
        let deadline = Instant::now() + STEP_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let profile =
            std::env::temp_dir().join(format!("herald-e2e-chromium-{}-{port}", std::process::id()));
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .iter()
        .chain(extra_args)
        .map(|arg| (*arg).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("built as an object")
        };
        // ChromeDriver can accept connections before it answers them: a session request it
        // drops is retried until the deadline.
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(
                    fantoccini::error::NewSessionError::Failed(_)
                    | fantoccini::error::NewSessionError::FailedC(_)
                    | fantoccini::error::NewSessionError::Lost(_),
                ) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("a WebDriver session: {err:?}"),
            }
        };
        let artifacts = std::env::var_os("HERALD_E2E_ARTIFACTS")
            .map_or_else(|| workspace_root().join("artifacts/e2e"), PathBuf::from)
            .join(test_name);
        Self {
            client,
            _driver: driver,
            profile,
            artifacts,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("cannot open {url}: {err}"));
    }

    /// Waits for an element matching `css`; on timeout saves a screenshot named after `step`
    /// and fails.
    pub async fn wait_for(&self, step: &str, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(STEP_TIMEOUT)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(err) => self.fail(step, &format!("no element {css}: {err}")).await,
        }
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, step: &str, css: &str) -> String {
        let element = self.wait_for(step, css).await;
        match element.text().await {
            Ok(text) => text,
            Err(err) => self.fail(step, &format!("cannot read {css}: {err}")).await,
        }
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, step: &str, css: &str) {
        let element = self.wait_for(step, css).await;
        if let Err(err) = element.click().await {
            self.fail(step, &format!("cannot click {css}: {err}")).await;
        }
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub async fn fill(&self, step: &str, css: &str, text: &str) {
        let element = self.wait_for(step, css).await;
        let filled = async {
            element.clear().await?;
            element.send_keys(text).await
        };
        if let Err(err) = filled.await {
            self.fail(step, &format!("cannot type into {css}: {err}"))
                .await;
        }
    }

    /// Waits until the text of the element matching `css` satisfies `check`; returns the text.
    pub async fn wait_text(&self, step: &str, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            if Instant::now() > deadline {
                self.fail(step, &format!("{css} never matched; last text {last:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// How many elements match `css` right now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |found| found.len())
    }

    /// The texts of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            texts.push(element.text().await.unwrap_or_default());
        }
        texts
    }

    /// Saves a screenshot of the page to `path`.
    pub async fn screenshot_to(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot's folder");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Saves a screenshot of the page for `step`, then fails the test with `message`.
    pub async fn fail(&self, step: &str, message: &str) -> ! {
        let path = self.artifacts.join(format!("{step}.png"));
        let saved = match self.client.screenshot().await {
            Ok(png) => std::fs::create_dir_all(&self.artifacts)
                .and_then(|()| std::fs::write(&path, png))
                .map(|()| format!("screenshot: {}", path.display()))
                .unwrap_or_else(|err| format!("screenshot not saved: {err}")),
            Err(err) => format!("screenshot not taken: {err}"),
        };
        panic!("step {step:?} failed: {message} ({saved})");
    }

    /// The entries of the browser's console at level `SEVERE` since the last call: errors
    /// logged by the page, uncaught exceptions, and failed loads of resources and requests.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("ChromeDriver's browser log");
        entries
            .as_array()
            .expect("a list of entries")
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// ChromeDriver's command for the browser's console log (`goog:loggingPrefs` asks it to keep
/// one), which W3C WebDriver does not have.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// A folder for Herald to serve: the browser library (`clients/js/dist`, or
/// `HERALD_JS_CLIENT_DIST`) under `/herald-client/`, and a page using it at `/` (see
/// `fixtures/client/index.html`).
pub fn js_client_site() -> PathBuf {
    let built = std::env::var_os("HERALD_JS_CLIENT_DIST")
        .map_or_else(|| workspace_root().join("clients/js/dist"), PathBuf::from);
    assert!(
        built.join("index.js").is_file(),
        "no built browser library in {}: run `cargo xtask js` (cargo xtask test does)",
        built.display()
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let site = std::env::temp_dir().join(format!("herald-e2e-site-{}-{nanos}", std::process::id()));
    let library = site.join("herald-client");
    std::fs::create_dir_all(&library).expect("the site's folder");
    for entry in std::fs::read_dir(&built).expect("the built library") {
        let path = entry.expect("a built file").path();
        if path.extension().is_some_and(|extension| extension == "js") {
            std::fs::copy(&path, library.join(path.file_name().expect("a file name")))
                .expect("the library is copied");
        }
    }
    std::fs::copy(
        workspace_root().join("crates/e2e/fixtures/client/index.html"),
        site.join("index.html"),
    )
    .expect("the page is copied");
    site
}
