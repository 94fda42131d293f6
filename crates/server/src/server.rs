//! [`run`]: the one seam that starts Herald, used by `main` and by the tests; and the
//! composition root, the one place that turns the [`Config`] into the settings of each part,
//! builds the parts and starts their housekeeping.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppSettings, RelaySettings, StreamSettings};
use crate::auth::{Authenticator, RateLimiter};
use crate::config::{Config, StorageKind};
use crate::http::{AppState, router};
use crate::hub::{Hub, HubSettings, Limits};
use crate::metrics::Metrics;
use crate::storage::{
    MemoryStorage, RedisSettings, RedisStorage, SqliteSettings, SqliteStorage, Storage, Timed,
};
use crate::stream;

/// Entries of the shared feed kept in Redis: how far behind a node may fall (while cut off
/// from Redis, say) and still deliver every event without its subscribers reconnecting.
const FEED_MAX_LEN: usize = 100_000;

/// Serves Herald on `listener` until `shutdown` completes. Then every stream is sent
/// `herald.closing` and ended; connections get `config.shutdown_grace` to flush, after which
/// `run` returns regardless.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Read before any storage is opened, so that a certificate that cannot be used stops
    // Herald before it touches its data.
    let tls = load_tls(&config)?;
    if let Some(url) = &config.redis {
        let tls_ca = match &config.redis_ca {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                std::io::Error::other(format!("cannot read --redis-ca {}: {err}", path.display()))
            })?),
            None => None,
        };
        let redis = RedisStorage::open(RedisSettings {
            url: url.clone(),
            tls_ca,
            prefix: config.redis_prefix.clone(),
            max_events_per_stream: config.history_max_events,
            feed_max_len: FEED_MAX_LEN,
            retention_interval: config.retention_interval,
        })
        .map_err(|err| std::io::Error::other(err.message))?;
        tracing::info!(
            prefix = config.redis_prefix,
            "cluster mode: state kept in Redis"
        );
        let storage: Arc<dyn Storage> = Arc::new(redis.clone());
        return serve(listener, config, storage, Some(redis), tls, shutdown).await;
    }
    let storage = open_storage(&config)?;
    serve(listener, config, storage, None, tls, shutdown).await
}

/// Whether the certificate and key the configuration names (if any) can be served.
pub fn check_certificate(config: &Config) -> std::io::Result<()> {
    load_tls(config).map(drop)
}

/// HTTPS, when the configuration names a certificate and key.
fn load_tls(config: &Config) -> std::io::Result<Option<stream::Tls>> {
    config
        .protocols
        .tls_files()
        .map(|(certificate, key)| stream::Tls::load(certificate, key))
        .transpose()
        .map_err(std::io::Error::other)
}

/// The embedded storage the configuration names. A data directory or database that cannot be
/// used is an error here, before Herald listens.
pub fn open_storage(config: &Config) -> std::io::Result<Arc<dyn Storage>> {
    Ok(match config.storage {
        StorageKind::Memory => Arc::new(MemoryStorage::new(config.history_max_events)),
        StorageKind::Sqlite => {
            let settings = SqliteSettings {
                max_events_per_stream: config.history_max_events,
                max_bytes: config.database_limit(),
            };
            let storage = SqliteStorage::open(&config.data_dir, settings)
                .map_err(|err| std::io::Error::other(err.message))?;
            tracing::info!(database = %storage.path().display(), "event log opened");
            Arc::new(storage)
        }
    })
}

/// [`run`] on a storage of the caller's choosing.
pub async fn run_with_storage(
    listener: TcpListener,
    config: Config,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = load_tls(&config)?;
    serve(listener, config, storage, None, tls, shutdown).await
}

/// The hub's limits and timings.
fn hub_settings(config: &Config) -> HubSettings {
    HubSettings {
        heartbeat: config.heartbeat,
        retry: config.retry,
        queue_capacity: config.queue_capacity,
        max_connection_lifetime: config.connection_lifetime(),
        limits: Limits {
            per_client: config.max_connections_per_client,
            per_user: config.max_connections_per_user,
            per_address: config.connections_per_address(),
        },
        client_ttl: config.client_ttl,
        history_max_age: config.history_max_age,
        retention_interval: config.retention_interval,
        max_client_ids: config.max_client_ids,
        max_concurrent_replays: config.max_concurrent_replays,
        max_replays_per_address: config.replays_per_address(),
        mercure_subscriptions: config.mercure.mercure_subscriptions,
        presence_grace: config.retry.saturating_mul(2),
        presence_rate: config.presence.presence_rate,
        log_file: (config.redis.is_none() && config.storage == StorageKind::Sqlite)
            .then(|| config.data_dir.join("herald.db")),
    }
}

