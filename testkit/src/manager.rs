//! The manager binary in tests: one way to start it on a free port against a
//! testkit etcd, wait until it answers `/ping`, read its log, and kill it on
//! drop. Testkit does not depend on the manager crate: the caller names the
//! binary (a manager test passes `env!("CARGO_BIN_EXE_manager")`, any other
//! crate [`binary`], which cargo builds once per test process).
//!
//! ```ignore
//! let m = ManagerCmd::new(testkit::manager::binary())
//!     .etcd(&etcd.endpoint())
//!     .args(["--docker", "off"])
//!     .start();
//! reqwest::get(format!("{}/v2/apps", m.url())).await?;
//! ```

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{EnvChanges, ServedProcess};
use crate::ChildGuard;

/// How long [`ManagerCmd::start`] waits for `/ping` (it returns as soon as
/// the manager answers; the bound only ends a hopeless wait).
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The manager binary of this workspace, built by cargo once per test process
/// (so never stale).
pub fn binary() -> PathBuf {
    crate::workspace_binary("manager")
}

/// How to run the manager: flags, environment, data dir and log. Starts from
/// the test node `--node-name node-1 --node-cpus 8 --node-mem 8192
/// --drain-delay 0` with `RUST_LOG=info`, and without `MDO_AUTH_TOKEN` from
/// the test's environment.
#[derive(Clone, Debug)]
pub struct ManagerCmd {
    bin: PathBuf,
    /// Single-valued flags, in order; [`Self::flag`] replaces a value.
    flags: Vec<(String, OsString)>,
    args: Vec<OsString>,
    env: EnvChanges,
    data_dir: Option<PathBuf>,
    log: Option<PathBuf>,
    cwd: Option<PathBuf>,
    port: Option<u16>,
}

impl ManagerCmd {
    pub fn new(bin: impl Into<PathBuf>) -> ManagerCmd {
        ManagerCmd {
            bin: bin.into(),
            flags: Vec::new(),
            args: Vec::new(),
            env: EnvChanges::default(),
            data_dir: None,
            log: None,
            cwd: None,
            port: None,
        }
        .flag("--node-name", "node-1")
        .flag("--node-cpus", "8")
        .flag("--node-mem", "8192")
        .flag("--drain-delay", "0")
        .env("RUST_LOG", "info")
        .env_remove("MDO_AUTH_TOKEN")
    }

    /// `--etcd-endpoints` (comma separated).
    pub fn etcd(self, endpoints: &str) -> ManagerCmd {
        self.flag("--etcd-endpoints", endpoints)
    }

    /// Sets a single-valued flag, replacing an earlier value (defaults
    /// included).
    pub fn flag(mut self, name: &str, value: impl Into<OsString>) -> ManagerCmd {
        let value = value.into();
        match self.flags.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.flags.push((name.to_string(), value)),
        }
        self
    }

    /// Drops a flag (a default the test wants the manager's own value of).
    pub fn without(mut self, name: &str) -> ManagerCmd {
        self.flags.retain(|(n, _)| n != name);
        self
    }

    /// More arguments, after the flags.
    pub fn args<I, S>(mut self, args: I) -> ManagerCmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ManagerCmd {
        self.env.set(key, value);
        self
    }

    pub fn envs<'a>(self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> ManagerCmd {
        vars.into_iter().fold(self, |cmd, (k, v)| cmd.env(k, v))
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> ManagerCmd {
        self.env.remove(key);
        self
    }

    /// `--data-dir` (default: `data` in a temp dir the process owns).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> ManagerCmd {
        self.data_dir = Some(dir.into());
        self
    }

    /// Appends stdout and stderr to `path` (default: `manager.log` in a temp
    /// dir the process owns).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> ManagerCmd {
        self.log = Some(path.into());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> ManagerCmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Listens on `port` (default: a free one).
    pub fn port(mut self, port: u16) -> ManagerCmd {
        self.port = Some(port);
        self
    }

    fn command(&self, port: u16, data_dir: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
        for (name, value) in &self.flags {
            cmd.arg(name).arg(value);
        }
        cmd.args(&self.args).arg("--data-dir").arg(data_dir);
        self.env.apply(&mut cmd);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the manager without waiting for it.
    pub fn spawn(self) -> std::io::Result<ManagerProcess> {
        let port = match self.port {
            Some(p) => p,
            None => crate::free_port().map_err(std::io::Error::other)?,
        };
        let temp = match (&self.data_dir, &self.log) {
            (Some(_), Some(_)) => None,
            _ => Some(tempfile::Builder::new().prefix("mdo-manager-").tempdir()?),
        };
        let in_temp = |name: &str| temp.as_ref().map(|t| t.path().join(name));
        let data_dir = self.data_dir.clone().or_else(|| in_temp("data")).unwrap();
        let log = self.log.clone().or_else(|| in_temp("manager.log")).unwrap();
        let served = ServedProcess::spawn("manager", self.command(port, &data_dir), port, log)?;
        Ok(ManagerProcess {
            served,
            data_dir: match &self.cwd {
                Some(cwd) => cwd.join(data_dir),
                None => data_dir,
            },
            _temp: temp,
        })
    }

    /// Starts the manager and waits until it answers `/ping`; panics with its
    /// log when it exits first or does not answer within [`START_DEADLINE`].
    pub fn start(self) -> ManagerProcess {
        let bin = self.bin.clone();
        let mut m = self
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        m.wait_ready();
        m
    }

    /// Runs the manager expecting it to exit within `within` (bad flags,
    /// refused credentials): its exit code and what it wrote to stderr
    /// (stdout is dropped).
    pub fn run_to_exit(self, within: Duration) -> (Option<i32>, String) {
        let port = self
            .port
            .unwrap_or_else(|| crate::free_port().expect("free port"));
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("data"));
        let child = self
            .command(port, &data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let mut guard = ChildGuard::new(child);
        let status = crate::eventually("the manager exits", within, || {
            guard.child().try_wait().ok().flatten()
        });
        let mut stderr = String::new();
        if let Some(mut e) = guard.child().stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status.code(), stderr)
    }
}

