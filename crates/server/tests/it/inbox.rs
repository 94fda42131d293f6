//! The notification inbox: stored, pushed to every connection of the user, paged, marked read,
//! and private to its user — on every storage backend.

use herald_protocol::api::NotificationPage;
use herald_protocol::payloads::{Notification, NotificationRead};
use serde_json::{Value, json};

use crate::support::{Store, TestServer, client_with_token, token};

async fn server(store: Store) -> TestServer {
    TestServer::start_in(store, |_| {}).await
}

/// A user's own client: may read their inbox, may not write anyone's.
fn user(name: &str) -> reqwest::Client {
    client_with_token(&token(name, &[], &[], false))
}

async fn notify(server: &TestServer, user: &str, title: &str) -> Notification {
    let response = server
        .post_json(
            &format!("/api/users/{user}/notifications"),
            &json!({"title": title, "body": "details", "url": "/orders/1", "kind": "order"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn inbox(http: &reqwest::Client, server: &TestServer, query: &str) -> NotificationPage {
    let response = http
        .get(server.url(&format!("/api/notifications?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /api/notifications?{query}");
    response.json().await.unwrap()
}

async fn mark(http: &reqwest::Client, server: &TestServer, what: &str) -> (u16, Value) {
    let response = http
        .post(server.url(&format!("/api/notifications/{what}")))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_stored_and_pushed_to_every_tab_of_its_user() {
    for store in Store::ALL {
        let server = server(store).await;
        let alice = user("alice");
        let mut tab_one = server.connected_as(&alice, "").await;
        let mut tab_two = server.connected_as(&alice, "").await;
        let mut bobs_tab = server.connected_as(&user("bob"), "").await;
        let stored = notify(&server, "alice", "Your order shipped").await;
        assert!(!stored.read);
        assert_eq!(stored.url.as_deref(), Some("/orders/1"));
        for tab in [&mut tab_one, &mut tab_two] {
            let event = tab.next_event().await;
            assert_eq!(event.event, "notification");
            let envelope: Value = serde_json::from_str(&event.data).unwrap();
            let pushed: Notification = serde_json::from_value(envelope["data"].clone()).unwrap();
            assert_eq!(pushed, stored, "{store:?}");
        }
        notify(&server, "bob", "For bob").await;
        assert_eq!(
            bobs_tab.next_event().await.event,
            "notification",
            "bob's first event is his own"
        );
        let page = inbox(&alice, &server, "").await;
        assert_eq!(page.items, vec![stored]);
        assert_eq!(page.unread_count, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_pages_newest_first_and_counts_unread() {
    for store in Store::ALL {
        let server = server(store).await;
        let alice = user("alice");
        let mut created = Vec::new();
        for n in 0..25 {
            created.push(notify(&server, "alice", &format!("n{n}")).await.id);
        }
        let mut seen = Vec::new();
        let mut query = "limit=10".to_owned();
        loop {
            let page = inbox(&alice, &server, &query).await;
            assert_eq!(page.unread_count, 25);
            assert!(page.items.len() <= 10);
            seen.extend(page.items.iter().map(|item| item.id.clone()));
            match page.next_before {
                Some(before) => query = format!("limit=10&before={before}"),
                None => break,
            }
        }
        created.reverse();
        assert_eq!(seen, created, "{store:?}: every item once, newest first");

        let (status, _) = mark(&alice, &server, &format!("{}/read", created[0])).await;
        assert_eq!(status, 200);
        let unread = inbox(&alice, &server, "unread_only=true&limit=100").await;
        assert_eq!(unread.unread_count, 24);
        assert_eq!(unread.items.len(), 24);
        assert!(unread.items.iter().all(|item| !item.read));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_read_is_idempotent_and_every_tab_hears_of_it() {
    for store in Store::ALL {
        let server = server(store).await;
        let alice = user("alice");
        let first = notify(&server, "alice", "one").await;
        notify(&server, "alice", "two").await;
        let mut tab = server.connected_as(&alice, "").await;

        let (status, body) = mark(&alice, &server, &format!("{}/read", first.id)).await;
        assert_eq!(status, 200);
        let read: NotificationRead = serde_json::from_value(body).unwrap();
        assert_eq!(read.ids, vec![first.id.clone()]);
        assert_eq!(read.unread_count, 1);
        let pushed = tab.next_event().await;
        assert_eq!(pushed.event, "notification.read");
        let envelope: Value = serde_json::from_str(&pushed.data).unwrap();
        assert_eq!(
            envelope["data"],
            json!({"ids": [first.id], "unread_count": 1})
        );

        let (status, again) = mark(&alice, &server, &format!("{}/read", first.id)).await;
        assert_eq!(
            (status, again),
            (200, json!({"ids": [], "unread_count": 1}))
        );

        let (status, all) = mark(&alice, &server, "read-all").await;
        assert_eq!(status, 200);
        assert_eq!(all["unread_count"], 0);
        assert_eq!(all["ids"].as_array().unwrap().len(), 1);
        let pushed = tab.next_event().await;
        assert_eq!(pushed.event, "notification.read", "{store:?}");
        let (_, none_left) = mark(&alice, &server, "read-all").await;
        assert_eq!(none_left, json!({"ids": [], "unread_count": 0}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_sees_or_changes_another_users_notifications() {
    let server = server(Store::Sqlite).await;
    let alices = notify(&server, "alice", "private to alice").await;
    let bob = user("bob");
    assert!(inbox(&bob, &server, "").await.items.is_empty());
    let (status, body) = mark(&bob, &server, &format!("{}/read", alices.id)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "notification_not_found");
    mark(&bob, &server, "read-all").await;
    let page = inbox(&user("alice"), &server, "").await;
    assert_eq!(
        page.unread_count, 1,
        "bob's read-all left alice's inbox alone"
    );
    // Writing to an inbox needs a publish selector for users/<id>.
    let response = bob
        .post(server.url("/api/users/alice/notifications"))
        .json(&json!({"title": "spoofed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inbox_requests_are_refused_with_clear_errors() {
    let server = server(Store::Sqlite).await;
    for (body, what) in [
        (json!({"title": ""}), "empty title"),
        (json!({"title": "x".repeat(201)}), "long title"),
        (
            json!({"title": "t", "url": "javascript:alert(1)"}),
            "script url",
        ),
        (
            json!({"title": "t", "url": "//evil.example"}),
            "protocol-relative url",
        ),
        (json!({"title": "t", "kind": "has space"}), "bad kind"),
        (json!({"title": "t", "extra": 1}), "unknown field"),
    ] {
        let response = server
            .post_json("/api/users/alice/notifications", &body)
            .await;
        assert_eq!(response.status(), 400, "{what}");
    }
    let alice = user("alice");
    for query in ["limit=0", "limit=101", "before=abc", "unread_only=maybe"] {
        let response = alice
            .get(server.url(&format!("/api/notifications?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
    }
    let anonymous = reqwest::Client::new()
        .get(server.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _) = mark(&alice, &server, "not-a-number/read").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_a_demo_order_notifies_every_connected_administrator() {
    let server = TestServer::start_with(|config| config.demos = true).await;
    let admin = client_with_token(&token("ada", &[], &["*"], true));
    let mut admin_tab = server.connected_as(&admin, "topic=admin/orders").await;
    let customer = client_with_token(&token("alice", &[], &["rooms/*"], false));
    let mut customer_tab = server.connected_as(&customer, "topic=admin/orders").await;
    let refused = customer
        .post(server.url("/demo/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        403,
        "only an administrator places demo orders"
    );
    let receipt: Value = admin
        .post(server.url("/demo/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["notified_admins"], json!(["ada"]));
    let mut kinds = vec![
        admin_tab.next_event().await.event,
        admin_tab.next_event().await.event,
    ];
    kinds.sort();
    assert_eq!(kinds, vec!["notification", "order.placed"]);
    assert_eq!(inbox(&admin, &server, "").await.unread_count, 1);
    // The customer's tab on the same topic does not see the private order event.
    server.publish("admin/orders", "marker", json!(null)).await;
    assert_eq!(customer_tab.envelope().await.kind, "marker");
}