/// Builds the parts, starts their housekeeping and serves until `shutdown`.
async fn serve(
    listener: TcpListener,
    config: Config,
    storage: Arc<dyn Storage>,
    cluster: Option<RedisStorage>,
    tls: Option<stream::Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let auth = Authenticator::from_config(&config).map_err(std::io::Error::other)?;
    match &config.static_dir {
        Some(dir) if !dir.join("index.html").is_file() => {
            tracing::warn!(dir = %dir.display(), "no web console in --static-dir (index.html missing); serving the API only");
        }
        None if !crate::http::console_embedded() => {
            tracing::warn!(
                "this build holds no web console (build one with `cargo xtask dist`, or pass --static-dir); serving the API only"
            );
        }
        _ => {}
    }
    let config = Arc::new(config);
    let token = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    auth.start(&metrics, &token);
    let storage: Arc<dyn Storage> = Arc::new(Timed::new(storage, &metrics));
    let app = start_app(&config, storage, cluster, &metrics, &token);
    let state = app_state(&config, app, auth);
    if let Some(address) = config.operations.metrics_listen {
        serve_operations(address, state.clone(), token.clone()).await?;
    }
    let routes = router(state);
    let stream_settings = stream::Settings {
        app: routes,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        write_timeout: config.write_timeout,
        keepalive: config.keepalive(),
        max_connections: config.connection_cap(),
        // Behind a proxy every connection comes from it: only the forwarded address counts,
        // for event streams, in the hub.
        per_address: config
            .connections_per_address()
            .filter(|_| !config.trust_forwarded_for),
        send_buffer: config.send_buffer(),
        unsent_limit: config.unsent_limit(),
        metrics: Arc::clone(&metrics),
        tls: tls.clone(),
        http2_max_streams: config.protocols.http2_max_streams,
    };
    if let Some(tls) = tls {
        tracing::info!(
            "serving HTTPS (HTTP/2 and HTTP/1.1); the certificate is read again on SIGHUP or when its files change"
        );
        let every = Some(config.protocols.tls_watch).filter(|every| !every.is_zero());
        tokio::spawn(tls.watch(every, metrics, token.clone()));
    }
    tracing::info!(
        max_connections = stream_settings.max_connections,
        "connections beyond the limit are refused"
    );
    let connections = stream::start(listener, stream_settings, token.clone());
    tracing::info!("listening on {address}");
    {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing every stream");
            token.cancel();
        });
    }
    let grace = config.shutdown_grace;
    let deadline = async move {
        token.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = connections.finished() => Ok(()),
        () = deadline => {
            tracing::warn!("connections still open after the shutdown grace period; exiting anyway");
            Ok(())
        }
    }
}

/// What every handler shares.
fn app_state(config: &Arc<Config>, app: App, auth: Authenticator) -> AppState {
    AppState {
        app,
        config: Arc::clone(config),
        auth: Arc::new(auth),
        publish_rate: Arc::new(RateLimiter::new(
            config.publish_rate.into(),
            config.publish_burst.into(),
        )),
        publish_bytes: Arc::new(RateLimiter::new(
            config.publish_byte_rate,
            config.publish_byte_burst,
        )),
        new_clients: Arc::new(RateLimiter::new(
            config.new_client_rate.into(),
            config.new_client_burst.into(),
        )),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on the internal listener at `address` until
/// `shutdown`.
async fn serve_operations(
    address: std::net::SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on {address} (--metrics-listen): {err}"),
        )
    })?;
    tracing::info!(
        "metrics, health and readiness listening on {}",
        listener.local_addr()?
    );
    let routes = crate::http::operations_router(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, routes)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "the metrics listener failed");
        }
    });
    Ok(())
}

/// Starts the hub and its housekeeping (retention, and giving memory back after waves of
/// closed connections), all ending with `shutdown`; returns the use cases on it.
fn start_app(
    config: &Config,
    storage: Arc<dyn Storage>,
    cluster: Option<RedisStorage>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> App {
    let hub = Hub::start(
        Arc::clone(&storage),
        cluster,
        Arc::clone(metrics),
        hub_settings(config),
        shutdown.clone(),
    );
    tokio::spawn(hub.clone().retain(shutdown.clone()));
    let changes = {
        let (hub, metrics) = (hub.clone(), Arc::clone(metrics));
        move || hub.connections_closed() + metrics.connections_opened.get()
    };
    tokio::spawn(crate::memory::release_after_churn(
        changes,
        shutdown.clone(),
    ));
    let streams = &config.streams;
    let settings = AppSettings {
        max_notifications_per_user: config.max_notifications_per_user,
        connection_lifetime: config.connection_lifetime(),
        streams: StreamSettings {
            default_ttl: streams.stream_ttl,
            max_ttl: streams.stream_max_ttl,
            max_chunk_bytes: streams.stream_max_chunk,
            limits: crate::storage::streams::StreamLimits {
                max_chunks: streams.stream_max_chunks,
                max_bytes: streams.stream_max_bytes,
            },
            max_open: streams.stream_max_open,
            heartbeat: config.heartbeat,
            expiry_interval: config.retention_interval,
        },
        relay: RelaySettings {
            // Checked when the settings were validated.
            allowed: streams
                .stream_upstream
                .iter()
                .filter_map(|prefix| reqwest::Url::parse(prefix).ok())
                .collect(),
            silence: streams.stream_upstream_timeout,
        },
    };
    let app = App::new(
        hub,
        storage,
        Arc::clone(metrics),
        settings,
        shutdown.clone(),
    );
    tokio::spawn(app.clone().expire_streams());
    tokio::spawn(app.clone().follow_stream_notices());
    app
}
