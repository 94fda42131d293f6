//! The one binary: `herald` run from an empty directory, with no `--static-dir`, serves the web
//! console built into it at `/`: each file with its content type and entity tag, `index.html`
//! for the console's own routes. `cargo xtask test` builds the console into the test build
//! (`HERALD_EMBED_CONSOLE`); a build without it says so and serves the API alone.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::support::HeraldProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_console_built_into_it() {
    let herald = HeraldProcess::start_bare(&[]).await;
    let http = reqwest::Client::new();
    let page = http.get(herald.url("/")).send().await.unwrap();
    let Some(built) = option_env!("HERALD_EMBED_CONSOLE") else {
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        let said = herald
            .log_line_containing("this build holds no web console")
            .await;
        assert!(said.contains("serving the API only"), "{said}");
        return;
    };
    let built = std::path::Path::new(built);
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(page.headers()[CACHE_CONTROL], "no-cache");
    let etag = page.headers()[ETAG].clone();
    let index = std::fs::read(built.join("index.html")).unwrap();
    assert_eq!(page.bytes().await.unwrap(), index);

    // Revalidation by the entity tag, and the console's own routes.
    let unchanged = http
        .get(herald.url("/"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let route = http.get(herald.url("/inbox?topic=a")).send().await.unwrap();
    assert_eq!(route.status(), StatusCode::OK);
    assert_eq!(route.bytes().await.unwrap(), index);

    // Every file of the build, byte for byte, the module as WebAssembly.
    let mut wasm = 0;
    for entry in std::fs::read_dir(built).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let response = http
            .get(herald.url(&format!("/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        if name.ends_with(".wasm") {
            assert_eq!(response.headers()[CONTENT_TYPE], "application/wasm");
            wasm += 1;
        }
        assert_eq!(
            response.bytes().await.unwrap(),
            std::fs::read(&path).unwrap(),
            "{name}"
        );
    }
    assert_eq!(wasm, 1, "the build holds the console's module");

    let head = http.head(herald.url("/")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()[CONTENT_LENGTH],
        index.len().to_string().as_str()
    );
    let post = http.post(herald.url("/")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The API is still the API.
    let api = http.get(herald.url("/api/nothing")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.headers()[CONTENT_TYPE], "application/json");
}
