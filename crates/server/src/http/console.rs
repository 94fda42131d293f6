//! The web console built into the binary (see `build.rs`): served at `/` when no
//! `--static-dir` is given, each file with its content type and entity tag, and `index.html`
//! for every other path (the console's own routes).

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One file of the built console.
#[derive(Debug)]
struct ConsoleFile {
    /// Its path under the console's root, `/`-separated, without a leading `/`.
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    /// A quoted hash of the body.
    etag: &'static str,
}

/// The files, sorted by path; empty when the binary was built without the console.
static FILES: &[ConsoleFile] = include!(concat!(env!("OUT_DIR"), "/console.rs"));

/// Whether this binary holds a built console.
pub fn embedded() -> bool {
    FILES.iter().any(|file| file.path == "index.html")
}

fn find(path: &str) -> Option<&'static ConsoleFile> {
    FILES
        .binary_search_by(|file| file.path.cmp(path))
        .ok()
        .map(|at| &FILES[at])
}

/// Answers a request for the console: the file the path names, or `index.html`.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let file = find(path)
        .or_else(|| find(&format!("{}/index.html", path.trim_end_matches('/'))))
        .or_else(|| find("index.html"));
    let Some(file) = file else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = if headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == file.etag
        }) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(file.body.len()));
        response
    } else {
        file.body.into_response()
    };
    let answer = response.headers_mut();
    answer.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    answer.insert(header::ETAG, HeaderValue::from_static(file.etag));
    // Revalidated on every load (cheaply, by the entity tag), so an upgraded binary's console
    // is the one browsers run.
    answer.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
