//! [`Settings`]: what the connections need from the server.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::tls::Tls;
use crate::metrics::Metrics;

/// What every connection needs from the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The routes: every request, event stream or not, is answered by them.
    pub app: Router,
    /// How long a client has to send a request head (`header_timeout`).
    pub header_timeout: Duration,
    /// How long a request body may make no progress (`body_timeout`).
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// Idle time before TCP keepalive probes (`tcp_keepalive`); `None`: off.
    pub keepalive: Option<Duration>,
    /// The most connections held at once (`max_connections`).
    pub max_connections: usize,
    /// The most from one address; `None`: not counted at accept (behind a proxy, say).
    pub per_address: Option<usize>,
    /// The kernel send buffer of each stream (`stream_send_buffer`); `None` leaves it alone.
    pub send_buffer: Option<usize>,
    /// The most each stream leaves unsent in the kernel (`stream_unsent_limit`); `None`: no limit.
    pub unsent_limit: Option<usize>,
    pub metrics: Arc<Metrics>,
    /// HTTPS, when configured: then every connection is TLS.
    pub tls: Option<Tls>,
    /// The most streams an HTTP/2 connection may have open (`http2_max_streams`).
    pub http2_max_streams: u32,
}

impl Settings {
    /// Settings for tests: `app`, with timeouts of a few seconds and no limits.
    #[cfg(test)]
    pub fn for_tests(app: Router) -> Self {
        Self {
            app,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(1),
            keepalive: None,
            max_connections: usize::MAX,
            per_address: None,
            send_buffer: None,
            unsent_limit: None,
            metrics: Arc::new(Metrics::default()),
            tls: None,
            http2_max_streams: 100,
        }
    }
}
