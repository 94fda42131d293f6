//! Relay mode: Herald calls an OpenAI-compatible streaming endpoint (`/v1/chat/completions`
//! with `"stream": true`, as OpenAI, vLLM, llama.cpp's server and Ollama serve it) and appends
//! each piece of the answer to a response stream as it arrives, ending it on `[DONE]`, or as an
//! error when the upstream fails, stalls or closes early. Cancelling the stream aborts the call.
//! Only endpoints under an operator's `--stream-upstream` prefixes may be called.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use herald_protocol::sse::{Decoder, Item};
use herald_protocol::streams::{StreamKind, StreamStatus, StreamUpstream};
use tokio_util::sync::CancellationToken;

use super::{App, AppError, Rejection};

/// Bytes of an upstream's error answer kept for the stream's error reason.
const ERROR_SNIPPET: usize = 512;

/// Where relays may go, and how long they may be silent.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub allowed: Vec<reqwest::Url>,
    pub silence: Duration,
}

/// The relays this node runs, by stream id, to abort when their stream is cancelled.
#[derive(Debug, Default)]
pub(super) struct Relays {
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Relays {
    fn start(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), token.clone());
        token
    }

    fn finish(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Aborts the relay of `id`, if this node runs one.
    pub(super) fn abort(&self, id: &str) {
        if let Some(token) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
        {
            token.cancel();
        }
    }
}

/// Whether `url` is under one of the `allowed` prefixes: the same scheme, host and port, and a
/// path that starts with the prefix's.
pub fn allowed(url: &reqwest::Url, allowed: &[reqwest::Url]) -> bool {
    allowed.iter().any(|prefix| {
        prefix.scheme() == url.scheme()
            && prefix.host_str() == url.host_str()
            && prefix.port_or_known_default() == url.port_or_known_default()
            && url.path().starts_with(prefix.path())
            && url.username().is_empty()
            && url.password().is_none()
    })
}

/// How a relay ended.
enum Outcome {
    /// `[DONE]`: the answer is complete; the finish reason, if the upstream gave one.
    Done(Option<String>),
    Failed(String),
    /// The stream ended some other way (cancelled): nothing more to do.
    Gone,
}

impl App {
    /// Checks an upstream before its stream is created.
    pub fn check_upstream(&self, upstream: &StreamUpstream) -> Result<reqwest::Url, AppError> {
        let url = reqwest::Url::parse(&upstream.url)
            .map_err(|err| AppError::invalid("invalid_upstream", format!("upstream.url: {err}")))?;
        if !allowed(&url, &self.inner.settings.relay.allowed) {
            return Err(AppError::rejected(
                Rejection::Forbidden,
                "upstream_not_allowed",
                "upstream.url is not under any of this server's --stream-upstream prefixes",
            ));
        }
        if !upstream.body.is_object() {
            return Err(AppError::invalid(
                "invalid_upstream",
                "upstream.body must be a JSON object",
            ));
        }
        for (name, value) in &upstream.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(AppError::invalid(
                    "invalid_upstream",
                    format!("upstream.headers: {name:?} is not a valid header"),
                ));
            }
        }
        Ok(url)
    }

    /// Starts relaying `upstream` into stream `id`, in the background.
    pub fn relay(&self, id: String, url: reqwest::Url, upstream: StreamUpstream) {
        let app = self.clone();
        let token = self.inner.relays.start(&id);
        tokio::spawn(async move {
            let shutdown = app.inner.shutdown.clone();
            let outcome = tokio::select! {
                outcome = app.run_relay(&id, url, upstream) => outcome,
                () = token.cancelled() => Outcome::Gone,
                () = shutdown.cancelled() => Outcome::Failed("the server shut down".into()),
            };
            app.inner.relays.finish(&id);
            let (status, result) = match outcome {
                Outcome::Done(reason) => (
                    StreamStatus::Done,
                    reason.map(|reason| serde_json::json!({"finish_reason": reason})),
                ),
                Outcome::Failed(reason) => (
                    StreamStatus::Error,
                    Some(serde_json::json!({"reason": reason})),
                ),
                Outcome::Gone => return,
            };
            if let Err(err) = app.end_stream(&id, status, result).await {
                tracing::debug!(%err, stream = id, "a relayed stream could not be ended");
            }
        });
    }

    async fn run_relay(&self, id: &str, url: reqwest::Url, upstream: StreamUpstream) -> Outcome {
        let silence = self.inner.settings.relay.silence;
        let mut body = upstream.body;
        body["stream"] = serde_json::Value::Bool(true);
        let mut request = self.inner.upstream.post(url).json(&body);
        for (name, value) in &upstream.headers {
            request = request.header(name, value);
        }
        let mut response = match tokio::time::timeout(silence, request.send()).await {
            Err(_) => return Outcome::Failed("the upstream did not answer in time".into()),
            Ok(Err(err)) => return Outcome::Failed(format!("the upstream failed: {err}")),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            let status = response.status();
            let text = tokio::time::timeout(silence, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let snippet: String = text.chars().take(ERROR_SNIPPET).collect();
            return Outcome::Failed(format!("the upstream answered {status}: {snippet}"));
        }
        let mut decoder = Decoder::new();
        let mut finish = None;
        // What a stream may hold, with room for the JSON around each piece: an upstream that
        // sends more (or one endless line) is cut off.
        let most = self
            .inner
            .settings
            .streams
            .limits
            .max_bytes
            .saturating_mul(8)
            .max(1 << 20);
        let mut received: u64 = 0;
        loop {
            let bytes = match tokio::time::timeout(silence, response.chunk()).await {
                Err(_) => return Outcome::Failed("the upstream stalled".into()),
                Ok(Err(err)) => return Outcome::Failed(format!("the upstream failed: {err}")),
                Ok(Ok(None)) => {
                    return Outcome::Failed("the upstream closed before [DONE]".into());
                }
                Ok(Ok(Some(bytes))) => bytes,
            };
            received += bytes.len() as u64;
            if received > most {
                return Outcome::Failed("the upstream sent more than this server keeps".into());
            }
            let mut pieces = Vec::new();
            let mut done = false;
            for item in decoder.feed(&bytes) {
                let Item::Event(event) = item else {
                    continue;
                };
                match read_delta(&event.data) {
                    Delta::Done => done = true,
                    Delta::Piece { text, reason } => {
                        pieces.extend(text);
                        finish = reason.or(finish);
                    }
                    Delta::Error(reason) => return Outcome::Failed(reason),
                }
            }
            if !pieces.is_empty()
                && let Err(outcome) = self.append_relayed(id, pieces).await
            {
                return outcome;
            }
            if done {
                return Outcome::Done(finish);
            }
        }
    }

    /// Appends what the upstream sent; how the relay ends when it cannot.
    async fn append_relayed(&self, id: &str, pieces: Vec<String>) -> Result<(), Outcome> {
        let chunks = pieces.into_iter().map(serde_json::Value::String).collect();
        match self.append_chunks(id, StreamKind::Text, chunks).await {
            Ok(_) => Ok(()),
            // Ended meanwhile (cancelled), or gone: nothing more to do.
            Err(
                AppError::Rejected {
                    kind: Rejection::Conflict,
                    ..
                }
                | AppError::NotFound { .. },
            ) => Err(Outcome::Gone),
            Err(err) => Err(Outcome::Failed(format!(
                "the answer could not be kept: {err}"
            ))),
        }
    }
}

