//! [`Members`]: the live connections receiving one stream.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::connection::Connection;
use crate::ids::ConnectionId;

/// The live connections receiving one stream. Most streams have one (a client's stream, a user
/// on one device, a topic nobody else follows): it is held inline rather than in a map of its
/// own, which for thousands of idle clients is a map allocation each saved.
#[derive(Debug)]
pub enum Members {
    One(Arc<Connection>),
    /// Boxed, so that every entry of the registry's index takes two words rather than a map's
    /// six: the index has an entry per stream, most of them with one member.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<ConnectionId, Arc<Connection>>>),
}

/// What [`Members::remove`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    Some,
    None,
}

impl Members {
    pub fn new(connection: &Arc<Connection>) -> Self {
        Self::One(Arc::clone(connection))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(map) => map.len(),
        }
    }

    /// Adds `connection`; adding one already there changes nothing.
    pub fn insert(&mut self, connection: &Arc<Connection>) {
        match self {
            Self::One(only) if only.id == connection.id => {}
            Self::One(only) => {
                let mut map = HashMap::with_capacity(2);
                map.insert(only.id, Arc::clone(only));
                map.insert(connection.id, Arc::clone(connection));
                *self = Self::Many(Box::new(map));
            }
            Self::Many(map) => {
                map.insert(connection.id, Arc::clone(connection));
            }
        }
    }

    /// Removes the connection `id`, and says whether any is left. A map down to one member goes
    /// back inline; one less than half full gives back most of its spare room.
    pub fn remove(&mut self, id: ConnectionId) -> Left {
        match self {
            Self::One(only) if only.id == id => Left::None,
            Self::One(_) => Left::Some,
            Self::Many(map) => {
                map.remove(&id);
                match map.len() {
                    0 => Left::None,
                    1 => {
                        if let Some(only) = map.values().next() {
                            *self = Self::One(Arc::clone(only));
                        }
                        Left::Some
                    }
                    _ => {
                        release_spare(map);
                        Left::Some
                    }
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Connection>> {
        let (one, many) = match self {
            Self::One(only) => (Some(only), None),
            Self::Many(map) => (None, Some(map.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// Gives back most of a map's spare room once it is less than half full. A map never shrinks on
/// its own, so without this the indexes would hold the capacity of the largest crowd of
/// connections ever seen. Shrinking to a quarter above the length leaves room to grow again
/// before the next doubling, so the cost stays proportional to the changes that caused it.
pub fn release_spare<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    const SMALL: usize = 64;
    if map.capacity() > SMALL && map.len() < map.capacity() / 2 {
        map.shrink_to(map.len() + map.len() / 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::connection::{Holder, StreamOptions};
    use crate::ids::ClientId;

    fn connection() -> Arc<Connection> {
        Connection::new(
            ClientId::generate(),
            vec![Arc::from("t")],
            Holder::default(),
            4,
            StreamOptions::default(),
        )
    }

    fn ids(members: &Members) -> Vec<ConnectionId> {
        let mut ids: Vec<_> = members.iter().map(|connection| connection.id).collect();
        ids.sort_by_key(ToString::to_string);
        ids
    }

    #[test]
    fn one_member_is_inline_and_more_go_to_a_map_and_back() {
        let (a, b, c) = (connection(), connection(), connection());
        let mut members = Members::new(&a);
        members.insert(&a);
        assert!(matches!(members, Members::One(_)));
        assert_eq!(members.len(), 1);
        members.insert(&b);
        members.insert(&c);
        assert!(matches!(members, Members::Many(_)));
        assert_eq!(members.len(), 3);
        let mut expected = vec![a.id, b.id, c.id];
        expected.sort_by_key(ToString::to_string);
        assert_eq!(ids(&members), expected);

        assert_eq!(members.remove(b.id), Left::Some);
        assert_eq!(members.len(), 2);
        assert_eq!(members.remove(a.id), Left::Some);
        assert!(matches!(members, Members::One(_)));
        assert_eq!(ids(&members), vec![c.id]);
        // Removing one that is not there leaves the member in place.
        assert_eq!(members.remove(a.id), Left::Some);
        assert_eq!(members.remove(c.id), Left::None);
    }
}
