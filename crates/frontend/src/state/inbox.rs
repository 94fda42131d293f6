//! [`Inbox`]: the signed-in user's notifications as the console shows them, kept in step with
//! the server by the inbox's pages and the `notification` and `notification.read` events.

use herald_protocol::api::NotificationPage;
use herald_protocol::payloads::{Notification, NotificationRead};

/// The newest notifications first, and the unread count of the whole inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbox {
    pub items: Vec<Notification>,
    pub unread: u64,
}

/// Ids are decimal and increase with creation; order by their value.
fn order(id: &str) -> (usize, &str) {
    (id.len(), id)
}

impl Inbox {
    /// Starts over from a page read from the server.
    pub fn load(&mut self, page: NotificationPage) {
        self.items = page.items;
        self.unread = page.unread_count;
    }

    /// Adds a pushed notification; one already held (a replay after reconnecting) is ignored.
    /// Returns whether it was new.
    pub fn add(&mut self, notification: Notification) -> bool {
        if self.items.iter().any(|item| item.id == notification.id) {
            return false;
        }
        if !notification.read {
            self.unread += 1;
        }
        let at = self
            .items
            .iter()
            .position(|item| order(&item.id) < order(&notification.id))
            .unwrap_or(self.items.len());
        self.items.insert(at, notification);
        true
    }

    /// Applies a read change pushed by the server: its count is the truth.
    pub fn apply_read(&mut self, read: &NotificationRead) {
        for item in &mut self.items {
            if read.ids.contains(&item.id) {
                item.read = true;
            }
        }
        self.unread = read.unread_count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(id: &str) -> Notification {
        Notification {
            id: id.into(),
            title: format!("n{id}"),
            body: String::new(),
            url: None,
            kind: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            read: false,
        }
    }

    #[test]
    fn pushed_notifications_go_first_once_and_count_as_unread() {
        let mut inbox = Inbox::default();
        inbox.load(NotificationPage {
            items: vec![notification("9"), notification("8")],
            unread_count: 2,
            next_before: None,
        });
        assert!(inbox.add(notification("10")));
        assert!(!inbox.add(notification("10")), "a replayed push is not new");
        let ids: Vec<&str> = inbox.items.iter().map(|item| item.id.as_str()).collect();
        assert_eq!(ids, ["10", "9", "8"]);
        assert_eq!(inbox.unread, 3);
    }

    #[test]
    fn read_changes_mark_items_and_take_the_servers_count() {
        let mut inbox = Inbox::default();
        inbox.add(notification("1"));
        inbox.add(notification("2"));
        inbox.apply_read(&NotificationRead {
            ids: vec!["1".into()],
            unread_count: 1,
        });
        assert!(inbox.items.iter().any(|item| item.id == "1" && item.read));
        assert_eq!(inbox.unread, 1);
    }
}
