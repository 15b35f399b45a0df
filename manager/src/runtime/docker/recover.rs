//! Restart safety, as pure decisions: which containers to adopt, which known
//! tasks are gone, which containers are ours but unknown (orphans); and how a
//! container's final state reads as an [`Exit`].

use std::collections::HashSet;

use bollard::models::{ContainerState, ContainerStateStatusEnum};

use crate::runtime::{Exit, KnownTask};

/// One container carrying this manager's label, as listed by Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub container_id: String,
    /// `mdo.task-id` label (empty when missing).
    pub task_id: String,
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecoveryAction {
    /// Known and still running: watch it again, change nothing.
    Adopt {
        task_id: String,
        container_id: String,
    },
    /// Known but exited (`Some`: read its exit, then remove it) or vanished (`None`).
    Gone {
        task_id: String,
        container_id: Option<String>,
    },
    /// Ours but unknown to the state (or a duplicate): stop and remove.
    RemoveOrphan {
        task_id: String,
        container_id: String,
    },
}

/// Known Docker tasks are matched to containers by handle (container id)
/// first, then by task-id label (a running container preferred). Every
/// container not matched is an orphan. Non-Docker known tasks are ignored.
pub(crate) fn plan_recovery(known: &[KnownTask], observed: &[Observed]) -> Vec<RecoveryAction> {
    let mut used: HashSet<&str> = HashSet::new();
    let mut actions = Vec::new();
    for task in known.iter().filter(|t| t.workload_is_docker) {
        let by_handle = observed.iter().find(|o| {
            !task.handle.is_empty()
                && o.container_id == task.handle
                && !used.contains(o.container_id.as_str())
        });
        let by_label = || {
            let mut candidates: Vec<&Observed> = observed
                .iter()
                .filter(|o| o.task_id == task.task_id && !used.contains(o.container_id.as_str()))
                .collect();
            candidates.sort_by_key(|o| !o.running);
            candidates.first().copied()
        };
        match by_handle.or_else(by_label) {
            Some(o) => {
                used.insert(o.container_id.as_str());
                actions.push(if o.running {
                    RecoveryAction::Adopt {
                        task_id: task.task_id.clone(),
                        container_id: o.container_id.clone(),
                    }
                } else {
                    RecoveryAction::Gone {
                        task_id: task.task_id.clone(),
                        container_id: Some(o.container_id.clone()),
                    }
                });
            }
            None => actions.push(RecoveryAction::Gone {
                task_id: task.task_id.clone(),
                container_id: None,
            }),
        }
    }
    for o in observed {
        if !used.contains(o.container_id.as_str()) {
            actions.push(RecoveryAction::RemoveOrphan {
                task_id: o.task_id.clone(),
                container_id: o.container_id.clone(),
            });
        }
    }
    actions
}

/// How a stopped container ended, in Marathon's terms.
pub(crate) fn classify_exit(state: &ContainerState) -> Exit {
    if state.status == Some(ContainerStateStatusEnum::CREATED) {
        return Exit::Lost {
            message: "the container was created but never started".into(),
        };
    }
    let error = state.error.as_deref().filter(|e| !e.is_empty());
    classify_code(
        state.exit_code.unwrap_or(-1),
        state.oom_killed == Some(true),
        error,
    )
}

/// How a container that ran ended, from its exit code, whether it ran out
/// of memory and the engine's error, if any: what `inspect` says
/// ([`classify_exit`]) and what a `die` event says (its `exitCode`, after
/// an `oom` event when out of memory) read the same.
pub(crate) fn classify_code(code: i64, oom: bool, error: Option<&str>) -> Exit {
    if oom {
        return Exit::Failed {
            message: format!(
                "OOM killed: the container exceeded its memory limit (exit code {code})"
            ),
        };
    }
    if let Some(error) = error {
        return Exit::Failed {
            message: format!("container error: {error} (exit code {code})"),
        };
    }
    match code {
        0 => Exit::Finished,
        129..=192 => Exit::Failed {
            message: format!("killed by signal {} (exit code {code})", code - 128),
        },
        _ => Exit::Failed {
            message: format!("exited with code {code}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: &str, handle: &str, docker: bool) -> KnownTask {
        KnownTask {
            task_id: id.into(),
            app_id: "/a".into(),
            handle: handle.into(),
            workload_is_docker: docker,
        }
    }

    fn obs(cid: &str, task: &str, running: bool) -> Observed {
        Observed {
            container_id: cid.into(),
            task_id: task.into(),
            running,
        }
    }

    #[test]
    fn recovery_table() {
        let known = [
            known("t1", "c1", true),  // running -> adopt
            known("t2", "c2", true),  // exited -> gone with exit
            known("t3", "c3", true),  // vanished -> gone
            known("t4", "", true),    // matched by label
            known("t5", "c5", false), // a command task: not ours to judge
        ];
        let observed = [
            obs("c1", "t1", true),
            obs("c2", "t2", false),
            obs("c4", "t4", true),
            obs("c9", "t9", true),  // unknown -> orphan
            obs("c1b", "t1", true), // duplicate of t1 -> orphan
            obs("cx", "", false),   // ours without a task id -> orphan
        ];
        let got = plan_recovery(&known, &observed);
        use RecoveryAction::*;
        assert_eq!(
            got,
            vec![
                Adopt {
                    task_id: "t1".into(),
                    container_id: "c1".into()
                },
                Gone {
                    task_id: "t2".into(),
                    container_id: Some("c2".into())
                },
                Gone {
                    task_id: "t3".into(),
                    container_id: None
                },
                Adopt {
                    task_id: "t4".into(),
                    container_id: "c4".into()
                },
                RemoveOrphan {
                    task_id: "t9".into(),
                    container_id: "c9".into()
                },
                RemoveOrphan {
                    task_id: "t1".into(),
                    container_id: "c1b".into()
                },
                RemoveOrphan {
                    task_id: "".into(),
                    container_id: "cx".into()
                },
            ]
        );
    }

    #[test]
    fn label_match_prefers_the_running_container() {
        let got = plan_recovery(
            &[known("t1", "", true)],
            &[obs("old", "t1", false), obs("new", "t1", true)],
        );
        assert_eq!(
            got[0],
            RecoveryAction::Adopt {
                task_id: "t1".into(),
                container_id: "new".into()
            }
        );
        assert_eq!(
            got[1],
            RecoveryAction::RemoveOrphan {
                task_id: "t1".into(),
                container_id: "old".into()
            }
        );
    }

    #[test]
    fn exits() {
        let st = |code: i64, oom: bool, err: &str| ContainerState {
            exit_code: Some(code),
            oom_killed: Some(oom),
            error: Some(err.into()),
            ..Default::default()
        };
        assert_eq!(classify_exit(&st(0, false, "")), Exit::Finished);
        let created = ContainerState {
            status: Some(ContainerStateStatusEnum::CREATED),
            exit_code: Some(0),
            ..Default::default()
        };
        assert!(matches!(classify_exit(&created), Exit::Lost { .. }));
        let msg = |e: Exit| match e {
            Exit::Failed { message } => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(classify_exit(&st(3, false, ""))), "exited with code 3");
        assert!(msg(classify_exit(&st(137, true, ""))).starts_with("OOM killed"));
        assert_eq!(
            msg(classify_exit(&st(143, false, ""))),
            "killed by signal 15 (exit code 143)"
        );
        assert!(msg(classify_exit(&st(127, false, "exec failed"))).contains("exec failed"));
    }
}
