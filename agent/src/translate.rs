//! Pure translation between relay frames and Docker HTTP: a hub `request`
//! into a [`DockerRequest`], and a whole Docker answer into a `response`.
//!
//! This module owns the relay's wire rules (path checks, body decoding,
//! default content types, header name casing, binary detection). It does no
//! I/O, so every rule is unit-tested here.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use mooring_docker::DockerRequest;
use mooring_protocol::docker::{is_binary, validate_path};
use mooring_protocol::{b64, Frame, Headers, Request, Response};
use serde_json::Value;

/// Hop-by-hop and framing headers the agent sets itself.
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
];

/// A non-streaming answer too large for one frame.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("Docker's answer exceeds {0} bytes, too large for one response frame: request it with \"streaming\": true")]
pub(crate) struct ResponseTooLarge(pub(crate) usize);

/// Builds the Docker call for a hub request, or says why it is refused.
pub(crate) fn build_request(req: &Request) -> Result<DockerRequest, String> {
    validate_path(&req.path).map_err(|e| format!("invalid path: {e}"))?;
    let method = Method::from_bytes(req.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method {:?}", req.method))?;
    let mut headers = BTreeMap::new();
    for (name, value) in &req.headers {
        if DROPPED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        headers.insert(name.clone(), value.clone());
    }
    let (body, default_type) = match &req.body {
        None | Some(Value::Null) => (Bytes::new(), None),
        Some(Value::String(text)) if req.is_binary => {
            let raw = b64::decode(text)
                .map_err(|e| format!("body is marked isBinary but is not base64: {e}"))?;
            (Bytes::from(raw), Some("application/x-tar"))
        }
        Some(_) if req.is_binary => {
            return Err("body is marked isBinary but is not a base64 string".into())
        }
        // A string body is text the hub already serialized: send it as is.
        Some(Value::String(text)) => (Bytes::from(text.clone()), Some("application/json")),
        Some(value) => (
            Bytes::from(serde_json::to_vec(value).map_err(|e| format!("body: {e}"))?),
            Some("application/json"),
        ),
    };
    if let Some(ct) = default_type {
        let has_type = headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !has_type {
            headers.insert("Content-Type".into(), ct.into());
        }
    }
    Ok(DockerRequest {
        method,
        path: req.path.clone(),
        headers,
        body,
    })
}

/// The `response` frame for a whole Docker answer.
pub(crate) fn response_frame(
    request_id: &str,
    parts: &http::response::Parts,
    body: &[u8],
) -> Frame {
    let mut headers = Headers::new();
    for (name, value) in &parts.headers {
        let key = canonical_header(name.as_str());
        if headers.contains_key(&key) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.insert(key, v.to_owned());
        }
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let binary = is_binary(content_type, body);
    let body = if binary {
        b64::encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    Frame::Response(Response {
        request_id: request_id.to_owned(),
        status_code: parts.status.as_u16(),
        headers,
        body,
        is_binary: binary,
    })
}

/// `content-type` → `Content-Type`, as Go's canonical header keys.
pub(crate) fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Request {
        match Frame::decode(json).unwrap() {
            Frame::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_body_is_serialized_with_a_content_type() {
        let r = build_request(&req(
            r#"{"type":"request","requestId":"1","method":"post","path":"/containers/create?name=a","body":{"Image":"x"}}"#,
        ))
        .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(&r.body[..], br#"{"Image":"x"}"#);
        assert_eq!(r.headers["Content-Type"], "application/json");
    }

    #[test]
    fn binary_body_is_decoded() {
        let r = build_request(&req(
            r#"{"type":"request","requestId":"1","method":"POST","path":"/images/load","body":"AAEC","isBinary":true,"streaming":true,"headers":{"content-type":"application/x-tar","Content-Length":"99"}}"#,
        ))
        .unwrap();
        assert_eq!(&r.body[..], &[0, 1, 2]);
        assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
        let err = build_request(&req(
            r#"{"type":"request","requestId":"1","method":"POST","path":"/images/load","body":"!!","isBinary":true}"#,
        ))
        .unwrap_err();
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn bad_paths_and_methods_are_refused() {
        let err = build_request(&req(
            r#"{"type":"request","requestId":"1","method":"GET","path":"/images/../x"}"#,
        ))
        .unwrap_err();
        assert!(err.contains(".."), "{err}");
        let err = build_request(&req(
            r#"{"type":"request","requestId":"1","method":"G ET","path":"/x"}"#,
        ))
        .unwrap_err();
        assert!(err.contains("method"), "{err}");
    }

    #[test]
    fn response_headers_are_canonical_and_binary_detected() {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/x-tar")
            .header("api-version", "1.41")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let Frame::Response(r) = response_frame("1", &parts, b"\x00\x01") else {
            panic!()
        };
        assert!(r.is_binary);
        assert_eq!(r.body, "AAE=");
        assert_eq!(r.headers["Api-Version"], "1.41");
        assert_eq!(r.headers["Content-Type"], "application/x-tar");
        assert_eq!(
            canonical_header("x-docker-container-path-stat"),
            "X-Docker-Container-Path-Stat"
        );
    }
}
