//! On-disk layout of one command task, shared by the runtime and the shim.
//!
//! ```text
//! <data_dir>/tasks/<task_id>/
//!     task.json      written by the shim once the task runs (0600: holds env): the marker,
//!                    pids + start times (ours-ness proof), and the spec it runs (what the
//!                    runtime sent with the launch request)
//!     kill           a kill request: the grace period in milliseconds (written before SIGTERM to the shim,
//!                    only when it is not the spec's own)
//!     exit.json      written by the shim when the task's process group is gone
//!     output.log     stdout+stderr, interleaved; rotated to output.log.1 at the size limit
//!                    (created by the task's first output)
//!     shim.log       the shim's own diagnostics (created by the first line)
//!     sandbox/       the task's working directory
//! ```
//!
//! A launch creates three inodes: the two directories and `task.json`
//! (every inode costs, on a journal-less ext4 most of all, where each
//! allocation skips the inodes freed in the last minutes). Earlier
//! releases wrote the spec (`spec.json`, by the runtime) and the marker
//! (`marker.json`, by the shim) apart; [`read_task`] still reads that
//! layout, so tasks started before an upgrade are adopted. `spec.json`
//! is also what `mdo-task-shim <TASK_DIR>`, run alone, reads.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::Exit;

pub const TASK: &str = "task.json";
/// The spec of `mdo-task-shim <TASK_DIR>` run alone, and of earlier releases.
pub const SPEC: &str = "spec.json";
/// The marker of earlier releases.
pub const MARKER: &str = "marker.json";
pub const KILL: &str = "kill";
pub const EXIT: &str = "exit.json";
pub const OUTPUT: &str = "output.log";
pub const OUTPUT_OLD: &str = "output.log.1";
pub const SHIM_LOG: &str = "shim.log";
pub const SANDBOX: &str = "sandbox";

/// What the shim runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: String,
    pub app_id: String,
    /// Executable (`/bin/sh` for `cmd`, `args[0]` otherwise; looked up on the task's PATH).
    pub program: String,
    pub args: Vec<String>,
    /// The complete environment of the task (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    pub kill_grace_ms: u64,
    /// Output kept per file before rotation (so at most twice this on disk).
    pub log_limit: u64,
    /// The task's CPU weight as a nice value, 0 (a whole CPU or more) to 19
    /// (see [`super::weight`]); absent in the records of older shims.
    #[serde(default)]
    pub nice: i32,
}

/// Proof that a process group is ours: pids plus their kernel start times
/// (a recycled pid has another start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub shim_pid: i32,
    pub shim_start: u64,
    /// The task's leader; also its process group id (the shim's session holds it).
    pub pid: i32,
    pub task_start: u64,
}

impl Marker {
    /// The words after `started` in a shim's answer: `<pid> <shim pid>
    /// <shim start> <task start>`, so the runtime need not read the file.
    pub fn to_answer(self) -> String {
        format!(
            "{} {} {} {}",
            self.pid, self.shim_pid, self.shim_start, self.task_start
        )
    }

    /// [`Marker::to_answer`] read back; `None` for anything else.
    pub fn from_answer(text: &str) -> Option<Marker> {
        let mut words = text.split(' ');
        let mut next = || words.next();
        let pid = next()?.parse().ok()?;
        let shim_pid = next()?.parse().ok()?;
        let shim_start = next()?.parse().ok()?;
        let task_start = next()?.parse().ok()?;
        if next().is_some() {
            return None;
        }
        Some(Marker {
            shim_pid,
            shim_start,
            pid,
            task_start,
        })
    }
}

/// `task.json`: the marker's fields at the top (as `marker.json` had
/// them), and the spec the task runs (the shim always writes it; a
/// marker alone still proves which processes are the task's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFile {
    #[serde(flatten)]
    pub marker: Marker,
    #[serde(default)]
    pub spec: Option<TaskSpec>,
}

/// The task file of `dir`; `Ok(None)` when the shim has not written it (a
/// launch in progress, a task that never started). Reads the two files of
/// earlier releases when there is no `task.json`.
pub fn read_task(dir: &Path) -> std::io::Result<Option<TaskFile>> {
    if let Some(task) = read_json::<TaskFile>(&dir.join(TASK))? {
        return Ok(Some(task));
    }
    let Some(marker) = read_json::<Marker>(&dir.join(MARKER))? else {
        return Ok(None);
    };
    let spec = read_json::<TaskSpec>(&dir.join(SPEC))?;
    Ok(Some(TaskFile { marker, spec }))
}

