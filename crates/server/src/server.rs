//! [`run`]: the one seam that starts Herald, used by `main` and by the tests.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, RateLimiter};
use crate::config::Config;
use crate::config::StorageKind;
use crate::event_conn;
use crate::http::{AppState, router};
use crate::hub::{Hub, HubSettings};
use crate::listener::{self, PeerAddress};
use crate::metrics::Metrics;
use crate::storage::{
    MemoryStorage, RedisSettings, RedisStorage, SqliteSettings, SqliteStorage, Storage,
};

/// Serves Herald on `listener` until `shutdown` completes. Then every stream is sent
/// `herald.closing` and ended; connections get `config.shutdown_grace` to flush, after which
/// `run` returns regardless.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(url) = &config.redis {
        let redis = RedisStorage::open(RedisSettings {
            url: url.clone(),
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
        return serve(listener, config, storage, Some(redis), shutdown).await;
    }
    let storage = open_storage(&config)?;
    run_with_storage(listener, config, storage, shutdown).await
}

/// Entries of the shared feed kept in Redis: how far behind a node may fall (while cut off
/// from Redis, say) and still deliver every event without its subscribers reconnecting.
const FEED_MAX_LEN: usize = 100_000;

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
    serve(listener, config, storage, None, shutdown).await
}

async fn serve(
    listener: TcpListener,
    config: Config,
    storage: Arc<dyn Storage>,
    cluster: Option<RedisStorage>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let auth = Authenticator::from_config(&config).map_err(std::io::Error::other)?;
    let publish_rate = RateLimiter::new(config.publish_rate, config.publish_burst);
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(dir = %config.static_dir.display(), "no web app found (index.html missing); serving the API only");
    }
    let token = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::start(
        storage,
        cluster,
        Arc::clone(&metrics),
        HubSettings::from(&config),
        token.clone(),
    );
    let grace = config.shutdown_grace;
    let write_timeout = config.write_timeout;
    let send_buffer = config.send_buffer();
    let unsent_limit = config.unsent_limit();
    let state = AppState {
        hub,
        config: Arc::new(config),
        auth: Arc::new(auth),
        publish_rate: Arc::new(publish_rate),
        shutdown: token.clone(),
    };
    let app = router(state);

    let (listener, event_streams) = listener::start(
        listener,
        event_conn::Settings {
            app: app.clone(),
            write_timeout,
            send_buffer,
            unsent_limit,
            metrics,
        },
        token.clone(),
    )?;
    tracing::info!("listening on {address}");
    let signal = {
        let token = token.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: closing every stream");
            token.cancel();
        }
    };
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerAddress>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    // Event streams are served outside hyper: they end on their own once the hub closes them.
    let serve = async move {
        let result = serve.await;
        event_streams.finished().await;
        result
    };
    let deadline = async move {
        token.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = serve => result,
        () = deadline => {
            tracing::warn!("connections still open after the shutdown grace period; exiting anyway");
            Ok(())
        }
    }
}
