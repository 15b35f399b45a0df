//! Issue 16: how fast peers learn that an instance came or went, end to end,
//! against the raw chain it is built from, measured in the same run.
//!
//! The stack is the real one: one etcd, the manager binary (Docker and
//! command tasks), the subscriber binary (SSE from the manager) and the
//! watcher binary in exec mode watching both services; the watcher's command
//! writes one line per notification into a FIFO this benchmark reads, so
//! "the watcher's command ran" is the moment its line arrives.
//!
//! - **death**: a task of the watched service is killed from outside
//!   (`docker kill` through the engine's API; `kill -9` of a command task's
//!   process) → the watcher's command runs with that instance removed. Raw
//!   chain: a program reading Docker's event stream (or waiting on its
//!   child) deletes an etcd key, a second one watches it.
//! - **birth**: `PUT /v2/apps/<id>` with one more instance → the watcher's
//!   command runs with the new instance. Raw: Docker's own create+start
//!   (bollard), or spawn + etcd put → watch for command tasks.
//!
//! Each figure also gets its links (from the manager's `/v2/events` and a
//! watch on the registry): kill → the manager's event → the record in etcd
//! → the watcher's command. A death also gets the moment the killed process
//! ended (a pidfd the bench opens on it before the kill: a container's init
//! or the command task's leader), the floor under any report of it, and
//! what the stack took after it (process ended → the watcher's command).
//!
//! ```sh
//! cargo build --release -p bench -p manager -p subscriber -p watcher --bins
//! target/release/propagation --samples 100
//! ```

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::chain::{first, follow_events, follow_records, Chain, ChainOptions, Seen, WatcherSpec};
use bench::raw_chain::{kill_container, Raw, STEP};
use bench::setup::ManagerApi;
use bench::Stats;
use bollard::container::ListContainersOptions;
use bollard::system::EventsOptions;
use bollard::Docker;
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// End-to-end propagation of a task's death and birth to a watcher's
/// command, beside the raw chain measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "propagation")]
struct Args {
    /// Samples per figure.
    #[arg(long, env = "PROPAGATION_SAMPLES", default_value_t = 100)]
    samples: usize,
    /// Instances each watched app keeps (a death is replaced before the next sample).
    #[arg(long, env = "PROPAGATION_INSTANCES", default_value_t = 3)]
    instances: u64,
    /// Only the figures of this kind of task: `docker` or `command`.
    #[arg(long, env = "PROPAGATION_ONLY")]
    only: Option<String>,
    /// The watched apps' `backoffSeconds`: 0 (the default here) relaunches a
    /// killed task at once, while its death is still on its way to the
    /// watchers; Marathon's own default is 1.
    #[arg(long, env = "PROPAGATION_BACKOFF_SECONDS", default_value_t = 0)]
    backoff_seconds: u64,
    /// Copy the stack's logs (manager, subscriber, watcher) into this folder at the end.
    #[arg(long, env = "PROPAGATION_LOGS")]
    logs: Option<PathBuf>,
}

const DOCKER_APP: &str = "/bench/propd";
const DOCKER_SERVICE: &str = "propd";
const COMMAND_APP: &str = "/bench/propc";
const COMMAND_SERVICE: &str = "propc";

/// One run of the watcher's command: which service, which instances came
/// and went (task ids), when its line arrived.
#[derive(Debug)]
struct HookLine {
    at: Instant,
    service: String,
    added: Vec<String>,
    removed: Vec<String>,
}

fn container_ids(json: &str) -> Vec<String> {
    serde_json::from_str::<Vec<Value>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["container"].as_str().map(str::to_string))
        .collect()
}

/// Reads the FIFO the watcher's command writes to, on a thread of its own
/// (opened read-write so it never sees end of file).
fn read_hook_lines(fifo: PathBuf, tx: mpsc::UnboundedSender<HookLine>) {
    std::thread::spawn(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("opening the watcher's FIFO");
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let mut parts = line.splitn(3, '\t');
            let service = parts.next().unwrap_or_default().to_string();
            let added = container_ids(parts.next().unwrap_or("[]"));
            let removed = container_ids(parts.next().unwrap_or("[]"));
            if tx
                .send(HookLine {
                    at,
                    service,
                    added,
                    removed,
                })
                .is_err()
            {
                break;
            }
        }
    });
}

