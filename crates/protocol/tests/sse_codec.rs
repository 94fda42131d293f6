//! The decoder against a table of vectors, one per WHATWG parsing rule, and an encoder → decoder
//! round trip.

use herald_protocol::sse::{Decoder, Frame, Item, SseEvent};
use proptest::prelude::*;

fn event(id: &str, kind: &str, data: &str) -> Item {
    Item::Event(SseEvent {
        id: id.into(),
        event: kind.into(),
        data: data.into(),
    })
}

fn comment(text: &str) -> Item {
    Item::Comment(text.into())
}

/// Decodes `input` fed whole, then byte by byte, and checks both give `expected`.
#[track_caller]
fn assert_decodes(rule: &str, input: &[u8], expected: &[Item]) {
    assert_eq!(
        Decoder::new().feed(input),
        expected,
        "rule {rule:?}, fed whole: {:?}",
        String::from_utf8_lossy(input)
    );
    let mut decoder = Decoder::new();
    let piecewise: Vec<Item> = input.iter().flat_map(|b| decoder.feed(&[*b])).collect();
    assert_eq!(
        piecewise,
        expected,
        "rule {rule:?}, fed byte by byte: {:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn decoder_follows_every_parsing_rule() {
    let vectors: &[(&str, &[u8], &[Item])] = &[
        ("LF line ends", b"data: a\n\n", &[event("", "message", "a")]),
        ("CR line ends", b"data: a\r\r", &[event("", "message", "a")]),
        (
            "CRLF line ends",
            b"data: a\r\n\r\n",
            &[event("", "message", "a")],
        ),
        (
            "mixed line ends",
            b"data: a\rdata: b\r\ndata: c\n\n",
            &[event("", "message", "a\nb\nc")],
        ),
        (
            "a leading BOM is skipped",
            b"\xEF\xBB\xBFdata: a\n\n",
            &[event("", "message", "a")],
        ),
        (
            "only the first BOM is skipped",
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n",
            &[],
        ),
        ("a comment", b": keep-alive\n\n", &[comment("keep-alive")]),
        ("an empty comment", b":\n", &[comment("")]),
        (
            "a field without a colon is a field with an empty value",
            b"data\n\n",
            &[event("", "message", "")],
        ),
        (
            "two data fields without colon",
            b"data\ndata\n\n",
            &[event("", "message", "\n")],
        ),
        (
            "only one leading space is removed",
            b"data:  two\n\n",
            &[event("", "message", " two")],
        ),
        (
            "no space after the colon",
            b"data:x\n\n",
            &[event("", "message", "x")],
        ),
        (
            "multi-line data is joined with LF",
            b"data: a\ndata: b\n\n",
            &[event("", "message", "a\nb")],
        ),
        (
            "event names the type",
            b"event: tick\ndata: 1\n\n",
            &[event("", "tick", "1")],
        ),
        (
            "the type resets after dispatch",
            b"event: tick\ndata: 1\n\ndata: 2\n\n",
            &[event("", "tick", "1"), event("", "message", "2")],
        ),
        ("no data, no event", b"event: tick\n\n", &[]),
        (
            "the type of an undispatched frame is dropped",
            b"event: tick\n\ndata: 2\n\n",
            &[event("", "message", "2")],
        ),
        (
            "an id applies to its event and later ones",
            b"id: 7\ndata: a\n\ndata: b\n\n",
            &[event("7", "message", "a"), event("7", "message", "b")],
        ),
        (
            "an id without data still sets the last id",
            b"id: 9\n\ndata: b\n\n",
            &[event("9", "message", "b")],
        ),
        (
            "an empty id clears the last id",
            b"id: 3\ndata: a\n\nid\ndata: b\n\n",
            &[event("3", "message", "a"), event("", "message", "b")],
        ),
        (
            "an id containing NUL is ignored",
            b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
            &[event("1", "message", "a"), event("1", "message", "b")],
        ),
        ("retry with digits", b"retry: 3000\n", &[Item::Retry(3000)]),
        (
            "retry with other characters is ignored",
            b"retry: 30s\nretry: -1\nretry: 1.5\nretry:\n",
            &[],
        ),
        (
            "retry too large is ignored",
            b"retry: 99999999999999999999999\n",
            &[],
        ),
        (
            "unknown fields are ignored",
            b"foo: bar\ndata: a\n\n",
            &[event("", "message", "a")],
        ),
        (
            "field names are case-sensitive",
            b"Data: a\ndata: b\n\n",
            &[event("", "message", "b")],
        ),
        ("an unterminated event is not dispatched", b"data: a\n", &[]),
        (
            "a colon in the value is kept",
            b"data: a: b\n\n",
            &[event("", "message", "a: b")],
        ),
        (
            "invalid UTF-8 becomes the replacement character",
            b"data: \xFF\n\n",
            &[event("", "message", "\u{FFFD}")],
        ),
        (
            "multi-byte UTF-8",
            "data: h\u{e9}llo \u{1F600}\n\n".as_bytes(),
            &[event("", "message", "h\u{e9}llo \u{1F600}")],
        ),
    ];
    for (rule, input, expected) in vectors {
        assert_decodes(rule, input, expected);
    }
}

#[test]
fn crlf_split_between_reads_is_one_line_end() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.feed(b"data: a\r"), vec![]);
    assert_eq!(decoder.feed(b"\ndata: b\r"), vec![]);
    assert_eq!(decoder.feed(b"\n\r"), vec![event("", "message", "a\nb")]);
    assert_eq!(
        decoder.feed(b"\n"),
        vec![],
        "the LF after a final CR is not a second blank line"
    );
}

