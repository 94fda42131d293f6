//! The machines, natively: a stream's rules, and tabs sharing one stream.

use std::collections::VecDeque;
use std::time::Duration;

use crate::delivery::Delivery;
use crate::group::{GroupMessage, Member, MemberInput, MemberOutput};
use crate::stream::{
    self, Input, Output, Report, State, StreamConfig, StreamMachine, Timer, Wants, backoff,
    events_url, expiry_ms,
};

const NOW: u64 = 1_800_000_000_000;

fn config(topics: &[&str]) -> StreamConfig {
    StreamConfig {
        url: String::new(),
        wants: Wants {
            topics: topics.iter().map(ToString::to_string).collect(),
            presence: false,
        },
        client_id: None,
        last_event_id: None,
        credential: false,
        max_delay: Duration::from_secs(30),
    }
}

fn frame(event: &str, data: serde_json::Value, last_event_id: &str) -> Input {
    Input::Frame {
        event: event.into(),
        data: data.to_string(),
        last_event_id: last_event_id.into(),
    }
}

fn connected(client: &str, retry_ms: u64, position: &str) -> Input {
    frame(
        "herald.connected",
        serde_json::json!({"client_id": client, "connection_id": "c", "topics": [], "retry_ms": retry_ms}),
        position,
    )
}

fn event(id: &str, topic: Option<&str>) -> Input {
    frame(
        "message",
        serde_json::json!({"id": id, "topic": topic, "type": "n", "data": 1, "time": "t"}),
        id,
    )
}

fn opened(outputs: &[Output]) -> Option<String> {
    outputs.iter().rev().find_map(|output| match output {
        Output::Open(url) => Some(url.clone()),
        _ => None,
    })
}

fn events(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Report(Report::Event(envelope)) => Some(envelope.id.clone()),
            _ => None,
        })
        .collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn jwt(exp: u64) -> String {
    use base64::Engine as _;
    let part = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    format!(
        "{}.{}.signature",
        part(serde_json::json!({"alg": "HS256"})),
        part(serde_json::json!({"sub": "ada", "exp": exp}))
    )
}

#[test]
fn the_url_names_topics_identity_position_credential_presence_and_every_type() {
    let wants = Wants {
        topics: vec!["rooms/1".into(), "b".into()],
        presence: true,
    };
    assert_eq!(
        events_url(
            "https://h.example/",
            &wants,
            Some("abc"),
            Some("42"),
            Some("t.k")
        ),
        "https://h.example/events?topic=rooms%2F1&topic=b&client_id=abc&last_event_id=42&access_token=t.k&presence=true&all_types=true"
    );
    assert_eq!(
        events_url("", &Wants::default(), None, Some(""), None),
        "/events?all_types=true"
    );
}

