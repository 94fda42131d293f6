//! Identifiers the server issues, and the randomness they come from.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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

/// 64 random bits in hex: the id of a request that came without one.
pub fn request_id() -> String {
    hex(&random_bytes::<8>())
}

/// A random (version 4) UUID as a URN, `urn:uuid:xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`: the id
/// of a Mercure update published without one, and of a Mercure subscriber.
pub fn urn_uuid() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex(&bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random number for jitter.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes())
}

/// A client's identity across its connections and reconnections, in 32 lowercase hex digits:
/// the millisecond it was issued (48 bits) followed by 80 random bits, so it cannot be guessed.
/// Ids issued later sort later, so recording a new one appends to the client table's index
/// rather than rewriting a random page of it. Shared, since every index of a connection holds a
/// copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    const HEX_LEN: usize = 32;

    pub fn generate() -> Self {
        // 48 bits of milliseconds last until the year 10889.
        let time = crate::time::now_ms() & 0xffff_ffff_ffff;
        let mut text = format!("{time:012x}");
        text.push_str(&hex(&random_bytes::<10>()));
        Self(Arc::from(text))
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

/// One connection's identity, random so that it is unique across a cluster too. A number,
/// shown as 16 hex digits: every index of a connection holds a copy, and a number costs no
/// allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// A random starting point per process, counted up from: unique within the process and,
    /// with 64 random bits, across the nodes of a cluster, without a system call each.
    pub fn generate() -> Self {
        static BASE: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = *BASE.get_or_init(|| u64::from_le_bytes(random_bytes()));
        Self(base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_unique_in_issue_order_and_parse_back() {
        let ids: Vec<ClientId> = (0..1000).map(|_| ClientId::generate()).collect();
        let unique: std::collections::HashSet<&ClientId> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Within one millisecond the order is random; across milliseconds it is the issue order.
        let prefix = |id: &ClientId| id.as_str()[..12].to_owned();
        assert!(
            ids.windows(2)
                .all(|pair| prefix(&pair[0]) <= prefix(&pair[1]))
        );
        for id in ids {
            assert_eq!(id.as_str().len(), 32);
            assert_eq!(ClientId::parse(id.as_str()), Some(id));
        }
    }

    #[test]
    fn connection_ids_are_unique_and_shown_as_16_hex_digits() {
        let ids: Vec<ConnectionId> = (0..1000).map(|_| ConnectionId::generate()).collect();
        let shown: std::collections::HashSet<String> =
            ids.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), ids.len());
        assert!(shown.iter().all(|id| {
            id.len() == 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
    }

    #[test]
    fn malformed_client_ids_do_not_parse() {
        for text in ["", "abc", &"G".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(ClientId::parse(text), None, "{text}");
        }
    }
}
