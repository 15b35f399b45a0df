//! One upstream `/v2/events` stream shared by every open page: each event
//! becomes a short line (kept in a small ring for pages that open later)
//! and is broadcast, as Server-Sent Events, to every page.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cluster::Cluster;

/// Lines kept for pages that open later.
pub const RECENT: usize = 30;

/// One line of the events strip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The event's timestamp as Marathon wrote it.
    pub time: String,
    pub event_type: String,
    pub text: String,
    /// `info`, `warn` or `bad` (the line's colour).
    pub level: &'static str,
}

/// Whether the shared upstream stream is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub connected: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

/// The relay's shared state; the pump ([`Relay::run`]) fills it.
#[derive(Debug)]
pub struct Relay {
    tx: broadcast::Sender<Arc<str>>,
    recent: Mutex<VecDeque<Line>>,
    upstream: Mutex<Upstream>,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            tx: broadcast::channel(256).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            upstream: Mutex::new(Upstream {
                connected: false,
                reason: Some("connecting".into()),
            }),
        }
    }
}

/// An SSE frame (`data` is one line of JSON).
pub fn frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The strip's line for an event, `None` for events the strip leaves out
/// (stream attachments, subscriptions, duplicates of status updates).
pub fn summarize(event: &Value) -> Option<Line> {
    let kind = str_at(event, &["eventType"])?;
    let app = str_at(event, &["appId"])
        .or_else(|| str_at(event, &["runSpecId"]))
        .unwrap_or("?");
    let task = str_at(event, &["taskId"])
        .or_else(|| str_at(event, &["instanceId"]))
        .unwrap_or("?");
    let plan_id = str_at(event, &["plan", "id"])
        .or_else(|| str_at(event, &["id"]))
        .unwrap_or("?");
    let (text, level) = match kind {
        "status_update_event" => {
            let status = str_at(event, &["taskStatus"]).unwrap_or("?");
            let level = match status {
                "TASK_FAILED" | "TASK_ERROR" | "TASK_LOST" | "TASK_DROPPED" | "TASK_GONE" => "bad",
                "TASK_KILLED" | "TASK_KILLING" | "TASK_UNREACHABLE" => "warn",
                _ => "info",
            };
            (format!("{app}: task {task} {status}"), level)
        }
        "health_status_changed_event" | "instance_health_changed_event" => {
            let alive = event
                .get("alive")
                .or_else(|| event.get("healthy"))
                .and_then(Value::as_bool);
            match alive {
                Some(true) => (format!("{app}: task {task} healthy"), "info"),
                Some(false) => (format!("{app}: task {task} unhealthy"), "bad"),
                None => (format!("{app}: task {task} health unknown"), "warn"),
            }
        }
        "failed_health_check_event" => (format!("{app}: health check failed on {task}"), "bad"),
        "unhealthy_task_kill_event" | "unhealthy_instance_kill_event" => {
            (format!("{app}: killing unhealthy task {task}"), "bad")
        }
        "app_terminated_event" => (format!("{app}: removed"), "warn"),
        "api_post_event" => {
            let id = str_at(event, &["appDefinition", "id"]).unwrap_or("?");
            (format!("{id}: changed through the API"), "info")
        }
        "deployment_info" | "deployment_step_success" | "deployment_step_failure" => {
            let actions: Vec<String> = event
                .get("currentStep")
                .and_then(|s| s.get("actions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{} {}",
                        str_at(a, &["action"]).unwrap_or("?"),
                        str_at(a, &["app"]).unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            let (what, level) = match kind {
                "deployment_info" => ("step started", "info"),
                "deployment_step_success" => ("step done", "info"),
                _ => ("step failed", "bad"),
            };
            (
                format!("deployment {plan_id}: {what}: {}", actions.join(", ")),
                level,
            )
        }
        "deployment_success" => (format!("deployment {plan_id}: done"), "info"),
        "deployment_failed" => (format!("deployment {plan_id}: failed"), "bad"),
        _ => return None,
    };
    Some(Line {
        time: str_at(event, &["timestamp"]).unwrap_or("").to_string(),
        event_type: kind.to_string(),
        text,
        level,
    })
}

impl Relay {
    /// A receiver of every frame from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// The latest lines, newest first.
    pub fn recent(&self) -> Vec<Line> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().cloned().collect()
    }

    pub fn upstream(&self) -> Upstream {
        self.upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The frame telling a page the upstream's state.
    pub fn upstream_frame(&self) -> String {
        frame("upstream", &json!(self.upstream()))
    }

    fn set_upstream(&self, connected: bool, reason: Option<String>) {
        let changed = {
            let mut u = self.upstream.lock().unwrap_or_else(|e| e.into_inner());
            let changed = u.connected != connected;
            *u = Upstream { connected, reason };
            changed
        };
        if changed {
            let _ = self.tx.send(self.upstream_frame().into());
        }
    }

    fn publish(&self, event: &Value) {
        let kind = event.get("eventType").and_then(Value::as_str).unwrap_or("");
        if let Some(line) = summarize(event) {
            {
                let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if r.len() == RECENT {
                    r.pop_front();
                }
                r.push_back(line.clone());
            }
            let _ = self.tx.send(frame("line", &json!(line)).into());
        } else if !matches!(
            kind,
            "event_stream_attached" | "event_stream_detached" | "subscribe_event"
        ) {
            // Not a line, but the picture may have changed.
            let _ = self
                .tx
                .send(frame("changed", &json!({"eventType": kind})).into());
        }
    }

    /// Pumps the upstream stream into the relay until `shutdown`. The
    /// stream reconnects by itself; each (re)connection tells pages to
    /// refresh, since events may have been missed meanwhile.
    pub async fn run(self: Arc<Self>, cluster: Arc<Cluster>, shutdown: CancellationToken) {
        let mut events = cluster.events();
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => break,
                item = events.next() => item,
            };
            match item {
                None => break,
                Some(Ok(marathon::StreamItem::Connected)) => {
                    info!(marathon = %cluster.marathon_url(), "dashboard event relay connected");
                    self.set_upstream(true, None);
                    let _ = self
                        .tx
                        .send(frame("changed", &json!({"eventType": "reconnected"})).into());
                }
                Some(Ok(marathon::StreamItem::Disconnected)) => {
                    if self.upstream().connected {
                        warn!("dashboard event relay disconnected; reconnecting");
                    }
                    let reason = self
                        .upstream()
                        .reason
                        .unwrap_or_else(|| "the stream ended".into());
                    self.set_upstream(false, Some(reason));
                }
                Some(Ok(marathon::StreamItem::Event(ev))) => {
                    match serde_json::from_str::<Value>(&ev.to_json()) {
                        Ok(v) => self.publish(&v),
                        Err(e) => debug!(error = %e, "event not relayed"),
                    }
                }
                // One event this client cannot read: the stream goes on.
                Some(Err(marathon::Error::Decode(e))) => {
                    debug!(error = %e, "an event could not be read; pages refresh instead");
                    let _ = self
                        .tx
                        .send(frame("changed", &json!({"eventType": "unreadable"})).into());
                }
                Some(Err(e)) => {
                    if self.upstream().connected {
                        warn!(error = %e, "dashboard event relay disconnected; reconnecting");
                    }
                    self.set_upstream(false, Some(e.to_string()));
                }
            }
        }
        self.set_upstream(false, Some("the deployer is stopping".into()));
    }
}

