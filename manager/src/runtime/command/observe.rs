//! A read-only view of the command tasks that run under a data dir, for
//! observers outside the manager (the fault suite and the soak in `bench`
//! compare it with the manager's tasks and the registry): the task
//! directories whose marker names a live process (pid and start time, so a
//! recycled pid does not count). Reads files and /proc only; never signals,
//! never writes.

use std::path::Path;

use super::files::{self, Marker, TaskSpec};
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
            let marker: Marker = files::read_json(&path.join(files::MARKER)).ok()??;
            if !procfs::same_process_alive(marker.pid, marker.task_start) {
                return None;
            }
            let spec: TaskSpec = files::read_json(&path.join(files::SPEC)).ok()??;
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

    #[test]
    fn a_task_is_live_only_while_its_marked_process_runs() {
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
        };
        files::write_json(&dir.join(files::SPEC), &spec).unwrap();
        assert!(live_tasks(data.path()).is_empty(), "no marker yet");

        let me = std::process::id() as i32;
        let start = procfs::stat(me).unwrap().start;
        let marker = Marker {
            shim_pid: me,
            shim_start: start,
            pid: me,
            task_start: start,
        };
        files::write_json(&dir.join(files::MARKER), &marker).unwrap();
        assert_eq!(
            live_tasks(data.path()),
            vec![LiveTask {
                task_id: "web.1".into(),
                app_id: "/web".into(),
                pid: me
            }]
        );

        // Same pid, another start time: a recycled pid is not our task.
        let recycled = Marker {
            task_start: start + 1,
            ..marker
        };
        files::write_json(&dir.join(files::MARKER), &recycled).unwrap();
        assert!(live_tasks(data.path()).is_empty());
    }
}
