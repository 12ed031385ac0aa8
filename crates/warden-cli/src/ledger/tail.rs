//! `warden audit tail`: follows `GET /api/v1/audit/stream` (Server-Sent Events), one line
//! per entry, until stopped.
//!
//! A dropped connection, a server restart or a silent stream (no keep-alive for
//! [`IDLE_TIMEOUT`]) reconnects with `Last-Event-ID` set to the last entry *shown*, so
//! nothing is lost or shown twice; retries back off from [`BACKOFF_FIRST`] to
//! [`BACKOFF_MAX`]. An expired token is renewed. A refusal (403, 404, …) is final: exit 1
//! with the server's reason code.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::args::ConnArgs;
use crate::client::{Client, Need, problem};

/// The server sends a keep-alive every 15 s: three missed ones mean the connection is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// The first wait before reconnecting.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The longest wait before reconnecting.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the next retry starts from the first wait.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// The longest line accepted from the stream (an entry is far smaller).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// `warden audit tail`.
pub async fn run(conn: &ConnArgs) -> Result<()> {
    let mut client = Client::connect(conn, Need::Default).await?;
    // The seq of the last entry shown: where a new connection resumes.
    let mut resume: Option<String> = None;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let mut request = client
            .request(Method::GET, "/api/v1/audit/stream")
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = &resume {
            request = request.header("Last-Event-ID", id);
        }
        let lost = match request.send().await {
            Err(e) => anyhow!(e).context(format!("cannot reach {}", client.base())),
            Ok(response) if response.status().is_success() => {
                let after = resume
                    .as_ref()
                    .map(|id| format!(" after seq {id}"))
                    .unwrap_or_default();
                eprintln!(
                    "tail: following {}/api/v1/audit/stream{after}",
                    client.base()
                );
                let started = Instant::now();
                let (lost, shown) = follow(response, &mut resume, conn.json).await?;
                if shown || started.elapsed() >= HEALTHY_AFTER {
                    backoff = BACKOFF_FIRST;
                }
                lost
            }
            Ok(response) => {
                let status = response.status();
                let refused = problem(response).await;
                if status == StatusCode::UNAUTHORIZED {
                    // The token expired: a new one, unless the authority refuses us.
                    match Client::connect(conn, Need::Default).await {
                        Ok(fresh) => {
                            client = fresh;
                            refused
                        }
                        Err(e) if is_transport(&e) => e,
                        Err(e) => return Err(e),
                    }
                } else if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    refused
                } else {
                    return Err(refused);
                }
            }
        };
        eprintln!(
            "tail: {lost:#}; reconnecting in {:.1} s",
            backoff.as_secs_f64()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether an error is a transport failure (worth a retry) rather than a refusal.
fn is_transport(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<reqwest::Error>().is_some())
}

/// Print the stream's entries until it ends. `Ok((why, shown))` when the connection is
/// lost (and whether any entry was shown); `Err` only when stdout fails.
async fn follow(
    mut response: reqwest::Response,
    resume: &mut Option<String>,
    json: bool,
) -> Result<(anyhow::Error, bool)> {
    let mut parser = SseParser::default();
    let mut shown = false;
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
            Err(_) => {
                let why = anyhow!(
                    "nothing received for {} s, not even a keep-alive",
                    IDLE_TIMEOUT.as_secs()
                );
                return Ok((why, shown));
            }
            Ok(Err(e)) => return Ok((anyhow!(e).context("the connection dropped"), shown)),
            Ok(Ok(None)) => return Ok((anyhow!("the server closed the stream"), shown)),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let events = match parser.push(&chunk) {
            Ok(events) => events,
            Err(e) => return Ok((e, shown)),
        };
        let mut stdout = std::io::stdout().lock();
        for event in events {
            if event.event == "audit" {
                stdout.write_all(entry_line(&event.data, json).as_bytes())?;
                stdout.write_all(b"\n")?;
                shown = true;
            }
            // Only once it is shown: a resume must not skip an entry never printed.
            if event.id.is_some() {
                *resume = event.id;
            }
        }
        stdout.flush()?;
    }
}

