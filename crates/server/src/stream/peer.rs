//! [`PeerAddress`]: the address a connection comes from, as handlers see it through axum's
//! `ConnectInfo`, whichever writer serves the connection.

use std::net::{IpAddr, SocketAddr};

/// The peer address of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

/// The address a limit counts for `ip`: an IPv4 address (also one mapped into IPv6) as it is,
/// an IPv6 address as its /64 network.
pub fn limited_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}
