//! What an anonymous client (or a careless credential holder) on the open internet might try,
//! one module per attack: none stops Herald, fills its storage, or reaches what it may not.

mod client_ids;
mod cross_site;
mod demos;
mod tokens;