/// What the watcher's command has been told, per service.
struct Hooks {
    rx: mpsc::UnboundedReceiver<HookLine>,
    view: HashMap<String, HashSet<String>>,
    /// Holds the FIFO the watcher's command opens on every run.
    _fifo_dir: tempfile::TempDir,
}

impl Hooks {
    /// Consumes lines until `pick` returns a value for one, or `STEP` passes.
    async fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&HookLine) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let line = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .with_context(|| format!("waiting for the watcher's command: {what}"))?
                .context("the FIFO reader stopped")?;
            let view = self.view.entry(line.service.clone()).or_default();
            for a in &line.added {
                view.insert(a.clone());
            }
            for r in &line.removed {
                view.remove(r);
            }
            if let Some(v) = pick(&line) {
                return Ok(v);
            }
        }
    }

    fn count(&self, service: &str) -> usize {
        self.view.get(service).map_or(0, HashSet::len)
    }

    /// Waits until the watcher's view of `service` holds `n` instances.
    async fn settle(&mut self, service: &str, n: usize) -> Result<()> {
        while self.count(service) != n {
            let s = service.to_string();
            self.until(&format!("{service} with {n} instances"), |l| {
                (l.service == s).then_some(())
            })
            .await?;
        }
        Ok(())
    }
}

/// Starts the chain with one watcher whose command writes a line per
/// notification into a FIFO read by [`read_hook_lines`].
async fn start_chain(docker: bool) -> Result<(Chain, Hooks)> {
    let fifo_dir = tempfile::Builder::new()
        .prefix("mdo-propagation-")
        .tempdir()?;
    let fifo = fifo_dir.path().join("hook.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    if !made.success() {
        bail!("mkfifo {} failed", fifo.display());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    read_hook_lines(fifo.clone(), tx);
    let exec = format!(
        "printf '%s\\t%s\\t%s\\n' \"$WATCH_SERVICE\" \"$WATCH_ADDED\" \"$WATCH_REMOVED\" > '{}'",
        fifo.display()
    );
    let chain = Chain::start(ChainOptions {
        docker,
        watchers: vec![WatcherSpec {
            watch: format!("{DOCKER_SERVICE},{COMMAND_SERVICE}"),
            exec,
        }],
        log_level: None,
    })
    .await?;
    Ok((
        chain,
        Hooks {
            rx,
            view: HashMap::new(),
            _fifo_dir: fifo_dir,
        },
    ))
}

fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING"
    )
}

/// The samples of one figure and of its links.
#[derive(Default)]
struct Figure {
    total: Vec<Duration>,
    /// Start -> Docker's own `die` event (Docker deaths only).
    to_runtime: Vec<Duration>,
    /// Start -> the killed process ended (its pidfd readable): the floor
    /// no design reporting the death can go under.
    to_exit: Vec<Duration>,
    /// The killed process ended -> the watcher's command: the stack's part.
    after_exit: Vec<Duration>,
    /// Samples whose killed process was still unreaped (its exit status
    /// readable) when its pidfd woke the bench.
    unreaped: usize,
    to_manager: Vec<Duration>,
    to_etcd: Vec<Duration>,
    to_hook: Vec<Duration>,
}

impl Figure {
    /// One sample: start, the manager's event, the record change, the hook.
    fn add(&mut self, t0: Instant, mgr: Option<Instant>, etcd: Option<Instant>, hook: Instant) {
        self.total.push(hook - t0);
        if let (Some(m), Some(e)) = (mgr, etcd) {
            self.to_manager.push(m.saturating_duration_since(t0));
            self.to_etcd.push(e.saturating_duration_since(m));
            self.to_hook.push(hook.saturating_duration_since(e));
        }
    }
}

