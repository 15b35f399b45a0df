//! The writer's memory of what it did: recently killed task ids and its own
//! records as last written or read.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::plan::Change;
use crate::record_store::{Instance, RecordId};

/// Recently killed task ids, bounded in count and age.
pub(super) struct Tombstones {
    pub(super) order: VecDeque<(Instant, String)>,
    pub(super) set: HashSet<String>,
    pub(super) ttl: Duration,
    pub(super) cap: usize,
}

impl Tombstones {
    pub(super) fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_string()) {
            self.order.push_back((Instant::now(), id.to_string()));
        }
        while self.order.len() > self.cap
            || self
                .order
                .front()
                .is_some_and(|(t, _)| t.elapsed() > self.ttl)
        {
            if let Some((_, id)) = self.order.pop_front() {
                self.set.remove(&id);
            }
        }
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// One of our records as last written or read, compact: its key names and
/// its JSON (equal records serialise to equal bytes). One allocation for the
/// JSON instead of the twenty or so of an [`Instance`].
pub(super) struct Written {
    pub(super) service: Box<str>,
    pub(super) group: Box<str>,
    pub(super) json: Box<[u8]>,
    /// The etcd mod revision this was read at, or put at by this process
    /// (`None`: written since, revision not known yet). A later read of the
    /// key at the same revision holds the same value, so it reuses this
    /// entry instead of serialising the record again; a delete compares
    /// against it instead of reading the key first.
    pub(super) revision: Option<i64>,
}

impl Written {
    /// A record this process is about to write (its revision is not known).
    pub(super) fn of(r: &Instance) -> Written {
        Written {
            service: r.service.as_str().into(),
            group: r.group.as_str().into(),
            json: r.to_json().into_boxed_slice(),
            revision: None,
        }
    }

    /// A record read from etcd at `revision`.
    pub(super) fn read(r: &Instance, revision: i64) -> Written {
        Written {
            revision: Some(revision),
            ..Written::of(r)
        }
    }

    /// The change removing this record: at its revision when known (one
    /// transaction), else after reading the key.
    pub(super) fn delete(&self, container: &str) -> Change {
        let id = self.id(container);
        match self.revision {
            Some(revision) if revision > 0 => Change::DeleteAt(id, revision),
            _ => Change::Delete(id),
        }
    }

    pub(super) fn id(&self, container: &str) -> RecordId {
        RecordId {
            service: self.service.to_string(),
            group: self.group.to_string(),
            container: container.to_string(),
        }
    }
}