#[test]
fn remembers_the_last_event_id_for_reconnecting() {
    let mut decoder = Decoder::new();
    decoder.feed(b"id: 41\ndata: a\n\nid: 42\n\n");
    assert_eq!(
        decoder.last_event_id(),
        "42",
        "a frame with only an id moves the last event id"
    );
    decoder.feed(b"id: 43\ndata: unfinished\n");
    assert_eq!(
        decoder.last_event_id(),
        "42",
        "an id counts only once its frame is complete"
    );
}

#[test]
fn a_bom_split_across_reads_is_skipped() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.feed(b"\xEF"), vec![]);
    assert_eq!(decoder.feed(b"\xBB"), vec![]);
    assert_eq!(
        decoder.feed(b"\xBFdata: a\n\n"),
        vec![event("", "message", "a")]
    );
}

#[test]
fn decodes_what_the_encoder_writes_for_system_frames() {
    let bytes = Frame::new()
        .retry(2000)
        .event("herald.connected")
        .data("{\"a\":1}")
        .encode()
        .unwrap();
    assert_decodes(
        "system frame",
        &bytes,
        &[
            Item::Retry(2000),
            event("", "herald.connected", "{\"a\":1}"),
        ],
    );
    assert_decodes(
        "heartbeat",
        &Frame::new().comment("heartbeat").encode().unwrap(),
        &[comment("heartbeat")],
    );
}

fn normalise_line_ends(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
    #[test]
    fn encoder_output_decodes_to_the_same_event(
        id in "[^\r\n\0]{0,20}",
        kind in "[^\r\n]{1,20}",
        data in any::<String>(),
        comment_text in proptest::option::of("[^\r\n]{0,10}"),
        split in any::<prop::sample::Index>(),
    ) {
        let mut frame = Frame::new().id(&id).event(&kind).data(&data);
        if let Some(text) = &comment_text {
            frame = frame.comment(text);
        }
        let bytes = frame.encode().unwrap();
        // Feed in two pieces cut at an arbitrary byte, as a network read would.
        let cut = split.index(bytes.len() + 1);
        let mut decoder = Decoder::new();
        let mut items = decoder.feed(&bytes[..cut]);
        items.extend(decoder.feed(&bytes[cut..]));
        let events: Vec<_> = items.into_iter().filter(|item| matches!(item, Item::Event(_))).collect();
        let expected = event(&id, &kind, &normalise_line_ends(&data));
        prop_assert_eq!(events, vec![expected]);
        prop_assert_eq!(decoder.last_event_id(), id.as_str());
    }
}

/// Every item of `bytes` decoded in the pieces `cuts` makes.
fn decode_in_pieces(bytes: &[u8], cuts: &[prop::sample::Index]) -> (Vec<Item>, String) {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut decoder = Decoder::new();
    let mut items = Vec::new();
    let mut from = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        items.extend(decoder.feed(&bytes[from..point]));
        from = point;
    }
    (items, decoder.last_event_id().to_owned())
}

/// Stream bytes from a hostile or broken server: any bytes, rich in the ones the format cares
/// about.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"id:".to_vec()),
        Just(b"event:".to_vec()),
        Just(b"retry:".to_vec()),
        Just(b": ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(vec![0xEF, 0xBB, 0xBF]),
        Just(vec![0]),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The decoder takes any bytes without panicking, and what it finds does not depend on how
    /// the network cut them.
    #[test]
    fn any_stream_decodes_the_same_however_it_is_cut(
        bytes in stream_bytes(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = decode_in_pieces(&bytes, &[]);
        let cut = decode_in_pieces(&bytes, &cuts);
        prop_assert_eq!(cut, whole);
    }
}
