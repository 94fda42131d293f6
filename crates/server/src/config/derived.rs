//! Values derived from the settings: a limit of 0 meaning "none", and the connection cap
//! taken from the open-files limit.

use std::time::Duration;

use super::Config;

/// Open files kept for other things than connections (the database and its journal, logs,
/// files of the web app being served, Redis), when the limit leaves room for them.
const RESERVED_FILES: u64 = 256;

impl Config {
    /// The most connections Herald holds: `--max-connections`, or else the open-files limit
    /// less a reserve (256, or a quarter of a smaller limit).
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = open_files_limit();
            let cap = limit - RESERVED_FILES.min(limit / 4);
            usize::try_from(cap).unwrap_or(usize::MAX)
        })
    }

    /// The most connections one address may hold; `None` for no limit.
    pub fn connections_per_address(&self) -> Option<usize> {
        nonzero(self.max_connections_per_address)
    }

    /// The most replay pages read at once for one address; `None` for no limit.
    pub fn replays_per_address(&self) -> Option<usize> {
        nonzero(self.max_replays_per_address)
    }

    /// How long a connection may live; `None` for no limit.
    pub fn connection_lifetime(&self) -> Option<Duration> {
        Some(self.max_connection_lifetime).filter(|lifetime| !lifetime.is_zero())
    }

    /// The limit on each event stream's unsent kernel data; `None` for none.
    pub fn unsent_limit(&self) -> Option<usize> {
        nonzero(self.stream_unsent_limit)
    }

    /// The send buffer of each event stream; `None` leaves it to the kernel.
    pub fn send_buffer(&self) -> Option<usize> {
        nonzero(self.stream_send_buffer)
    }

    /// The idle time before TCP keepalive probes; `None`: keepalive off.
    pub fn keepalive(&self) -> Option<Duration> {
        Some(self.tcp_keepalive).filter(|idle| !idle.is_zero())
    }

    /// The largest size of the SQLite database; `None` for no limit.
    pub fn database_limit(&self) -> Option<u64> {
        Some(self.storage_max_bytes).filter(|bytes| *bytes > 0)
    }
}

/// The process's (soft) limit on open files, as raised at start-up; a generous figure where
/// it cannot be read or is unlimited.
fn open_files_limit() -> u64 {
    const UNKNOWN: u64 = 1 << 20;
    #[cfg(unix)]
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft != rlimit::INFINITY => soft,
        _ => UNKNOWN,
    }
    #[cfg(not(unix))]
    UNKNOWN
}

fn nonzero(value: usize) -> Option<usize> {
    (value > 0).then_some(value)
}
