//! One watched service: registry events in, debounced net changes out.
//!
//! The registry's watch starts with the full state (`Relisted`), which is
//! the baseline and is never reported; after a reconnect it resumes where it
//! stopped, and after compaction it re-lists: either way the state here
//! stays the registry's, and the debouncer compares it with what was last
//! reported, so callbacks see the net change and never a spurious one.

use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use registry::{Instance, WatchEvent};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::config::WatchSpec;
use crate::debounce::Debouncer;
use crate::delta::{InstanceSet, Node};
use crate::hook::Notification;

/// Follows `events` (from [`registry::Registry::watch`] on the service's
/// scope) and sends every reportable change to `out`. With `states` (template
/// mode), also publishes the full instance set after the first listing and
/// after every revision that changed any record in it (not only the fields
/// [`crate::delta`] reports). Returns when the event stream ends or `out` is
/// closed.
pub async fn follow<S>(
    spec: WatchSpec,
    events: S,
    window: Duration,
    out: mpsc::Sender<Notification>,
    states: Option<watch::Sender<Option<InstanceSet>>>,
) where
    S: Stream<Item = registry::Result<WatchEvent>> + Unpin,
{
    let mut events = events.peekable();
    let mut state = InstanceSet::new();
    let mut debouncer: Option<Debouncer> = None;
    let mut failing = false;
    loop {
        let deadline = debouncer.as_ref().and_then(Debouncer::deadline);
        let change = tokio::select! {
            item = events.next() => {
                let Some(item) = item else { return };
                match item {
                    Ok(event) => {
                        if failing {
                            info!(watch = %spec.name, "registry watch resumed");
                            failing = false;
                        }
                        let relisted = matches!(event, WatchEvent::Relisted(_));
                        let revision = revision_of(&event);
                        apply(&spec, &mut state, event);
                        // One etcd revision (a transaction) is one change:
                        // apply its other events before deciding.
                        while let Some(r) = revision {
                            let next = std::pin::Pin::new(&mut events).peek().now_or_never();
                            match next {
                                Some(Some(Ok(e))) if revision_of(e) == Some(r) => {}
                                _ => break,
                            }
                            if let Some(Some(Ok(e))) = events.next().now_or_never() {
                                apply(&spec, &mut state, e);
                            }
                        }
                        let change = match debouncer.as_mut() {
                            Some(d) => d.offer(Instant::now(), &state),
                            None if relisted => {
                                info!(watch = %spec.name, instances = state.len(), "watching");
                                debouncer = Some(Debouncer::new(window, state.clone()));
                                None
                            }
                            // Events before the first listing cannot happen
                            // with a watch started without a revision.
                            None => None,
                        };
                        if let (Some(tx), Some(_)) = (&states, &debouncer) {
                            publish(tx, &state);
                        }
                        change
                    }
                    Err(e) => {
                        if !failing {
                            warn!(watch = %spec.name, error = %e, "registry watch interrupted, retrying");
                            failing = true;
                        } else {
                            debug!(watch = %spec.name, error = %e, "registry watch still failing");
                        }
                        None
                    }
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                debouncer.as_mut().and_then(|d| d.expire(Instant::now(), &state))
            }
        };
        if let Some(change) = change {
            let names = |nodes: &[Node]| {
                nodes
                    .iter()
                    .map(|n| n.container.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            info!(
                watch = %spec.name,
                delta = change.delta,
                added = %names(&change.added),
                removed = %names(&change.removed),
                instances = change.nodes.len(),
                "instances changed"
            );
            let notification = Notification {
                watch: spec.name.clone(),
                change,
            };
            if out.send(notification).await.is_err() {
                return;
            }
        }
    }
}

/// Publishes `state` unless the receivers already have exactly it.
fn publish(tx: &watch::Sender<Option<InstanceSet>>, state: &InstanceSet) {
    tx.send_if_modified(|current| {
        if current.as_ref() == Some(state) {
            false
        } else {
            *current = Some(state.clone());
            true
        }
    });
}

fn revision_of(event: &WatchEvent) -> Option<i64> {
    match event {
        WatchEvent::Put(_, r) | WatchEvent::Delete(_, r) => Some(*r),
        WatchEvent::Relisted(_) => None,
    }
}

/// Applies one registry event to the watch's instance set.
pub fn apply(spec: &WatchSpec, state: &mut InstanceSet, event: WatchEvent) {
    match event {
        WatchEvent::Put(instance, _) => {
            if instance.service != spec.service {
                return;
            }
            if wanted(spec, &instance) {
                let node = node(&instance);
                state.insert(node.container.clone(), node);
            } else if let Some(old) = state.get(&instance.container) {
                // Relabelled out of the watch.
                if group_of(old) == Some(instance.group.as_str()) {
                    state.remove(&instance.container);
                }
            }
        }
        WatchEvent::Delete(name, _) => {
            if let Some(old) = state.get(&name.container) {
                if group_of(old) == Some(name.group.as_str()) {
                    state.remove(&name.container);
                }
            }
        }
        WatchEvent::Relisted(snapshot) => {
            *state = snapshot
                .instances()
                .filter(|i| i.service == spec.service && wanted(spec, i))
                .map(|i| {
                    let n = node(i);
                    (n.container.clone(), n)
                })
                .collect();
        }
    }
}

fn wanted(spec: &WatchSpec, instance: &Instance) -> bool {
    match &spec.label {
        Some(label) => instance.has_labels(&[label]),
        None => true,
    }
}

fn node(instance: &Instance) -> Node {
    Node::new(
        instance.container.clone(),
        serde_json::to_value(instance).expect("an instance always serialises"),
    )
}

fn group_of(node: &Node) -> Option<&str> {
    node.record.get("group").and_then(|g| g.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc as fmpsc;
    use registry::{Entry, InstanceName, Port, Snapshot};

    fn instance(container: &str, group: &str, port: u16) -> Instance {
        Instance {
            schema: 1,
            service: "ingestor".into(),
            group: group.into(),
            labels: registry::naming::labels_from_group(group),
            container: container.into(),
            app_id: format!("/{group}/ingestor"),
            app_version: "v1".into(),
            node: "node-1".into(),
            host: "10.0.0.5".into(),
            internal_address: None,
            ports: [("api".to_string(), Port::tcp(port, 5000))].into(),
            state: "TASK_RUNNING".into(),
            healthy: None,
            started_at: String::new(),
            owner: "default".into(),
        }
    }

    fn snapshot(instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            revision: 10,
            entries: instances
                .into_iter()
                .map(|i| Entry {
                    key: i.key("/services").unwrap(),
                    name: i.name().unwrap(),
                    mod_revision: 5,
                    instance: i,
                })
                .collect(),
            invalid: vec![],
        }
    }

    fn spec(name: &str) -> WatchSpec {
        crate::config::parse_watches(name).unwrap().remove(0)
    }

    /// Every helper event gets its own revision (one write each).
    fn revision() -> i64 {
        static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(100);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn put(i: Instance) -> registry::Result<WatchEvent> {
        Ok(WatchEvent::Put(i, revision()))
    }

    /// The next notification; paused time makes the timeout instant when
    /// nothing can come.
    async fn next(rx: &mut mpsc::Receiver<Notification>) -> Notification {
        tokio::time::timeout(Duration::from_secs(600), rx.recv())
            .await
            .expect("a notification")
            .expect("channel open")
    }

    fn delete(container: &str, group: &str) -> registry::Result<WatchEvent> {
        Ok(WatchEvent::Delete(
            InstanceName::new("ingestor", group, container).unwrap(),
            revision(),
        ))
    }

    fn added(n: &Notification) -> Vec<&str> {
        n.change
            .added
            .iter()
            .map(|n| n.container.as_str())
            .collect()
    }

    #[test]
    fn label_filter_and_groups() {
        let s = spec("ingestor.testing");
        let mut state = InstanceSet::new();
        apply(
            &s,
            &mut state,
            WatchEvent::Relisted(snapshot(vec![
                instance("a", "testing", 1),
                instance("b", "default", 2),
                instance("c", "prod.testing", 3),
            ])),
        );
        assert_eq!(state.keys().collect::<Vec<_>>(), ["a", "c"]);
        apply(&s, &mut state, put(instance("d", "dev", 4)).unwrap());
        assert_eq!(state.len(), 2);
        // A delete of a same-named container in another group is not ours.
        apply(&s, &mut state, delete("a", "dev").unwrap());
        assert_eq!(state.len(), 2);
        apply(&s, &mut state, delete("a", "testing").unwrap());
        assert_eq!(state.keys().collect::<Vec<_>>(), ["c"]);
    }

    /// Drives `follow` with paused time: the real debouncing timers, no waits.
    async fn harness(
        window: Duration,
    ) -> (
        fmpsc::UnboundedSender<registry::Result<WatchEvent>>,
        mpsc::Receiver<Notification>,
        tokio::task::JoinHandle<()>,
    ) {
        let (events_tx, events_rx) = fmpsc::unbounded();
        let (out_tx, out_rx) = mpsc::channel(64);
        let task = tokio::spawn(follow(spec("ingestor"), events_rx, window, out_tx, None));
        (events_tx, out_rx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn no_callback_at_start_or_on_unchanged_rewrites() {
        let (tx, mut rx, _task) = harness(Duration::ZERO).await;
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![instance(
            "a", "default", 1,
        )]))))
        .unwrap();
        tx.unbounded_send(put(instance("a", "default", 1))).unwrap();
        let mut health_flip = instance("a", "default", 1);
        health_flip.healthy = Some(false);
        tx.unbounded_send(put(health_flip)).unwrap();
        // The same state after a re-list (reconnect or compaction).
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![instance(
            "a", "default", 1,
        )]))))
        .unwrap();
        tx.unbounded_send(Err(registry::Error::WatchClosed))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(rx.try_recv().is_err(), "no change was reported");
        // A real change goes through.
        tx.unbounded_send(put(instance("b", "default", 2))).unwrap();
        let n = next(&mut rx).await;
        assert_eq!((n.change.delta, added(&n)), (1, vec!["b"]));
    }

    #[tokio::test(start_paused = true)]
    async fn undebounced_changes_fire_one_by_one() {
        let (tx, mut rx, _task) = harness(Duration::ZERO).await;
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![]))))
            .unwrap();
        tx.unbounded_send(put(instance("a", "default", 1))).unwrap();
        tx.unbounded_send(put(instance("b", "default", 2))).unwrap();
        let first = next(&mut rx).await;
        let second = next(&mut rx).await;
        assert_eq!((first.change.delta, added(&first)), (1, vec!["a"]));
        assert_eq!((second.change.delta, added(&second)), (1, vec!["b"]));
        assert_eq!(second.change.nodes.len(), 2);
        assert_eq!(second.watch, "ingestor");
    }

    #[tokio::test(start_paused = true)]
    async fn one_transaction_is_one_change() {
        let (tx, mut rx, _task) = harness(Duration::ZERO).await;
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![instance(
            "a", "default", 1,
        )]))))
        .unwrap();
        tx.unbounded_send(Ok(WatchEvent::Put(instance("b", "default", 2), 20)))
            .unwrap();
        tx.unbounded_send(Ok(WatchEvent::Put(instance("c", "default", 3), 20)))
            .unwrap();
        tx.unbounded_send(Ok(WatchEvent::Delete(
            InstanceName::new("ingestor", "default", "a").unwrap(),
            20,
        )))
        .unwrap();
        tx.unbounded_send(Ok(WatchEvent::Put(instance("d", "default", 4), 21)))
            .unwrap();
        let first = next(&mut rx).await;
        assert_eq!((first.change.delta, added(&first)), (1, vec!["b", "c"]));
        assert_eq!(first.change.removed[0].container, "a");
        let second = next(&mut rx).await;
        assert_eq!((second.change.delta, added(&second)), (1, vec!["d"]));
    }

    #[tokio::test(start_paused = true)]
    async fn debounced_burst_fires_first_at_once_then_one_net_change() {
        let window = Duration::from_millis(100);
        let (tx, mut rx, _task) = harness(window).await;
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![]))))
            .unwrap();
        let start = Instant::now();
        tx.unbounded_send(put(instance("a", "default", 1))).unwrap();
        let first = next(&mut rx).await;
        assert_eq!(added(&first), vec!["a"]);
        assert_eq!(Instant::now(), start, "the first change is not delayed");
        for (i, name) in ["b", "c", "d"].iter().enumerate() {
            tx.unbounded_send(put(instance(name, "default", 10 + i as u16)))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.unbounded_send(delete("d", "default")).unwrap();
        let net = next(&mut rx).await;
        assert_eq!(
            Instant::now(),
            start + window,
            "fired when the window closed"
        );
        assert_eq!((net.change.delta, added(&net)), (2, vec!["b", "c"]));
        assert!(net.change.removed.is_empty());
        // Nothing more: the next window closes empty.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn states_follow_every_record_change_but_not_identical_rewrites() {
        let (events_tx, events_rx) = fmpsc::unbounded();
        let (out_tx, _out_rx) = mpsc::channel(64);
        let (state_tx, mut state_rx) = watch::channel(None);
        let _task = tokio::spawn(follow(
            spec("ingestor"),
            events_rx,
            Duration::ZERO,
            out_tx,
            Some(state_tx),
        ));
        let healthy = |rx: &mut watch::Receiver<Option<InstanceSet>>| {
            rx.borrow_and_update().as_ref().map(|s| {
                s.values()
                    .map(|n| n.record["healthy"].clone())
                    .collect::<Vec<_>>()
            })
        };
        // The first listing is published, even an empty one.
        events_tx
            .unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![]))))
            .unwrap();
        state_rx.changed().await.unwrap();
        assert_eq!(healthy(&mut state_rx), Some(vec![]));
        events_tx
            .unbounded_send(put(instance("a", "default", 1)))
            .unwrap();
        state_rx.changed().await.unwrap();
        assert_eq!(healthy(&mut state_rx), Some(vec![serde_json::Value::Null]));
        // An identical rewrite publishes nothing; a health change does.
        events_tx
            .unbounded_send(put(instance("a", "default", 1)))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!state_rx.has_changed().unwrap());
        let mut flip = instance("a", "default", 1);
        flip.healthy = Some(false);
        events_tx.unbounded_send(put(flip)).unwrap();
        state_rx.changed().await.unwrap();
        assert_eq!(healthy(&mut state_rx), Some(vec![serde_json::json!(false)]));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!state_rx.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn relist_after_compaction_reports_the_net_change() {
        let (tx, mut rx, _task) = harness(Duration::ZERO).await;
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![
            instance("a", "default", 1),
            instance("b", "default", 2),
        ]))))
        .unwrap();
        tx.unbounded_send(Err(registry::Error::WatchClosed))
            .unwrap();
        tx.unbounded_send(Ok(WatchEvent::Relisted(snapshot(vec![
            instance("b", "default", 2),
            instance("c", "default", 3),
            instance("d", "default", 4),
        ]))))
        .unwrap();
        let n = next(&mut rx).await;
        assert_eq!(n.change.delta, 1);
        assert_eq!(added(&n), vec!["c", "d"]);
        assert_eq!(n.change.removed[0].container, "a");
    }
}
