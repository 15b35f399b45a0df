//! Pure parts of event delivery: one published event prepared once for every
//! consumer (SSE bytes in both plan formats, callback body), stream filters
//! and the request checks of `/v2/events`.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::{json, Value};

/// Event types whose `plan` gets `original`/`target` in the heavy format.
const DEPLOYMENT_EVENTS: &[&str] = &[
    "deployment_info",
    "deployment_step_success",
    "deployment_step_failure",
    "deployment_success",
    "deployment_failed",
];

/// One published event, serialised once.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event_type: String,
    /// SSE frame, `plan-format=light` (no `plan.original`/`plan.target`).
    pub sse_light: Bytes,
    /// SSE frame in the default (heavy) format; `None` when identical to light.
    pub sse_heavy: Option<Bytes>,
    /// Callback POST body (heavy, as Marathon 1.4 sent it).
    pub body: Bytes,
}

impl Frame {
    pub fn sse(&self, light: bool) -> &Bytes {
        match (&self.sse_heavy, light) {
            (Some(heavy), false) => heavy,
            _ => &self.sse_light,
        }
    }
}

/// Prepares an event (a JSON object with `eventType`); a missing type is "unknown".
pub fn prepare(value: &Value) -> Frame {
    let event_type = value
        .get("eventType")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let has_plan = DEPLOYMENT_EVENTS.contains(&event_type.as_str())
        && value.get("plan").is_some_and(Value::is_object);
    if !has_plan {
        let json = value.to_string();
        return Frame {
            sse_light: Bytes::from(marathon::sse::frame(&event_type, &json)),
            sse_heavy: None,
            body: Bytes::from(json),
            event_type,
        };
    }
    let mut light = value.clone();
    if let Some(plan) = light.get_mut("plan").and_then(Value::as_object_mut) {
        plan.remove("original");
        plan.remove("target");
    }
    let mut heavy = value.clone();
    let version = value
        .pointer("/plan/version")
        .or_else(|| value.get("timestamp"))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(plan) = heavy.get_mut("plan").and_then(Value::as_object_mut) {
        for key in ["original", "target"] {
            plan.entry(key).or_insert_with(|| root_group(&version));
        }
    }
    let heavy_json = heavy.to_string();
    Frame {
        sse_light: Bytes::from(marathon::sse::frame(&event_type, &light.to_string())),
        sse_heavy: Some(Bytes::from(marathon::sse::frame(&event_type, &heavy_json))),
        body: Bytes::from(heavy_json),
        event_type,
    }
}

/// The smallest root group strict clients (marathon-python) parse.
fn root_group(version: &Value) -> Value {
    json!({"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": [], "version": version})
}

/// What one SSE client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamQuery {
    /// Empty = every type (except Mesos scheduler events).
    pub event_types: BTreeSet<String>,
    pub light: bool,
}

impl StreamQuery {
    pub fn parse(query: &str) -> StreamQuery {
        let mut q = StreamQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "event_type" | "event_type[]" if !v.is_empty() => {
                    q.event_types.insert(v.into_owned());
                }
                "plan-format" => q.light = v.eq_ignore_ascii_case("light"),
                _ => {}
            }
        }
        q
    }

    /// Whether this client gets events of this type. Unfiltered streams never
    /// get `scheduler_*` events: marathon-python raises on those types.
    pub fn wants(&self, event_type: &str) -> bool {
        if self.event_types.is_empty() {
            !event_type.starts_with("scheduler_")
        } else {
            self.event_types.contains(event_type)
        }
    }
}

/// Whether an `Accept` header allows `text/event-stream` (a missing header does
/// not: Marathon answers 405 then).
pub fn accepts_event_stream(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused && matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_events_have_one_frame_for_every_format() {
        let v = json!({"eventType": "status_update_event", "timestamp": "2026-11-22T04:00:00.000Z", "taskId": "a"});
        let f = prepare(&v);
        assert_eq!(f.event_type, "status_update_event");
        assert_eq!(f.sse(true), f.sse(false));
        // Marathon's framing: `event: <type>` CRLF, `data: <one-line JSON>` CRLF,
        // blank CRLF line. JSON key order is not part of the contract (serde_json
        // maps are sorted), so the data line is compared as JSON.
        let sse = std::str::from_utf8(f.sse(true)).unwrap();
        let data = sse
            .strip_prefix("event: status_update_event\r\ndata: ")
            .and_then(|rest| rest.strip_suffix("\r\n\r\n"))
            .unwrap_or_else(|| panic!("bad framing: {sse:?}"));
        assert!(
            !data.contains('\n') && !data.contains('\r'),
            "one line: {data:?}"
        );
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), v);
        assert_eq!(data.as_bytes(), f.body.as_ref(), "SSE data = callback body");
        assert_eq!(serde_json::from_slice::<Value>(&f.body).unwrap(), v);
    }

    #[test]
    fn deployment_events_get_groups_in_heavy_format_only() {
        let v = json!({"eventType": "deployment_info", "timestamp": "t1",
            "plan": {"id": "p", "version": "v1", "steps": [], "original": {"id": "/big"}},
            "currentStep": {"actions": []}});
        let f = prepare(&v);
        let data = |b: &Bytes| -> Value {
            let s = std::str::from_utf8(b).unwrap();
            let line = s.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(line).unwrap()
        };
        let light = data(f.sse(true));
        assert!(light["plan"].get("original").is_none() && light["plan"].get("target").is_none());
        let heavy = data(f.sse(false));
        assert_eq!(
            heavy["plan"]["original"],
            json!({"id": "/big"}),
            "kept when given"
        );
        assert_eq!(
            heavy["plan"]["target"],
            json!({"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": [], "version": "v1"})
        );
        assert_eq!(serde_json::from_slice::<Value>(&f.body).unwrap(), heavy);
    }

    #[test]
    fn stream_query_and_filters() {
        let q = StreamQuery::parse("event_type=a&event_type=b&plan-format=light&x=1");
        assert_eq!(
            q.event_types,
            ["a", "b"].into_iter().map(String::from).collect()
        );
        assert!(q.light);
        assert!(q.wants("a") && !q.wants("c"));
        let all = StreamQuery::parse("");
        assert!(!all.light);
        assert!(all.wants("status_update_event"));
        assert!(!all.wants("scheduler_registered_event"));
        assert!(StreamQuery::parse("event_type=scheduler_registered_event")
            .wants("scheduler_registered_event"));
    }

    #[test]
    fn accept_header_table() {
        let table = [
            (Some("text/event-stream"), true),
            (Some("application/json, text/event-stream;q=0.9"), true),
            (Some("TEXT/EVENT-STREAM"), true),
            (Some("*/*"), true),
            (Some("text/*"), true),
            (Some("text/event-stream;q=0"), false),
            (Some("application/json"), false),
            (Some("text/html"), false),
            (None, false),
        ];
        for (accept, want) in table {
            assert_eq!(accepts_event_stream(accept), want, "{accept:?}");
        }
    }
}
