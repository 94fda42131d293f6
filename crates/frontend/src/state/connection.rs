use std::fmt;

/// Where the console's subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Open,
    /// The browser lost the stream and is retrying; `attempt` counts the tries.
    Reconnecting {
        attempt: u32,
    },
    /// The server ended the stream and asked not to reconnect.
    ClosedByServer {
        reason: String,
    },
}

impl ConnectionState {
    /// The short name used as `data-state` for styling and tests.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::Reconnecting { .. } => "reconnecting",
            Self::ClosedByServer { .. } => "closed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => write!(f, "connecting"),
            Self::Open => write!(f, "open"),
            Self::Reconnecting { attempt } => write!(f, "reconnecting (attempt {attempt})"),
            Self::ClosedByServer { reason } => write!(f, "closed by server: {reason}"),
        }
    }
}

/// What the server told the console about its connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub client_id: Option<String>,
    pub connection_id: Option<String>,
    pub last_event_id: Option<String>,
}
