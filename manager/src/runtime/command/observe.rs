//! A read-only view of the command tasks that run under a data dir, for
//! observers outside the manager (the fault suite and the soak in `bench`
//! compare it with the manager's tasks and the registry): the task
//! directories whose marker names a live process (pid and start time, so a
//! recycled pid does not count). Reads files and /proc only; never signals,
//! never writes.

use std::path::Path;

use super::files::{self, TaskFile};
use super::procfs;

/// One command task whose process runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveTask {
    pub task_id: String,
    pub app_id: String,
    /// The task's leader process.
    pub pid: i32,
}

/// Every task under `<data_dir>/tasks/` whose leader process runs, sorted by
/// task id. A directory without a readable marker or spec (a launch in
/// progress, a task that never started) is not listed.
pub fn live_tasks(data_dir: &Path) -> Vec<LiveTask> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("tasks")) else {
        return Vec::new();
    };
    let mut out: Vec<LiveTask> = dir
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let TaskFile { marker, spec } = files::read_task(&path).ok()??;
            if !procfs::same_process_alive(marker.pid, marker.task_start) {
                return None;
            }
            let spec = spec?;
            Some(LiveTask {
                task_id: spec.task_id,
                app_id: spec.app_id,
                pid: marker.pid,
            })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::command::files::{Marker, TaskSpec};

    /// Writes a task's marker, in `task.json` or in the two files of
    /// earlier releases.
    fn write_marker(dir: &Path, spec: &TaskSpec, marker: Marker, legacy: bool) {
        if legacy {
            files::write_json(&dir.join(files::SPEC), spec).unwrap();
            files::write_json(&dir.join(files::MARKER), &marker).unwrap();
        } else {
            let task = TaskFile {
                marker,
                spec: Some(spec.clone()),
            };
            files::write_json(&dir.join(files::TASK), &task).unwrap();
        }
    }

    #[test]
    fn a_task_is_live_only_while_its_marked_process_runs() {
        for legacy in [false, true] {
            let data = tempfile::tempdir().unwrap();
            let dir = data.path().join("tasks").join("web.1");
            std::fs::create_dir_all(&dir).unwrap();
            let spec = TaskSpec {
                task_id: "web.1".into(),
                app_id: "/web".into(),
                program: "/bin/sh".into(),
                args: vec![],
                env: Default::default(),
                kill_grace_ms: 0,
                log_limit: 0,
                nice: 0,
            };
            if legacy {
                files::write_json(&dir.join(files::SPEC), &spec).unwrap();
            }
            assert!(live_tasks(data.path()).is_empty(), "no marker yet");

            let me = std::process::id() as i32;
            let start = procfs::stat(me).unwrap().start;
            let marker = Marker {
                shim_pid: me,
                shim_start: start,
                pid: me,
                task_start: start,
            };
            write_marker(&dir, &spec, marker, legacy);
            assert_eq!(
                live_tasks(data.path()),
                vec![LiveTask {
                    task_id: "web.1".into(),
                    app_id: "/web".into(),
                    pid: me
                }],
                "legacy layout: {legacy}"
            );

            // Same pid, another start time: a recycled pid is not our task.
            let recycled = Marker {
                task_start: start + 1,
                ..marker
            };
            write_marker(&dir, &spec, recycled, legacy);
            assert!(
                live_tasks(data.path()).is_empty(),
                "legacy layout: {legacy}"
            );
        }
    }
}
