//! The raw chains issue 16's `propagation` benchmark compares against: the
//! least any design can do between a task's death or birth and a peer
//! learning of it. Two programs, as tasks with their own etcd clients: one
//! turns Docker's `die` event (or a child's `wait()`) into an etcd delete,
//! the other watches the prefix.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use bollard::models::HostConfig;
use bollard::system::EventsOptions;
use bollard::Docker;
use etcd_client::{EventType, WatchOptions};
use futures::StreamExt;
use tokio::sync::mpsc;

/// Longest wait for one step before the run fails.
pub const STEP: Duration = Duration::from_secs(60);
/// Label of the raw chain's own containers.
const RAW_LABEL: &str = "mdo.bench.propagation";
/// etcd prefix of the raw chain's keys.
const RAW_PREFIX: &str = "/bench-raw/";

/// The raw chain's two programs, as tasks with their own etcd clients: one
/// deletes `RAW_PREFIX<name>` when Docker reports the container `name` died;
/// the other watches the prefix and reports every change.
pub struct Raw {
    docker: Docker,
    kv: etcd_client::Client,
    changes: mpsc::UnboundedReceiver<(Instant, String, bool)>,
    run: String,
}

impl Raw {
    pub async fn start(endpoint: &str, docker: Docker) -> Result<Raw> {
        let run = format!("prop-{}", std::process::id());
        let mut deleter = etcd_client::Client::connect([endpoint], None).await?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            ("label".to_string(), vec![format!("{RAW_LABEL}={run}")]),
        ]);
        let mut events = docker.events(Some(EventsOptions::<String> {
            filters,
            ..Default::default()
        }));
        tokio::spawn(async move {
            while let Some(Ok(e)) = events.next().await {
                let name = e
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default();
                let _ = deleter.delete(format!("{RAW_PREFIX}{name}"), None).await;
            }
        });
        let mut watcher = etcd_client::Client::connect([endpoint], None).await?;
        let (w, mut stream) = watcher
            .watch(RAW_PREFIX, Some(WatchOptions::new().with_prefix()))
            .await?;
        let (tx, changes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _keep = (w, watcher);
            while let Ok(Some(resp)) = stream.message().await {
                let at = Instant::now();
                for e in resp.events() {
                    if let Some(kv) = e.kv() {
                        let key = String::from_utf8_lossy(kv.key()).to_string();
                        let _ = tx.send((at, key, e.event_type() == EventType::Delete));
                    }
                }
            }
        });
        let kv = etcd_client::Client::connect([endpoint], None).await?;
        Ok(Raw {
            docker,
            kv,
            changes,
            run,
        })
    }

    async fn change(&mut self, key: &str, deleted: bool) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let (at, k, d) = tokio::time::timeout_at(deadline, self.changes.recv())
                .await
                .with_context(|| format!("raw chain: waiting for {key}"))?
                .context("raw watch ended")?;
            if k == key && d == deleted {
                return Ok(at);
            }
        }
    }

    fn container_config(&self) -> Config<String> {
        Config {
            image: Some(testkit::images::busybox().to_string()),
            cmd: Some(vec!["sleep".into(), "100000".into()]),
            labels: Some(HashMap::from([(RAW_LABEL.to_string(), self.run.clone())])),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Docker's own create+start of one container (the birth baseline).
    pub async fn docker_create_start(&self, i: usize) -> Result<(Duration, String)> {
        let name = format!("{}-b{i}", self.run);
        let t0 = Instant::now();
        let c = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                self.container_config(),
            )
            .await?;
        self.docker.start_container::<String>(&c.id, None).await?;
        let took = t0.elapsed();
        Ok((took, name))
    }

    pub async fn remove(&self, name: &str) {
        let _ = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }

    /// docker kill → die event → etcd delete → watch.
    pub async fn docker_death(&mut self, i: usize) -> Result<Duration> {
        let (_, name) = self.docker_create_start(i + 1_000_000).await?;
        let key = format!("{RAW_PREFIX}{name}");
        self.kv.put(key.clone(), "x", None).await?;
        self.change(&key, false).await?;
        let t0 = Instant::now();
        kill_container(&self.docker, &name).await?;
        let at = self.change(&key, true).await?;
        self.remove(&name).await;
        Ok(at - t0)
    }

    /// kill -9 → wait() returns → etcd delete → watch.
    pub async fn command_death(&mut self, i: usize) -> Result<Duration> {
        let key = format!("{RAW_PREFIX}cmd-{i}");
        let mut child = tokio::process::Command::new("sleep")
            .arg("100000")
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("no pid")? as i32;
        self.kv.put(key.clone(), "x", None).await?;
        self.change(&key, false).await?;
        let mut deleter = self.kv.clone();
        let k = key.clone();
        let waiter = tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = deleter.delete(k, None).await;
        });
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let at = self.change(&key, true).await?;
        let _ = waiter.await;
        Ok(at - t0)
    }

    /// spawn → etcd put → watch.
    pub async fn command_birth(&mut self, i: usize) -> Result<Duration> {
        let key = format!("{RAW_PREFIX}cmdb-{i}");
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new("sleep")
            .arg("100000")
            .kill_on_drop(true)
            .spawn()?;
        self.kv.put(key.clone(), "x", None).await?;
        let at = self.change(&key, false).await?;
        let _ = child.kill().await;
        self.kv.delete(key.clone(), None).await?;
        self.change(&key, true).await?;
        Ok(at - t0)
    }
}

pub async fn kill_container(docker: &Docker, name: &str) -> Result<()> {
    docker
        .kill_container(name, Some(KillContainerOptions { signal: "SIGKILL" }))
        .await
        .with_context(|| format!("docker kill {name}"))
}

impl Raw {
    pub async fn remove_all(&self) -> Result<()> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{RAW_LABEL}={}", self.run)],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await?;
        for c in list.into_iter().filter_map(|c| c.id) {
            self.remove(&c).await;
        }
        Ok(())
    }
}
