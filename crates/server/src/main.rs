//! The `herald` binary: reads the settings, binds the listener, serves until a signal.

use std::io::IsTerminal;

use anyhow::Context;
use herald_protocol::auth::Grants;
use herald_server::auth::{Authenticator, claims_for};
use herald_server::config::{ConfigError, Invocation, LogFormat, TokenArgs};
use tracing_subscriber::EnvFilter;

/// With the `mimalloc` feature, mimalloc serves every allocation (the allocator A/B of
/// docs/benchmarks.md); by default the system's allocator does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let invocation = match herald_server::config::load() {
        Ok(invocation) => invocation,
        // Help, the version and usage mistakes are printed the way clap prints them.
        Err(ConfigError::Cli(err)) => err.exit(),
        Err(err) => return Err(err.into()),
    };
    let json = matches!(&invocation, Invocation::Serve(config) if config.operations.log_format == LogFormat::Json);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    if json {
        // One object per line: the event's fields at the top level, the request's (its id,
        // route, client id) under "span".
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let config = match invocation {
        Invocation::Serve(config) => config,
        Invocation::Token(args) => return print_token(&args),
        Invocation::Defaults => {
            print!("{}", herald_server::config::defaults_toml());
            return Ok(());
        }
        Invocation::Check { config, effective } => {
            // What only starting can tell: a credential key and a certificate that load, and
            // an identity provider's key set that can be fetched.
            let auth = Authenticator::from_config(&config).map_err(anyhow::Error::msg)?;
            herald_server::check_certificate(&config)?;
            let key_set = auth.check_key_set().await.map_err(anyhow::Error::msg)?;
            print!("{effective}");
            if let Some(key_set) = key_set {
                eprintln!("{key_set}");
            }
            eprintln!("the configuration is valid");
            return Ok(());
        }
    };
    // Refuse to start without a way to verify credentials, before binding anything.
    Authenticator::from_config(&config).map_err(anyhow::Error::msg)?;
    // Every subscriber is an open socket: use the whole hard limit on open files, not the
    // (often 1024) soft one.
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(err) => tracing::warn!(%err, "cannot raise the open files limit"),
    }
    let listener =
        listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    herald_server::run(listener, config, shutdown_signal())
        .await
        .context("serving failed")?;
    Ok(())
}

/// Connections the kernel may hold before Herald accepts them. The standard library's 128
/// overflows when thousands of clients reconnect at once, and a dropped connection attempt is
/// retried only after a second; the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `herald token`: signs claims with the key the same settings would serve with.
fn print_token(args: &TokenArgs) -> anyhow::Result<()> {
    let authenticator =
        Authenticator::from_config(&args.serve.settings).map_err(anyhow::Error::msg)?;
    let grants = Grants {
        publish: args.publish.clone(),
        subscribe: args.subscribe.clone(),
        admin: args.admin,
    };
    let token = authenticator
        .sign(&claims_for(&args.sub, grants, args.ttl))
        .map_err(anyhow::Error::msg)?;
    println!("{token}");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
// Elsewhere than on Unix nothing is installed before the future runs, so it reads as an
// `async fn` there.
#[cfg_attr(not(unix), allow(clippy::manual_async_fn))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // The handlers are installed now, before the listener is announced: a SIGTERM that comes
    // right after "listening on" must shut down gracefully, not kill the process.
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .inspect_err(|err| tracing::error!(%err, "cannot listen for {name}"))
                .ok()
        };
        (
            install(SignalKind::interrupt(), "Ctrl-C"),
            install(SignalKind::terminate(), "SIGTERM"),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