fn print_stats(name: &str, s: &[Duration]) {
    if s.is_empty() {
        println!("{name:<62} no samples");
        return;
    }
    let st = Stats::of(s);
    println!(
        "{name:<62} p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms  (n={})",
        ms(st.p50),
        ms(st.p99),
        ms(st.max),
        st.count
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_figure(name: &str, ours: &Figure, raw: &[Duration]) {
    print_stats(&format!("{name}: ours"), &ours.total);
    print_stats(&format!("{name}: raw chain"), raw);
    if !ours.total.is_empty() && !raw.is_empty() {
        let (o, r) = (Stats::of(&ours.total), Stats::of(raw));
        println!(
            "{:<62} p50 {:>7.2}x     p99 {:>7.2}x",
            format!("{name}: ratio ours/raw"),
            ms(o.p50) / ms(r.p50),
            ms(o.p99) / ms(r.p99)
        );
    }
    print_stats(
        &format!("  {name}: (Docker's own die event after the start)"),
        &ours.to_runtime,
    );
    print_stats(
        &format!("  {name}: (the killed process ended, its pidfd)"),
        &ours.to_exit,
    );
    print_stats(
        &format!("  {name}: process ended -> watcher command"),
        &ours.after_exit,
    );
    if !ours.to_exit.is_empty() {
        println!(
            "  {name}: exit status still readable at the pidfd's wake-up (not yet reaped): {} of {}",
            ours.unreaped,
            ours.to_exit.len()
        );
    }
    print_stats(
        &format!("  {name}: link start -> manager event"),
        &ours.to_manager,
    );
    print_stats(
        &format!("  {name}: link manager event -> etcd record"),
        &ours.to_etcd,
    );
    print_stats(
        &format!("  {name}: link etcd record -> watcher command"),
        &ours.to_hook,
    );
}

fn docker_app(n: u64, backoff: u64) -> Value {
    json!({
        "id": DOCKER_APP, "instances": n, "cpus": 0.01, "mem": 16,
        "cmd": "exec sleep 100000",
        "container": {"type": "DOCKER", "docker": {"image": testkit::images::busybox()}},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "name": "api"}],
        "taskKillGracePeriodSeconds": 1,
        "backoffSeconds": backoff, "backoffFactor": 1.0,
    })
}

fn command_app(n: u64, backoff: u64) -> Value {
    json!({
        "id": COMMAND_APP, "instances": n, "cpus": 0.01, "mem": 16,
        "cmd": "exec sleep 100000",
        "portDefinitions": [{"port": 0, "name": "api"}],
        "taskKillGracePeriodSeconds": 1,
        "backoffSeconds": backoff, "backoffFactor": 1.0,
    })
}

/// The Docker container of one of the manager's tasks.
async fn container_of(docker: &Docker, task_id: &str) -> Result<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={task_id}", "mdo.task-id")],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            filters,
            ..Default::default()
        }))
        .await?;
    list.into_iter()
        .find_map(|c| c.id)
        .with_context(|| format!("no container for task {task_id}"))
}

/// The process of one of the manager's command tasks.
fn pid_of(data_dir: &Path, task_id: &str) -> Result<i32> {
    manager::runtime::command::live_tasks(data_dir)
        .into_iter()
        .find(|t| t.task_id == task_id)
        .map(|t| t.pid)
        .with_context(|| format!("no process for task {task_id}"))
}

struct Run<'a> {
    chain: &'a Chain,
    hooks: Hooks,
    raw: Raw,
    events: Seen,
    records: Seen,
    /// Docker's `die` events of the manager's containers, by task id.
    dies: Seen,
    n: u64,
}

