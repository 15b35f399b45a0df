//! The dashboard's one door to the outside: the Marathon API (through
//! `marathon::Client`) and the registry (through the `registry` crate).
//! Everything the page reads or does goes through these few methods.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::Value;

use super::model::{DeploymentRow, Queued, Snapshot};
use crate::upstream::MarathonConfig;

/// How many log lines a task shows.
pub const LOG_LINES: usize = 20;

pub struct Cluster {
    marathon: marathon::Client,
    registry: Option<RegistryReader>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("marathon", &self.marathon.base_url().as_str())
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

/// The registry, connected on first use (and again after a failure).
struct RegistryReader {
    settings: registry::Settings,
    conn: tokio::sync::Mutex<Option<registry::Registry>>,
}

impl RegistryReader {
    async fn list(&self) -> Result<Vec<registry::Instance>, String> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(
                registry::Registry::connect(&self.settings)
                    .await
                    .map_err(|e| format!("registry: {e}"))?,
            );
        }
        let reg = conn.as_ref().expect("connected above");
        match reg.list_all().await {
            Ok(s) => Ok(s.entries.into_iter().map(|e| e.instance).collect()),
            Err(e) => {
                *conn = None;
                Err(format!("registry: {e}"))
            }
        }
    }
}

impl Cluster {
    /// `registry`: where the records are (`None`: endpoints from Marathon only).
    pub fn new(
        config: &MarathonConfig,
        registry: Option<registry::Settings>,
    ) -> Result<Cluster, marathon::Error> {
        let marathon = marathon::Client::builder(config.url.clone())
            .maybe_token(config.token.clone())
            .timeout(config.timeout)
            .stream_config(marathon::StreamConfig {
                initial_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(25),
                ..marathon::StreamConfig::default()
            })
            .user_agent(concat!("mdo-deployer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let registry = registry.map(|mut settings| {
            // A page waits for the registry: fail fast and say so instead.
            settings.connect_timeout = settings.connect_timeout.min(Duration::from_secs(2));
            settings.request_timeout = settings.request_timeout.min(Duration::from_secs(2));
            RegistryReader {
                settings,
                conn: tokio::sync::Mutex::new(None),
            }
        });
        Ok(Cluster { marathon, registry })
    }

    /// Apps, queue, deployments and records, read concurrently.
    pub async fn snapshot(&self) -> Result<Snapshot, marathon::Error> {
        let embed = [
            "apps.tasks",
            "apps.counts",
            "apps.deployments",
            "apps.lastTaskFailure",
        ];
        let filter = marathon::AppFilter::default();
        let registry = async {
            match &self.registry {
                Some(r) => Some(r.list().await),
                None => None,
            }
        };
        let (apps, queue, deployments, registry) = tokio::join!(
            self.marathon.list_apps(&embed, &filter),
            self.marathon.queue(),
            self.marathon.list_deployments(),
            registry
        );
        let apps = apps?
            .into_iter()
            .filter_map(|a| {
                let v = serde_json::to_value(&a).ok()?;
                Some((a.app.id.clone(), v))
            })
            .collect::<BTreeMap<String, Value>>();
        // A real Marathon without these answers the apps alone.
        let queue = queue
            .unwrap_or_default()
            .into_iter()
            .map(|q| Queued {
                app_id: q.app.id,
                count: q.count,
                delay_seconds: q.delay.time_left_seconds,
            })
            .collect();
        let deployments = deployments
            .unwrap_or_default()
            .into_iter()
            .map(|d| DeploymentRow {
                apps: d.affected_apps,
                current_step: d.current_step,
                total_steps: d.total_steps,
                steps: d
                    .steps
                    .iter()
                    .map(|s| {
                        s.actions
                            .iter()
                            .map(|a| format!("{} {}", a.action, a.app.as_deref().unwrap_or("")))
                            .collect()
                    })
                    .collect(),
                id: d.id,
            })
            .collect();
        Ok(Snapshot {
            apps,
            queue,
            deployments,
            registry,
        })
    }

    /// The last lines of a task's log, or why there are none.
    pub async fn task_log(&self, task_id: &str) -> Result<String, String> {
        self.marathon
            .task_log(task_id, LOG_LINES)
            .await
            .map_err(|e| e.to_string())
    }

    /// The Marathon event stream (reconnects by itself; yields `Connected`
    /// on every (re)connection).
    pub fn events(&self) -> BoxStream<'static, marathon::Result<marathon::StreamItem>> {
        self.marathon.events(&[])
    }

    /// Base URL of the Marathon API (without credentials).
    pub fn marathon_url(&self) -> String {
        self.marathon
            .base_url()
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }

    /// `GET /v2/apps/{id}` (an unknown app: `NotFound`), then `PUT
    /// /v2/apps/{id}` with the new instance count; the deployment id.
    pub async fn scale(&self, app_id: &str, instances: u32) -> marathon::Result<String> {
        // A PUT to an unknown id is Marathon's create (refused for want of a
        // command): ask first, so an unknown app is a 404.
        self.marathon.get_app(app_id, &[]).await?;
        Ok(self
            .marathon
            .scale_app(app_id, instances, true)
            .await?
            .deployment_id)
    }

    /// A rolling restart of every task of the app; the deployment id.
    pub async fn restart(&self, app_id: &str) -> marathon::Result<String> {
        Ok(self.marathon.restart_app(app_id, true).await?.deployment_id)
    }

    /// Removes the app and its tasks; the deployment id.
    pub async fn remove(&self, app_id: &str) -> marathon::Result<String> {
        Ok(self
            .marathon
            .delete_app(app_id, Some(true))
            .await?
            .deployment_id)
    }
}
