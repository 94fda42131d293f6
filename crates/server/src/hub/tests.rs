//! The hub without a transport: subscriptions read as a writer would, on memory storage (with
//! reads that can be held back), and heartbeats and lifetimes on paused time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald_protocol::sse::{Decoder, Item, SseEvent};
use herald_protocol::system::{self, CloseReason, Closing, Reset, ResetReason};
use serde_json::value::to_raw_value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::storage::testing::Instrumented;
use crate::storage::{MemoryStorage, StreamKey};

const HEARTBEAT: Duration = Duration::from_secs(15);

fn settings() -> HubSettings {
    HubSettings {
        heartbeat: HEARTBEAT,
        retry: Duration::from_secs(3),
        queue_capacity: 1024,
        max_connection_lifetime: None,
        limits: Limits {
            per_client: 32,
            per_user: 100,
            per_address: None,
        },
        client_ttl: Duration::from_secs(3600),
        history_max_age: Duration::from_secs(3600),
        retention_interval: Duration::from_secs(10),
        max_client_ids: 1000,
        max_concurrent_replays: 8,
        max_replays_per_address: None,
        mercure_subscriptions: false,
        presence_grace: Duration::from_millis(100),
        presence_rate: 20,
        log_file: None,
    }
}

/// A hub on memory storage that can hold a read back; shut down when dropped.
struct Fixture {
    hub: Hub,
    storage: Arc<Instrumented>,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(settings: HubSettings) -> Fixture {
    let storage = Arc::new(Instrumented::new(MemoryStorage::new(10_000)));
    let shutdown = CancellationToken::new();
    let hub = Hub::start(
        Arc::clone(&storage) as Arc<dyn Storage>,
        None,
        Arc::new(Metrics::new()),
        settings,
        shutdown.clone(),
    );
    Fixture {
        hub,
        storage,
        shutdown,
    }
}

impl Fixture {
    async fn publish(&self, topic: &str, n: u64) -> Arc<StoredEvent> {
        let event = NewEvent {
            mercure: None,
            streams: vec![StreamKey::Topic(Arc::from(topic))],
            kind: "message".into(),
            data: to_raw_value(&n).unwrap(),
            time: SystemTime::now(),
        };
        self.hub.publish(event).await.unwrap()
    }

    async fn subscribe(&self, topic: &str, last_event_id: Option<&str>, holder: Holder) -> Reader {
        let request = SubscribeRequest {
            topics: vec![Arc::from(topic)],
            client_id: None,
            last_event_id: last_event_id.map(str::to_owned),
            holder,
            options: StreamOptions::default(),
        };
        Reader::new(self.hub.subscribe(request).await.unwrap())
    }
}

/// A subscription read as its writer reads it, decoded into SSE items.
struct Reader {
    subscription: Subscription,
    decoder: Decoder,
    items: VecDeque<Item>,
}

impl Reader {
    fn new(subscription: Subscription) -> Self {
        Self {
            subscription,
            decoder: Decoder::new(),
            items: VecDeque::new(),
        }
    }

    /// The next item, or `None` once the stream ended.
    async fn item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(item);
            }
            let chunk = self.subscription.next().await?;
            self.items.extend(self.decoder.feed(&chunk));
        }
    }

    /// The next event, skipping comments and `retry`.
    async fn event(&mut self) -> SseEvent {
        loop {
            match self.item().await.expect("the stream goes on") {
                Item::Event(event) => return event,
                Item::Comment(_) | Item::Retry(_) => {}
            }
        }
    }

    /// The next event, which must be of type `kind`.
    async fn expect(&mut self, kind: &str) -> SseEvent {
        let event = self.event().await;
        assert_eq!(event.event, kind, "{event:?}");
        event
    }

    /// Reads events in a task of their own, handing each over as it arrives.
    fn spawn(mut self) -> mpsc::UnboundedReceiver<SseEvent> {
        let (events, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(item) = self.item().await {
                if let Item::Event(event) = item
                    && events.send(event).is_err()
                {
                    return;
                }
            }
        });
        received
    }
}

/// `future`'s answer, failing the test if it takes more than ten seconds (on real time: only
/// for tests whose time is not paused).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("an answer within ten seconds")
}

fn data(event: &SseEvent) -> u64 {
    let envelope: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    envelope["data"].as_u64().unwrap()
}

#[tokio::test]
async fn a_replay_of_many_pages_hands_over_to_live_without_gap_or_duplicate() {
    let fixture = start(settings());
    let mut ids = Vec::new();
    for n in 1..=600 {
        ids.push(fixture.publish("a", n).await.id.clone());
    }
    let mut reader = fixture
        .subscribe("a", Some(&ids[9]), Holder::default())
        .await;
    reader.expect(system::CONNECTED).await;
    let mut received = Vec::new();
    let mut published = 600;
    while received.last() != Some(&700) {
        received.push(data(&within(reader.event()).await));
        // Publishing during the replay: fanned out to the stream while it pages through history.
        if published < 700 && received.len() % 50 == 0 {
            for _ in 0..25 {
                published += 1;
                fixture.publish("a", published).await;
            }
        }
    }
    assert_eq!(
        received,
        (11..=700).collect::<Vec<u64>>(),
        "every event once, in order"
    );
}

