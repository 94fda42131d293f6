//! The Mercure dialect of the hub: topic selectors (exact, `*`, URI templates), what a token's
//! `mercure` claim allows, and how an update is framed for a Mercure subscriber.

pub mod selector;

pub use selector::{Selector, any_matches};
