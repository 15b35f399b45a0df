//! Recycled task directories: an ended task's directory, once it is no
//! longer kept, is emptied into `<data-dir>/spare/<uuid>/` instead of
//! removed, and the next launch renames it into place instead of creating
//! one.
//!
//! A launch would otherwise create three inodes (the task's directory, its
//! `sandbox/`, `task.json`) and its end one more (`exit.json`), all deleted
//! again when the directory goes. A recycled directory keeps its sandbox
//! (when the task left it empty) and its two records as the temp files the
//! next ones are written through (`task.json.tmp`, `exit.json.tmp`: written
//! over, cut to length, then renamed), so a task that writes nothing costs
//! no inode at all. Creating inodes is not free: on ext4 without a journal
//! (this project's test machines) each new inode skips every one deleted in
//! the last half minute, which under churn made inode allocation ~10 % of a
//! burst of launches.
//!
//! What a recycled directory holds is what a new one would: an empty
//! `sandbox/` (mode 0700) and nothing a reader takes for a record (recovery
//! reads `task.json` and `exit.json` only, and never looks in `spare/`).
//! Anything else (output, logs, a sandbox with files, a symbolic link) is
//! removed, and a directory that cannot be emptied is removed whole. The
//! shim of an ended task has exited before its directory is recycled (a task
//! ends when its shim does); processes that left the task's process group
//! run as the same user as every task and could reach any task directory
//! already.
//!
//! A runtime also makes spares ahead ([`Spares::fill`]: the same empty
//! sandbox and empty temp files), once no task was launched, killed or ended
//! for a while, so the first launches of a burst (a deploy, a new node) find
//! some as well:
//! after churn, creating the inodes of 100 launches was what made a first
//! burst of them half as slow again as a later one.
//!
//! Each runtime keeps its spares in a folder of its own, `spare/<uuid>/`,
//! and removes the other runtimes' folders when it starts, on a thread of
//! its own (a half-recycled directory of a crash is never used; an earlier
//! runtime still recycling in its own folder, as in tests, does not get in
//! the way).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::files;

/// Most directories kept for reuse; beyond that they are removed.
pub const MAX_SPARE: usize = 1024;

/// The spare directories of one runtime.
pub(super) struct Spares {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    seq: AtomicU64,
}

impl Spares {
    /// A new folder in `<data-dir>/spare`, whose other folders are removed.
    pub(super) fn new(data_dir: &Path) -> std::io::Result<Spares> {
        let root = data_dir.join("spare");
        files::create_private_dir(&root)?;
        let earlier = std::fs::read_dir(&root)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        // On a thread of its own: a restarted manager serves before the
        // earlier runtime's spares (hundreds of inodes) are gone.
        if !earlier.is_empty() {
            std::thread::spawn(move || {
                for path in earlier {
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        tracing::debug!(dir = %path.display(), error = %e, "removing earlier spare directories");
                    }
                }
            });
        }
        let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
        files::create_private_dir(&dir)?;
        Ok(Spares {
            dir,
            free: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        })
    }

    /// Directories ready for a launch.
    pub(super) fn len(&self) -> usize {
        self.free.lock().expect("spare lock").len()
    }

    /// Moves a spare directory to `task_dir` (which must not exist); false
    /// when there is none (or it could not be moved: then it is removed).
    pub(super) fn take(&self, task_dir: &Path) -> bool {
        let Some(spare) = self.free.lock().expect("spare lock").pop() else {
            return false;
        };
        match std::fs::rename(&spare, task_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(spare = %spare.display(), error = %e, "reusing a task directory");
                let _ = std::fs::remove_dir_all(&spare);
                false
            }
        }
    }

    /// Makes new spare directories, each what a recycled one is (an empty
    /// sandbox and the two records' empty temp files), until `target` are
    /// ready or `stop` says so; how many it made. For the launches of a
    /// burst: made while nothing launches, so a launch renames one into
    /// place instead of creating its inodes on the way to TASK_RUNNING.
    pub(super) fn fill(&self, target: usize, stop: impl Fn() -> bool) -> std::io::Result<usize> {
        let target = target.min(MAX_SPARE);
        let mut made = 0;
        while self.len() < target && !stop() {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let spare = self.dir.join(n.to_string());
            if let Err(e) = make(&spare) {
                let _ = std::fs::remove_dir_all(&spare);
                return Err(e);
            }
            self.free.lock().expect("spare lock").push(spare);
            made += 1;
        }
        Ok(made)
    }

    /// Takes an ended task's directory out of `tasks/` and keeps it, emptied,
    /// for a later launch; removes it when that fails or enough are kept.
    pub(super) fn recycle(&self, task_dir: &Path) -> std::io::Result<()> {
        if self.len() >= MAX_SPARE {
            return std::fs::remove_dir_all(task_dir);
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let spare = self.dir.join(n.to_string());
        // Out of tasks/ first: from here on no reader takes it for a task.
        if let Err(e) = std::fs::rename(task_dir, &spare) {
            if e.kind() == std::io::ErrorKind::NotFound && !task_dir.exists() {
                return Err(e);
            }
            return std::fs::remove_dir_all(task_dir);
        }
        match empty(&spare) {
            Ok(()) => {
                self.free.lock().expect("spare lock").push(spare);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(dir = %spare.display(), error = %e, "emptying an ended task's directory");
                std::fs::remove_dir_all(&spare)
            }
        }
    }
}

