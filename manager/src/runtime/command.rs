//! Command runtime: `cmd`/`args` apps as local process groups.
//!
//! Each task runs under its own supervisor, a shim of the `mdo-task-shim`
//! binary (built from `src/bin/mdo-task-shim.rs`, found next to the manager
//! executable or set in [`CommandConfig::shim`]). The runtime execs that
//! binary once, as the spawner (`mdo-task-shim -`, `command/spawner.rs`),
//! which forks one shim per launch; the runtime watches each shim through a
//! pidfd (`command/watch.rs`), whoever its parent. The shim leaves the
//! manager's session, so
//! tasks survive a manager restart (even kill -9), and it records everything
//! a later manager needs in the task's directory under the data dir (layout in
//! `command/files.rs`): the spec and a marker proving the process group is
//! ours (pids + kernel start times) in one file, the size-capped output and
//! the exit status.
//!
//! - Environment: a task sees exactly the environment the core built for it,
//!   on top of `PATH`, `HOME` and `LANG` taken from the manager (like a
//!   Mesos agent's command executor gives a usable shell); nothing else of the
//!   manager's environment (credentials, `MDO_AUTH_TOKEN`...) leaks in.
//! - Working directory: a fresh `sandbox/` in the task's directory.
//! - Kill: SIGTERM to the task's process group, SIGKILL to the group after the
//!   grace period; when a task's main process ends on its own, whatever is left
//!   of its group is SIGKILLed: no task process outlives its task.
//! - Launches: at most [`LAUNCH_SLOTS`] talk to the spawner at once, the
//!   rest wait their turn before their start timeout begins; a launch given
//!   up all the same removes its task's directory, so a shim that gets to it
//!   late starts nothing (or stops what it started within a second).
//! - Recovery: [`Runtime::recover`] adopts known tasks whose shim still runs
//!   (same ids, no restart) and keeps watching them; reports known tasks that
//!   ended (with their recorded status); stops tasks of ours the state does
//!   not know. Only processes proven ours by a marker are ever signalled.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    EventSender, ExecCheck, Exit, KnownTask, LaunchSpec, NodeResources, Recovery, Runtime,
    RuntimeError, RuntimeEvent, Started, Workload,
};

mod files;
mod launcher;
mod observe;
use super::procfs;
mod recovery;
pub mod shim;
mod spare;
mod spawner;
mod watch;
pub mod weight;

pub use observe::{live_tasks, LiveTask};

/// Whether a task id can name a task here (its directory name).
pub use files::valid_task_id;

use files::{ExitRecord, Marker, TaskSpec};

/// File name of the supervisor binary.
pub const SHIM_BINARY: &str = "mdo-task-shim";

/// Settings of the command runtime; [`CommandConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Task directories live in `<data_dir>/tasks/`.
    pub data_dir: PathBuf,
    /// The supervisor binary; `None` = next to the running executable (or one
    /// level up, for test binaries in `target/*/deps`).
    pub shim: Option<PathBuf>,
    /// Output kept per task: `logs` returns at most this many bytes (the
    /// newest); at most twice this is on disk.
    pub log_limit_bytes: u64,
    /// Directories of ended tasks kept for their logs (oldest removed first).
    pub keep_finished: usize,
    /// Task directories made ahead, while no launch runs, so the launches
    /// of a burst rename one into place (see `spare`); 0: none.
    pub spare_ahead: usize,
    /// Variables every task gets under its own environment.
    pub base_env: BTreeMap<String, String>,
    /// How long a task may take to start before the launch fails.
    pub start_timeout: Duration,
}