/// How often an idle page's stream gets a comment, so proxies and the
/// browser keep it open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_events_people_watch() {
        let cases = [
            (
                json!({"eventType": "status_update_event", "appId": "/web", "taskId": "t1", "taskStatus": "TASK_FAILED", "timestamp": "T"}),
                Some(("/web: task t1 TASK_FAILED", "bad")),
            ),
            (
                json!({"eventType": "health_status_changed_event", "appId": "/web", "instanceId": "i1", "alive": false}),
                Some(("/web: task i1 unhealthy", "bad")),
            ),
            (
                json!({"eventType": "deployment_info", "plan": {"id": "d1"}, "currentStep": {"actions": [{"action": "ScaleApplication", "app": "/web"}]}}),
                Some(("deployment d1: step started: ScaleApplication /web", "info")),
            ),
            (
                json!({"eventType": "deployment_success", "id": "d1"}),
                Some(("deployment d1: done", "info")),
            ),
            (
                json!({"eventType": "api_post_event", "appDefinition": {"id": "/web"}}),
                Some(("/web: changed through the API", "info")),
            ),
            (json!({"eventType": "event_stream_attached"}), None),
            (json!({"nothing": 1}), None),
        ];
        for (event, want) in cases {
            let got = summarize(&event).map(|l| (l.text, l.level));
            let want = want.map(|(t, l)| (t.to_string(), l));
            assert_eq!(got, want, "{event}");
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_newest_first() {
        let relay = Relay::default();
        let mut rx = relay.subscribe();
        for i in 0..(RECENT + 5) {
            relay.publish(&json!({"eventType": "app_terminated_event", "appId": format!("/a{i}")}));
        }
        let recent = relay.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].text, format!("/a{}: removed", RECENT + 4));
        let first = rx.try_recv().unwrap();
        assert!(first.starts_with("event: line\ndata: "), "{first}");
        assert!(first.contains("/a0: removed"), "{first}");
    }
}
