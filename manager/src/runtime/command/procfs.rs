//! The few facts the command runtime reads from /proc: a process's start time
//! (to tell a live task from a recycled pid), its group and session (to find
//! every member of a task's process group) and the node's memory.

use std::path::Path;

/// Fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks since boot when the process started.
    pub start: u64,
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
    })
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
                start: 987654
            }
        );
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
