//! Child processes that die with the test (a binary serving HTTP among
//! them: [`ServedProcess`]), and polling with a deadline.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kills (SIGKILL) and reaps the child on drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already taken")
    }

    /// Takes the child out of the guard (the caller is responsible for it).
    pub fn take(&mut self) -> Child {
        self.0.take().expect("child already taken")
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what`
/// after `timeout`. Use this instead of sleeping.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async twin of [`eventually`].
pub async fn eventually_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Environment changes for a child: `Some` sets, `None` removes; applied in
/// order.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvChanges(Vec<(OsString, Option<OsString>)>);

impl EnvChanges {
    pub(crate) fn set(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, key: impl Into<OsString>) {
        self.0.push((key.into(), None));
    }

    pub(crate) fn apply(&self, cmd: &mut Command) {
        for (key, value) in &self.0 {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
    }
}

/// One of our binaries serving HTTP on `127.0.0.1:<port>` for a test, its
/// stdout and stderr appended to a log file; SIGKILLed (and reaped) on
/// drop. [`crate::manager::ManagerProcess`] and
/// [`crate::subscriber::SubscriberProcess`] are this and more.
pub struct ServedProcess {
    what: &'static str,
    child: ChildGuard,
    port: u16,
    url: String,
    log: PathBuf,
}

impl ServedProcess {
    /// Starts `cmd` (stdin closed) with its output appended to `log`;
    /// `what` names it in messages.
    pub(crate) fn spawn(
        what: &'static str,
        mut cmd: Command,
        port: u16,
        log: PathBuf,
    ) -> std::io::Result<ServedProcess> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(ServedProcess {
            what,
            child: ChildGuard::new(child),
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.child()
    }

    /// The exit status once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.child().try_wait().ok().flatten()
    }

    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
    }

    /// kill -9, and reap.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Polls `GET <url><path>` until it answers 200. `Err` (saying why, with
    /// the log) when the process exits first or `within` passes.
    pub async fn wait_answering(&mut self, path: &str, within: Duration) -> Result<(), String> {
        let url = format!("{}{path}", self.url);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.exited() {
                let what = self.what;
                return Err(format!(
                    "the {what} exited ({status}); log:\n{}",
                    self.log_text()
                ));
            }
            if Instant::now() > deadline {
                let what = self.what;
                return Err(format!(
                    "the {what} did not answer {url} within {within:?}; log:\n{}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
