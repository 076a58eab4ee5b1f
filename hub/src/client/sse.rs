//! A Server-Sent Events parser (the `text/event-stream` format as the HTML
//! standard defines it), for clients of `GET /api/jobs/{id}`.
//!
//! Pure: bytes in, events out. Lines end with `\n`, `\r\n` or `\r`; a blank
//! line dispatches the event; `data` lines join with `\n`; `id` persists
//! across events (it is what a client sends back as `Last-Event-ID`);
//! comments (`:`) and unknown fields are ignored. Lines are bounded.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id seen so far in the stream, if any.
    pub id: Option<String>,
    /// Event type (`message` when none was given).
    pub event: String,
    /// The data, lines joined with `\n`.
    pub data: String,
}

/// A line longer than the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event-stream line longer than {0} bytes")]
pub struct SseLineTooLong(pub usize);

/// Incremental event-stream parser.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a following `\n` is part of it.
    after_cr: bool,
    max_line: usize,
    last_id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// A parser refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            max_line,
            last_id: None,
            event: None,
            data: None,
        }
    }

    /// The last `id` seen (what to send as `Last-Event-ID` on reconnect).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes; appends every dispatched event to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseLineTooLong> {
        for &b in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&String::from_utf8_lossy(&line), out);
                }
                _ => {
                    if self.line.len() >= self.max_line {
                        self.line.clear();
                        return Err(SseLineTooLong(self.max_line));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    id: self.last_id.clone(),
                    event: event.unwrap_or_else(|| "message".into()),
                    data,
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).expect("feed");
        }
        out
    }

    #[test]
    fn events_with_ids_and_types() {
        let text = b": keep-alive\n\nid: 1\nevent: data\ndata: {\"data\":{\"a\":1}}\n\nid: 2\r\nevent: data\r\ndata: x\r\ndata: y\r\n\r\n";
        let got = parse(&[text]);
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("1".into()),
                    event: "data".into(),
                    data: "{\"data\":{\"a\":1}}".into()
                },
                SseEvent {
                    id: Some("2".into()),
                    event: "data".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text = b"id: 7\revent: data\r\ndata: hello\r\n\r\ndata:bare\n\n";
        let whole = parse(&[text]);
        assert_eq!(whole.len(), 2);
        assert_eq!(
            whole[1],
            SseEvent {
                id: Some("7".into()),
                event: "message".into(),
                data: "bare".into()
            }
        );
        for cut in 0..text.len() {
            assert_eq!(parse(&[&text[..cut], &text[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn long_lines_are_refused() {
        let mut p = SseParser::new(8);
        assert_eq!(
            p.feed(b"data: 0123456789", &mut Vec::new()),
            Err(SseLineTooLong(8))
        );
    }
}
