//! Decodes every frame recorded from the reference Go agent and checks that
//! it lands in the right variant and re-encodes to an equal JSON value.

use mooring_protocol::lines::{classify, LineDecoder, Progress};
use mooring_protocol::Frame;
use serde_json::Value;
use std::path::PathBuf;

const FILE: &str = "hawser-go-agent-session.jsonl";

/// The shared copy when it is beside the repository, else the one in tree.
fn vector_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("tests/data").join(FILE)];
    let shared = root.join("../../shared/vectors").join(FILE);
    if shared.exists() {
        files.push(shared);
    }
    files
}

/// JSON equality where 0 and 0.0 are the same number, as JSON defines it.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

fn frames() -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for file in vector_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rec: Value = serde_json::from_str(line).unwrap();
            let dir = rec["dir"].as_str().unwrap().to_owned();
            let frame = rec["frame"].clone();
            out.push((dir, frame.to_string(), frame));
        }
    }
    assert!(out.len() >= 43, "expected the whole recorded session");
    out
}

#[test]
fn every_vector_decodes_and_round_trips() {
    for (dir, text, value) in frames() {
        let frame = Frame::decode(&text).unwrap_or_else(|e| panic!("{dir}: {e}: {text}"));
        assert_eq!(frame.kind(), value["type"].as_str().unwrap());
        assert!(!matches!(frame, Frame::Unknown { .. }), "unknown: {text}");
        let again: Value = serde_json::from_str(&frame.encode()).unwrap();
        assert!(
            same(&again, &value),
            "{dir} re-encoded differently:\n got {again}\nwant {value}"
        );
    }
}

#[test]
fn vectors_land_in_the_right_variants() {
    let kinds: Vec<String> = frames()
        .iter()
        .map(|(_, t, _)| Frame::decode(t).unwrap().kind().to_owned())
        .collect();
    for want in [
        "hello",
        "welcome",
        "request",
        "response",
        "stream",
        "stream_end",
        "ping",
        "pong",
        "metrics",
    ] {
        assert!(kinds.iter().any(|k| k == want), "no {want} in vectors");
    }
    let Frame::Hello(hello) = Frame::decode(&frames()[0].1).unwrap() else {
        panic!("first frame is not hello")
    };
    assert_eq!(hello.protocol, "1.0");
    assert_eq!(hello.capabilities, ["exec", "metrics", "events"]);
    let Frame::Welcome(w) = Frame::decode(&frames()[1].1).unwrap() else {
        panic!("second frame is not welcome")
    };
    assert_eq!(w.environment_id, Some(7));
}

/// The recorded pushes: the wrong-credential one carries an errorDetail
/// under HTTP 200, the good one ends with a digest and no error.
#[test]
fn recorded_push_streams_classify_as_docker_meant() {
    let mut by_request: std::collections::BTreeMap<String, LineDecoder> = Default::default();
    let mut failures = std::collections::BTreeMap::<String, String>::new();
    let mut digests = Vec::new();
    for (_, text, _) in frames().into_iter().take(43) {
        if let Frame::Stream(chunk) = Frame::decode(&text).unwrap() {
            let dec = by_request
                .entry(chunk.request_id.clone())
                .or_insert_with(|| LineDecoder::new(1 << 20));
            dec.push(&chunk.data, |line| match classify(line) {
                Progress::Failed { message, .. } => {
                    failures.insert(chunk.request_id.clone(), message);
                }
                Progress::Update(v) => {
                    if let Some(d) = v.pointer("/aux/Digest").and_then(Value::as_str) {
                        digests.push(d.to_owned());
                    }
                }
                Progress::Text(_) => {}
            })
            .unwrap();
        }
    }
    assert_eq!(
        failures
            .get("3d9cf31d-cb13-49c2-9544-597cd84084b0")
            .map(String::as_str),
        Some("unauthorized: authentication required")
    );
    assert!(!failures.contains_key("5b4ca4b8-afbc-46b9-b07d-d5e99efd8ae7"));
    assert_eq!(digests.len(), 1);
    assert!(digests[0].starts_with("sha256:"));
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let inputs = [
        "",
        "{",
        "null",
        "42",
        "\"text\"",
        "{}",
        r#"{"type":null}"#,
        r#"{"type":"request","requestId":5}"#,
        r#"{"type":"stream","requestId":"a","data":"%%%"}"#,
        r#"{"type":"metrics","timestamp":"x"}"#,
        "\u{0}\u{1}",
    ];
    for input in inputs {
        assert!(Frame::decode(input).is_err(), "accepted {input:?}");
    }
    // Every prefix of a real frame is either an error or a frame, never a panic.
    let (_, text, _) = &frames()[3];
    for cut in 0..text.len() {
        if text.is_char_boundary(cut) {
            let _ = Frame::decode(&text[..cut]);
        }
    }
}
