//! Watches that survive: resume from the last seen revision after errors
//! (with backoff), re-list after compaction.

use std::pin::Pin;
use std::time::Duration;

use backoff::Backoff;
use etcd_client::{EventType, WatchOptions};
use futures::Stream;
use tracing::{debug, warn};

use crate::connection::Registry;
use crate::error::{Error, Result};
use crate::instances::Snapshot;
use crate::keys::{parse_instance_key, InstanceName, Scope};
use crate::record::Instance;

/// One change seen by a watch.
#[allow(clippy::large_enum_variant)] // moved once to the consumer
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A record was written (created or rewritten) at this revision.
    Put(Instance, i64),
    /// A record was removed at this revision.
    Delete(InstanceName, i64),
    /// The full state of the scope: the first item when the watch started
    /// without a revision, and after the history needed to resume was
    /// compacted away. Consumers replace their state with it and compute the
    /// net delta against what they had.
    Relisted(Snapshot),
}

/// Items are `Err` for problems the stream recovers from by itself (etcd
/// down, an invalid record written); it never ends on its own.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Registry {
    /// Watches `scope`. With `from_revision = Some(r)` events start at
    /// revision `r` (use `snapshot.revision + 1` after a read). With `None`
    /// it lists first and yields [`WatchEvent::Relisted`], then follows
    /// changes from there.
    ///
    /// After an error the watch resumes from the revision after the last
    /// event it delivered, so nothing is missed or repeated; if that history
    /// was compacted, or the store's revision went backwards (etcd's data
    /// was reset), it re-lists and yields `Relisted`. Errors are yielded
    /// as `Err` items and the stream goes on with exponential backoff
    /// (100 ms to 5 s). Drop the stream to stop watching.
    pub fn watch(&self, scope: Scope, from_revision: Option<i64>) -> WatchStream {
        let registry = self.clone();
        Box::pin(async_stream::stream! {
            let key_prefix = match scope.key_prefix(registry.prefix()) {
                Ok(p) => p,
                Err(e) => {
                    // A bad scope can never work: report it and end.
                    yield Err(e);
                    return;
                }
            };
            let mut next = from_revision.filter(|r| *r > 0);
            let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
            let mut after_error = false;
            loop {
                // Back after an error: if the store's revision went backwards
                // (etcd's data was reset), history cannot be resumed: re-list.
                if let (true, Some(r)) = (after_error, next) {
                    match registry.current_revision(&key_prefix).await {
                        Ok(current) if current < r - 1 => {
                            warn!(prefix = %key_prefix, current, expected = r - 1,
                                "etcd revision went backwards, re-listing");
                            next = None;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            yield Err(e);
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        }
                    }
                }
                after_error = false;
                let start = match next {
                    Some(r) => r,
                    None => match registry.list(&scope).await {
                        Ok(snapshot) => {
                            let r = snapshot.revision + 1;
                            next = Some(r);
                            yield Ok(WatchEvent::Relisted(snapshot));
                            r
                        }
                        Err(e) => {
                            if registry.is_unauthenticated(&e) {
                                let _ = registry.reauthenticate().await;
                            }
                            yield Err(e);
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        }
                    },
                };
                let options = WatchOptions::new().with_prefix().with_start_revision(start);
                let mut client = registry.watch_client();
                let opened = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.watch(key_prefix.clone(), Some(options)),
                )
                .await;
                let (_watcher, mut stream) = match opened {
                    Ok(Ok(pair)) => pair,
                    Ok(Err(e)) => {
                        after_error = true;
                        let e = Error::from(e);
                        if registry.is_unauthenticated(&e) {
                            let _ = registry.reauthenticate().await;
                        }
                        yield Err(e);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                    Err(_) => {
                        after_error = true;
                        yield Err(Error::Timeout(Duration::from_secs(10)));
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                };
                debug!(prefix = %key_prefix, start, "watch opened");
                // Inner loop: deliver events until the stream breaks.
                let failure: Option<Error> = loop {
                    match stream.message().await {
                        Ok(Some(resp)) => {
                            if resp.compact_revision() > 0 {
                                warn!(
                                    prefix = %key_prefix,
                                    compact_revision = resp.compact_revision(),
                                    "watch history compacted, re-listing"
                                );
                                next = None;
                                break None;
                            }
                            if resp.canceled() {
                                break Some(Error::WatchCancelled(resp.cancel_reason().to_string()));
                            }
                            backoff.reset();
                            for event in resp.events() {
                                let Some(kv) = event.kv() else { continue };
                                let revision = kv.mod_revision();
                                next = Some(revision + 1);
                                let key = String::from_utf8_lossy(kv.key()).into_owned();
                                match event.event_type() {
                                    EventType::Put => match registry.decode(&key, kv.value()) {
                                        Ok((_, instance)) => {
                                            yield Ok(WatchEvent::Put(instance, revision));
                                        }
                                        Err((Some(_), reason)) => {
                                            yield Err(Error::InvalidRecord { key, reason });
                                        }
                                        // Not an instance key: not ours to report.
                                        Err((None, _)) => {}
                                    },
                                    EventType::Delete => {
                                        if let Some(name) = parse_instance_key(registry.prefix(), &key) {
                                            yield Ok(WatchEvent::Delete(name, revision));
                                        }
                                    }
                                }
                            }
                        }
                        Ok(None) => break Some(Error::WatchClosed),
                        Err(e) => break Some(Error::from(e)),
                    }
                };
                if let Some(e) = failure {
                    after_error = true;
                    if registry.is_unauthenticated(&e)
                        || matches!(&e, Error::WatchCancelled(r) if r.contains("auth"))
                    {
                        let _ = registry.reauthenticate().await;
                    }
                    warn!(prefix = %key_prefix, error = %e, "watch interrupted, resuming");
                    yield Err(e);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        })
    }
}
