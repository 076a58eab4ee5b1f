//! Reassembles newline-delimited JSON (Docker's progress streams) from
//! chunks that split lines anywhere, and classifies each progress object.
//!
//! The buffer is bounded: a line longer than the limit is reported as an
//! error instead of growing memory. An `error` or `errorDetail` field in a
//! progress line means the operation failed, whatever the HTTP status was.

use serde_json::Value;

/// A line that grew past the decoder's limit without a newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("progress line longer than {limit} bytes")]
pub struct LineTooLong {
    /// The limit in force.
    pub limit: usize,
}

/// Splits a byte stream into complete lines, across chunk boundaries.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    limit: usize,
}

impl LineDecoder {
    /// A decoder that refuses lines longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            limit,
        }
    }

    /// Feeds one chunk; calls `on_line` for each complete, non-blank line
    /// (without its `\r\n` / `\n`).
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), LineTooLong> {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(pos);
            chunk = &rest[1..];
            if self.buf.is_empty() {
                emit(head, &mut on_line);
            } else {
                if self.buf.len() + head.len() > self.limit {
                    self.buf.clear();
                    return Err(LineTooLong { limit: self.limit });
                }
                self.buf.extend_from_slice(head);
                let line = std::mem::take(&mut self.buf);
                emit(&line, &mut on_line);
                self.buf = line;
                self.buf.clear();
            }
        }
        if self.buf.len() + chunk.len() > self.limit {
            self.buf.clear();
            return Err(LineTooLong { limit: self.limit });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the stream: returns a last line that had no newline, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        let trimmed = trim(&rest);
        (!trimmed.is_empty()).then(|| trimmed.to_vec())
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &line[start..end.max(start)]
}

fn emit(line: &[u8], on_line: &mut impl FnMut(&[u8])) {
    let line = trim(line);
    if !line.is_empty() {
        on_line(line);
    }
}

/// What one Docker progress line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A normal progress object, to forward as-is.
    Update(Value),
    /// The operation failed: `error` / `errorDetail.message` / `message`.
    Failed {
        /// The error text Docker gave.
        message: String,
        /// The object as Docker sent it.
        raw: Value,
    },
    /// Not JSON: passed on as text.
    Text(String),
}

/// Classifies one line of a Docker progress stream.
pub fn classify(line: &[u8]) -> Progress {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Progress::Text(String::from_utf8_lossy(line).into_owned()),
    };
    let detail = value
        .get("errorDetail")
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str);
    let error = value.get("error").and_then(Value::as_str);
    match detail.or(error) {
        Some(msg) => Progress::Failed {
            message: msg.to_owned(),
            raw: value,
        },
        None => Progress::Update(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]], limit: usize) -> Result<Vec<String>, LineTooLong> {
        let mut dec = LineDecoder::new(limit);
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c, |l| out.push(String::from_utf8_lossy(l).into_owned()))?;
        }
        out.extend(
            dec.finish()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
        );
        Ok(out)
    }

    #[test]
    fn reassembles_split_lines() {
        let got = lines_of(
            &[b"{\"a\":", b"1}\r\n{\"b\"", b":2}\n\n", b"{\"c\":3}"],
            100,
        )
        .unwrap();
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let text = b"{\"status\":\"Pushing\",\"id\":\"abc\"}\r\n{\"errorDetail\":{\"message\":\"denied\"},\"error\":\"denied\"}\n";
        for cut in 0..text.len() {
            let got = lines_of(&[&text[..cut], &text[cut..]], 1000).unwrap();
            assert_eq!(got.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn long_line_is_refused() {
        assert_eq!(
            lines_of(&[b"0123456789", b"0123456789"], 15),
            Err(LineTooLong { limit: 15 })
        );
    }

    #[test]
    fn error_detail_means_failure() {
        let p = classify(br#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}"#);
        assert!(
            matches!(p, Progress::Failed { ref message, .. } if message == "unauthorized: authentication required")
        );
        assert!(matches!(
            classify(br#"{"error":"x"}"#),
            Progress::Failed { .. }
        ));
        assert!(matches!(
            classify(br#"{"status":"Pushing"}"#),
            Progress::Update(_)
        ));
        assert!(matches!(classify(b"plain text"), Progress::Text(_)));
    }
}
