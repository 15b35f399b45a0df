//! The thin async layer that applies [`crate::scheduler::plan`]: launches
//! (after backoff, resources, constraints and ports allow), kills, runtime
//! exits, deployment completion and recovery after a restart.

use std::collections::{BTreeMap, BTreeSet};
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
use crate::runtime::{
    DockerNetwork, DockerSpec, Exit, LaunchSpec, PortBinding, RuntimeEvent, VolumeMount, Workload,
};
use crate::scheduler::{self, Action, Actual, Desired};
use crate::state::{Backoff, State, TaskRecord, Waiting, DOCKER_HEALTH};
use crate::store::{Store, Write};

/// The workload of an app.
pub fn workload(app: &App, alloc: &ports::Allocation) -> Workload {
    match app.docker_image() {
        Some(image) => {
            let docker = app.container.as_ref().and_then(|c| c.docker.as_ref());
            let network = match app.networks.first().map(|n| n.mode) {
                Some(marathon::NetworkMode::ContainerBridge) => DockerNetwork::Bridge,
                Some(marathon::NetworkMode::Container) => {
                    DockerNetwork::User(app.networks[0].name.clone().unwrap_or_default())
                }
                _ => DockerNetwork::Host,
            };
            Workload::Docker(DockerSpec {
                image: image.to_string(),
                force_pull: docker.is_some_and(|d| d.force_pull_image),
                privileged: docker.is_some_and(|d| d.privileged),
                cmd: app.cmd.clone(),
                args: app.args.clone(),
                parameters: docker
                    .map(|d| {
                        d.parameters
                            .iter()
                            .map(|p| (p.key.clone(), p.value.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                network,
                ports: alloc
                    .bindings
                    .iter()
                    .map(|(h, c, p)| PortBinding {
                        host_port: *h,
                        container_port: *c,
                        protocol: p.clone(),
                    })
                    .collect(),
                volumes: app
                    .container
                    .iter()
                    .flat_map(|c| c.volumes.iter())
                    .filter_map(|v| {
                        Some(VolumeMount {
                            host_path: v.host_path.clone()?,
                            container_path: v.container_path.clone(),
                            read_only: v.mode.as_deref() == Some("RO"),
                        })
                    })
                    .collect(),
                labels: BTreeMap::new(),
            })
        }
        None => Workload::Command {
            cmd: app.cmd.clone(),
            args: app.args.clone(),
        },
    }
}

/// Resources taken by active tasks (and the launches planned so far).
struct Used {
    cpus: f64,
    mem: f64,
    ports: BTreeSet<u16>,
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
                        self.finish_task(&task_id, exit).await
                    }
                    RuntimeEvent::Health { task_id, healthy } => {
                        self.runtime_health(&task_id, healthy)
                    }
                }
            };
            contain::run_async(&self.counters.loop_panics, "runtime event", &app_id, handle).await;
        }
    }

    /// What the scheduler aims for; definitions loaded from etcd may carry
    /// values beyond today's bounds, clamped here.
    fn desired(app: &App) -> Desired {
        Desired {
            instances: bounds::instances(app),
            config_version: Core::config_version(app),
            minimum_health_capacity: bounds::capacity(
                app.upgrade_strategy.minimum_health_capacity,
                1.0,
            ),
            maximum_over_capacity: bounds::capacity(
                app.upgrade_strategy.maximum_over_capacity,
                1.0,
            ),
            kill_selection: app.kill_selection,
        }
    }

    fn actuals(s: &State, app_id: &str) -> Vec<Actual> {
        s.tasks_of(app_id)
            .filter(|t| t.is_active() && t.state != TaskState::Killing)
            .map(|t| Actual {
                task_id: t.id.clone(),
                config_version: t.config_version,
                ready: t.state == TaskState::Running
                    && s.healthy(t) != Some(false)
                    && (s
                        .apps
                        .get(app_id)
                        .is_none_or(|a| a.health_checks.is_empty())
                        || s.healthy(t) == Some(true)),
                staged_at: t.staged_at,
            })
            .collect()
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
            let writes: Vec<Write> = launches
                .iter()
                .filter_map(|(t, _)| Store::put(self.store.task_key(&t.id).ok()?, t).ok())
                .collect();
            // Not an API change and safe to repeat (each record is
            // rewritten as the task moves on): may take several transactions.
            if let Err(e) = self.store.apply_chunked(writes).await {
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

    fn plan_pass(&self, s: &mut State) -> Pass {
        let mut pass = Pass::default();
        let now = Instant::now();
        let mut app_ids: BTreeSet<String> = s.apps.keys().cloned().collect();
        app_ids.extend(
            s.tasks
                .values()
                .filter(|t| t.is_active())
                .map(|t| t.app_id.clone()),
        );
        let cpus: f64 = s
            .tasks
            .values()
            .filter(|t| t.is_active())
            .map(|t| t.cpus)
            .sum();
        let mem: f64 = s
            .tasks
            .values()
            .filter(|t| t.is_active())
            .map(|t| t.mem)
            .sum();
        let ports: BTreeSet<u16> = s
            .tasks
            .values()
            .filter(|t| t.is_active())
            .flat_map(|t| t.host_ports.iter().copied())
            .collect();
        let mut used = Used { cpus, mem, ports };
        for app_id in app_ids {
            contain::run(&self.counters.loop_panics, "reconcile", &app_id, || {
                self.plan_app(s, &mut pass, &mut used, &app_id, now)
            });
        }
        // Deployments whose apps all converged are done.
        let done: Vec<String> = s
            .deployments
            .values()
            .filter(|d| {
                d.affected_apps.iter().all(|app_id| {
                    let desired = s.apps.get(app_id).map(Self::desired);
                    let actual = Self::actuals(s, app_id);
                    let draining = s.tasks_of(app_id).any(|t| t.state == TaskState::Killing);
                    scheduler::converged(desired.as_ref(), &actual) && !draining
                })
            })
            .map(|d| d.id.clone())
            .collect();
        for id in done {
            if let Some(d) = s.deployments.remove(&id) {
                pass.finished_deployments.push(d);
            }
        }
        pass
    }

    /// One app's share of a pass: its launches (within backoff, resources,
    /// constraints and ports), kills and queue entry.
    fn plan_app(
        &self,
        s: &mut State,
        pass: &mut Pass,
        used: &mut Used,
        app_id: &str,
        now: Instant,
    ) {
        let app = s.apps.get(app_id).cloned();
        let desired = app.as_ref().map(Self::desired);
        let actual = Self::actuals(s, app_id);
        let actions = scheduler::plan(desired.as_ref(), &actual);
        let mut waiting: Option<(usize, String)> = None;
        for action in actions {
            match action {
                Action::Kill(id) => {
                    if let Some(t) = s.tasks.get_mut(&id) {
                        t.state = TaskState::Killing;
                        pass.kills.push(t.clone());
                    }
                }
                Action::Launch(n) => {
                    let Some(app) = app.as_ref() else { continue };
                    for i in 0..n {
                        if let Some(b) = s.backoff.get(app_id) {
                            if b.next_launch > now {
                                waiting = Some((
                                    n - i,
                                    format!("backoff: {:.1}s delay after failures", b.delay_secs),
                                ));
                                break;
                            }
                        }
                        if used.cpus + app.cpus > self.node.cpus + 1e-9
                            || used.mem + app.mem > self.node.mem + 1e-9
                        {
                            waiting = Some((
                                n - i,
                                "insufficient resources on the node (cpus/mem)".into(),
                            ));
                            break;
                        }
                        let here = s.tasks_of(app_id).filter(|t| t.is_active()).count();
                        if !crate::constraints::allows(
                            &app.constraints,
                            &self.node.attributes,
                            here,
                        ) {
                            waiting =
                                Some((n - i, "constraints not satisfied on this node".into()));
                            break;
                        }
                        let start = self.next_port_start();
                        let alloc = match ports::allocate(
                            app,
                            &used.ports,
                            self.cfg.port_range,
                            start,
                            &ports::host_can_bind,
                        ) {
                            Ok(a) => a,
                            Err(p) => {
                                waiting = Some((n - i, p.to_string()));
                                break;
                            }
                        };
                        let wl = workload(app, &alloc);
                        let Some(rt) = self.runtimes.iter().find(|r| r.handles(&wl)) else {
                            waiting = Some((
                                n - i,
                                "no runtime can run this app (Docker unavailable?)".into(),
                            ));
                            break;
                        };
                        let task_id = crate::ids::new_task_id(app_id);
                        let env = task_env(
                            app,
                            &task_id,
                            &alloc.ports,
                            &NodeEnv {
                                host: self.node.address.clone(),
                                etcd_endpoints: match (&wl, self.container_net_etcd_endpoints.get())
                                {
                                    (Workload::Docker(d), Some(e))
                                        if d.network != DockerNetwork::Host =>
                                    {
                                        e.clone()
                                    }
                                    _ => self.cfg.container_etcd_endpoints.clone(),
                                },
                                etcd_auth: self.cfg.container_etcd_auth.clone(),
                            },
                        );
                        let kill_grace = bounds::kill_grace_secs(
                            app.task_kill_grace_period_seconds.unwrap_or(3),
                        );
                        let version = app.version.unwrap_or_else(Timestamp::now);
                        let rec = TaskRecord {
                            id: task_id.clone(),
                            app_id: app_id.to_string(),
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
                            runtime: rt.name().to_string(),
                            handle: String::new(),
                            ip_addresses: Vec::new(),
                            is_docker: matches!(wl, Workload::Docker(_)),
                            kill_grace,
                        };
                        let spec = LaunchSpec {
                            task_id: task_id.clone(),
                            app_id: app_id.to_string(),
                            app_version: version.to_string(),
                            env,
                            cpus: app.cpus,
                            mem_mib: app.mem,
                            kill_grace: Duration::from_secs(kill_grace),
                            workload: wl,
                        };
                        used.cpus += app.cpus;
                        used.mem += app.mem;
                        used.ports.extend(alloc.host_ports.iter().copied());
                        s.launching.insert(task_id.clone());
                        s.tasks.insert(task_id, rec.clone());
                        pass.launches.push((rec, spec));
                    }
                }
            }
        }
        match waiting {
            Some((count, reason)) => {
                let since = s
                    .queue
                    .get(app_id)
                    .map(|w| w.since)
                    .unwrap_or_else(Timestamp::now);
                s.queue.insert(
                    app_id.to_string(),
                    Waiting {
                        app_id: app_id.to_string(),
                        count,
                        reason,
                        since,
                    },
                );
            }
            None => {
                s.queue.remove(app_id);
            }
        }
    }

    fn spawn_launch(&self, t: TaskRecord, spec: LaunchSpec) {
        let Some(rt) = self
            .runtimes
            .iter()
            .find(|r| r.name() == t.runtime)
            .cloned()
        else {
            self.state().launching.remove(&t.id);
            return;
        };
        let core = self.self_arc();
        self.tracker.spawn(async move {
            let Some(core) = core else { return };
            match core.set_state(&t.id, TaskState::Starting, None) {
                Some(t) => core.announce(&t, "Task starting"),
                None => {
                    // Killed (or gone) before the launch began: nothing to start.
                    core.state().launching.remove(&t.id);
                    core.finish_task(&t.id, Exit::Killed).await;
                    return;
                }
            }
            match rt.launch(&spec).await {
                Ok(started) => {
                    let killed = {
                        let mut s = core.state();
                        s.launching.remove(&spec.task_id);
                        s.tasks
                            .get(&spec.task_id)
                            .is_none_or(|rec| rec.state == TaskState::Killing)
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
                                Some(rec.clone())
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
                        core.persist_task(&rec).await;
                        tracing::info!(task_id = %rec.id, app_id = %rec.app_id, "task running");
                        core.announce(&rec, "Task running");
                        core.wake();
                    }
                }
                Err(e) => {
                    core.state().launching.remove(&spec.task_id);
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

    async fn persist_task(&self, t: &TaskRecord) {
        if let Err(e) = self.store.put_task(&t.id, t).await {
            tracing::warn!(task_id = %t.id, error = %e, "persisting task failed");
        }
    }

    /// A task ended: announce, forget, back off when it failed on its own.
    pub async fn finish_task(&self, task_id: &str, exit: Exit) {
        let rec = {
            let mut s = self.state();
            s.unresolved.remove(task_id);
            s.launching.remove(task_id);
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
        if let Err(e) = self.store.delete_task(&t.id).await {
            tracing::warn!(task_id = %t.id, error = %e, "deleting task state failed");
        }
        tracing::info!(task_id = %t.id, state = %t.state, %message, "task ended");
        self.announce(&t, &message);
        self.wake();
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