#[test]
fn the_back_off_starts_at_the_servers_delay_doubles_with_jitter_and_is_capped() {
    let (second, max) = (Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(backoff(1, second, max, 0.9), second);
    assert_eq!(
        backoff(2, second, max, 0.0),
        second,
        "half of 2 s at the least"
    );
    assert_eq!(backoff(3, second, max, 1.0), Duration::from_secs(4));
    assert_eq!(backoff(40, second, max, 1.0), max);
    assert_eq!(backoff(1, Duration::from_secs(60), max, 0.5), max);
}

#[test]
fn a_credentials_expiry_is_read_from_its_exp_claim() {
    assert_eq!(expiry_ms(&jwt(1_800_000_600)), Some(1_800_000_600_000));
    assert_eq!(expiry_ms("not-a-jwt"), None);
}

#[test]
fn events_arrive_once_and_the_stream_resumes_after_the_last_with_the_same_client() {
    let mut stream = StreamMachine::new(config(&["a"]));
    let first = opened(&stream.handle(Input::Start, NOW, 0.5)).expect("opened");
    assert_eq!(param(&first, "topic").as_deref(), Some("a"));
    assert_eq!(param(&first, "client_id"), None);
    let out = stream.handle(connected("client-1", 500, ""), NOW, 0.5);
    assert!(out.contains(&Output::Report(Report::State(State::Open, None))));
    let mut got = Vec::new();
    for input in [
        event("1", Some("a")),
        event("2", Some("a")),
        event("2", Some("a")),
    ] {
        got.extend(events(&stream.handle(input, NOW, 0.5)));
    }
    assert_eq!(got, ["1", "2"], "the repeated id is dropped");

    let out = stream.handle(Input::Error { refused: false }, NOW, 0.5);
    assert!(
        out.contains(&Output::CloseSource),
        "the browser's own retry is stopped"
    );
    assert!(out.contains(&Output::SetTimer(
        Timer::Reconnect,
        Duration::from_millis(500)
    )));
    assert_eq!(stream.state(), State::Reconnecting);
    let again = opened(&stream.handle(Input::Timer(Timer::Reconnect), NOW, 0.5)).expect("opened");
    assert_eq!(param(&again, "client_id").as_deref(), Some("client-1"));
    assert_eq!(param(&again, "last_event_id").as_deref(), Some("2"));
}

#[test]
fn the_greetings_position_counts_and_a_reset_moves_past_the_gap() {
    let mut stream = StreamMachine::new(config(&["a"]));
    stream.handle(Input::Start, NOW, 0.5);
    stream.handle(connected("c", 1000, "17"), NOW, 0.5);
    assert_eq!(stream.last_event_id(), Some("17"));
    let out = stream.handle(
        frame(
            "herald.reset",
            serde_json::json!({"reason": "history_expired", "latest_id": "90"}),
            "",
        ),
        NOW,
        0.5,
    );
    assert!(matches!(&out[..], [Output::Report(Report::Reset(_))]));
    assert_eq!(stream.last_event_id(), Some("90"));
}

fn closing(reason: &str, reconnect: bool) -> Input {
    frame(
        "herald.closing",
        serde_json::json!({"reason": reason, "reconnect": reconnect}),
        "",
    )
}

#[test]
fn told_not_to_come_back_it_stays_closed_and_told_to_it_does() {
    let mut stream = StreamMachine::new(config(&["a"]));
    stream.handle(Input::Start, NOW, 0.5);
    stream.handle(connected("c", 2000, ""), NOW, 0.5);
    let out = stream.handle(closing("admin_close", false), NOW, 0.5);
    assert!(out.contains(&Output::CloseSource));
    assert_eq!(stream.state(), State::Closed);
    assert_eq!(
        opened(&stream.handle(Input::Timer(Timer::Reconnect), NOW, 0.5)),
        None
    );
    assert!(
        stream
            .handle(Input::Error { refused: false }, NOW, 0.5)
            .is_empty()
    );

    let mut stream = StreamMachine::new(config(&["a"]));
    stream.handle(Input::Start, NOW, 0.5);
    stream.handle(connected("c", 2000, ""), NOW, 0.5);
    stream.handle(event("5", Some("a")), NOW, 0.5);
    let out = stream.handle(closing("shutdown", true), NOW, 0.5);
    assert!(out.contains(&Output::SetTimer(Timer::Reconnect, Duration::from_secs(2))));
    let url = opened(&stream.handle(Input::Timer(Timer::Reconnect), NOW, 0.5)).unwrap();
    assert_eq!(param(&url, "last_event_id").as_deref(), Some("5"));
}

#[test]
fn an_expired_credential_is_renewed_and_one_about_to_expire_before_it_does() {
    let mut stream = StreamMachine::new(StreamConfig {
        credential: true,
        ..config(&["a"])
    });
    let now_s = NOW / 1000;
    let out = stream.handle(Input::Start, NOW, 0.5);
    assert_eq!(opened(&out), None);
    assert!(out.contains(&Output::AskCredential { renew: false }));
    let url = opened(&stream.handle(Input::Credential(Some(jwt(now_s + 600))), NOW, 0.5)).unwrap();
    assert_eq!(param(&url, "access_token"), Some(jwt(now_s + 600)));
    stream.handle(connected("c", 1000, ""), NOW, 0.5);
    stream.handle(event("1", Some("a")), NOW, 0.5);
    let out = stream.handle(closing("credential_expired", false), NOW, 0.5);
    assert!(out.contains(&Output::AskCredential { renew: true }));
    assert_eq!(stream.state(), State::Reconnecting);
    let url = opened(&stream.handle(Input::Credential(Some(jwt(now_s + 1200))), NOW, 0.5)).unwrap();
    assert_eq!(param(&url, "last_event_id").as_deref(), Some("1"));
    // 1200 s of validity: renewed 60 s before the end, the stream staying open meanwhile.
    let out = stream.handle(connected("c", 1000, ""), NOW, 0.5);
    assert!(out.contains(&Output::SetTimer(Timer::Renew, Duration::from_secs(1140))));
    let out = stream.handle(Input::Timer(Timer::Renew), NOW, 0.5);
    assert_eq!(out, [Output::AskCredential { renew: true }]);
    assert_eq!(stream.state(), State::Open);
    let url = opened(&stream.handle(Input::Credential(Some(jwt(now_s + 1800))), NOW, 0.5)).unwrap();
    assert_eq!(param(&url, "access_token"), Some(jwt(now_s + 1800)));
    assert_eq!(param(&url, "last_event_id").as_deref(), Some("1"));
}

#[test]
fn a_refused_stream_comes_back_as_a_new_client_first_then_with_a_new_credential() {
    let mut stream = StreamMachine::new(StreamConfig {
        credential: true,
        client_id: Some("forgotten".into()),
        ..config(&["a"])
    });
    stream.handle(Input::Start, NOW, 0.5);
    stream.handle(Input::Credential(Some("one".into())), NOW, 0.5);
    stream.handle(Input::Error { refused: true }, NOW, 0.5);
    let url = opened(&stream.handle(Input::Timer(Timer::Reconnect), NOW, 0.5)).unwrap();
    assert_eq!(
        param(&url, "client_id"),
        None,
        "the server forgot the client id"
    );
    assert_eq!(param(&url, "access_token").as_deref(), Some("one"));
    stream.handle(Input::Error { refused: true }, NOW, 0.5);
    let out = stream.handle(Input::Timer(Timer::Reconnect), NOW, 0.5);
    assert_eq!(out, [Output::AskCredential { renew: true }]);
    // Nothing to renew it with: the stream ends instead of going on anonymously.
    stream.handle(Input::Credential(None), NOW, 0.5);
    assert_eq!(stream.state(), State::Closed);
}

#[test]
fn a_paused_stream_closes_and_resumes_where_it_stopped() {
    let mut stream = StreamMachine::new(config(&["a"]));
    stream.handle(Input::Start, NOW, 0.5);
    stream.handle(connected("c", 1000, ""), NOW, 0.5);
    stream.handle(event("8", Some("a")), NOW, 0.5);
    assert!(
        stream
            .handle(Input::Pause, NOW, 0.5)
            .contains(&Output::CloseSource)
    );
    assert_eq!(stream.state(), State::Paused);
    assert!(
        stream.handle(event("9", Some("a")), NOW, 0.5).is_empty(),
        "a late frame"
    );
    let url = opened(&stream.handle(Input::Start, NOW, 0.5)).unwrap();
    assert_eq!(param(&url, "last_event_id").as_deref(), Some("8"));
    assert_eq!(param(&url, "client_id").as_deref(), Some("c"));
}

/// Tabs of one browser: their members, a lock and a channel that delivers in order.
struct Tabs {
    members: Vec<Member>,
    deliveries: Vec<Delivery>,
    got: Vec<Vec<String>>,
    states: Vec<Vec<State>>,
    /// The URL each tab's stream last opened, if it opened one.
    opened: Vec<Option<String>>,
    holder: Option<usize>,
    waiting: VecDeque<usize>,
    pending: VecDeque<(usize, MemberInput)>,
}

impl Tabs {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            deliveries: Vec::new(),
            got: Vec::new(),
            states: Vec::new(),
            opened: Vec::new(),
            holder: None,
            waiting: VecDeque::new(),
            pending: VecDeque::new(),
        }
    }

    fn open(&mut self, topics: &[&str]) -> usize {
        let n = self.members.len();
        self.members
            .push(Member::new(format!("tab-{n}"), config(topics)));
        self.deliveries.push(Delivery::new(
            topics.iter().map(ToString::to_string).collect(),
            false,
            100,
        ));
        self.got.push(Vec::new());
        self.states.push(Vec::new());
        self.opened.push(None);
        self.feed(n, MemberInput::Start);
        n
    }

    fn feed(&mut self, tab: usize, input: MemberInput) {
        self.pending.push_back((tab, input));
        while let Some((tab, input)) = self.pending.pop_front() {
            for output in self.members[tab].handle(input, NOW, 0.5) {
                self.apply(tab, output);
            }
        }
    }

    fn apply(&mut self, tab: usize, output: MemberOutput) {
        match output {
            MemberOutput::Post(message) => {
                for other in 0..self.members.len() {
                    if other != tab {
                        self.pending
                            .push_back((other, MemberInput::Message(message.clone())));
                    }
                }
            }
            MemberOutput::RequestLeadership => {
                if self.holder.is_none() {
                    self.holder = Some(tab);
                    self.pending.push_back((tab, MemberInput::Granted));
                } else {
                    self.waiting.push_back(tab);
                }
            }
            MemberOutput::ReleaseLeadership => {
                if self.holder == Some(tab) {
                    self.holder = self.waiting.pop_front();
                    if let Some(next) = self.holder {
                        self.pending.push_back((next, MemberInput::Granted));
                    }
                } else {
                    self.waiting.retain(|waiting| *waiting != tab);
                }
            }
            MemberOutput::Report(report) => match self.deliveries[tab].take(report) {
                Some(Report::Event(envelope)) => {
                    self.got[tab].push(format!("{:?}:{}", envelope.topic, envelope.id));
                }
                Some(Report::State(state, _)) => self.states[tab].push(state),
                _ => {}
            },
            MemberOutput::Stream(stream::Output::Open(url)) => self.opened[tab] = Some(url),
            MemberOutput::Stream(stream::Output::CloseSource) => self.opened[tab] = None,
            MemberOutput::Stream(_) | MemberOutput::SetRefresh(_) => {}
        }
    }

    /// The streams open, by tab.
    fn live(&self) -> Vec<(usize, String)> {
        self.opened
            .iter()
            .enumerate()
            .filter_map(|(tab, url)| url.clone().map(|url| (tab, url)))
            .collect()
    }

    /// The server sends `input` on the one open stream.
    fn server(&mut self, input: Input) {
        let live = self.live();
        assert_eq!(live.len(), 1, "one stream: {live:?}");
        self.feed(live[0].0, MemberInput::Stream(input));
    }
}

