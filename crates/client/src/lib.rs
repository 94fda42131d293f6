//! herald-client: subscribe to Herald from a browser, reliably, in Rust (wasm32).
//!
//! ```ignore
//! let subscription = herald_client::subscribe::<ChatMessage>(
//!     &["rooms/42"],
//!     Options::default().credential(|renew| async move { fetch_token(renew).await }),
//! );
//! subscription.on_event(|event| show(event.data));
//! ```
//!
//! A [`Subscription`] reconnects with the server's delay and a jittered back-off, resumes
//! after the last event with the same client id, renews its credential before it expires and
//! when the server says it did, stops when the server says not to come back, receives events
//! of every type, and shares one connection among the tabs of the browser (a leader tab holds
//! it and relays to the others; the TypeScript library in `clients/js` speaks the same).
//!
//! The rules live in machines that take what happened and say what to do ([`stream`],
//! [`group`], [`delivery`]), tested natively; the browser driver runs them.

pub mod delivery;
pub mod group;
pub mod ids;
pub mod stream;

mod browser;

pub use browser::{CredentialFuture, Event, Events, Options, Subscription, Undecodable, subscribe};
pub use stream::{Report, State, Wants};

use group::{Member, MemberInput, MemberOutput};
use stream::StreamMachine;

/// A subscription's machine: a stream of its own, or a member of a group sharing one.
#[derive(Debug)]
pub enum Machine {
    Alone(StreamMachine),
    Shared(Member),
}

impl Machine {
    /// Takes in what happened; says what to do.
    pub fn handle(&mut self, input: MemberInput, now_ms: u64, random: f64) -> Vec<MemberOutput> {
        match self {
            Self::Shared(member) => member.handle(input, now_ms, random),
            Self::Alone(stream) => {
                let input = match input {
                    MemberInput::Start => stream::Input::Start,
                    MemberInput::Close => stream::Input::Close,
                    MemberInput::SetWants(wants) => stream::Input::SetWants(wants),
                    MemberInput::Stream(input) => input,
                    MemberInput::Granted | MemberInput::Message(_) | MemberInput::Refresh => {
                        return Vec::new();
                    }
                };
                stream
                    .handle(input, now_ms, random)
                    .into_iter()
                    .map(|output| match output {
                        stream::Output::Report(report) => MemberOutput::Report(report),
                        other => MemberOutput::Stream(other),
                    })
                    .collect()
            }
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Alone(stream) => stream.client_id(),
            Self::Shared(member) => member.client_id(),
        }
    }

    pub fn last_event_id(&self) -> Option<&str> {
        match self {
            Self::Alone(stream) => stream.last_event_id(),
            Self::Shared(member) => member.last_event_id(),
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self, Self::Shared(member) if member.is_leader())
    }
}

#[cfg(test)]
mod tests;