/// Creates `dir` as a recycled directory is left: an empty sandbox (0700)
/// and the records' empty temp files (0600).
fn make(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mkdir = |path: &Path| std::fs::DirBuilder::new().mode(0o700).create(path);
    mkdir(dir)?;
    mkdir(&dir.join(files::SANDBOX))?;
    for record in [files::TASK, files::EXIT] {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(files::tmp_path(&dir.join(record)))?;
    }
    Ok(())
}

/// Leaves `dir` as a fresh task directory with the records' temp files.
fn empty(dir: &Path) -> std::io::Result<()> {
    let private = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    private(dir, 0o700)?;
    let records = [files::TASK, files::EXIT].map(|r| dir.join(r));
    let is_record = |path: &Path| {
        records
            .iter()
            .any(|r| path == r || path == files::tmp_path(r))
    };
    let mut sandbox = false;
    let entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type()?;
        if path.file_name() == Some(files::SANDBOX.as_ref())
            && kind.is_dir()
            && std::fs::read_dir(&path)?.next().is_none()
        {
            private(&path, 0o700)?;
            sandbox = true;
        } else if is_record(&path) && kind.is_file() {
            // Below.
        } else if kind.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    // Regular files only are left of them: each record becomes its temp file.
    for record in &records {
        let tmp = files::tmp_path(record);
        if record.exists() {
            private(record, 0o600)?;
            std::fs::rename(record, &tmp)?;
        } else if tmp.exists() {
            private(&tmp, 0o600)?;
        }
    }
    if !sandbox {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join(files::SANDBOX))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn names(dir: &Path) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in walk(dir) {
            out.insert(e.strip_prefix(dir).unwrap().display().to_string());
        }
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.symlink_metadata().unwrap().is_dir() {
                out.extend(walk(&p));
            }
        }
        out
    }

    /// What a spare directory holds: a sandbox and the records' temp files.
    fn fresh() -> BTreeSet<String> {
        ["sandbox", "task.json.tmp", "exit.json.tmp"]
            .map(String::from)
            .into()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn an_ended_directory_comes_back_empty_but_for_the_records_temp_files() {
        let data = tempfile::tempdir().unwrap();
        let spares = Spares::new(data.path()).unwrap();
        let elsewhere = data.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("precious"), "x").unwrap();

        // Everything a task directory may hold after a messy task.
        let old = data.path().join("tasks").join("web.1");
        std::fs::create_dir_all(old.join("sandbox").join("deep")).unwrap();
        std::fs::write(old.join("sandbox").join("deep").join("f"), "secret").unwrap();
        std::os::unix::fs::symlink(&elsewhere, old.join("sandbox").join("link")).unwrap();
        for f in [
            "task.json",
            "exit.json",
            "output.log",
            "output.log.1",
            "shim.log",
            "kill",
        ] {
            std::fs::write(old.join(f), f).unwrap();
        }
        std::fs::set_permissions(
            old.join("task.json"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::os::unix::fs::symlink(&elsewhere, old.join("exit.json.tmp")).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();

        spares.recycle(&old).unwrap();
        assert!(!old.exists(), "out of tasks/");
        assert_eq!(spares.len(), 1);

        let new = data.path().join("tasks").join("web.2");
        assert!(spares.take(&new));
        assert_eq!(spares.len(), 0);
        assert_eq!(
            names(&new),
            fresh(),
            "a fresh sandbox and the records' temp files; a symbolic link in their place removed"
        );
        assert_eq!(mode(&new), 0o700);
        assert_eq!(mode(&new.join("sandbox")), 0o700);
        assert_eq!(mode(&new.join("task.json.tmp")), 0o600);
        assert_eq!(
            std::fs::read(new.join("exit.json.tmp")).unwrap(),
            b"exit.json"
        );
        assert_eq!(
            names(&elsewhere),
            BTreeSet::from(["precious".into()]),
            "nothing followed through a link"
        );
        // A record written through it is whole.
        files::write_atomic(&new.join(files::TASK), b"{}").unwrap();
        assert_eq!(std::fs::read(new.join(files::TASK)).unwrap(), b"{}");

        // None left: the launch makes its own.
        assert!(!spares.take(&data.path().join("tasks").join("web.3")));
    }

    #[test]
    fn an_empty_sandbox_and_both_records_are_kept_as_they_are() {
        let data = tempfile::tempdir().unwrap();
        let spares = Spares::new(data.path()).unwrap();
        let old = data.path().join("tasks").join("a.1");
        std::fs::create_dir_all(old.join("sandbox")).unwrap();
        std::fs::write(old.join("task.json"), "t").unwrap();
        std::fs::write(old.join("exit.json"), "e").unwrap();
        use std::os::unix::fs::MetadataExt;
        let inodes =
            |d: &Path, names: [&str; 3]| names.map(|n| std::fs::metadata(d.join(n)).unwrap().ino());
        let before = inodes(&old, ["sandbox", "task.json", "exit.json"]);
        spares.recycle(&old).unwrap();
        let new = data.path().join("tasks").join("a.2");
        assert!(spares.take(&new));
        assert_eq!(
            inodes(&new, ["sandbox", "task.json.tmp", "exit.json.tmp"]),
            before,
            "the same inodes, renamed"
        );
    }

    #[test]
    fn a_new_runtime_starts_with_no_spares_and_a_full_pool_removes() {
        let data = tempfile::tempdir().unwrap();
        let spares = Spares::new(data.path()).unwrap();
        for i in 0..3 {
            let d = data.path().join("tasks").join(format!("t.{i}"));
            std::fs::create_dir_all(&d).unwrap();
            spares.recycle(&d).unwrap();
        }
        assert_eq!(std::fs::read_dir(&spares.dir).unwrap().count(), 3);
        let again = Spares::new(data.path()).unwrap();
        assert_eq!(again.len(), 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spares.dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the earlier runtime's spares removed"
            );
            std::thread::yield_now();
        }
        assert_eq!(std::fs::read_dir(&again.dir).unwrap().count(), 0);

        for _ in 0..MAX_SPARE {
            again.free.lock().unwrap().push(data.path().join("x"));
        }
        let d = data.path().join("tasks").join("t.9");
        std::fs::create_dir_all(&d).unwrap();
        again.recycle(&d).unwrap();
        assert!(!d.exists(), "removed");
        assert_eq!(std::fs::read_dir(&again.dir).unwrap().count(), 0);

        // Its folder gone (another runtime started): removed all the same.
        std::fs::remove_dir_all(&again.dir).unwrap();
        again.free.lock().unwrap().clear();
        let d = data.path().join("tasks").join("t.10");
        std::fs::create_dir_all(d.join("sandbox")).unwrap();
        again.recycle(&d).unwrap();
        assert!(!d.exists(), "removed when it cannot be kept");
    }

    #[test]
    fn made_spares_are_what_a_recycled_directory_is_up_to_the_target() {
        let data = tempfile::tempdir().unwrap();
        let spares = Spares::new(data.path()).unwrap();
        assert_eq!(spares.fill(3, || false).unwrap(), 3);
        assert_eq!(spares.len(), 3);
        assert_eq!(spares.fill(3, || false).unwrap(), 0, "already there");
        let new = data.path().join("tasks").join("w.1");
        std::fs::create_dir_all(new.parent().unwrap()).unwrap();
        assert!(spares.take(&new));
        assert_eq!(names(&new), fresh());
        assert_eq!(mode(&new), 0o700);
        assert_eq!(mode(&new.join("sandbox")), 0o700);
        assert_eq!(mode(&new.join("task.json.tmp")), 0o600);
        assert_eq!(mode(&new.join("exit.json.tmp")), 0o600);
        assert_eq!(std::fs::read(new.join("task.json.tmp")).unwrap(), b"");
        // A record written through the empty temp file is whole.
        files::write_atomic(&new.join(files::TASK), b"{}").unwrap();
        assert_eq!(std::fs::read(new.join(files::TASK)).unwrap(), b"{}");

        // Stopped when asked; never past the pool's bound.
        let calls = std::cell::Cell::new(0);
        let made = spares
            .fill(10, || {
                calls.set(calls.get() + 1);
                calls.get() > 2
            })
            .unwrap();
        assert_eq!((made, spares.len()), (2, 4));
        spares
            .free
            .lock()
            .unwrap()
            .resize(MAX_SPARE, data.path().join("x"));
        assert_eq!(spares.fill(MAX_SPARE + 5, || false).unwrap(), 0);

        // A folder that cannot hold them: the error, nothing added.
        std::fs::remove_dir_all(&spares.dir).unwrap();
        spares.free.lock().unwrap().clear();
        assert!(spares.fill(1, || false).is_err());
        assert_eq!(spares.len(), 0);
    }
}
