//! Server-Sent Events as Marathon speaks them.
//!
//! Writing: [`frame`] produces `event: <type>\r\ndata: <json>\r\n\r\n` and
//! [`HEARTBEAT`] is a bare `\r\n` (Jetty's heartbeat). Reading: [`Parser`]
//! is an incremental parser per the SSE spec (CRLF, LF or CR line ends,
//! multi-line `data`, comments and heartbeats ignored).

/// The keep-alive Marathon sends every 10 s: an empty line.
pub const HEARTBEAT: &str = "\r\n";

/// The `Content-Type` of Marathon's event stream.
pub const CONTENT_TYPE: &str = "text/event-stream;charset=UTF-8";

/// One SSE frame. `json` must be one line; any line break in it is escaped
/// away by re-encoding (serde_json never writes raw newlines in compact
/// output, so this only matters for hand-made input).
pub fn frame(event_type: &str, json: &str) -> String {
    let data: std::borrow::Cow<'_, str> = if json.contains(['\r', '\n']) {
        json.replace("\r\n", " ").replace(['\r', '\n'], " ").into()
    } else {
        json.into()
    };
    format!("event: {event_type}\r\ndata: {data}\r\n\r\n")
}

/// A frame for an event, using its own `eventType`.
pub fn event_frame(event: &crate::Event) -> String {
    frame(event.event_type(), &event.to_json())
}

/// One dispatched SSE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `event:` field, `"message"` when absent (per the SSE spec).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

/// Incremental SSE parser: feed bytes as they arrive, get whole messages.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a following `\n` belongs to it.
    after_cr: bool,
    started: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Bytes of an unfinished line (useful to detect garbage that never ends).
    pub fn pending(&self) -> usize {
        self.line.len()
    }

    fn end_line(&mut self, out: &mut Vec<Message>) {
        let mut raw = std::mem::take(&mut self.line);
        if !self.started {
            self.started = true;
            if raw.starts_with(b"\xEF\xBB\xBF") {
                raw.drain(..3);
            }
        }
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(Message {
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    data,
                    id: self.id.clone(),
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_ref(), ""),
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
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes_are_exact() {
        assert_eq!(
            frame("status_update_event", r#"{"a":1}"#),
            "event: status_update_event\r\ndata: {\"a\":1}\r\n\r\n"
        );
        assert_eq!(
            frame("x", "{\"a\":\n1}"),
            "event: x\r\ndata: {\"a\": 1}\r\n\r\n"
        );
        assert_eq!(HEARTBEAT, "\r\n");
    }

    fn msg(event: &str, data: &str) -> Message {
        Message {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn parses_crlf_frames_and_ignores_heartbeats() {
        let mut p = Parser::new();
        let mut input = String::from(HEARTBEAT);
        input.push_str(&frame("a", "{}"));
        input.push_str(HEARTBEAT);
        input.push_str(HEARTBEAT);
        input.push_str(&frame("b", "[1]"));
        assert_eq!(p.push(input.as_bytes()), [msg("a", "{}"), msg("b", "[1]")]);
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let input = "event: a\r\ndata: {\"x\":1}\r\n\r\n\r\nevent: b\ndata: 2\n\n";
        for split in 0..=input.len() {
            let mut p = Parser::new();
            let mut got = p.push(&input.as_bytes()[..split]);
            got.extend(p.push(&input.as_bytes()[split..]));
            assert_eq!(
                got,
                [msg("a", "{\"x\":1}"), msg("b", "2")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_with_cr_only_lines() {
        let input = "event: a\rdata: 1\r\r";
        let mut p = Parser::new();
        let got: Vec<_> = input.bytes().flat_map(|b| p.push(&[b])).collect();
        assert_eq!(got, [msg("a", "1")]);
    }

    #[test]
    fn multi_line_data_comments_and_defaults() {
        let mut p = Parser::new();
        let got =
            p.push(b":comment\ndata:first\ndata: second\nid: 7\nretry: 5\n\nevent: lonely\n\n");
        assert_eq!(
            got,
            [Message {
                event: "message".into(),
                data: "first\nsecond".into(),
                id: Some("7".into()),
            }]
        );
        // An event line without data dispatches nothing and does not leak.
        assert_eq!(
            p.push(b"data: x\n\n"),
            [Message {
                id: Some("7".into()),
                ..msg("message", "x")
            }]
        );
        assert_eq!(p.pending(), 0);
    }
}
