//! Marathon-level health checks (HTTP, HTTPS, TCP, COMMAND; the MESOS_*
//! variants are run the same way): grace period, interval, timeout,
//! `maxConsecutiveFailures`, `healthCheckResults`, health events, kill and
//! replace of unhealthy tasks. [`evaluate`] is the pure decision.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marathon::{HealthCheck, HealthCheckProtocol, HealthCheckResult, TaskState, Timestamp};

use crate::core::Core;
use crate::events;
use crate::state::TaskRecord;

/// What one check outcome changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The new result (None = ignored: failure inside the grace period).
    pub result: Option<HealthCheckResult>,
    /// `Some(alive)` when aliveness flipped (or was first known).
    pub changed: Option<bool>,
    /// Too many consecutive failures: kill the task.
    pub kill: bool,
}

/// Applies one outcome to the previous result of a check.
pub fn evaluate(
    check: &HealthCheck,
    prev: Option<&HealthCheckResult>,
    outcome: Result<(), String>,
    in_grace: bool,
    instance_id: &str,
    now: Timestamp,
) -> Verdict {
    let mut r = prev.cloned().unwrap_or_else(|| HealthCheckResult {
        instance_id: Some(instance_id.to_string()),
        ..HealthCheckResult::default()
    });
    let was = prev.map(|p| p.alive);
    match outcome {
        Ok(()) => {
            r.alive = true;
            r.consecutive_failures = 0;
            r.first_success.get_or_insert(now);
            r.last_success = Some(now);
            Verdict {
                changed: (was != Some(true)).then_some(true),
                result: Some(r),
                kill: false,
            }
        }
        Err(cause) => {
            let never_succeeded = prev.is_none_or(|p| p.first_success.is_none());
            if in_grace && never_succeeded {
                return Verdict {
                    result: None,
                    changed: None,
                    kill: false,
                };
            }
            r.alive = false;
            r.consecutive_failures = r.consecutive_failures.saturating_add(1);
            r.last_failure = Some(now);
            r.last_failure_cause = Some(cause);
            let kill = check.max_consecutive_failures > 0
                && r.consecutive_failures >= check.max_consecutive_failures;
            Verdict {
                changed: (was != Some(false)).then_some(false),
                result: Some(r),
                kill,
            }
        }
    }
}

/// Per (task, check): when it last ran and whether a run is in flight.
#[derive(Default)]
pub struct Schedule {
    next: Mutex<HashMap<(String, usize), (Instant, bool)>>,
}

