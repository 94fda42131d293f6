//! [`PresenceSettings`]: how `herald.presence` events are paced.

use clap::Args;

/// Presence events.
#[derive(Debug, Clone, Args)]
pub struct PresenceSettings {
    /// The most `herald.presence` events one topic gets a second (on each node), after a burst
    /// of as many. Arrivals and departures past it wait their turn, in order, and a user's
    /// arrival and departure that are both still waiting cancel out, so a storm of clients
    /// coming back after a restart is announced at this pace.
    #[arg(
        long,
        env = "HERALD_PRESENCE_RATE",
        value_name = "PER_SECOND",
        default_value = "20"
    )]
    pub presence_rate: u32,
}

impl PresenceSettings {
    pub(super) fn check(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.presence_rate) {
            return Err("presence_rate must be between 1 and 100000".into());
        }
        Ok(())
    }
}
