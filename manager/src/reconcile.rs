//! The thin async layer that applies [`crate::scheduler::plan_pass`] (the
//! pure decision of launches, kills, queue entries and finished
//! deployments): it starts and kills tasks through the runtimes, persists
//! them, handles runtime exits and health verdicts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use marathon::{App, TaskFailure, TaskState, Timestamp};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::bounds;
use crate::contain;
use crate::core::Core;
use crate::env::{task_env, NodeEnv};
use crate::events;
use crate::ports;
use crate::runtime::{DockerNetwork, Exit, LaunchSpec, RuntimeEvent, Workload};
use crate::scheduler;
use crate::state::{Backoff, State, TaskRecord, Waiting, DOCKER_HEALTH};

/// Launches in flight at most (planned, not yet running or failed): a big
/// scale-up is staged in steps of this many, so no event stream is sent
/// thousands of `TASK_STAGING` updates at once (a client more than
/// `max_outstanding` behind is cut off). Above the command runtime's
/// `LAUNCH_SLOTS`, so its spawner always has work queued.
pub const MAX_LAUNCHING: usize = 256;

/// One launch counted in [`Core::launches_in_flight`]; dropped, however
/// the launch ends, after its outcome was announced.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one reconcile pass decided, applied after the state lock is released.
#[derive(Default)]
struct Pass {
    launches: Vec<(TaskRecord, LaunchSpec)>,
    kills: Vec<TaskRecord>,
    finished_deployments: Vec<crate::state::DeploymentRecord>,
}