impl CommandConfig {
    pub fn new(data_dir: PathBuf) -> CommandConfig {
        CommandConfig {
            data_dir,
            shim: None,
            log_limit_bytes: 1024 * 1024,
            keep_finished: 100,
            spare_ahead: SPARE_AHEAD,
            base_env: inherited_base_env(),
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// `PATH`, `HOME` and `LANG` of this process (a default `PATH` when unset).
pub fn inherited_base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in ["PATH", "HOME", "LANG"] {
        if let Ok(v) = std::env::var(key) {
            env.insert(key.to_string(), v);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env
}

/// The shim beside the running executable, or one directory up.
pub fn find_shim() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(SHIM_BINARY), dir.parent()?.join(SHIM_BINARY)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Most launches talking to the spawner at once; the rest wait their turn
/// before their start timeout begins. Thousands of launches at once (a big
/// deploy) would otherwise queue at the one spawner past the timeout, be
/// given up while their shims were still to start, and leave those tasks
/// running with no owner.
pub const LAUNCH_SLOTS: usize = 64;

/// Task directories made ahead by default: a burst of this many launches
/// creates no directory on its way to TASK_RUNNING. Bursts come in a row
/// (a rolling restart, a scale-up right after another) with less than
/// [`SPARE_QUIET`] between them to make more, and until `keep_finished`
/// tasks have ended none is recycled: room for two bursts of 100.
pub const SPARE_AHEAD: usize = 256;

/// How long no task must have been launched, killed or ended before
/// directories are made ahead: the making waits for the burst it prepares
/// for (and a scale-down after it) to be over.
const SPARE_QUIET: Duration = Duration::from_secs(1);

/// Runs command tasks; see the module docs.
pub struct CommandRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CommandConfig,
    launcher: launcher::Launcher,
    tasks_dir: PathBuf,
    /// Ended tasks' directories, emptied for the next launches.
    spares: Arc<spare::Spares>,
    events: EventSender,
    state: Mutex<State>,
    /// Launches in progress at once (see [`LAUNCH_SLOTS`]).
    launch_slots: tokio::sync::Semaphore,
    /// Launches, kills and ends so far, and a wake-up for the spare maker
    /// at each (see [`Inner::stir`]).
    activity: std::sync::atomic::AtomicU64,
    stirred: tokio::sync::Notify,
    /// Cancelled when the runtime is dropped: watchers stop, tasks keep running.
    cancel: CancellationToken,
    watchers: TaskTracker,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Arc<Entry>>,
    launching: HashSet<String>,
    /// Ended tasks whose directories are still kept, oldest first (filled
    /// by recovery's scan, then by each end): at most `keep_finished`.
    ended: VecDeque<String>,
}

/// A task this runtime watches.
struct Entry {
    id: String,
    dir: PathBuf,
    marker: Marker,
    env: BTreeMap<String, String>,
    /// The grace period of its spec: what the shim uses when no `kill`
    /// file says otherwise.
    kill_grace_ms: u64,
    killing: AtomicBool,
    done: tokio::sync::watch::Sender<bool>,
}

impl CommandRuntime {
    /// Defaults of [`CommandConfig::new`]; fails when the shim is not found.
    pub fn new(data_dir: PathBuf, events: EventSender) -> Result<CommandRuntime, RuntimeError> {
        CommandRuntime::with_config(CommandConfig::new(data_dir), events)
    }

    pub fn with_config(
        cfg: CommandConfig,
        events: EventSender,
    ) -> Result<CommandRuntime, RuntimeError> {
        let shim = match &cfg.shim {
            Some(p) => p.clone(),
            None => find_shim().ok_or_else(|| {
                RuntimeError::Unavailable(format!(
                    "{SHIM_BINARY} not found next to the manager executable (build it with `cargo build -p manager`)"
                ))
            })?,
        };
        if !shim.is_file() {
            return Err(RuntimeError::Unavailable(format!(
                "{} does not exist",
                shim.display()
            )));
        }
        let tasks_dir = cfg.data_dir.join("tasks");
        files::create_private_dir(&tasks_dir).map_err(|source| RuntimeError::Io {
            context: format!("creating {}", tasks_dir.display()),
            source,
        })?;
        let spares = spare::Spares::new(&cfg.data_dir).map_err(|source| RuntimeError::Io {
            context: format!("preparing {}", cfg.data_dir.join("spare").display()),
            source,
        })?;
        let cancel = CancellationToken::new();
        let watchers = TaskTracker::new();
        let rt = CommandRuntime {
            inner: Arc::new(Inner {
                cfg,
                launcher: launcher::Launcher::new(shim, cancel.clone(), watchers.clone()),
                tasks_dir,
                spares: Arc::new(spares),
                events,
                state: Mutex::new(State::default()),
                launch_slots: tokio::sync::Semaphore::new(LAUNCH_SLOTS),
                activity: Default::default(),
                stirred: Default::default(),
                cancel,
                watchers,
            }),
        };
        rt.inner.make_spares_ahead();
        Ok(rt)
    }

    /// The directory of a task (exists once launched; kept a while after its end).
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.inner.tasks_dir.join(task_id)
    }

    /// Ended tasks' directories emptied and ready for launches (`spare`).
    pub fn spare_dirs(&self) -> usize {
        self.inner.spares.len()
    }
}

impl Drop for CommandRuntime {
    fn drop(&mut self) {
        // Tasks keep running under their shims; a new runtime adopts them.
        self.inner.cancel.cancel();
        self.inner.watchers.close();
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

impl Inner {
    fn entry(&self, task_id: &str) -> Option<Arc<Entry>> {
        self.state
            .lock()
            .expect("state lock")
            .tasks
            .get(task_id)
            .cloned()
    }

    fn insert(&self, entry: Arc<Entry>) {
        self.state
            .lock()
            .expect("state lock")
            .tasks
            .insert(entry.id.clone(), entry);
    }

    /// Reports how a watched task ended (once), then forgets it.
    fn finish(&self, entry: &Entry) {
        self.stir();
        let record: Option<ExitRecord> = files::read_json(&entry.dir.join(files::EXIT))
            .ok()
            .flatten();
        let killing = entry.killing.load(Ordering::SeqCst);
        let exit = match record {
            Some(_) if killing => Exit::Killed,
            Some(record) => record.to_exit(),
            None => {
                // The shim died without its record: its group may be left.
                kill_leftovers(&entry.marker);
                if killing {
                    Exit::Killed
                } else {
                    Exit::Lost {
                        message: recovery::SHIM_DIED.into(),
                    }
                }
            }
        };
        tracing::info!(task_id = %entry.id, ?exit, "command task ended");
        let _ = self.events.send(RuntimeEvent::Exited {
            task_id: entry.id.clone(),
            exit,
        });
        {
            let mut st = self.state.lock().expect("state lock");
            st.tasks.remove(&entry.id);
            st.ended.push_back(entry.id.clone());
        }
        entry.done.send_replace(true);
        self.collect_garbage();
    }

    /// Watches a task until its shim ends (started here or adopted).
    fn watch(self: &Arc<Self>, entry: Arc<Entry>) {
        let inner = self.clone();
        self.watchers.spawn(async move {
            let exit_record = entry.dir.join(files::EXIT);
            let m = entry.marker;
            tokio::select! {
                _ = inner.cancel.cancelled() => {}
                _ = watch::shim_ended(m.shim_pid, m.shim_start, &exit_record) => inner.finish(&entry),
            }
        });
    }

    /// A task was launched, killed or ended: the spare maker waits.
    fn stir(&self) {
        self.activity
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stirred.notify_one();
    }

    /// Keeps `spare_ahead` task directories ready (`Spares::fill`), made
    /// once no task has been launched, killed or ended for [`SPARE_QUIET`],
    /// on a thread of its own at the lowest CPU priority (nice 19), and
    /// given up at the next launch, kill or end: the making never competes
    /// with a burst, or with the events of one, for the CPU. Without a tokio
    /// runtime (or with `spare_ahead` 0), none are made.
    fn make_spares_ahead(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        let target = self.cfg.spare_ahead;
        if target == 0 || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let inner = self.clone();
        self.watchers.spawn(async move {
            loop {
                let seen = loop {
                    let seen = inner.activity.load(Relaxed);
                    tokio::select! {
                        _ = inner.cancel.cancelled() => return,
                        _ = tokio::time::sleep(SPARE_QUIET) => {}
                    }
                    if inner.activity.load(Relaxed) == seen {
                        break seen;
                    }
                };
                if inner.spares.len() < target {
                    let i = inner.clone();
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let spawned = std::thread::Builder::new()
                        .name("spare-maker".into())
                        .spawn(move || {
                            // This thread only (Linux's nice is per thread).
                            let _ = rustix::process::setpriority_process(None, 19);
                            let _ = tx.send(i.spares.fill(target, || {
                                i.cancel.is_cancelled() || i.activity.load(Relaxed) != seen
                            }));
                        });
                    let made = match spawned {
                        Ok(_) => rx
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string())),
                        Err(e) => Err(e.to_string()),
                    };
                    match made {
                        Ok(n) => tracing::debug!(made = n, "task directories made ahead"),
                        Err(e) => tracing::warn!(error = %e, "making task directories ahead"),
                    }
                }
                tokio::select! {
                    _ = inner.cancel.cancelled() => return,
                    _ = inner.stirred.notified() => {}
                }
            }
        });
    }

    /// The task's directory made of a recycled one, when there is one and
    /// the task has no directory yet (else `prepare_dir`).
    fn reuse_dir(&self, task_id: &str) -> Option<PathBuf> {
        if self.spares.len() == 0 {
            return None;
        }
        let dir = self.tasks_dir.join(task_id);
        if std::fs::symlink_metadata(&dir).is_ok() {
            return None;
        }
        self.spares.take(&dir).then_some(dir)
    }

    /// A fresh directory for the task `task_id` (and its sandbox); an
    /// ended earlier run's directory of the same id is removed first, a
    /// running one is an error. Blocking: file system calls.
    fn prepare_dir(&self, task_id: &str) -> Result<PathBuf, RuntimeError> {
        let dir = self.tasks_dir.join(task_id);
        if dir.exists() {
            let (found, _) = self.inspect(&dir, &mut procfs::Groups::default());
            if found == recovery::Found::Running {
                return Err(RuntimeError::Launch(format!(
                    "task {} is already running",
                    task_id
                )));
            }
            std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
            // Its earlier run's place in the ended ones is not this run's.
            self.state
                .lock()
                .expect("state lock")
                .ended
                .retain(|id| id != task_id);
        }
        // An ended task's directory, emptied (see `spare`), else two mkdirs
        // (the tasks directory exists): the spec goes to the shim with the
        // request, and the shim writes the one file.
        if self.spares.take(&dir) {
            return Ok(dir);
        }
        let mkdir = |path: &Path| {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(path)
        };
        mkdir(&dir)
            .and_then(|()| mkdir(&dir.join(files::SANDBOX)))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(dir)
    }

    /// Keeps the newest `keep_finished` ended task directories: recycles
    /// the oldest beyond that for later launches (`spare`; removes them when
    /// enough are kept), off the async threads (it may wait for the disk).
    /// Costs nothing per end but that: the ended tasks are known in order,
    /// the tasks directory is not read again.
    fn collect_garbage(&self) {
        let doomed: Vec<PathBuf> = {
            let mut st = self.state.lock().expect("state lock");
            let mut doomed = Vec::new();
            while st.ended.len() > self.cfg.keep_finished {
                let Some(id) = st.ended.pop_front() else {
                    break;
                };
                // Launched again under the same id since: not ended any more.
                if !st.tasks.contains_key(&id) && !st.launching.contains(&id) {
                    doomed.push(self.tasks_dir.join(id));
                }
            }
            doomed
        };
        if doomed.is_empty() {
            return;
        }
        let spares = self.spares.clone();
        let remove = move || {
            for dir in doomed {
                if let Err(e) = spares.recycle(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "recycling or removing an ended task's directory");
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }

    /// Recovery's one scan of the tasks directory: every directory of a
    /// task that is not running here is an ended one, ordered by when it
    /// ended (its `exit.json`, else the directory itself); then the
    /// oldest beyond `keep_finished` go.
    fn index_ended(&self) {
        let live: HashSet<String> = {
            let st = self.state.lock().expect("state lock");
            st.tasks
                .keys()
                .chain(st.launching.iter())
                .chain(st.ended.iter())
                .cloned()
                .collect()
        };
        let Ok(dir) = std::fs::read_dir(&self.tasks_dir) else {
            return;
        };
        let mut found: Vec<(std::time::SystemTime, String)> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_string();
                if !files::valid_task_id(&id) || live.contains(&id) || !e.file_type().ok()?.is_dir()
                {
                    return None;
                }
                let path = e.path();
                let meta = std::fs::metadata(path.join(files::EXIT))
                    .or_else(|_| std::fs::symlink_metadata(&path))
                    .ok()?;
                Some((meta.modified().ok()?, id))
            })
            .collect();
        found.sort();
        {
            let mut st = self.state.lock().expect("state lock");
            // Found ones ended before any this runtime saw end.
            for (_, id) in found.into_iter().rev() {
                st.ended.push_front(id);
            }
        }
        self.collect_garbage();
    }

    /// What a task directory shows (for recovery), with its task file (read
    /// once: adoption takes the spec from it); `groups` answers whether a
    /// dead shim's process group still has members.
    fn inspect(
        &self,
        dir: &Path,
        groups: &mut procfs::Groups,
    ) -> (recovery::Found, Option<files::TaskFile>) {
        use recovery::Found;
        let record: Option<ExitRecord> = files::read_json(&dir.join(files::EXIT)).ok().flatten();
        let task: Option<files::TaskFile> = match files::read_task(dir) {
            Ok(task) => task,
            // Without its end recorded, a task whose marker cannot be read
            // cannot be judged: it may well run.
            Err(e) if record.is_none() => {
                return (
                    Found::Unreadable(format!("cannot read {}: {e}", files::TASK)),
                    None,
                )
            }
            Err(_) => None,
        };
        let marker = task.as_ref().map(|t| t.marker);
        let found = match (record, marker) {
            (Some(record), _) => Found::Ended(record),
            (None, None) => Found::Vanished,
            (None, Some(m)) if procfs::same_process_alive(m.shim_pid, m.shim_start) => {
                Found::Running
            }
            (None, Some(m)) if groups.has_members(m.pid, m.shim_pid) => Found::Stray,
            (None, Some(_)) => Found::Vanished,
        };
        (found, task)
    }

    /// Stops an unknown task of ours through its shim, then removes its files.
    async fn remove_orphan(&self, id: &str, task: files::TaskFile) {
        let dir = self.tasks_dir.join(id);
        let marker = task.marker;
        let grace = Duration::from_millis(task.spec.map_or(3000, |s| s.kill_grace_ms));
        tracing::warn!(task_id = %id, pid = marker.pid, "stopping an orphaned command task");
        let _ = files::write_atomic(
            &dir.join(files::KILL),
            grace.as_millis().to_string().as_bytes(),
        );
        if procfs::same_process_alive(marker.shim_pid, marker.shim_start) {
            let _ = kill(Pid::from_raw(marker.shim_pid), Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::from_std(crate::bounds::later(
            std::time::Instant::now(),
            grace.saturating_add(Duration::from_secs(5)),
        ));
        while procfs::same_process_alive(marker.shim_pid, marker.shim_start)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if procfs::same_process_alive(marker.shim_pid, marker.shim_start) {
            let _ = kill(Pid::from_raw(marker.shim_pid), Signal::SIGKILL);
        }
        // A shim writes exit.json only after it killed what was left of the
        // task's group: then there is nothing to look for (and with thousands
        // of orphans, one pass over /proc each would take minutes).
        if !dir.join(files::EXIT).exists() {
            kill_leftovers(&marker);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// SIGKILLs what is left of a task's process group (only processes of the
/// shim's session: a recycled group id elsewhere is never touched).
fn kill_leftovers(marker: &Marker) {
    kill_leftovers_seen(marker, &mut procfs::Groups::default());
}

/// [`kill_leftovers`] with the groups of one pass over /proc.
fn kill_leftovers_seen(marker: &Marker, groups: &mut procfs::Groups) {
    if groups.has_members(marker.pid, marker.shim_pid) {
        let _ = killpg(Pid::from_raw(marker.pid), Signal::SIGKILL);
    }
}

async fn wait_done(done: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = done.wait_for(|d| *d).await.map(|_| ());
}

/// Program and arguments of a command workload.
fn command_line(workload: &Workload) -> Result<(String, Vec<String>), RuntimeError> {
    match workload {
        Workload::Command { cmd: Some(cmd), .. } if !cmd.is_empty() => {
            Ok(("/bin/sh".into(), vec!["-c".into(), cmd.clone()]))
        }
        Workload::Command { args, .. } if !args.is_empty() && !args[0].is_empty() => {
            Ok((args[0].clone(), args[1..].to_vec()))
        }
        Workload::Command { .. } => Err(RuntimeError::Launch("neither cmd nor args given".into())),
        Workload::Docker(_) => Err(RuntimeError::Launch(
            "the command runtime does not run Docker tasks".into(),
        )),
    }
}

#[async_trait]
impl Runtime for CommandRuntime {
    fn name(&self) -> &'static str {
        "command"
    }

    fn handles(&self, workload: &Workload) -> bool {
        matches!(workload, Workload::Command { .. })
    }

    #[tracing::instrument(skip_all, fields(task_id = %spec.task_id), err)]
    async fn launch(&self, spec: &LaunchSpec) -> Result<Started, RuntimeError> {
        let inner = &self.inner;
        let (program, args) = command_line(&spec.workload)?;
        if !files::valid_task_id(&spec.task_id) {
            return Err(RuntimeError::Launch(format!(
                "invalid task id '{}'",
                spec.task_id
            )));
        }
        {
            let mut st = inner.state.lock().expect("state lock");
            if st.tasks.contains_key(&spec.task_id) || !st.launching.insert(spec.task_id.clone()) {
                return Err(RuntimeError::Launch(format!(
                    "task {} is already running",
                    spec.task_id
                )));
            }
        }
        let result = match inner.launch_slots.acquire().await {
            Ok(_slot) => self.start(spec, program, args).await,
            Err(_) => Err(RuntimeError::Unavailable(
                "the command runtime is closed".into(),
            )),
        };
        inner
            .state
            .lock()
            .expect("state lock")
            .launching
            .remove(&spec.task_id);
        result
    }

    #[tracing::instrument(skip_all, fields(task_id = %task_id), err)]
    async fn kill(&self, task_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        inner.stir();
        let Some(entry) = inner.entry(task_id) else {
            return if inner.tasks_dir.join(task_id).join(files::EXIT).exists() {
                Ok(())
            } else {
                Err(RuntimeError::UnknownTask(task_id.to_string()))
            };
        };
        let mut done = entry.done.subscribe();
        entry.killing.store(true, Ordering::SeqCst);
        // The shim falls back to its spec's grace: a `kill` file (one more
        // inode per task, written off the async threads) only for another.
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        if grace_ms != entry.kill_grace_ms {
            let path = entry.dir.join(files::KILL);
            tokio::task::spawn_blocking(move || {
                files::write_atomic(&path, grace_ms.to_string().as_bytes())
            })
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?
            .map_err(io_err("writing the kill request"))?;
        }
        let m = entry.marker;
        if procfs::same_process_alive(m.shim_pid, m.shim_start) {
            let _ = kill(Pid::from_raw(m.shim_pid), Signal::SIGTERM);
        }
        let wait = tokio::time::timeout(
            grace.saturating_add(Duration::from_secs(5)),
            wait_done(&mut done),
        )
        .await;
        if wait.is_ok() {
            return Ok(());
        }
        tracing::warn!(
            task_id,
            "task supervisor did not stop the task in time; killing it"
        );
        kill_leftovers(&m);
        if procfs::same_process_alive(m.shim_pid, m.shim_start) {
            let _ = kill(Pid::from_raw(m.shim_pid), Signal::SIGKILL);
        }
        tokio::time::timeout(Duration::from_secs(5), wait_done(&mut done))
            .await
            .map_err(|_| RuntimeError::Unavailable(format!("task {task_id} did not stop")))
    }

    #[tracing::instrument(skip_all, err)]
    async fn recover(&self, known: &[KnownTask]) -> Result<Recovery, RuntimeError> {
        use recovery::{Action, Found};
        let inner = &self.inner;
        let known_ids: BTreeSet<String> = known
            .iter()
            .filter(|k| !k.workload_is_docker)
            .map(|k| k.task_id.clone())
            .collect();
        let live: HashSet<String> = {
            let st = inner.state.lock().expect("state lock");
            st.tasks
                .keys()
                .chain(st.launching.iter())
                .cloned()
                .collect()
        };
        let mut found = BTreeMap::new();
        let mut task_files = HashMap::new();
        // One pass over /proc for every dead shim's group, however many.
        let mut groups = procfs::Groups::default();
        let dir =
            std::fs::read_dir(&inner.tasks_dir).map_err(io_err("listing task directories"))?;
        for e in dir.filter_map(|e| e.ok()) {
            let Some(id) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if !files::valid_task_id(&id) || !e.path().is_dir() {
                continue;
            }
            if live.contains(&id) {
                // Started or adopted by this runtime: running, never an orphan.
                found.insert(id, Found::Running);
                continue;
            }
            let (f, task) = inner.inspect(&e.path(), &mut groups);
            if let Some(t) = task {
                task_files.insert(id.clone(), t);
            }
            found.insert(id, f);
        }
        let mut out = Recovery::default();
        let mut orphans = Vec::new();
        for action in recovery::plan(&known_ids, &found) {
            match action {
                Action::Adopt(id) => {
                    if !live.contains(&id) {
                        let adopted = match task_files.remove(&id) {
                            Some(task) => self.adopt(&id, task),
                            None => Err(RuntimeError::Unavailable(format!(
                                "task {id} has no task file"
                            ))),
                        };
                        if let Err(e) = adopted {
                            // One unreadable task skips that task, not the recovery.
                            tracing::warn!(task_id = %id, error = %e, "cannot adopt this task now; skipped");
                            out.skipped.push((id, e.to_string()));
                            continue;
                        }
                    }
                    out.adopted.push(id);
                }
                Action::Skip(id, why) => {
                    tracing::warn!(task_id = %id, reason = %why, "cannot judge this task now; skipped");
                    out.skipped.push((id, why));
                }
                Action::Gone(id, exit) => out.gone.push((id, exit)),
                Action::KillStray(id, exit) => {
                    if let Some(t) = task_files.get(&id) {
                        kill_leftovers_seen(&t.marker, &mut groups);
                    }
                    out.gone.push((id, exit));
                }
                Action::KillOrphan(id) => {
                    // (Found running from its task file: it has one.)
                    if let Some(task) = task_files.remove(&id) {
                        orphans.push((id, task));
                    }
                }
                Action::KillStrayOrphan(id) => {
                    if let Some(t) = task_files.get(&id) {
                        kill_leftovers_seen(&t.marker, &mut groups);
                    }
                    let _ = std::fs::remove_dir_all(inner.tasks_dir.join(&id));
                    out.orphans_removed.push(id);
                }
            }
        }
        let stopped = futures::future::join_all(orphans.into_iter().map(|(id, t)| async move {
            inner.remove_orphan(&id, t).await;
            id
        }))
        .await;
        out.orphans_removed.extend(stopped);
        inner.index_ended();
        tracing::info!(
            adopted = out.adopted.len(),
            gone = out.gone.len(),
            orphans = out.orphans_removed.len(),
            skipped = out.skipped.len(),
            "command tasks recovered"
        );
        Ok(out)
    }

    async fn logs(&self, task_id: &str, tail: Option<usize>) -> Result<Vec<u8>, RuntimeError> {
        if !files::valid_task_id(task_id) {
            return Err(RuntimeError::UnknownTask(task_id.to_string()));
        }
        let dir = self.inner.tasks_dir.join(task_id);
        if !dir.is_dir() {
            return Err(RuntimeError::UnknownTask(task_id.to_string()));
        }
        let limit = self.inner.cfg.log_limit_bytes;
        tokio::task::spawn_blocking(move || files::read_output(&dir, limit, tail))
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?
            .map_err(io_err(format!("reading the output of {task_id}")))
    }

    async fn run_check(&self, check: &ExecCheck<'_>) -> Result<bool, RuntimeError> {
        let (task_id, command, timeout) = (check.task_id, check.command, check.timeout);
        let entry = self
            .inner
            .entry(task_id)
            .ok_or_else(|| RuntimeError::UnknownTask(task_id.to_string()))?;
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env_clear()
            .envs(&entry.env)
            .current_dir(entry.dir.join(files::SANDBOX))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("starting a command health check"))?;
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        let result = tokio::time::timeout(timeout, child.wait()).await;
        if let Some(pgid) = pgid {
            // The check's own leftovers (or the whole check on timeout).
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        match result {
            Ok(status) => Ok(status
                .map_err(io_err("waiting for a health check"))?
                .success()),
            Err(_) => {
                let _ = child.wait().await;
                Ok(false)
            }
        }
    }

    async fn node_resources(&self) -> Option<NodeResources> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let mem_mib = procfs::mem_total_mib(Path::new("/proc/meminfo"))?;
        Some(NodeResources { cpus, mem_mib })
    }
}

impl CommandRuntime {
    async fn start(
        &self,
        spec: &LaunchSpec,
        program: String,
        args: Vec<String>,
    ) -> Result<Started, RuntimeError> {
        let inner = &self.inner;
        inner.stir();
        // A recycled directory is one rename, done here. Otherwise off the
        // async threads: creating inodes may take a while (reading the
        // group's inode table, the disk), and event delivery runs there.
        let dir = match inner.reuse_dir(&spec.task_id) {
            Some(dir) => dir,
            None => {
                let inner = inner.clone();
                let task_id = spec.task_id.clone();
                tokio::task::spawn_blocking(move || inner.prepare_dir(&task_id))
                    .await
                    .map_err(|e| RuntimeError::Unavailable(e.to_string()))??
            }
        };
        let mut env = inner.cfg.base_env.clone();
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let task = TaskSpec {
            task_id: spec.task_id.clone(),
            app_id: spec.app_id.clone(),
            program,
            args,
            env: env.clone(),
            kill_grace_ms: spec.kill_grace.as_millis() as u64,
            log_limit: inner.cfg.log_limit_bytes,
            nice: weight::nice_for_cpus(spec.cpus),
        };
        let request = serde_json::to_vec(&task)
            .map_err(|e| RuntimeError::Launch(format!("encoding the task spec: {e}")))?;
        let answer = tokio::time::timeout(
            inner.cfg.start_timeout,
            inner.launcher.launch(&dir, &request),
        )
        .await;
        let timed_out = answer.is_err();
        let message = match answer {
            Ok(Ok(launcher::Answer::Started(text))) => {
                // The marker comes with the answer; from the file only if
                // a shim answered without it.
                let marker = match Marker::from_answer(&text) {
                    Some(m) => m,
                    None => {
                        files::read_task(&dir)
                            .map_err(io_err("reading the task file"))?
                            .ok_or_else(|| {
                                RuntimeError::Launch("task supervisor wrote no task file".into())
                            })?
                            .marker
                    }
                };
                let pid = marker.pid;
                let entry = Arc::new(Entry {
                    id: spec.task_id.clone(),
                    dir,
                    marker,
                    env,
                    kill_grace_ms: task.kill_grace_ms,
                    killing: AtomicBool::new(false),
                    done: tokio::sync::watch::channel(false).0,
                });
                inner.insert(entry.clone());
                inner.watch(entry);
                tracing::info!(pid = %pid, "command task running");
                return Ok(Started {
                    handle: pid.to_string(),
                    ip_addresses: Vec::new(),
                });
            }
            Ok(Ok(launcher::Answer::Failed(message))) => message,
            Ok(Ok(launcher::Answer::Ended(how))) => {
                let log = std::fs::read_to_string(dir.join(files::SHIM_LOG)).unwrap_or_default();
                format!("task supervisor failed ({how}): {}", log.trim())
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => format!(
                "the task did not start within {:?}",
                inner.cfg.start_timeout
            ),
        };
        // Whatever did start of it must not run on unwatched.
        if let Ok(Some(files::TaskFile { marker, .. })) = files::read_task(&dir) {
            if procfs::same_process_alive(marker.shim_pid, marker.shim_start) {
                let _ = kill(Pid::from_raw(marker.shim_pid), Signal::SIGKILL);
            }
            kill_leftovers(&marker);
        }
        if timed_out {
            // The request may still wait at the spawner: without its
            // directory, a shim that starts late fails to (no sandbox), or
            // stops its task within a second (its orphan check).
            let _ = std::fs::remove_dir_all(&dir);
        }
        Err(RuntimeError::Launch(message))
    }

    /// Watches a running task found by recovery, from its task file.
    fn adopt(&self, id: &str, task: files::TaskFile) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let dir = inner.tasks_dir.join(id);
        let marker = task.marker;
        let spec: TaskSpec = task
            .spec
            .ok_or_else(|| RuntimeError::Unavailable(format!("task {id} has no spec")))?;
        let entry = Arc::new(Entry {
            id: id.to_string(),
            dir,
            marker,
            kill_grace_ms: spec.kill_grace_ms,
            env: spec.env,
            killing: AtomicBool::new(false),
            done: tokio::sync::watch::channel(false).0,
        });
        inner.insert(entry.clone());
        inner.watch(entry);
        tracing::info!(task_id = %id, pid = marker.pid, "adopted a running command task");
        Ok(())
    }
}
