use std::fmt;

/// Where the console's subscription stands.
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
    /// The server ended the stream and asked not to reconnect, or refused it.
    ClosedByServer {
        reason: String,
    },
}

/// What happened to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    UserConnect,
    UserDisconnect,
    /// `herald.connected` arrived.
    Opened,
    /// The browser reported an error; `retrying` when it reconnects by itself.
    Lost {
        retrying: bool,
    },
    /// `herald.closing` arrived.
    Closing {
        reason: String,
        reconnect: bool,
    },
}

impl ConnectionState {
    /// The state after `signal`. Errors after a deliberate or final close change nothing.
    pub fn next(&self, signal: Signal) -> Self {
        match (self, signal) {
            (_, Signal::UserConnect) => Self::Connecting,
            (_, Signal::UserDisconnect) => Self::ClosedByYou,
            (Self::ClosedByYou | Self::ClosedByServer { .. }, _) => self.clone(),
            (_, Signal::Opened) => Self::Open,
            (
                _,
                Signal::Closing {
                    reason,
                    reconnect: false,
                },
            ) => Self::ClosedByServer { reason },
            (
                _,
                Signal::Closing {
                    reconnect: true, ..
                },
            ) => self.clone(),
            (Self::Reconnecting { attempt }, Signal::Lost { retrying: true }) => {
                Self::Reconnecting {
                    attempt: attempt + 1,
                }
            }
            (_, Signal::Lost { retrying: true }) => Self::Reconnecting { attempt: 1 },
            (_, Signal::Lost { retrying: false }) => Self::ClosedByServer {
                reason: "the server refused the connection".into(),
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

    /// Whether an `EventSource` should exist in this state.
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

/// The `/events` URL for `topics`, keeping `client_id` and resuming after `last_event_id`.
/// `encode` percent-encodes a query value (the browser's `encodeURIComponent`).
pub fn events_url(
    topics: &[String],
    client_id: Option<&str>,
    last_event_id: Option<&str>,
    access_token: Option<&str>,
    encode: impl Fn(&str) -> String,
) -> String {
    let mut query: Vec<String> = topics
        .iter()
        .map(|topic| format!("topic={}", encode(topic)))
        .collect();
    if let Some(client) = client_id {
        query.push(format!("client_id={}", encode(client)));
    }
    if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
        query.push(format!("last_event_id={}", encode(id)));
    }
    // EventSource cannot send an Authorization header; the query parameter carries the token.
    if let Some(token) = access_token {
        query.push(format!("access_token={}", encode(token)));
    }
    // Every event as `message`, so the console shows every type without naming it.
    query.push("all_types=true".to_owned());
    format!("/events?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Signal {
        Signal::Lost { retrying: true }
    }

    #[test]
    fn connects_opens_and_counts_reconnect_attempts() {
        let state = ConnectionState::ClosedByYou.next(Signal::UserConnect);
        assert_eq!(state, ConnectionState::Connecting);
        let state = state.next(Signal::Opened);
        assert_eq!(state, ConnectionState::Open);
        let state = state.next(lost()).next(lost()).next(lost());
        assert_eq!(state, ConnectionState::Reconnecting { attempt: 3 });
        assert_eq!(state.to_string(), "reconnecting (attempt 3)");
        assert_eq!(state.next(Signal::Opened), ConnectionState::Open);
    }

    #[test]
    fn a_deliberate_disconnect_is_not_an_error() {
        let state = ConnectionState::Open.next(Signal::UserDisconnect);
        assert_eq!(state, ConnectionState::ClosedByYou);
        assert_eq!(
            state.next(lost()),
            ConnectionState::ClosedByYou,
            "late errors are ignored"
        );
        assert!(!state.wants_stream());
    }

    #[test]
    fn closing_without_reconnect_stays_closed_and_says_why() {
        let closing = Signal::Closing {
            reason: "admin_close".into(),
            reconnect: false,
        };
        let state = ConnectionState::Open.next(closing);
        assert_eq!(
            state,
            ConnectionState::ClosedByServer {
                reason: "admin_close".into()
            }
        );
        assert_eq!(state.to_string(), "closed by server: admin_close");
        assert_eq!(
            state.next(lost()),
            state,
            "the browser's error after the close changes nothing"
        );
        assert_eq!(state.next(Signal::Opened), state);
    }

    #[test]
    fn closing_with_reconnect_lets_the_browser_retry() {
        let closing = Signal::Closing {
            reason: "shutdown".into(),
            reconnect: true,
        };
        let state = ConnectionState::Open.next(closing).next(lost());
        assert_eq!(state, ConnectionState::Reconnecting { attempt: 1 });
    }

    #[test]
    fn a_refused_stream_is_closed_by_the_server() {
        let state = ConnectionState::Connecting.next(Signal::Lost { retrying: false });
        assert!(matches!(state, ConnectionState::ClosedByServer { .. }));
    }

    #[test]
    fn the_url_names_topics_identity_and_position() {
        let encode = |s: &str| s.replace('/', "%2F");
        let url = events_url(
            &["rooms/1".into(), "b".into()],
            Some("abc"),
            Some("42"),
            Some("t/k"),
            encode,
        );
        assert_eq!(
            url,
            "/events?topic=rooms%2F1&topic=b&client_id=abc&last_event_id=42&access_token=t%2Fk&all_types=true"
        );
        assert_eq!(
            events_url(&[], None, Some(""), None, encode),
            "/events?all_types=true"
        );
    }
}
