//! The Mercure dialect of the hub: topic selectors (exact, `*`, URI templates), the subscriber
//! and the rule for which updates reach it, and the active subscriptions.

pub mod selector;
mod subscriber;
pub mod subscriptions;

pub use selector::{Selector, any_matches};
pub use subscriber::MercureSubscriber;
pub use subscriptions::ActiveSubscription;