/// How the task ended, as the shim saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// A kill request was being served when the task ended.
    #[serde(default)]
    pub killed: bool,
    /// The task could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExitRecord {
    /// Marathon/Mesos-style outcome.
    pub fn to_exit(&self) -> Exit {
        if self.killed {
            return Exit::Killed;
        }
        if let Some(e) = &self.error {
            return Exit::Failed { message: e.clone() };
        }
        match (self.code, self.signal) {
            (Some(0), _) => Exit::Finished,
            (Some(n), _) => Exit::Failed {
                message: format!("Command exited with status {n}"),
            },
            (None, Some(s)) => Exit::Failed {
                message: format!("Command killed by signal {}", signal_name(s)),
            },
            (None, None) => Exit::Lost {
                message: "Command ended with an unknown status".into(),
            },
        }
    }
}

fn signal_name(s: i32) -> String {
    match nix::sys::signal::Signal::try_from(s) {
        Ok(sig) => format!("{s} ({})", sig.as_str()),
        Err(_) => s.to_string(),
    }
}

/// Task ids become directory names: same rule as the registry's container names.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= crate::bounds::MAX_TASK_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Writes `value` as JSON through a temp file + rename, so readers never see half a record.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    {
        // The temp file may be a recycled one (`spare`). Not truncated on
        // open but cut to length after the write: ext4 flushes a file
        // truncated to 0 when it is closed (its replace-by-truncate
        // heuristic), a disk write per record for nothing.
        #[allow(clippy::suspicious_open_options)]
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .open(&tmp)?;
        let old_len = f.metadata()?.len();
        // No fsync: these records describe live processes, which a host
        // crash ends anyway; rename alone keeps readers from half a record.
        f.write_all(bytes)?;
        if old_len > bytes.len() as u64 {
            f.set_len(bytes.len() as u64)?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// The temp file `path` is written through (see [`write_atomic`]).
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `Ok(None)` when the file does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The task's output: at most `limit` bytes (the newest), starting at a line
/// boundary when cut; then the last `tail` lines if asked.
pub fn read_output(dir: &Path, limit: u64, tail: Option<usize>) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    for name in [OUTPUT_OLD, OUTPUT] {
        match std::fs::read(dir.join(name)) {
            Ok(b) => all.extend_from_slice(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let limit = limit as usize;
    if all.len() > limit {
        let mut start = all.len() - limit;
        if let Some(nl) = all[start..].iter().position(|&b| b == b'\n') {
            start += nl + 1;
        }
        all.drain(..start);
    }
    if let Some(n) = tail {
        let start = tail_start(&all, n);
        all.drain(..start);
    }
    Ok(all)
}

/// Byte offset where the last `n` lines begin (a final newline ends the last line).
fn tail_start(bytes: &[u8], n: usize) -> usize {
    if n == 0 {
        return bytes.len();
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_travels_in_the_answer() {
        let m = Marker {
            shim_pid: 41,
            shim_start: 123_456,
            pid: 42,
            task_start: 123_457,
        };
        assert_eq!(m.to_answer(), "42 41 123456 123457");
        assert_eq!(Marker::from_answer(&m.to_answer()), Some(m));
        // An older shim's answer (the pid alone), or anything else: none.
        for other in ["42", "42 41 1", "42 41 1 2 3", "a b c d", ""] {
            assert_eq!(Marker::from_answer(other), None, "{other:?}");
        }
    }

    #[test]
    fn exit_records_map_to_marathon_messages() {
        let table = [
            (
                ExitRecord {
                    code: Some(0),
                    ..Default::default()
                },
                Exit::Finished,
            ),
            (
                ExitRecord {
                    code: Some(3),
                    ..Default::default()
                },
                Exit::Failed {
                    message: "Command exited with status 3".into(),
                },
            ),
            (
                ExitRecord {
                    signal: Some(9),
                    ..Default::default()
                },
                Exit::Failed {
                    message: "Command killed by signal 9 (SIGKILL)".into(),
                },
            ),
            (
                ExitRecord {
                    signal: Some(15),
                    killed: true,
                    ..Default::default()
                },
                Exit::Killed,
            ),
            (
                ExitRecord {
                    error: Some("cannot start".into()),
                    ..Default::default()
                },
                Exit::Failed {
                    message: "cannot start".into(),
                },
            ),
        ];
        for (record, want) in table {
            assert_eq!(record.to_exit(), want, "{record:?}");
        }
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let b = b"a\nb\nc\n";
        assert_eq!(&b[tail_start(b, 1)..], b"c\n");
        assert_eq!(&b[tail_start(b, 2)..], b"b\nc\n");
        assert_eq!(&b[tail_start(b, 9)..], b"a\nb\nc\n");
        assert_eq!(&b[tail_start(b, 0)..], b"");
        let partial = b"a\nb";
        assert_eq!(&partial[tail_start(partial, 1)..], b"b");
    }

    #[test]
    fn task_ids_must_be_safe_file_names() {
        assert!(valid_task_id("dev_web.instance-1234._app.1"));
        for bad in ["", ".", "..", "a/b", "a b", "x\n"] {
            assert!(!valid_task_id(bad), "{bad:?}");
        }
    }
}
