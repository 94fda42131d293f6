//! Identifiers the server issues, and the randomness and clock they come from.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Fills `buf` from the operating system's random source.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source only fails on platforms Herald does not run on (no getrandom(2) or
    // /dev/urandom); there is no sound way to go on issuing unguessable ids without it.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    buf
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// 256 random bits in hex: a signing key for development mode.
pub fn random_secret() -> String {
    hex(&random_bytes::<32>())
}

/// A random number for jitter.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes())
}

/// A client's identity across its connections and reconnections: 128 random bits, so it cannot
/// be guessed, in lowercase hex. Shared, since every index of a connection holds a copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    const HEX_LEN: usize = 32;

    pub fn generate() -> Self {
        Self(Arc::from(hex(&random_bytes::<16>())))
    }

    /// Accepts text shaped like an issued id. Whether it was issued is the directory's question.
    pub fn parse(text: &str) -> Option<Self> {
        let well_formed = text.len() == Self::HEX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One connection's identity, random so that it is unique across a cluster too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// A random starting point per process, counted up from: unique within the process and,
    /// with 64 random bits, across the nodes of a cluster, without a system call each.
    pub fn generate() -> Self {
        static BASE: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = *BASE.get_or_init(|| u64::from_le_bytes(random_bytes()));
        let id = base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        Self(Arc::from(hex(&id.to_be_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 3339 in UTC with milliseconds, the form of every timestamp on the wire.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_random_and_parse_back() {
        let a = ClientId::generate();
        let b = ClientId::generate();
        assert_ne!(a, b);
        assert_eq!(ClientId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn malformed_client_ids_do_not_parse() {
        for text in ["", "abc", &"G".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(ClientId::parse(text), None, "{text}");
        }
    }
}
