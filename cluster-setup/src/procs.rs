//! Background processes with a pid file and a log file. A pid file is only
//! trusted when the process it names is alive *and* runs the expected
//! program, so a recycled pid is never signalled.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process `up` manages: `<state>/<name>.pid`, `<state>/logs/<name>.log`.
#[derive(Debug, Clone)]
pub struct Managed {
    pub name: String,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    /// The program's file name, checked against /proc/<pid>/cmdline.
    pub program: String,
}

impl Managed {
    pub fn new(state_dir: &Path, name: &str, program: &str) -> Managed {
        Managed {
            name: name.to_string(),
            pid_file: state_dir.join("run").join(format!("{name}.pid")),
            log_file: state_dir.join("logs").join(format!("{name}.log")),
            program: program.to_string(),
        }
    }

    /// The live pid from the pid file, if the process still runs our program.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_our_process(pid, &self.program).then_some(pid)
    }

    /// Starts the program in its own process group (so a terminal's Ctrl-C
    /// does not reach it), stdout/stderr appended to the log file.
    pub fn spawn(&self, program: &Path, args: &[String], env: &[(String, String)]) -> Result<i32> {
        for dir in [self.pid_file.parent(), self.log_file.parent()]
            .into_iter()
            .flatten()
        {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("opening {}", self.log_file.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id() as i32;
        // The child is deliberately not waited on: it outlives this command
        // and is stopped by `down` through its pid file.
        drop(child);
        fs::write(&self.pid_file, format!("{pid}\n"))
            .with_context(|| format!("writing {}", self.pid_file.display()))?;
        // spawn() returns once exec has begun, but the kernel fills in the
        // new program's argv (what /proc/<pid>/cmdline shows) a moment
        // later. Wait for it, so `running_pid` is truthful as soon as we
        // return; a program that dies at once is left for the caller's
        // health wait to report.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !is_our_process(pid, &self.program) && is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(pid)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Removes the pid file.
    /// Returns whether a process was stopped.
    pub fn stop(&self, grace: Duration) -> bool {
        let Some(pid) = self.running_pid() else {
            let _ = fs::remove_file(&self.pid_file);
            return false;
        };
        let target = Pid::from_raw(pid);
        let _ = kill(target, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            reap(pid);
            if !is_alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_alive(pid) {
            let _ = kill(target, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while is_alive(pid) && Instant::now() < deadline {
                reap(pid);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(&self.pid_file);
        true
    }
}

/// Alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Whether `pid` is alive and its argv[0] file name is `program`.
pub fn is_our_process(pid: i32, program: &str) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .map(|n| n.to_string_lossy() == program)
        .unwrap_or(false)
}

/// Reaps `pid` if it is our own exited child (only when `up` and `down` run
/// in one process, as in tests); harmless otherwise.
fn reap(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_of_another_program_is_not_trusted() {
        let dir = tempfile_dir();
        let m = Managed::new(&dir, "x", "definitely-not-this-program");
        fs::create_dir_all(m.pid_file.parent().unwrap()).unwrap();
        fs::write(&m.pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(m.running_pid(), None);
        assert!(
            !m.stop(Duration::from_millis(10)),
            "must not signal a foreign process"
        );
    }

    #[test]
    fn spawn_then_stop_by_pid_file() {
        let dir = tempfile_dir();
        let m = Managed::new(&dir, "sleeper", "sleep");
        let pid = m
            .spawn(Path::new("/bin/sleep"), &["30".into()], &[])
            .unwrap();
        assert_eq!(m.running_pid(), Some(pid));
        assert!(m.stop(Duration::from_secs(5)));
        assert!(!is_alive(pid));
        assert!(!m.pid_file.exists());
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mdo-procs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