impl Run<'_> {
    /// Waits until the app runs `n` tasks and the watcher was told of each.
    async fn steady(&mut self, app: &str, service: &str) -> Result<Vec<String>> {
        let deadline = Instant::now() + STEP;
        loop {
            self.hooks.settle(service, self.n as usize).await?;
            let running = self.chain.running(app).await?;
            let view = &self.hooks.view[service];
            if running.len() == self.n as usize && running.iter().all(|t| view.contains(t)) {
                return Ok(running);
            }
            if Instant::now() > deadline {
                bail!("{app}: {running:?} running, the watcher knows {view:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn death(
        &mut self,
        app: &str,
        service: &str,
        kill: impl AsyncKill,
        fig: &mut Figure,
    ) -> Result<()> {
        let running = self.steady(app, service).await?;
        let victim = running[0].clone();
        let target = kill.target(&victim).await?;
        let ended = match kill.process(&target).await {
            Ok(pid) => Some(process_end(pid)?),
            Err(e) => {
                eprintln!("no pidfd for {victim}: {e:#}");
                None
            }
        };
        let t0 = Instant::now();
        kill.kill(&target).await?;
        let s = service.to_string();
        let hook = self
            .hooks
            .until(&format!("{victim} removed"), |l| {
                (l.service == s && l.removed.contains(&victim)).then_some(l.at)
            })
            .await?;
        let mgr = first(&self.events, t0, &victim, is_terminal);
        let etcd = first(&self.records, t0, &victim, |w| w == "delete");
        fig.add(t0, mgr, etcd, hook);
        if let Some((end, zombie)) =
            ended.and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
        {
            fig.unreaped += usize::from(zombie);
            fig.to_exit.push(end.saturating_duration_since(t0));
            fig.after_exit.push(hook.saturating_duration_since(end));
        }
        if let Some(die) = first(&self.dies, t0, &victim, |_| true) {
            fig.to_runtime.push(die - t0);
        }
        Ok(())
    }

    async fn birth(&mut self, app: &str, service: &str, fig: &mut Figure) -> Result<()> {
        let running = self.steady(app, service).await?;
        let t0 = Instant::now();
        self.chain.scale(app, self.n + 1).await?;
        let s = service.to_string();
        let (hook, id) = self
            .hooks
            .until("a new instance", |l| {
                (l.service == s)
                    .then(|| {
                        l.added
                            .iter()
                            .find(|a| !running.contains(a))
                            .map(|a| (l.at, a.clone()))
                    })
                    .flatten()
            })
            .await?;
        let mgr = first(&self.events, t0, &id, |w| w == "TASK_RUNNING");
        let etcd = first(&self.records, t0, &id, |w| w == "put");
        fig.add(t0, mgr, etcd, hook);
        self.chain.scale(app, self.n).await?;
        Ok(())
    }
}

/// Notes Docker's own `die` event of every container of the manager (by the
/// task id in its labels), to split "kill -> manager event" into Docker's
/// part and the manager's.
fn follow_dies(docker: &Docker, manager_id: &str, seen: Seen) {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
        (
            "label".to_string(),
            vec![format!("mdo.manager={manager_id}")],
        ),
    ]);
    let mut events = docker.events(Some(EventsOptions::<String> {
        filters,
        ..Default::default()
    }));
    tokio::spawn(async move {
        while let Some(Ok(e)) = events.next().await {
            let at = Instant::now();
            let task = e
                .actor
                .and_then(|a| a.attributes)
                .and_then(|a| a.get("mdo.task-id").cloned());
            if let Some(task) = task {
                seen.lock().unwrap().push((at, task, "die".into()));
            }
        }
    });
}

/// How a death sample kills a task from outside.
trait AsyncKill {
    async fn target(&self, task_id: &str) -> Result<String>;
    /// The process whose end is the task's death (a container's init).
    async fn process(&self, target: &str) -> Result<i32>;
    async fn kill(&self, target: &str) -> Result<()>;
}

/// When process `pid` ends, from a pidfd opened now (so a pid reused later
/// is not mistaken for it), polled on a thread of its own; and whether its
/// exit status could still be read then (`/proc/<pid>/stat` of the zombie,
/// before its parent reaped it: what a runtime watching the pidfd would
/// need to report the exit without waiting for the parent).
fn process_end(pid: i32) -> Result<std::sync::mpsc::Receiver<(Instant, bool)>> {
    let p = rustix::process::Pid::from_raw(pid).context("not a pid")?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("pidfd_open({pid})"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if let Ok(1) = poll(&mut fds, PollTimeout::from(30_000u16)) {
            let at = Instant::now();
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| Some(st.get(st.rfind(')')? + 2..)?.starts_with('Z')))
                .unwrap_or(false);
            let _ = tx.send((at, zombie));
        }
    });
    Ok(rx)
}

struct DockerKill<'a>(&'a Docker);

impl AsyncKill for &DockerKill<'_> {
    async fn target(&self, task_id: &str) -> Result<String> {
        container_of(self.0, task_id).await
    }
    async fn process(&self, target: &str) -> Result<i32> {
        let c = self.0.inspect_container(target, None).await?;
        let pid = c.state.and_then(|s| s.pid).unwrap_or(0);
        if pid <= 0 {
            bail!("container {target} has no process");
        }
        Ok(pid as i32)
    }
    async fn kill(&self, target: &str) -> Result<()> {
        kill_container(self.0, target).await
    }
}

struct ProcessKill(PathBuf);

