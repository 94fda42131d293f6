//! Herald's web console. State (`state`) is kept apart from rendering (`view`); the browser's
//! `EventSource` is wrapped in `source`, which decodes every frame into a `herald_protocol` type.

mod source;
pub mod state;
mod view;

pub use view::App;
