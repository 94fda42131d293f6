use std::fmt;

use herald_client::State;

/// Where the console's subscription stands, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected because the user disconnected (or has not connected yet): not an error.
    ClosedByYou,
    Connecting,
    Open,
    /// The stream was lost and the console is retrying; `attempt` counts the tries since it was
    /// open.
    Reconnecting {
        attempt: u32,
    },
    /// The server ended the stream and asked not to reconnect.
    ClosedByServer {
        reason: String,
    },
}

impl ConnectionState {
    /// The console's state from the client's: its state, why, and the reconnection attempts
    /// since the stream was last open. A stream closed without a reason was closed here.
    pub fn from_client(state: State, detail: Option<&str>, attempt: u32) -> Self {
        match (state, detail) {
            (State::Connecting, _) => Self::Connecting,
            (State::Open, _) => Self::Open,
            (State::Reconnecting, _) => Self::Reconnecting {
                attempt: attempt.max(1),
            },
            (State::Paused, _) | (State::Closed, None) => Self::ClosedByYou,
            (State::Closed, Some(reason)) => Self::ClosedByServer {
                reason: describe(reason),
            },
        }
    }

    /// The short name used as `data-state` for styling and tests.
    pub fn key(&self) -> &'static str {
        match self {
            Self::ClosedByYou => "closed-by-you",
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::Reconnecting { .. } => "reconnecting",
            Self::ClosedByServer { .. } => "closed-by-server",
        }
    }

    /// Whether the console holds (or is getting) a stream in this state.
    pub fn wants_stream(&self) -> bool {
        matches!(
            self,
            Self::Connecting | Self::Open | Self::Reconnecting { .. }
        )
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClosedByYou => write!(f, "closed by you"),
            Self::Connecting => write!(f, "connecting"),
            Self::Open => write!(f, "open"),
            Self::Reconnecting { attempt } => write!(f, "reconnecting (attempt {attempt})"),
            Self::ClosedByServer { reason } => write!(f, "closed by server: {reason}"),
        }
    }
}

/// Why the server ended a stream, as a person reads it.
pub fn describe(reason: &str) -> String {
    match reason {
        "admin_close" => "an administrator closed this client".into(),
        "shutdown" => "the server is shutting down".into(),
        "slow_consumer" => "this client fell too far behind".into(),
        "max_lifetime" => "the connection reached its maximum lifetime".into(),
        "credential_expired" => "the credential expired".into(),
        "storage_unavailable" => "the event store is unavailable".into(),
        "resync" => "the server is catching up with its cluster".into(),
        "no credential" => "the credential expired; sign in again".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_states_read_as_the_console_shows_them() {
        assert_eq!(
            ConnectionState::from_client(State::Connecting, None, 0),
            ConnectionState::Connecting
        );
        let lost = ConnectionState::from_client(State::Reconnecting, Some("lost"), 3);
        assert_eq!(lost, ConnectionState::Reconnecting { attempt: 3 });
        assert_eq!(lost.to_string(), "reconnecting (attempt 3)");
        assert!(lost.wants_stream());
        assert_eq!(
            ConnectionState::from_client(State::Open, None, 0).key(),
            "open"
        );
    }

    #[test]
    fn a_deliberate_close_is_not_an_error_and_the_servers_says_why() {
        let mine = ConnectionState::from_client(State::Closed, None, 0);
        assert_eq!(mine, ConnectionState::ClosedByYou);
        assert_eq!(mine.to_string(), "closed by you");
        assert!(!mine.wants_stream());
        let theirs = ConnectionState::from_client(State::Closed, Some("admin_close"), 0);
        assert_eq!(
            theirs.to_string(),
            "closed by server: an administrator closed this client"
        );
        assert_eq!(theirs.key(), "closed-by-server");
    }
}
