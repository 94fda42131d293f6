//! The Mercure dialect of the hub: topic selectors (exact, `*`, URI templates), the subscriber
//! and the rule for which updates reach it.

pub mod selector;
mod subscriber;

pub use selector::{Selector, any_matches};
pub use subscriber::MercureSubscriber;
