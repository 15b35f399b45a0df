//! What to do with each task directory after a manager restart: a pure
//! decision over what the state knows and what the disk and /proc show.

use std::collections::{BTreeMap, BTreeSet};

use super::files::ExitRecord;
use crate::runtime::Exit;

/// What a task directory shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The shim is alive and the task has not ended.
    Running,
    /// The shim recorded the task's end.
    Ended(ExitRecord),
    /// The shim is gone without a record but processes of the task's group live.
    Stray,
    /// Nothing runs and nothing was recorded.
    Vanished,
    /// A file needed to judge the task cannot be read (the reason).
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Known and running: watch it again, as it is.
    Adopt(String),
    /// Known, no longer running: report how it ended.
    Gone(String, Exit),
    /// Known, but only unsupervised leftovers run: kill them, report it lost.
    KillStray(String, Exit),
    /// Ours, unknown to the state, still running: stop it and remove its files.
    KillOrphan(String),
    /// Ours, unknown, only leftovers run: kill them and remove its files.
    KillStrayOrphan(String),
    /// Known, but its files cannot be read: neither adopted nor gone (why).
    Skip(String, String),
}

pub const SHIM_DIED: &str = "The task's supervisor died; its processes were killed";
pub const VANISHED: &str = "The task ended while the manager was down; exit status unknown";

/// `known`: task ids the state believes run. `found`: our task directories.
pub fn plan(known: &BTreeSet<String>, found: &BTreeMap<String, Found>) -> Vec<Action> {
    let mut actions = Vec::new();
    for id in known {
        actions.push(match found.get(id) {
            Some(Found::Running) => Action::Adopt(id.clone()),
            Some(Found::Ended(record)) => Action::Gone(id.clone(), record.to_exit()),
            Some(Found::Stray) => Action::KillStray(
                id.clone(),
                Exit::Lost {
                    message: SHIM_DIED.into(),
                },
            ),
            Some(Found::Unreadable(why)) => Action::Skip(id.clone(), why.clone()),
            Some(Found::Vanished) | None => Action::Gone(
                id.clone(),
                Exit::Lost {
                    message: VANISHED.into(),
                },
            ),
        });
    }
    for (id, what) in found {
        if known.contains(id) {
            continue;
        }
        match what {
            Found::Running => actions.push(Action::KillOrphan(id.clone())),
            Found::Stray => actions.push(Action::KillStrayOrphan(id.clone())),
            // Finished tasks' files stay for their logs until garbage-collected;
            // unreadable ones are not judged (nothing is killed on a guess).
            Found::Ended(_) | Found::Vanished | Found::Unreadable(_) => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_plan_table() {
        let ended = |code| {
            Found::Ended(ExitRecord {
                code: Some(code),
                ..Default::default()
            })
        };
        let found: BTreeMap<String, Found> = [
            ("run-known", Found::Running),
            ("done-known", ended(0)),
            ("fail-known", ended(2)),
            ("stray-known", Found::Stray),
            ("vanished-known", Found::Vanished),
            ("run-orphan", Found::Running),
            ("stray-orphan", Found::Stray),
            ("done-orphan", ended(0)),
            ("vanished-orphan", Found::Vanished),
            ("garbled-known", Found::Unreadable("bad marker".into())),
            ("garbled-orphan", Found::Unreadable("bad marker".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let known: BTreeSet<String> = [
            "run-known",
            "done-known",
            "fail-known",
            "stray-known",
            "vanished-known",
            "missing-known",
            "garbled-known",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let lost = |m: &str| Exit::Lost { message: m.into() };
        let want = vec![
            Action::Gone("done-known".into(), Exit::Finished),
            Action::Gone(
                "fail-known".into(),
                Exit::Failed {
                    message: "Command exited with status 2".into(),
                },
            ),
            Action::Skip("garbled-known".into(), "bad marker".into()),
            Action::Gone("missing-known".into(), lost(VANISHED)),
            Action::Adopt("run-known".into()),
            Action::KillStray("stray-known".into(), lost(SHIM_DIED)),
            Action::Gone("vanished-known".into(), lost(VANISHED)),
            Action::KillOrphan("run-orphan".into()),
            Action::KillStrayOrphan("stray-orphan".into()),
        ];
        assert_eq!(plan(&known, &found), want);
    }
}
