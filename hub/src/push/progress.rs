//! Reading Docker's push progress stream: success and failure from the
//! lines themselves, whatever the transport said.
//!
//! Docker answers a push with HTTP 200 and newline-delimited JSON; failure
//! comes as a line with `error` / `errorDetail`. Through the reference agent
//! the HTTP status is lost, so an API error body (`{"message": "…"}`, e.g.
//! the 400 for a missing `X-Registry-Auth`) arrives as a plain chunk too:
//! it is a failure here. Success is positive evidence, never "the stream
//! just ended": Docker ends every successful push with the pushed
//! manifest's digest (`aux.Digest`, and a `<tag>: digest: sha256:… size: N`
//! status), and [`PushProgress::digest`] is how the caller knows it saw it.

use mooring_protocol::lines::{classify, LineDecoder, Progress};
use serde_json::{json, Value};

/// Longest progress line accepted; Docker's are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What one line of the stream means for the push.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A progress object to forward as-is.
    Event(Value),
    /// Docker reported failure; the text it gave.
    Failed(String),
}

/// Parser state of one push stream.
#[derive(Debug)]
pub struct PushProgress {
    decoder: LineDecoder,
    digest: Option<String>,
    last_text: Option<String>,
}

impl Default for PushProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl PushProgress {
    /// A parser for a new stream.
    pub fn new() -> Self {
        PushProgress {
            decoder: LineDecoder::new(MAX_LINE_BYTES),
            digest: None,
            last_text: None,
        }
    }

    /// Feeds one chunk; appends what its complete lines mean to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Step>) {
        let mut lines = Vec::new();
        let res = self.decoder.push(chunk, |line| lines.push(line.to_vec()));
        for line in lines {
            out.push(self.step(&line));
        }
        if let Err(too_long) = res {
            out.push(Step::Failed(format!("Docker sent a {too_long}")));
        }
    }

    /// Ends the stream: a last line without a newline, if any.
    pub fn finish(&mut self, out: &mut Vec<Step>) {
        if let Some(line) = self.decoder.finish() {
            out.push(self.step(&line));
        }
    }

    /// The manifest digest Docker reported, once seen.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The last status text seen, for an error message when the stream
    /// ends without success.
    pub fn last_text(&self) -> Option<&str> {
        self.last_text.as_deref()
    }

    fn step(&mut self, line: &[u8]) -> Step {
        match classify(line) {
            Progress::Failed { message, .. } => Step::Failed(message),
            Progress::Text(text) => {
                self.last_text = Some(truncate(&text));
                Step::Event(json!({ "status": text }))
            }
            Progress::Update(value) => {
                if let Some(message) = api_error_message(&value) {
                    return Step::Failed(message.to_owned());
                }
                if let Some(status) = value.get("status").and_then(Value::as_str) {
                    self.last_text = Some(truncate(status));
                }
                if let Some(digest) = digest_of(&value) {
                    self.digest = Some(digest);
                }
                Step::Event(value)
            }
        }
    }
}

/// The text of a Docker API error body (`{"message": "…"}`), which is never
/// a progress object.
fn api_error_message(value: &Value) -> Option<&str> {
    let message = value.get("message")?.as_str()?;
    let progress_fields = [
        "status",
        "id",
        "aux",
        "progressDetail",
        "progress",
        "stream",
    ];
    if progress_fields.iter().any(|f| value.get(f).is_some()) {
        return None;
    }
    Some(message)
}

/// The digest in `{"aux":{"Digest":…}}` or `{"status":"t: digest: sha256:… size: N"}`.
fn digest_of(value: &Value) -> Option<String> {
    if let Some(d) = value
        .get("aux")
        .and_then(|a| a.get("Digest"))
        .and_then(Value::as_str)
    {
        return valid_digest(d);
    }
    let status = value.get("status")?.as_str()?;
    let (_, rest) = status.split_once("digest: ")?;
    valid_digest(rest.split_whitespace().next()?)
}

fn valid_digest(d: &str) -> Option<String> {
    let (algo, hex) = d.split_once(':')?;
    let ok = !algo.is_empty()
        && hex.len() >= 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && algo.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| d.to_owned())
}

fn truncate(text: &str) -> String {
    const MAX: usize = 500;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:bec57f8a1f38f49165d96abf56f84652fa37762963c95b756222510f43eeb6f2";

    fn steps(chunks: &[&[u8]]) -> (Vec<Step>, PushProgress) {
        let mut p = PushProgress::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        p.finish(&mut out);
        (out, p)
    }

    #[test]
    fn success_lines_are_forwarded_and_the_digest_found() {
        let text = format!(
            "{{\"status\":\"Pushing\",\"progressDetail\":{{\"current\":5,\"total\":10}},\"progress\":\"[==>  ]\",\"id\":\"194ef9956434\"}}\r\n\
             {{\"status\":\"vec: digest: {DIGEST} size: 527\"}}\r\n"
        );
        let (out, p) = steps(&[text.as_bytes()]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            Step::Event(
                serde_json::json!({"status":"Pushing","progressDetail":{"current":5,"total":10},"progress":"[==>  ]","id":"194ef9956434"})
            )
        );
        assert_eq!(p.digest(), Some(DIGEST));
    }

    #[test]
    fn aux_digest_counts_and_garbage_digests_do_not() {
        let line = format!("{{\"progressDetail\":{{}},\"aux\":{{\"Tag\":\"v\",\"Digest\":\"{DIGEST}\",\"Size\":527}}}}\n");
        assert_eq!(steps(&[line.as_bytes()]).1.digest(), Some(DIGEST));
        let (_, p) = steps(&[b"{\"status\":\"x: digest: nope size: 1\"}\n"]);
        assert_eq!(p.digest(), None);
    }

    #[test]
    fn error_lines_and_api_error_bodies_are_failures() {
        let (out, _) = steps(&[br#"{"errorDetail":{"message":"denied"},"error":"denied"}"#]);
        assert_eq!(out, vec![Step::Failed("denied".into())]);
        let (out, _) =
            steps(&[b"{\"message\":\"Bad parameters and missing X-Registry-Auth: EOF\"}\n"]);
        assert_eq!(
            out,
            vec![Step::Failed(
                "Bad parameters and missing X-Registry-Auth: EOF".into()
            )]
        );
    }

    #[test]
    fn text_lines_are_kept_for_the_error_message() {
        let (out, p) = steps(&[b"404 page not found\n"]);
        assert_eq!(
            out,
            vec![Step::Event(
                serde_json::json!({"status": "404 page not found"})
            )]
        );
        assert_eq!(p.last_text(), Some("404 page not found"));
    }

    #[test]
    fn an_endless_line_fails_instead_of_growing() {
        let big = vec![b'x'; MAX_LINE_BYTES + 1];
        let (out, _) = steps(&[&big]);
        assert!(
            matches!(&out[..], [Step::Failed(m)] if m.contains("longer than")),
            "{out:?}"
        );
    }
}