impl Core {
    /// Runs until shutdown: reconciles on every wake-up and on a tick. A
    /// panic in a pass is contained ([`crate::contain`]); the next pass runs.
    pub async fn run_reconciler(self: Arc<Self>) {
        loop {
            contain::run_async(
                &self.counters.loop_panics,
                "reconcile",
                "",
                self.reconcile_once(),
            )
            .await;
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.reconcile_interval) => {}
            }
        }
    }

    /// Consumes runtime events until the channel closes or shutdown. A
    /// panic while handling one event is contained ([`crate::contain`]): the
    /// next events (other apps' task exits) are still processed.
    pub async fn run_runtime_events(self: Arc<Self>, mut rx: UnboundedReceiver<RuntimeEvent>) {
        loop {
            let ev = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                ev = rx.recv() => ev,
            };
            let Some(ev) = ev else { break };
            let task_id = match &ev {
                RuntimeEvent::Exited { task_id, .. } | RuntimeEvent::Health { task_id, .. } => {
                    task_id.clone()
                }
            };
            let app_id = self
                .state()
                .tasks
                .get(&task_id)
                .map(|t| t.app_id.clone())
                .unwrap_or_default();
            let handle = async {
                match ev {
                    RuntimeEvent::Exited { task_id, exit } => {
                        let exit = {
                            let mut s = self.state();
                            if s.launching.contains(&task_id) {
                                // Reported by the launch, after TASK_RUNNING.
                                s.early_exits.insert(task_id.clone(), exit);
                                None
                            } else {
                                Some(exit)
                            }
                        };
                        if let Some(exit) = exit {
                            self.finish_task(&task_id, exit).await
                        }
                    }
                    RuntimeEvent::Health { task_id, healthy } => {
                        self.runtime_health(&task_id, healthy)
                    }
                }
            };
            contain::run_async(&self.counters.loop_panics, "runtime event", &app_id, handle).await;
        }
    }

    /// One pass over every app.
    pub async fn reconcile_once(&self) {
        let pass = {
            let mut s = self.state();
            self.plan_pass(&mut s)
        };
        let Pass {
            launches,
            kills,
            finished_deployments,
        } = pass;
        if !launches.is_empty() {
            // STAGING is in etcd before anything starts: a manager killed
            // meanwhile finds the tasks and asks the runtime about them.
            let ids = launches.iter().map(|(t, _)| t.id.clone());
            if let Err(e) = self.save_tasks(ids).await {
                tracing::warn!(error = %e, "persisting new tasks failed; they start anyway");
            }
        }
        for (t, spec) in launches {
            self.announce(&t, "Task staged");
            self.spawn_launch(t, spec);
        }
        for t in kills {
            self.announce(&t, "Task is being killed");
            self.spawn_kill(t);
        }
        for d in finished_deployments {
            if let Err(e) = self.store.delete_deployment(&d.id).await {
                tracing::warn!(error = %e, deployment = %d.id, "deleting finished deployment failed");
            }
            self.counters
                .deployments_succeeded
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish(&events::build::deployment_step_success(&d));
            self.bus.publish(&events::build::deployment_success(&d));
        }
    }

    /// Decides a pass ([`scheduler::plan_pass`], pure) and applies it to
    /// the state: tasks to kill are marked KILLING, launched tasks are
    /// recorded (STAGING, their launch in flight), `/v2/queue` says why
    /// launches wait, finished deployments leave. The runtimes and etcd are
    /// driven by the caller once the state lock is released.
    fn plan_pass(&self, s: &mut State) -> Pass {
        let runtime_for = |wl: &Workload| {
            self.runtimes
                .iter()
                .find(|r| r.handles(wl))
                .map(|r| r.name().to_string())
        };
        let offer = scheduler::Offer {
            cpus: self.node.cpus,
            mem: self.node.mem,
            attributes: &self.node.attributes,
            port_range: self.cfg.port_range,
            port_cursor: self.port_cursor.load(Ordering::Relaxed),
            now: Instant::now(),
            can_bind: &ports::host_can_bind,
            runtime_for: &runtime_for,
            launch_budget: MAX_LAUNCHING
                .saturating_sub(self.launches_in_flight.load(Ordering::SeqCst)),
        };
        let plan = scheduler::plan_pass(s, &offer);
        self.port_cursor
            .fetch_add(plan.port_attempts, Ordering::Relaxed);
        for (app_id, message) in &plan.panicked {
            contain::record(&self.counters.loop_panics, "reconcile", app_id, message);
        }
        let mut pass = Pass::default();
        for id in plan.kills {
            if let Some(t) = s.tasks.get_mut(&id) {
                t.state = TaskState::Killing;
                pass.kills.push(t.clone());
            }
        }
        for launch in plan.launches {
            let Some(app) = s.apps.get(&launch.app_id) else {
                continue;
            };
            let (rec, spec) = self.task_for(app, launch);
            // Given back by the launch's `InFlight` once its outcome is announced.
            self.launches_in_flight.fetch_add(1, Ordering::SeqCst);
            s.launching.insert(rec.id.clone());
            s.tasks.insert(rec.id.clone(), rec.clone());
            pass.launches.push((rec, spec));
        }
        for (app_id, waiting) in plan.waiting {
            match waiting {
                Some((count, reason)) => {
                    let since = s
                        .queue
                        .get(&app_id)
                        .map(|w| w.since)
                        .unwrap_or_else(Timestamp::now);
                    s.queue.insert(
                        app_id.clone(),
                        Waiting {
                            app_id,
                            count,
                            reason,
                            since,
                        },
                    );
                }
                None => {
                    s.queue.remove(&app_id);
                }
            }
        }
        for id in plan.finished_deployments {
            if let Some(d) = s.deployments.remove(&id) {
                pass.finished_deployments.push(d);
            }
        }
        // Finished, cancelled or replaced deployments forget what they reached.
        let State {
            reached,
            deployments,
            ..
        } = s;
        reached.retain(|id, _| deployments.contains_key(id));
        pass
    }

    /// The record and launch spec of a task the pass decided to start: a
    /// new task id, its environment, STAGING now.
    fn task_for(&self, app: &App, launch: scheduler::Launch) -> (TaskRecord, LaunchSpec) {
        let scheduler::Launch {
            app_id,
            alloc,
            workload: wl,
            runtime,
        } = launch;
        let task_id = crate::ids::new_task_id(&app_id);
        let env = task_env(
            app,
            &task_id,
            &alloc.ports,
            &NodeEnv {
                host: self.node.address.clone(),
                etcd_endpoints: match (&wl, self.container_net_etcd_endpoints.get()) {
                    (Workload::Docker(d), Some(e)) if d.network != DockerNetwork::Host => e.clone(),
                    _ => self.cfg.container_etcd_endpoints.clone(),
                },
                etcd_auth: self.cfg.container_etcd_auth.clone(),
            },
        );
        let kill_grace = bounds::kill_grace_secs(app.task_kill_grace_period_seconds.unwrap_or(3));
        let version = app.version.unwrap_or_else(Timestamp::now);
        let rec = TaskRecord {
            id: task_id.clone(),
            app_id: app_id.clone(),
            state: TaskState::Staging,
            host: self.node.address.clone(),
            node: self.node.name.clone(),
            staged_at: Timestamp::now(),
            started_at: None,
            version,
            config_version: Core::config_version(app),
            ports: alloc.ports.clone(),
            host_ports: alloc.host_ports.clone(),
            cpus: app.cpus,
            mem: app.mem,
            runtime,
            handle: String::new(),
            ip_addresses: Vec::new(),
            is_docker: matches!(wl, Workload::Docker(_)),
            kill_grace,
        };
        let spec = LaunchSpec {
            task_id,
            app_id,
            app_version: version.to_string(),
            env,
            cpus: app.cpus,
            mem_mib: app.mem,
            kill_grace: Duration::from_secs(kill_grace),
            workload: wl,
        };
        (rec, spec)
    }

    fn spawn_launch(&self, t: TaskRecord, spec: LaunchSpec) {
        let in_flight = InFlight(self.launches_in_flight.clone());
        let Some(rt) = self
            .runtimes
            .iter()
            .find(|r| r.name() == t.runtime)
            .cloned()
        else {
            self.state().end_launch(&t.id);
            return;
        };
        let core = self.self_arc();
        self.tracker.spawn(async move {
            let _in_flight = in_flight;
            let Some(core) = core else { return };
            match core.set_state(&t.id, TaskState::Starting, None) {
                Some(t) => core.announce(&t, "Task starting"),
                None => {
                    // Killed (or gone) before the launch began: nothing to start.
                    core.state().end_launch(&t.id);
                    core.finish_task(&t.id, Exit::Killed).await;
                    return;
                }
            }
            match rt.launch(&spec).await {
                Ok(started) => {
                    let (killed, early_exit) = {
                        let mut s = core.state();
                        let early_exit = s.end_launch(&spec.task_id);
                        let killed = s
                            .tasks
                            .get(&spec.task_id)
                            .is_none_or(|rec| rec.state == TaskState::Killing);
                        (killed, early_exit)
                    };
                    if killed {
                        // A kill came while the runtime did not know the task
                        // yet (pull, create): stop and remove what was started.
                        tracing::info!(task_id = %spec.task_id, "killed during its launch; stopping what the launch started");
                        let kill = rt.kill(&spec.task_id, spec.kill_grace);
                        let outcome = contain::run_async(
                            &core.counters.loop_panics,
                            "kill",
                            &spec.app_id,
                            kill,
                        )
                        .await;
                        if let Some(Err(e)) = outcome {
                            tracing::warn!(task_id = %spec.task_id, error = %e, "kill after launch reported an error");
                        }
                        core.finish_task(&spec.task_id, Exit::Killed).await;
                        return;
                    }
                    let updated = {
                        let mut s = core.state();
                        match s.tasks.get_mut(&spec.task_id) {
                            Some(rec)
                                if matches!(
                                    rec.state,
                                    TaskState::Staging | TaskState::Starting
                                ) =>
                            {
                                rec.state = TaskState::Running;
                                rec.started_at = Some(Timestamp::now());
                                rec.handle = started.handle.clone();
                                rec.ip_addresses = started.ip_addresses.clone();
                                let rec = rec.clone();
                                scheduler::pass::note_ready(&mut s, &rec.app_id);
                                // Published under the state lock: an exit
                                // handled meanwhile is announced after it.
                                core.announce(&rec, "Task running");
                                Some(rec)
                            }
                            Some(rec) => {
                                rec.handle = started.handle.clone();
                                None
                            }
                            None => None,
                        }
                    };
                    if let Some(rec) = updated {
                        core.counters.tasks_launched.fetch_add(1, Ordering::Relaxed);
                        if early_exit.is_none() {
                            // (An ended task's record is deleted just below.)
                            core.persist_task(&rec).await;
                        }
                        tracing::info!(task_id = %rec.id, app_id = %rec.app_id, "task running");
                        core.wake();
                    }
                    if let Some(exit) = early_exit {
                        core.finish_task(&spec.task_id, exit).await;
                    }
                }
                Err(e) => {
                    // A launch that failed ends with its own error.
                    core.state().end_launch(&spec.task_id);
                    tracing::warn!(task_id = %spec.task_id, error = %e, "launch failed");
                    core.finish_task(
                        &spec.task_id,
                        Exit::Failed {
                            message: e.to_string(),
                        },
                    )
                    .await;
                }
            }
        });
    }

    pub(crate) fn spawn_kill(&self, t: TaskRecord) {
        self.spawn_kill_inner(t, false);
    }

    /// [`Self::spawn_kill`] of a record already persisted as KILLING.
    pub(crate) fn spawn_kill_persisted(&self, t: TaskRecord) {
        self.spawn_kill_inner(t, true);
    }

    fn spawn_kill_inner(&self, t: TaskRecord, persisted: bool) {
        let rt = self
            .runtimes
            .iter()
            .find(|r| r.name() == t.runtime)
            .cloned();
        let core = self.self_arc();
        self.tracker.spawn(async move {
            let Some(core) = core else { return };
            if !persisted {
                core.persist_task(&t).await;
            }
            // Drain: registries drop the instance on TASK_KILLING first.
            let drain = core.cfg.drain_delay;
            if !drain.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(drain) => {}
                    _ = core.shutdown.cancelled() => return,
                }
            }
            {
                let s = core.state();
                if s.launching.contains(&t.id) {
                    // The launch in flight stops what it starts (see spawn_launch).
                    return;
                }
                if s.unresolved.contains(&t.id) {
                    // Its runtime has not answered since the restart: the
                    // kill stays recorded (KILLING in etcd) and is carried
                    // out when recovery adopts the task.
                    tracing::info!(task_id = %t.id, "kill recorded; carried out once the runtime answers");
                    return;
                }
            }
            if let Some(rt) = rt {
                // A record from etcd may carry any grace: clamped. Whatever
                // the runtime does (even a panic), the task ends KILLED.
                let grace = Duration::from_secs(bounds::kill_grace_secs(t.kill_grace));
                let kill = rt.kill(&t.id, grace);
                let outcome =
                    contain::run_async(&core.counters.loop_panics, "kill", &t.app_id, kill).await;
                if let Some(Err(e)) = outcome {
                    tracing::warn!(task_id = %t.id, error = %e, "kill reported an error");
                }
            }
            core.finish_task(&t.id, Exit::Killed).await;
        });
    }

    fn set_state(&self, id: &str, state: TaskState, _msg: Option<&str>) -> Option<TaskRecord> {
        let mut s = self.state();
        let t = s.tasks.get_mut(id)?;
        if t.state.is_terminal() || t.state == TaskState::Killing {
            return None;
        }
        t.state = state;
        Some(t.clone())
    }

    /// Writes the task's current record (through the one task writer).
    async fn persist_task(&self, t: &TaskRecord) {
        if let Err(e) = self.save_tasks([t.id.clone()]).await {
            tracing::warn!(task_id = %t.id, error = %e, "persisting task failed; retried until etcd takes it");
        }
    }

    /// A task ended: announce, forget, back off when it failed on its own.
    pub async fn finish_task(&self, task_id: &str, exit: Exit) {
        let rec = {
            let mut s = self.state();
            s.unresolved.remove(task_id);
            s.end_launch(task_id);
            let Some(mut t) = s.tasks.remove(task_id) else {
                return;
            };
            let was_killing = t.state == TaskState::Killing;
            let (state, message) = match (&exit, was_killing) {
                (_, true) | (Exit::Killed, _) => (TaskState::Killed, "Task killed".to_string()),
                (Exit::Finished, _) => (
                    TaskState::Finished,
                    "Command exited with status 0".to_string(),
                ),
                (Exit::Failed { message }, _) => (TaskState::Failed, message.clone()),
                (Exit::Lost { message }, _) => (TaskState::Lost, message.clone()),
            };
            t.state = state.clone();
            s.health.remove(task_id);
            match state {
                TaskState::Killed => {
                    self.counters.tasks_killed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    if state == TaskState::Finished {
                        self.counters.tasks_finished.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counters.tasks_failed.fetch_add(1, Ordering::Relaxed);
                        s.last_failure.insert(
                            t.app_id.clone(),
                            TaskFailure {
                                app_id: t.app_id.clone(),
                                host: t.host.clone(),
                                message: message.clone(),
                                state: state.clone(),
                                task_id: t.id.clone(),
                                timestamp: Timestamp::now(),
                                version: t.version,
                                slave_id: Some(t.node.clone()),
                            },
                        );
                    }
                    if let Some(app) = s.apps.get(&t.app_id).cloned() {
                        if Core::config_version(&app) == t.config_version {
                            let failures = s
                                .backoff
                                .get(&t.app_id)
                                .map_or(0, |b| b.failures)
                                .saturating_add(1);
                            let delay = bounds::backoff_delay(&app, failures);
                            s.backoff.insert(
                                t.app_id.clone(),
                                Backoff {
                                    failures,
                                    next_launch: bounds::later(
                                        Instant::now(),
                                        bounds::bounded_secs(delay),
                                    ),
                                    delay_secs: delay,
                                },
                            );
                        }
                    }
                }
            }
            (t, message)
        };
        let (t, message) = rec;
        // Announced before the stored task is deleted: peers wait for this
        // event, and the order is safe. A restart between the two finds the
        // stored task, asks the runtime, which says it is gone, and ends it
        // again (a task is never declared ended from the store alone).
        tracing::info!(task_id = %t.id, state = %t.state, %message, "task ended");
        self.announce(&t, &message);
        self.wake();
        if let Err(e) = self.save_tasks([t.id.clone()]).await {
            tracing::warn!(task_id = %t.id, error = %e, "deleting task state failed; retried until etcd takes it");
        }
        // Wake again once a backoff delay has passed.
        let delay = self.state().backoff.get(&t.app_id).map(|b| b.next_launch);
        if let (Some(when), Some(core)) = (delay, self.self_arc()) {
            self.tracker.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(when)) => core.wake(),
                    _ = core.shutdown.cancelled() => {}
                }
            });
        }
    }

    /// The image's own Docker HEALTHCHECK: one more health result of the
    /// task (never a kill: Marathon-level checks decide that).
    fn runtime_health(&self, task_id: &str, healthy: bool) {
        tracing::debug!(%task_id, healthy, "runtime health");
        let check = marathon::HealthCheck {
            max_consecutive_failures: 0,
            ..marathon::HealthCheck::default()
        };
        let outcome = if healthy {
            Ok(())
        } else {
            Err("Docker HEALTHCHECK reports unhealthy".to_string())
        };
        let (changed, verdict, rec) = {
            let mut s = self.state();
            let Some(rec) = s.tasks.get(task_id).cloned() else {
                return;
            };
            if rec.state != TaskState::Running {
                return;
            }
            let prev = s
                .health
                .get(task_id)
                .and_then(|m| m.get(&DOCKER_HEALTH))
                .cloned();
            let v = crate::health::evaluate(
                &check,
                prev.as_ref(),
                outcome,
                false,
                &crate::ids::instance_id(task_id),
                Timestamp::now(),
            );
            if let Some(r) = v.result {
                s.health
                    .entry(task_id.to_string())
                    .or_default()
                    .insert(DOCKER_HEALTH, r);
            }
            if healthy {
                scheduler::pass::note_ready(&mut s, &rec.app_id);
            }
            (v.changed, s.healthy(&rec), rec)
        };
        if let Some(alive) = changed {
            self.bus
                .publish(&events::build::health_status_changed(&rec, alive));
            self.bus
                .publish(&events::build::instance_health_changed(&rec, verdict));
            self.wake();
        }
    }
}
