use herald_protocol::Envelope;
use herald_protocol::system::{self, Closing, Connected, Reset};

/// A frame of `/events`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    Connected(Connected),
    Event(Envelope),
    Reset(Reset),
    Closing(Closing),
}

/// Decodes the data of an event named `name`; the error says what did not fit.
pub fn decode_hub_event(name: &str, data: &str) -> Result<HubEvent, String> {
    let decoded = match name {
        system::CONNECTED => serde_json::from_str(data).map(HubEvent::Connected),
        system::RESET => serde_json::from_str(data).map(HubEvent::Reset),
        system::CLOSING => serde_json::from_str(data).map(HubEvent::Closing),
        _ => serde_json::from_str(data).map(HubEvent::Event),
    };
    decoded.map_err(|err| format!("a {name} event did not decode: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::system::{CloseReason, ResetReason};

    #[test]
    fn decodes_system_events_and_envelopes() {
        let connected = decode_hub_event(
            "herald.connected",
            r#"{"client_id":"c","connection_id":"k","topics":["a"]}"#,
        );
        assert!(
            matches!(connected, Ok(HubEvent::Connected(c)) if c.client_id == "c" && c.topics == ["a"])
        );
        let reset = decode_hub_event(
            "herald.reset",
            r#"{"reason":"history_expired","latest_id":"9"}"#,
        );
        assert!(matches!(reset, Ok(HubEvent::Reset(r)) if r.reason == ResetReason::HistoryExpired));
        let closing = decode_hub_event(
            "herald.closing",
            r#"{"reason":"admin_close","reconnect":false}"#,
        );
        assert!(
            matches!(closing, Ok(HubEvent::Closing(c)) if c.reason == CloseReason::AdminClose && !c.reconnect)
        );
        let event = decode_hub_event(
            "order.created",
            r#"{"id":"5","topic":"orders","type":"order.created","data":{"n":1},"time":"2026-01-01T00:00:00.000Z"}"#,
        );
        assert!(matches!(event, Ok(HubEvent::Event(e)) if e.id == "5" && e.data["n"] == 1));
    }

    #[test]
    fn says_what_did_not_decode() {
        let err = decode_hub_event("message", "not json").unwrap_err();
        assert!(err.contains("message"), "{err}");
        assert!(decode_hub_event("herald.connected", "{}").is_err());
    }
}