impl Core {
    /// Runs due checks every 200 ms until shutdown. A panic in one task's
    /// scheduling or check is contained ([`crate::contain`]): the loop and
    /// the other apps' checks go on.
    pub async fn run_health_checks(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            crate::contain::run(&self.counters.loop_panics, "health checks", "", || {
                self.health_tick()
            });
        }
    }

    fn health_tick(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<(TaskRecord, usize, HealthCheck)> = {
            let s = self.state();
            let mut due = Vec::new();
            let mut sched = self.health.next.lock().unwrap_or_else(|p| p.into_inner());
            sched.retain(|(task, _), _| {
                s.tasks
                    .get(task)
                    .is_some_and(|t| t.state == TaskState::Running)
            });
            for t in s
                .tasks
                .values()
                .filter(|t| t.state == TaskState::Running && !s.unresolved.contains(&t.id))
            {
                let Some(app) = s.apps.get(&t.app_id) else {
                    continue;
                };
                // Old-version tasks keep the checks of the current definition.
                crate::contain::run(
                    &self.counters.loop_panics,
                    "health checks",
                    &t.app_id,
                    || {
                        for (i, hc) in app.health_checks.iter().enumerate() {
                            let entry = sched.entry((t.id.clone(), i)).or_insert((now, false));
                            if !entry.1 && entry.0 <= now {
                                entry.1 = true;
                                entry.0 =
                                    crate::bounds::later(now, crate::bounds::health_interval(hc));
                                due.push((t.clone(), i, hc.clone()));
                            }
                        }
                    },
                );
            }
            due
        };
        for (t, i, hc) in due {
            let core = self.clone();
            self.tracker.spawn(async move {
                let check = async {
                    let timeout = crate::bounds::health_timeout(&hc);
                    let outcome = match tokio::time::timeout(timeout, core.probe(&t, &hc)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
                    };
                    core.record_health(&t, i, &hc, outcome);
                };
                crate::contain::run_async(
                    &core.counters.loop_panics,
                    "health check",
                    &t.app_id,
                    check,
                )
                .await;
                // Even after a panic: the next interval checks again.
                if let Some(e) = core
                    .health
                    .next
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&(t.id.clone(), i))
                {
                    e.1 = false;
                }
            });
        }
    }

    async fn probe(&self, t: &TaskRecord, hc: &HealthCheck) -> Result<(), String> {
        let port = || -> Result<u32, String> {
            hc.port
                .or_else(|| hc.port_index.and_then(|i| t.ports.get(i as usize).copied()))
                .ok_or_else(|| "no port to check".to_string())
        };
        match hc.protocol {
            HealthCheckProtocol::Command => {
                let cmd = hc
                    .command
                    .as_ref()
                    .map(|c| c.value.clone())
                    .unwrap_or_default();
                let rt = self
                    .runtimes
                    .iter()
                    .find(|r| r.name() == t.runtime)
                    .ok_or("no runtime")?;
                match rt
                    .exec_check(&t.id, &cmd, crate::bounds::health_timeout(hc))
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("command exited with a non-zero status".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            HealthCheckProtocol::Tcp | HealthCheckProtocol::MesosTcp => {
                let port = port()?;
                tokio::net::TcpStream::connect((t.host.as_str(), port as u16))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("connect: {e}"))
            }
            proto => {
                let port = port()?;
                let scheme = if matches!(
                    proto,
                    HealthCheckProtocol::Https | HealthCheckProtocol::MesosHttps
                ) {
                    "https"
                } else {
                    "http"
                };
                let path = hc.path.clone().unwrap_or_else(|| "/".into());
                let url = format!("{scheme}://{}:{port}{path}", t.host);
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{e}"))?;
                let code = resp.status().as_u16();
                if (200..400).contains(&code) || (code < 200 && hc.ignore_http1xx == Some(true)) {
                    Ok(())
                } else {
                    Err(format!("HTTP {code}"))
                }
            }
        }
    }

    fn record_health(
        &self,
        t: &TaskRecord,
        i: usize,
        hc: &HealthCheck,
        outcome: Result<(), String>,
    ) {
        let failed = outcome.is_err();
        let (verdict, healthy, rec) = {
            let mut s = self.state();
            let Some(rec) = s.tasks.get(&t.id).cloned() else {
                return;
            };
            if rec.state != TaskState::Running {
                return;
            }
            let started = rec.started_at.unwrap_or(rec.staged_at);
            let grace_ms = crate::bounds::health_grace(hc).as_millis() as i64;
            let in_grace = Timestamp::now()
                .as_millis()
                .saturating_sub(started.as_millis())
                < grace_ms;
            let prev = s.health.get(&t.id).and_then(|m| m.get(&i)).cloned();
            let v = evaluate(
                hc,
                prev.as_ref(),
                outcome,
                in_grace,
                &crate::ids::instance_id(&t.id),
                Timestamp::now(),
            );
            if let Some(r) = &v.result {
                s.health
                    .entry(t.id.clone())
                    .or_default()
                    .insert(i, r.clone());
            }
            let healthy = s.healthy(&rec);
            if healthy == Some(true) {
                crate::scheduler::pass::note_ready(&mut s, &rec.app_id);
            }
            (v, healthy, rec)
        };
        if failed && verdict.result.is_some() {
            self.counters
                .health_failures
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish(&events::build::failed_health_check(&rec, hc));
        }
        if let Some(alive) = verdict.changed {
            self.bus
                .publish(&events::build::health_status_changed(&rec, alive));
            self.bus
                .publish(&events::build::instance_health_changed(&rec, healthy));
            self.wake();
        }
        if verdict.kill {
            let reason = format!(
                "{} consecutive health check failures",
                hc.max_consecutive_failures
            );
            tracing::info!(task_id = %rec.id, %reason, "killing unhealthy task");
            self.bus
                .publish(&events::build::unhealthy_instance_kill(&rec, &reason));
            if let Some(core) = self.self_arc() {
                let id = rec.id.clone();
                self.tracker.spawn(async move {
                    core.start_kills(&[id], "unhealthy").await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max: u32) -> HealthCheck {
        HealthCheck {
            max_consecutive_failures: max,
            ..HealthCheck::default()
        }
    }

    #[test]
    fn table() {
        let now = Timestamp::from_millis(1000).unwrap();
        let alive = evaluate(&check(3), None, Ok(()), true, "i", now);
        let r = alive.result.clone().unwrap();
        assert!(r.alive && r.first_success == Some(now));
        assert_eq!(alive.changed, Some(true));
        // A failure in the grace period before any success is ignored.
        assert_eq!(
            evaluate(&check(3), None, Err("x".into()), true, "i", now).result,
            None
        );
        // After a success, failures count even in the grace period.
        let f1 = evaluate(&check(2), Some(&r), Err("down".into()), true, "i", now);
        assert_eq!(f1.changed, Some(false));
        assert!(!f1.kill);
        let f2 = evaluate(
            &check(2),
            f1.result.as_ref(),
            Err("down".into()),
            false,
            "i",
            now,
        );
        assert_eq!(f2.result.as_ref().unwrap().consecutive_failures, 2);
        assert_eq!(f2.changed, None);
        assert!(f2.kill);
        // 0 = never kill (Marathon-level).
        let mut prev = None;
        for _ in 0..10 {
            let v = evaluate(&check(0), prev.as_ref(), Err("x".into()), false, "i", now);
            assert!(!v.kill);
            prev = v.result;
        }
        // Recovery resets the counter.
        let ok = evaluate(&check(3), prev.as_ref(), Ok(()), false, "i", now);
        assert_eq!(ok.result.unwrap().consecutive_failures, 0);
        assert_eq!(ok.changed, Some(true));
    }
}
