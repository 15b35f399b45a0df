//! A command task's CPU weight: what its app's `cpus` asks for, as Docker
//! tasks get it through `CpuShares` (`cpus` x 1024, see `docker/spec.rs`) and
//! Mesos gives it through `cpu.shares`. Under contention a task with `cpus:
//! 0.1` gets about a tenth of the CPU time of a task (or of the manager) with
//! a whole CPU; an idle machine runs it at full speed all the same.
//!
//! A command task has no cgroup of its own, so the weight is a nice value,
//! which the kernel turns into a weight of 1024 / 1.25^nice:
//! - the task's process group gets it (`setpriority`), its later children
//!   inherit it;
//! - its shim's session (the shim and the task) gets it as the session's
//!   scheduler autogroup's nice, where the kernel has autogroups (Debian's
//!   default: the CPU is shared between sessions first, so each shim's
//!   session would otherwise weigh as much as the whole manager). The shim
//!   writes it once it has answered, so its own start is not slowed.
//!
//! Only ever lowered: `cpus` of 1 or more is nice 0, the manager's own
//! weight (a task above the manager could starve it; a negative nice also
//! needs a privilege).

use std::path::Path;

/// The lowest weight a nice value gives (nice 19: 15 against 1024).
pub const MAX_NICE: i32 = 19;

/// The nice value whose weight is nearest to `cpus` x 1024: 0 for a whole
/// CPU or more, 19 for `cpus` <= ~0.015 (and for 0).
pub fn nice_for_cpus(cpus: f64) -> i32 {
    if cpus.is_nan() || cpus <= 0.0 {
        return MAX_NICE;
    }
    if cpus >= 1.0 {
        return 0;
    }
    // weight(nice) = 1024 / 1.25^nice, so nice = log_1.25(1 / cpus).
    let nice = ((1.0 / cpus).ln() / 1.25f64.ln()).round();
    (nice as i32).clamp(0, MAX_NICE)
}

/// Gives the task's process group (`pgid`, its leader's pid) the nice value.
pub(super) fn lower_group(pgid: i32, nice: i32) -> std::io::Result<()> {
    if nice <= 0 {
        return Ok(());
    }
    let pgid = rustix::process::Pid::from_raw(pgid)
        .ok_or_else(|| std::io::Error::other("process group 0"))?;
    rustix::process::setpriority_pgrp(Some(pgid), nice).map_err(std::io::Error::from)
}

/// Gives this process's session (its scheduler autogroup) the nice value,
/// where the kernel has autogroups (`proc` is `/proc`; tests pass another).
/// `Ok(false)`: the kernel has none, nothing to do.
pub(super) fn lower_session(proc: &Path, nice: i32) -> std::io::Result<bool> {
    if nice <= 0 {
        return Ok(false);
    }
    let path = proc.join("self").join("autogroup");
    match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(nice.to_string().as_bytes())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_map_to_the_nice_value_of_the_nearest_weight() {
        // (cpus, nice): the kernel's weight for the nice value is in the comment.
        for (cpus, nice) in [
            (8.0, 0),    // never above the manager
            (1.0, 0),    // 1024
            (0.9, 0),    // 1024 (922 is nearer 1024 than 820)
            (0.8, 1),    // 820
            (0.5, 3),    // 526
            (0.25, 6),   // 272
            (0.1, 10),   // 110
            (0.05, 13),  // 56
            (0.01, 19),  // 15 (10 wanted: the lowest there is)
            (0.001, 19), // 15
            (0.0, 19),
            (-1.0, 19),
            (f64::NAN, 19),
        ] {
            assert_eq!(nice_for_cpus(cpus), nice, "cpus {cpus}");
        }
    }

    #[test]
    fn a_session_without_autogroups_is_left_alone() {
        let proc = tempfile::tempdir().unwrap();
        assert!(
            !lower_session(proc.path(), 10).unwrap(),
            "no autogroup file"
        );
        std::fs::create_dir(proc.path().join("self")).unwrap();
        std::fs::write(proc.path().join("self").join("autogroup"), "").unwrap();
        assert!(
            !lower_session(proc.path(), 0).unwrap(),
            "nice 0: nothing written"
        );
        assert_eq!(
            std::fs::read_to_string(proc.path().join("self").join("autogroup")).unwrap(),
            ""
        );
        assert!(lower_session(proc.path(), 10).unwrap());
        assert_eq!(
            std::fs::read_to_string(proc.path().join("self").join("autogroup")).unwrap(),
            "10"
        );
    }
}