fn topics_of(url: &str) -> Vec<String> {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "topic")
        .map(|(_, value)| value.into_owned())
        .collect()
}

#[test]
fn tabs_share_one_stream_for_the_union_of_their_topics_and_each_gets_its_own() {
    let mut tabs = Tabs::new();
    let a = tabs.open(&["a"]);
    let b = tabs.open(&["b"]);
    let c = tabs.open(&["a", "c"]);
    assert!(tabs.members[a].is_leader() && !tabs.members[b].is_leader());
    let live = tabs.live();
    assert_eq!(live.len(), 1);
    assert_eq!(topics_of(&live[0].1), ["a", "b", "c"]);
    tabs.server(connected("shared", 1000, ""));
    assert_eq!(tabs.members[b].client_id(), Some("shared"));
    for input in [
        event("1", Some("a")),
        event("2", Some("b")),
        event("3", Some("c")),
        event("4", None),
    ] {
        tabs.server(input);
    }
    assert_eq!(tabs.got[a], ["Some(\"a\"):1", "None:4"]);
    assert_eq!(tabs.got[b], ["Some(\"b\"):2", "None:4"]);
    assert_eq!(tabs.got[c], ["Some(\"a\"):1", "Some(\"c\"):3", "None:4"]);

    // A tab leaves: the stream narrows, resuming where it was.
    tabs.feed(c, MemberInput::Close);
    let live = tabs.live();
    assert_eq!(topics_of(&live[0].1), ["a", "b"]);
    assert_eq!(param(&live[0].1, "last_event_id").as_deref(), Some("4"));
    assert_eq!(param(&live[0].1, "client_id").as_deref(), Some("shared"));
}