/// One entry as a line: the JSON as served with `--json`, else time, seq, actor,
/// action, target and outcome.
fn entry_line(data: &str, json: bool) -> String {
    if json {
        return data.to_owned();
    }
    let Ok(entry) = serde_json::from_str::<Value>(data) else {
        return format!("(not an entry) {data}");
    };
    let field = |k: &str| match &entry[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut line = format!(
        "{}  #{:<6} {:<24} {:<20} {}:{}  {}",
        field("created_at"),
        field("seq"),
        field("actor"),
        field("action"),
        field("target_kind"),
        field("target_id"),
        field("outcome"),
    );
    if !entry["reason_code"].is_null() {
        line.push(' ');
        line.push_str(&field("reason_code"));
    }
    line
}

/// One dispatched Server-Sent Event.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    /// The last event id (the entry's seq).
    id: Option<String>,
    /// The event type (`message` when the server names none).
    event: String,
    /// The data lines, joined with newlines.
    data: String,
}

/// An incremental parser of the `text/event-stream` format (WHATWG HTML §9.2.6): bytes in
/// any chunking, lines ended by CRLF, LF or CR.
#[derive(Debug, Default)]
struct SseParser {
    /// The line read so far.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends no other line.
    after_cr: bool,
    /// The current event's type.
    event: String,
    /// The current event's data.
    data: String,
    /// The last event id buffer (kept across events, as the spec says).
    id: Option<String>,
}

impl SseParser {
    /// Read a chunk; returns the events it completes.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>> {
        let mut events = Vec::new();
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                let line = std::mem::take(&mut self.line);
                events.extend(self.line_done(&String::from_utf8_lossy(&line)));
            } else {
                if self.line.len() >= MAX_LINE {
                    bail!("the stream sent a line longer than {MAX_LINE} bytes");
                }
                self.line.push(b);
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if self.data.is_empty() {
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the newline after the last data line
            return Some(SseEvent {
                id: self.id.clone(),
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            });
        }
        if line.starts_with(':') {
            return None; // a comment: ": keep-alive"
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields: ignored, as the spec says
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, data: &str) -> SseEvent {
        SseEvent {
            id: Some(id.to_owned()),
            event: "audit".to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_are_parsed_across_any_chunking() {
        let stream = b": stream open\n\nid: 7\nevent: audit\ndata: {\"seq\":7}\n\n: keep-alive\n\nid: 8\r\nevent: audit\r\ndata: {\"seq\":8}\r\n\r\n";
        let want = vec![event("7", "{\"seq\":7}"), event("8", "{\"seq\":8}")];
        for size in 1..stream.len() {
            let mut parser = SseParser::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(size) {
                got.extend(parser.push(chunk).unwrap());
            }
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn data_lines_join_and_ids_carry_over() {
        let mut parser = SseParser::default();
        let got = parser
            .push(b"id: 1\ndata: a\ndata:b\n\ndata: c\r\rretry: 5\nfoo\n\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("1".into()),
                    event: "message".into(),
                    data: "a\nb".into()
                },
                SseEvent {
                    id: Some("1".into()),
                    event: "message".into(),
                    data: "c".into()
                },
            ]
        );
    }

    #[test]
    fn an_incomplete_event_is_not_dispatched() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b"id: 9\nevent: audit\ndata: {}\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn human_lines_name_time_actor_action_target_and_outcome() {
        let line = entry_line(
            r#"{"seq":4,"created_at":"2026-01-01T00:00:00.000000Z","actor":"client:ops","action":"job.cancel","target_kind":"job","target_id":"j1","outcome":"rejected","reason_code":"FORBIDDEN_SCOPE"}"#,
            false,
        );
        for part in [
            "2026-01-01T00:00:00.000000Z",
            "#4",
            "client:ops",
            "job.cancel",
            "job:j1",
            "rejected FORBIDDEN_SCOPE",
        ] {
            assert!(line.contains(part), "{line}");
        }
    }
}