/// What one event of the upstream says.
enum Delta {
    Done,
    /// A piece of the answer (none for a role-only or empty delta), and a finish reason.
    Piece {
        text: Option<String>,
        reason: Option<String>,
    },
    Error(String),
}

fn read_delta(data: &str) -> Delta {
    let data = data.trim();
    if data == "[DONE]" {
        return Delta::Done;
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(data) else {
        return Delta::Error("the upstream sent something that is not JSON".into());
    };
    if let Some(error) = json.get("error") {
        let message = error
            .get("message")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned);
        return Delta::Error(format!("the upstream reported an error: {message}"));
    }
    let choice = &json["choices"][0];
    let text = choice["delta"]["content"]
        .as_str()
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    let reason = choice["finish_reason"].as_str().map(str::to_owned);
    Delta::Piece { text, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn only_urls_under_an_allowed_prefix_are_called() {
        let allowed_here = [
            url("https://api.example.com/v1/"),
            url("http://127.0.0.1:11434/"),
        ];
        for ok in [
            "https://api.example.com/v1/chat/completions",
            "https://api.example.com:443/v1/chat/completions",
            "http://127.0.0.1:11434/v1/chat/completions",
        ] {
            assert!(allowed(&url(ok), &allowed_here), "{ok}");
        }
        for refused in [
            "https://api.example.com/v2/chat/completions",
            "http://api.example.com/v1/chat/completions",
            "https://api.example.com.evil.test/v1/",
            "https://user:pw@api.example.com/v1/chat/completions",
            "http://127.0.0.1:11435/v1/chat/completions",
            "http://localhost:11434/v1/chat/completions",
        ] {
            assert!(!allowed(&url(refused), &allowed_here), "{refused}");
        }
        assert!(
            !allowed(&url("https://api.example.com/v1/"), &[]),
            "none by default"
        );
    }

    #[test]
    fn deltas_pieces_reasons_errors_and_the_end_are_read() {
        assert!(matches!(read_delta("[DONE]"), Delta::Done));
        let Delta::Piece { text, reason } =
            read_delta(r#"{"choices":[{"delta":{"content":"Hel"},"finish_reason":null}]}"#)
        else {
            panic!("a piece");
        };
        assert_eq!((text.as_deref(), reason), (Some("Hel"), None));
        let Delta::Piece { text, reason } =
            read_delta(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#)
        else {
            panic!("the last piece");
        };
        assert_eq!((text, reason.as_deref()), (None, Some("stop")));
        assert!(matches!(
            read_delta(r#"{"error":{"message":"overloaded"}}"#),
            Delta::Error(reason) if reason.contains("overloaded")
        ));
        assert!(matches!(read_delta("not json"), Delta::Error(_)));
    }
}