#[test]
fn when_the_leading_tab_closes_another_resumes_with_no_gap_and_no_repeat() {
    let mut tabs = Tabs::new();
    let first = tabs.open(&["a", "b"]);
    let second = tabs.open(&["a"]);
    let third = tabs.open(&["b"]);
    tabs.server(connected("shared", 1000, "10"));
    tabs.server(event("11", Some("a")));
    tabs.server(event("12", Some("b")));
    let states_before: Vec<usize> = tabs.got.iter().map(Vec::len).collect();
    tabs.feed(first, MemberInput::Close);
    assert!(tabs.members[second].is_leader(), "the next in line leads");
    assert_eq!(tabs.states[third].last(), Some(&State::Connecting));
    assert!(
        !tabs.states[third].contains(&State::Closed),
        "the others never see the stream closed: {:?}",
        tabs.states[third]
    );
    assert_eq!(
        states_before,
        tabs.got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let live = tabs.live();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].0, second);
    assert_eq!(topics_of(&live[0].1), ["a", "b"]);
    assert_eq!(param(&live[0].1, "client_id").as_deref(), Some("shared"));
    assert_eq!(param(&live[0].1, "last_event_id").as_deref(), Some("12"));
    tabs.server(connected("shared", 1000, ""));
    // An event the old leader relayed comes again (it died mid-relay): dropped.
    tabs.server(event("12", Some("b")));
    tabs.server(event("13", Some("a")));
    tabs.server(event("14", Some("b")));
    assert_eq!(tabs.got[second], ["Some(\"a\"):11", "Some(\"a\"):13"]);
    assert_eq!(tabs.got[third], ["Some(\"b\"):12", "Some(\"b\"):14"]);
}

