//! Decoding and encoding of frames, with the size limit.
//!
//! Decoding reads the `type` first and then only the payload struct of that
//! type, so a large `stream` frame is parsed once, without an intermediate
//! JSON tree. Unknown types decode to [`Frame::Unknown`]; only text that is
//! not a JSON object with a string `type`, or a known type with a broken
//! payload, is an error. Nothing here panics on input.

use serde::Deserialize;

use crate::frame::*;

/// Why a message is not a usable frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the configured frame limit.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Not a JSON object.
    #[error("frame is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A JSON object without a string `type`.
    #[error("frame has no string \"type\" field")]
    NoType,
    /// A known type whose fields are missing or of the wrong kind.
    #[error("malformed {kind} frame: {source}")]
    BadPayload {
        /// The frame type.
        kind: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<TypeField<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TypeField<'a> {
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

impl Frame {
    /// Decodes one text message, refusing anything over `limit` bytes.
    pub fn decode_limited(text: &str, limit: usize) -> Result<Frame, DecodeError> {
        if text.len() > limit {
            return Err(DecodeError::TooLarge {
                size: text.len(),
                limit,
            });
        }
        Frame::decode(text)
    }

    /// Decodes one text message.
    pub fn decode(text: &str) -> Result<Frame, DecodeError> {
        let kind = match leading_type(text) {
            // Fast path: `type` comes first (as every known peer writes it),
            // so a large frame is scanned once, not twice.
            Some(kind) => std::borrow::Cow::Borrowed(kind),
            None => {
                let head: TypeOnly<'_> =
                    serde_json::from_str(text).map_err(DecodeError::NotJson)?;
                match head.kind {
                    Some(TypeField::Text(kind)) => kind,
                    _ => return Err(DecodeError::NoType),
                }
            }
        };
        fn payload<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, DecodeError> {
            serde_json::from_str(text).map_err(|source| DecodeError::BadPayload {
                kind: kind.to_owned(),
                source,
            })
        }
        let frame = match kind.as_ref() {
            "hello" => Frame::Hello(payload(text, &kind)?),
            "welcome" => Frame::Welcome(payload(text, &kind)?),
            "request" => Frame::Request(payload(text, &kind)?),
            "response" => Frame::Response(payload(text, &kind)?),
            "stream" => Frame::Stream(payload(text, &kind)?),
            "stream_end" => Frame::StreamEnd(payload(text, &kind)?),
            "error" => Frame::Error(payload(text, &kind)?),
            "ping" => Frame::Ping(payload(text, &kind)?),
            "pong" => Frame::Pong(payload(text, &kind)?),
            "metrics" => Frame::Metrics(payload(text, &kind)?),
            "container_event" => Frame::ContainerEvent(payload(text, &kind)?),
            "exec_start" => Frame::ExecStart(payload(text, &kind)?),
            "exec_ready" => Frame::ExecReady(payload(text, &kind)?),
            "exec_input" => Frame::ExecInput(payload(text, &kind)?),
            "exec_output" => Frame::ExecOutput(payload(text, &kind)?),
            "exec_resize" => Frame::ExecResize(payload(text, &kind)?),
            "exec_end" => Frame::ExecEnd(payload(text, &kind)?),
            other => Frame::Unknown {
                kind: other.to_owned(),
                raw: serde_json::from_str(text).map_err(DecodeError::NotJson)?,
            },
        };
        Ok(frame)
    }

    /// Encodes the frame as one JSON text message.
    pub fn encode(&self) -> String {
        match self {
            Frame::Unknown { raw, .. } => raw.to_string(),
            Frame::Stream(c) => {
                encode_stream_chunk(&c.request_id, &c.data, c.stream.as_deref(), c.status_code)
            }
            // Serializing these plain structs into a String cannot fail:
            // every map key is a string and no custom serializer errors.
            known => serde_json::to_string(known).unwrap_or_else(|err| {
                format!(r#"{{"type":"error","error":"encode failed: {err}"}}"#)
            }),
        }
    }
}

/// The `type` of a frame whose text starts exactly with `{"type":"NAME",`
/// (NAME plain ASCII, no escapes); `None` for any other layout, which then
/// takes the general path. Only an optimisation: the payload parse that
/// follows still validates the whole frame.
fn leading_type(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"type":""#)?;
    let end = rest.find('"')?;
    let (kind, after) = rest.split_at(end);
    let plain = kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    (plain && (after.starts_with("\",") || after.starts_with("\"}"))).then_some(kind)
}

/// Encodes a `stream` frame straight from borrowed bytes: the same JSON as
/// `Frame::Stream(..).encode()`, with base64 written directly into the
/// output (base64 never needs JSON escaping), so a chunk costs one pass
/// and one allocation.
pub fn encode_stream_chunk(
    request_id: &str,
    data: &[u8],
    stream: Option<&str>,
    status_code: Option<u16>,
) -> String {
    use base64::Engine as _;
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4 + request_id.len() + 96);
    out.push_str(r#"{"type":"stream","requestId":"#);
    push_json_str(&mut out, request_id);
    out.push_str(r#","data":""#);
    base64::engine::general_purpose::STANDARD.encode_string(data, &mut out);
    out.push('"');
    if let Some(stream) = stream {
        out.push_str(r#","stream":"#);
        push_json_str(&mut out, stream);
    }
    if let Some(code) = status_code {
        out.push_str(&format!(r#","statusCode":{code}"#));
    }
    out.push('}');
    out
}

fn push_json_str(out: &mut String, text: &str) {
    // Serializing a &str cannot fail; fall back to an empty string anyway.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_chunks_encode_like_serde() {
        let chunk = StreamChunk {
            request_id: "r\"1".into(),
            data: (0..=255).collect(),
            stream: Some("stdout".into()),
            status_code: Some(404),
        };
        let fast = Frame::Stream(chunk.clone()).encode();
        let slow = serde_json::to_string(&Frame::Stream(chunk.clone())).unwrap();
        assert_eq!(fast, slow);
        let bare = StreamChunk {
            data: b"OK".to_vec(),
            ..chunk
        };
        let bare = StreamChunk {
            stream: None,
            status_code: None,
            ..bare
        };
        assert_eq!(
            Frame::Stream(bare.clone()).encode(),
            serde_json::to_string(&Frame::Stream(bare.clone())).unwrap()
        );
        assert_eq!(
            Frame::decode(&Frame::Stream(bare.clone()).encode()).unwrap(),
            Frame::Stream(bare)
        );
    }

    #[test]
    fn leading_type_fast_path_agrees_with_the_general_one() {
        assert_eq!(
            leading_type(r#"{"type":"stream","requestId":"a","data":"T0s="}"#),
            Some("stream")
        );
        assert_eq!(leading_type(r#"{"type":"ping"}"#), Some("ping"));
        assert_eq!(leading_type(r#"{ "type":"ping"}"#), None);
        assert_eq!(leading_type(r#"{"type":"pi\"ng"}"#), None);
        assert_eq!(leading_type(r#"{"type":"ping"x}"#), None);
        // Either path gives the same frames.
        for text in [
            r#"{"type":"ping","timestamp":5}"#,
            r#"{"timestamp":5,"type":"ping"}"#,
            r#"{"type":"stream","requestId":"a","data":"T0s="}"#,
            r#"{"requestId":"a","type":"stream","data":"T0s="}"#,
        ] {
            assert!(Frame::decode(text).is_ok(), "{text}");
        }
        assert!(matches!(
            Frame::decode(r#"{"type":"ping",}"#),
            Err(DecodeError::BadPayload { .. })
        ));
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(matches!(
            Frame::decode("hello there"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            Frame::decode("[1,2]"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(Frame::decode(""), Err(DecodeError::NotJson(_))));
    }

    #[test]
    fn missing_type_is_an_error() {
        assert!(matches!(
            Frame::decode(r#"{"requestId":"x"}"#),
            Err(DecodeError::NoType)
        ));
        assert!(matches!(
            Frame::decode(r#"{"type":7}"#),
            Err(DecodeError::NoType)
        ));
    }

    #[test]
    fn unknown_type_is_kept_not_failed() {
        let f = Frame::decode(r#"{"type":"future_thing","x":1}"#).unwrap();
        assert_eq!(f.kind(), "future_thing");
        assert_eq!(f.encode(), r#"{"type":"future_thing","x":1}"#);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let f = Frame::decode(r#"{"type":"ping","timestamp":5,"extra":{"a":[1]}}"#).unwrap();
        assert!(matches!(f, Frame::Ping(_)));
    }

    #[test]
    fn bad_payload_names_the_type() {
        let err = Frame::decode(r#"{"type":"stream","requestId":"r","data":"!!"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed stream frame"),
            "{err}"
        );
        let err = Frame::decode(r#"{"type":"request","method":"GET"}"#).unwrap_err();
        assert!(err.to_string().contains("request"), "{err}");
    }

    #[test]
    fn size_limit_is_enforced() {
        let text = r#"{"type":"ping"}"#;
        assert!(matches!(
            Frame::decode_limited(text, 4),
            Err(DecodeError::TooLarge { size: 15, limit: 4 })
        ));
        assert!(Frame::decode_limited(text, 15).is_ok());
    }

    #[test]
    fn hello_debug_hides_token() {
        let hello = Hello {
            token: "s3cret-token".into(),
            ..Default::default()
        };
        let shown = format!("{:?}", Frame::Hello(hello));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn error_text_reads_either_field() {
        let f: ErrorFrame = serde_json::from_str(r#"{"message":"Invalid token"}"#).unwrap();
        assert_eq!(f.text(), "Invalid token");
        let e = ErrorFrame::new("x");
        assert_eq!(e.error.as_deref(), Some("x"));
        assert_eq!(e.message.as_deref(), Some("x"));
    }
}