#[tokio::test]
async fn an_event_published_after_the_last_replay_read_is_delivered_live() {
    let fixture = start(settings());
    let seen = fixture.publish("a", 1).await;
    fixture.publish("a", 2).await;
    let (has_read, let_answer) = fixture.storage.hold_next_read();
    let mut reader = fixture
        .subscribe("a", Some(&seen.id), Holder::default())
        .await;
    reader.expect(system::CONNECTED).await;
    let mut events = reader.spawn();
    within(has_read).await.unwrap();
    // Queued for the stream (registered before it read), but not in what the read found.
    fixture.publish("a", 3).await;
    let_answer.send(()).unwrap();
    assert_eq!(data(&within(events.recv()).await.unwrap()), 2, "replayed");
    assert_eq!(data(&within(events.recv()).await.unwrap()), 3, "live");
}

#[tokio::test]
async fn ids_the_log_cannot_place_are_announced_with_a_reset() {
    let fixture = start(settings());
    let latest = fixture.publish("a", 1).await;
    for (id, reason) in [
        ("not-an-id", ResetReason::UnknownId),
        ("99999999999999999", ResetReason::UnknownId),
        ("1", ResetReason::HistoryExpired),
    ] {
        let mut reader = fixture.subscribe("a", Some(id), Holder::default()).await;
        reader.expect(system::CONNECTED).await;
        let event = reader.expect(system::RESET).await;
        let reset: Reset = serde_json::from_str(&event.data).unwrap();
        assert_eq!(reset.reason, reason, "{id}");
        assert_eq!(reset.latest_id, latest.id, "{id}");
        assert_eq!(
            event.id, latest.id,
            "the client's position moves past the gap"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_heartbeat_every_interval() {
    let fixture = start(settings());
    let mut reader = fixture.subscribe("a", None, Holder::default()).await;
    reader.expect(system::CONNECTED).await;
    let started = Instant::now();
    for beat in 1..=3 {
        assert_eq!(
            reader.item().await,
            Some(Item::Comment("heartbeat".into())),
            "beat {beat}"
        );
        assert_eq!(started.elapsed(), HEARTBEAT * beat);
    }
    // A write resets the wait: the next heartbeat comes an interval after the event.
    tokio::time::advance(HEARTBEAT / 3).await;
    fixture.publish("a", 1).await;
    let published = Instant::now();
    assert_eq!(data(&reader.event().await), 1);
    assert_eq!(reader.item().await, Some(Item::Comment("heartbeat".into())));
    assert_eq!(published.elapsed(), HEARTBEAT);
}

/// Reads a stream until its closing frame, which must come at `after` from now with `reason`;
/// the stream then ends.
async fn assert_closes(mut reader: Reader, after: Duration, reason: CloseReason) {
    let started = Instant::now();
    let closing = reader.expect(system::CLOSING).await;
    assert_eq!(started.elapsed(), after);
    let closing: Closing = serde_json::from_str(&closing.data).unwrap();
    assert_eq!(closing.reason, reason);
    assert_eq!(reader.item().await, None, "the stream ends after closing");
}

#[tokio::test(start_paused = true)]
async fn a_stream_ends_at_its_maximum_lifetime() {
    let lifetime = Duration::from_secs(3600);
    let fixture = start(HubSettings {
        max_connection_lifetime: Some(lifetime),
        ..settings()
    });
    let mut reader = fixture.subscribe("a", None, Holder::default()).await;
    reader.expect(system::CONNECTED).await;
    assert_closes(reader, lifetime, CloseReason::MaxLifetime).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_ends_when_its_credential_expires_before_its_lifetime() {
    let fixture = start(HubSettings {
        max_connection_lifetime: Some(Duration::from_secs(3600)),
        ..settings()
    });
    let holder = Holder {
        user: Some(Arc::from("ada")),
        expires_at: Some(SystemTime::now() + Duration::from_secs(90)),
        ..Holder::default()
    };
    let mut reader = fixture.subscribe("a", None, holder).await;
    reader.expect(system::CONNECTED).await;
    // The credential's expiry is read from the wall clock, to the millisecond.
    let started = Instant::now();
    let closing = reader.expect(system::CLOSING).await;
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(89) && waited <= Duration::from_secs(90),
        "{waited:?}"
    );
    let closing: Closing = serde_json::from_str(&closing.data).unwrap();
    assert_eq!(closing.reason, CloseReason::CredentialExpired);
}

#[tokio::test(start_paused = true)]
async fn shutting_down_closes_every_stream_at_once() {
    let fixture = start(settings());
    let mut reader = fixture.subscribe("a", None, Holder::default()).await;
    reader.expect(system::CONNECTED).await;
    fixture.shutdown.cancel();
    assert_closes(reader, Duration::ZERO, CloseReason::Shutdown).await;
}