impl AsyncKill for &ProcessKill {
    async fn target(&self, task_id: &str) -> Result<String> {
        Ok(pid_of(&self.0, task_id)?.to_string())
    }
    async fn process(&self, target: &str) -> Result<i32> {
        Ok(target.parse()?)
    }
    async fn kill(&self, target: &str) -> Result<()> {
        let pid: i32 = target.parse()?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let want = |kind: &str| args.only.as_deref().is_none_or(|o| o == kind);
    let docker = Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    if want("docker") {
        testkit::images::busybox();
    }
    let events: Seen = Arc::default();
    let records: Seen = Arc::default();
    let (chain, hooks) = start_chain(want("docker")).await?;
    follow_events(&chain.manager_url, events.clone()).await?;
    follow_records(&chain.etcd.endpoint(), records.clone()).await?;
    let raw = Raw::start(&chain.etcd.endpoint(), docker.clone()).await?;
    let dies: Seen = Seen::default();
    follow_dies(&docker, chain.manager_id(), dies.clone());
    let mut run = Run {
        chain: &chain,
        hooks,
        raw,
        events,
        records,
        dies,
        n: args.instances,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "propagation: {} samples per figure, {} instances per app, backoffSeconds {}, load average at start {}",
        args.samples,
        args.instances,
        args.backoff_seconds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let outcome = measure(&mut run, &args, &docker).await;
    if let Some(to) = &args.logs {
        chain.copy_logs(to)?;
    }
    if let Err(e) = &outcome {
        eprintln!("propagation failed: {e:#}");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at end {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = run.raw.remove_all().await;
    outcome
}

async fn measure(run: &mut Run<'_>, args: &Args, docker: &Docker) -> Result<()> {
    let n = args.samples;
    if args.only.as_deref().is_none_or(|o| o == "docker") {
        let (s, v) = run
            .chain
            .api(
                reqwest::Method::POST,
                "/v2/apps",
                Some(&docker_app(run.n, args.backoff_seconds)),
            )
            .await?;
        if s != 201 {
            bail!("POST /v2/apps {DOCKER_APP}: {s} {v}");
        }
        let killer = DockerKill(docker);
        let (mut death, mut birth) = (Figure::default(), Figure::default());
        let (mut raw_death, mut raw_birth) = (Vec::new(), Vec::new());
        for i in 0..n {
            run.death(DOCKER_APP, DOCKER_SERVICE, &killer, &mut death)
                .await?;
            raw_death.push(run.raw.docker_death(i).await?);
        }
        for i in 0..n {
            run.birth(DOCKER_APP, DOCKER_SERVICE, &mut birth).await?;
            let (took, name) = run.raw.docker_create_start(i).await?;
            run.raw.remove(&name).await;
            raw_birth.push(took);
        }
        println!();
        print_figure(
            "docker death (docker kill -> watcher command)",
            &death,
            &raw_death,
        );
        print_figure(
            "docker birth (PUT instances+1 -> watcher command)",
            &birth,
            &raw_birth,
        );
        print_overhead(
            "docker birth overhead beyond Docker's create+start",
            &birth.total,
            &raw_birth,
        );
        run.chain.scale(DOCKER_APP, 0).await?;
    }
    if args.only.as_deref().is_none_or(|o| o == "command") {
        let (s, v) = run
            .chain
            .api(
                reqwest::Method::POST,
                "/v2/apps",
                Some(&command_app(run.n, args.backoff_seconds)),
            )
            .await?;
        if s != 201 {
            bail!("POST /v2/apps {COMMAND_APP}: {s} {v}");
        }
        let killer = ProcessKill(run.chain.data_dir());
        let (mut death, mut birth) = (Figure::default(), Figure::default());
        let (mut raw_death, mut raw_birth) = (Vec::new(), Vec::new());
        for i in 0..n {
            run.death(COMMAND_APP, COMMAND_SERVICE, &killer, &mut death)
                .await?;
            raw_death.push(run.raw.command_death(i).await?);
        }
        for i in 0..n {
            run.birth(COMMAND_APP, COMMAND_SERVICE, &mut birth).await?;
            raw_birth.push(run.raw.command_birth(i).await?);
        }
        println!();
        print_figure(
            "command death (kill -9 -> watcher command)",
            &death,
            &raw_death,
        );
        print_figure(
            "command birth (PUT instances+1 -> watcher command)",
            &birth,
            &raw_birth,
        );
    }
    Ok(())
}

/// Birth minus Docker's own create+start, at p50 and p99.
fn print_overhead(name: &str, birth: &[Duration], docker: &[Duration]) {
    if birth.is_empty() || docker.is_empty() {
        return;
    }
    let (b, d) = (Stats::of(birth), Stats::of(docker));
    println!(
        "{name:<62} p50 {:>9.3} ms  p99 {:>9.3} ms",
        ms(b.p50) - ms(d.p50),
        ms(b.p99) - ms(d.p99)
    );
}
