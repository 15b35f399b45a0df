//! The few facts the runtimes read from /proc: a process's start time (to
//! tell a live task from a recycled pid), its group and session (to find
//! every member of a task's process group), an ended process's exit status
//! (the Docker runtime's earliest exit path), the node's memory; and the
//! pidfds both runtimes watch processes through.

use std::os::fd::OwnedFd;
use std::path::Path;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks since boot when the process started.
    pub start: u64,
    /// Field 26, where the program's code starts: 1 for a running process
    /// the reader may not trace (its field 52 then always reads 0).
    pub start_code: Option<u64>,
    /// Field 52: the wait status of an ended process, for a reader allowed
    /// to trace it.
    pub exit_code: Option<i64>,
}

impl Stat {
    /// Alive = exists and is not a zombie waiting to be reaped.
    pub fn alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) S ppid pgrp session ... starttime(22) ...`; `comm` may
/// hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        start_code: fields.get(23).and_then(|f| f.parse().ok()),
        exit_code: fields.get(49).and_then(|f| f.parse().ok()),
    })
}

/// A pidfd of `pid`; None when no such process runs. Prove it is the
/// process meant after the open (the pidfd holds that very process).
pub fn pidfd(pid: i32) -> std::io::Result<Option<OwnedFd>> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Ok(None);
    };
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::SRCH) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A pidfd registered with tokio's reactor (readable once the process ends).
// tokio 1.54 deprecates its safe constructors for fds the `AsyncFd` may not
// own; this one owns its pidfd (moved in, closed on drop), so the reason
// does not apply, and the replacement (`register`) is `unsafe`.
#[allow(deprecated)]
pub fn readiness(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

/// True when `pid` runs and started at `start` (not a recycled pid).
pub fn same_process_alive(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Some(s) if s.start == start && s.alive())
}

fn live_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// The (process group, session) pairs with a live member, read from /proc
/// once, on the first question: answers for any number of groups at the
/// cost of one pass.
#[derive(Debug, Default)]
pub struct Groups {
    seen: Option<std::collections::HashSet<(i32, i32)>>,
}

impl Groups {
    /// True when a live process is in group `pgrp` of session `session`
    /// (as of the one pass; a group that ends later is not noticed).
    pub fn has_members(&mut self, pgrp: i32, session: i32) -> bool {
        self.seen
            .get_or_insert_with(|| {
                live_pids()
                    .filter_map(stat)
                    .filter(Stat::alive)
                    .map(|s| (s.pgrp, s.session))
                    .collect()
            })
            .contains(&(pgrp, session))
    }
}

/// `MemTotal` from /proc/meminfo, in MiB.
pub fn mem_total_mib(meminfo: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(meminfo).ok()?;
    parse_mem_total_mib(&text)
}

pub fn parse_mem_total_mib(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0).floor())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (we(ird) name) S 1 4242 4240 0 -1 4194560 109 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                pgrp: 4242,
                session: 4240,
                start: 987654,
                start_code: None,
                exit_code: None,
            }
        );
    }

    /// A `/proc/<pid>/stat` line with the given state, start, start code
    /// and exit code (fields 3, 22, 26 and 52), others filled in.
    fn line(comm: &str, state: char, start: u64, start_code: u64, exit: i64) -> String {
        let mut f: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        f[0] = state.to_string();
        f[22 - 3] = start.to_string();
        f[26 - 3] = start_code.to_string();
        f[52 - 3] = exit.to_string();
        format!("4242 ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn stat_lines_give_state_start_and_exit() {
        let cases = [
            (line("sleep", 'Z', 777, 0, 9), ('Z', 777, 0, 9)),
            (
                line("sleep", 'S', 12, 94_000_000, 0),
                ('S', 12, 94_000_000, 0),
            ),
            // A name with spaces and parentheses.
            (line("a) (b c", 'Z', 5, 0, 256), ('Z', 5, 0, 256)),
            // Not ours to trace: start code 1.
            (line("init", 'S', 5, 1, 0), ('S', 5, 1, 0)),
        ];
        for (text, (state, start, start_code, exit_code)) in cases {
            let s = parse_stat(&text).unwrap();
            assert_eq!(
                (s.state, s.start, s.start_code, s.exit_code),
                (state, start, Some(start_code), Some(exit_code)),
                "{text}"
            );
        }
        assert_eq!(parse_stat("4242 (short) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(same_process_alive(me, s.start));
        assert!(!same_process_alive(me, s.start + 1));
    }

    #[test]
    fn mem_total_in_mib() {
        assert_eq!(
            parse_mem_total_mib("MemTotal:       24684544 kB\nMemFree: 1 kB\n"),
            Some(24106.0)
        );
        assert_eq!(parse_mem_total_mib("nothing"), None);
    }
}