/// A running manager binary, SIGKILLed (and reaped) on drop. Its command
/// tasks are not: they outlive the manager, as in production (see
/// [`kill_tasks_under`]). Its URL, log, exit status and signals are those
/// of the [`ServedProcess`] it derefs to.
pub struct ManagerProcess {
    served: ServedProcess,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Deref for ManagerProcess {
    type Target = ServedProcess;

    fn deref(&self) -> &ServedProcess {
        &self.served
    }
}

impl DerefMut for ManagerProcess {
    fn deref_mut(&mut self) -> &mut ServedProcess {
        &mut self.served
    }
}

impl ManagerProcess {
    /// The data dir (absolute when it was given relative to a working dir).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits until `/ping` answers 200; panics with the log when the manager
    /// exits first or [`START_DEADLINE`] passes.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        while !answers_ping(self.port()) {
            if let Some(status) = self.exited() {
                panic!("the manager exited ({status}); log:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                panic!(
                    "the manager did not answer /ping within {START_DEADLINE:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One `GET /ping` over plain HTTP/1.0: true on a 200.
fn answers_ping(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// SIGKILLs every session started by a task shim of `data_dir` (the command
/// tasks of a manager that used it), for a test's clean-up. The shims are
/// found by the markers of `data_dir/tasks/*/task.json` (`marker.json`
/// before; pid and start
/// time: forked by the manager's spawner, a shim's command line does not name
/// its task) and by a command line naming `data_dir` (a shim started alone).
pub fn kill_tasks_under(data_dir: &Path) {
    let needle = data_dir.to_string_lossy().to_string();
    if needle.is_empty() {
        return;
    }
    let mut sessions = marked_shims(data_dir);
    let procs: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let after = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .collect::<Vec<_>>();
            let sid: i32 = after.get(3)?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                sessions.push(pid);
            }
            Some((pid, sid))
        })
        .collect();
    for (pid, sid) in procs {
        if sessions.contains(&sid) || sessions.contains(&pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The shims the task markers under `data_dir` name that still run (same pid
/// and start time); each leads its own session.
fn marked_shims(data_dir: &Path) -> Vec<i32> {
    let start_of = |pid: i64| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(19)?
            .parse()
            .ok()
    };
    std::fs::read_dir(data_dir.join("tasks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("task.json"))
                .or_else(|_| std::fs::read_to_string(e.path().join("marker.json")))
                .ok()?;
            let m: serde_json::Value = serde_json::from_str(&text).ok()?;
            let pid = m["shim_pid"].as_i64().filter(|p| *p > 0)?;
            (start_of(pid)? == m["shim_start"].as_u64()?).then_some(pid as i32)
        })
        .collect()
}

/// SIGKILLs the command tasks of a data dir when dropped: declare it before
/// the manager so the test leaves no task behind, pass or fail.
pub struct TaskCleanup(pub PathBuf);

impl Drop for TaskCleanup {
    fn drop(&mut self) {
        kill_tasks_under(&self.0);
    }
}
