//! What an anonymous client (or a careless credential holder) on the open internet might try,
//! one module per attack: none stops Herald, fills its storage, or reaches what it may not.

mod client_ids;
mod connection_limits;
mod cost_by_size;
mod cross_site;
mod demos;
mod malformed_heads;
mod replay_storm;
mod slow_clients;
mod tokens;