#[test]
fn group_messages_are_the_typescript_librarys() {
    let message = GroupMessage::State {
        state: State::Open,
        detail: None,
        client_id: Some("c".into()),
        last_event_id: Some("7".into()),
    };
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        serde_json::json!({"t": "state", "state": "open", "detail": null, "clientId": "c", "lastEventId": "7"})
    );
    let want: GroupMessage = serde_json::from_value(
        serde_json::json!({"t": "want", "from": "x", "topics": ["a"], "presence": true}),
    )
    .unwrap();
    assert_eq!(
        want,
        GroupMessage::Want {
            from: "x".into(),
            topics: vec!["a".into()],
            presence: true
        }
    );
}

#[test]
fn a_paused_delivery_keeps_events_and_reports_what_it_let_go() {
    let mut delivery = Delivery::new(vec!["a".into()], false, 2);
    let report = |id: &str, topic: Option<&str>| {
        Report::Event(herald_protocol::Envelope {
            id: id.into(),
            topic: topic.map(Into::into),
            kind: "n".into(),
            data: serde_json::Value::Null,
            time: String::new(),
        })
    };
    assert!(
        delivery.take(report("1", Some("other"))).is_none(),
        "not its topic"
    );
    delivery.pause();
    for id in ["2", "3", "4"] {
        assert!(delivery.take(report(id, Some("a"))).is_none());
    }
    let resumed = delivery.resume();
    assert!(
        matches!(&resumed[0], Report::Reset(reset) if reset.latest_id == "2"),
        "{resumed:?}"
    );
    assert_eq!(
        resumed[1..],
        [report("3", Some("a")), report("4", Some("a"))]
    );
    assert!(delivery.take(report("4", None)).is_none(), "not twice");
    assert!(delivery.take(report("5", None)).is_some());
}
