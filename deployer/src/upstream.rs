//! The deployer's view of the Marathon API, on [`marathon::Client`].
//!
//! Apps travel as plain JSON (the client's raw calls) so that anything a
//! service's `marathon:` map sets survives the round trip and can be
//! compared. Basic-auth userinfo in the URL is sent as basic auth, a token
//! as Bearer; neither appears in a message (the client and [`Marathon::url`]
//! show the URL without userinfo). Errors are [`UpstreamError`]s naming the
//! call that failed.

use std::collections::BTreeMap;
use std::time::Duration;

use marathon::path;
use serde_json::Value;

/// Errors talking to the Marathon API.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, DNS, timeout: the manager is not there.
    #[error("Marathon API at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API answered with an error status.
    #[error("Marathon API answered {status} for {what}: {message}")]
    Status {
        status: u16,
        what: String,
        message: String,
        details: Value,
    },
    /// The API answered 2xx with a body we cannot read.
    #[error("unexpected answer from the Marathon API for {what}: {reason}")]
    Protocol { what: String, reason: String },
}

pub type Result<T> = std::result::Result<T, UpstreamError>;

/// Where and how to reach the Marathon API.
#[derive(Debug, Clone)]
pub struct MarathonConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080` (userinfo = basic auth).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Marathon {
    client: marathon::Client,
    /// The base URL without userinfo, for messages and logs.
    shown: String,
}

impl std::fmt::Debug for Marathon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marathon")
            .field("url", &self.shown)
            .finish()
    }
}

impl Marathon {
    pub fn new(config: &MarathonConfig) -> Result<Marathon> {
        let client = marathon::Client::builder(config.url.trim_end_matches('/'))
            .maybe_token(config.token.clone())
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            .user_agent(concat!("mdo-deployer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Unreachable {
                url: daemon::redact_url(&config.url),
                reason: e.to_string(),
            })?;
        let shown = client.to_string().trim_end_matches('/').to_string();
        Ok(Marathon { client, shown })
    }

    /// The URL without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The underlying client, for calls this view does not wrap.
    pub fn client(&self) -> &marathon::Client {
        &self.client
    }

    /// A client error as an [`UpstreamError`] about `what` (`GET /v2/apps`).
    fn error(&self, what: String, e: marathon::Error) -> UpstreamError {
        use marathon::Error as E;
        let status = e.status();
        match e {
            E::Transport(t) => UpstreamError::Unreachable {
                url: self.shown.clone(),
                reason: marathon::describe_transport(&t),
            },
            E::Idle { .. } | E::Url(_) => UpstreamError::Unreachable {
                url: self.shown.clone(),
                reason: e.to_string(),
            },
            E::Decode(d) => UpstreamError::Protocol {
                what,
                reason: d.to_string(),
            },
            E::Invalid { status, body } => UpstreamError::Status {
                status,
                what,
                message: body.message,
                details: body
                    .details
                    .and_then(|d| serde_json::to_value(d).ok())
                    .unwrap_or(Value::Null),
            },
            E::NotFound { message }
            | E::Conflict { message, .. }
            | E::Unauthorized { message, .. }
            | E::Server { message, .. }
            | E::Unexpected { message, .. } => UpstreamError::Status {
                status: status.unwrap_or_default(),
                what,
                message,
                details: Value::Null,
            },
        }
    }

    /// Every app with its tasks, keyed by app id.
    pub async fn apps(&self) -> Result<BTreeMap<String, Value>> {
        let apps = self
            .client
            .list_apps_raw(
                &["apps.tasks", "apps.counts"],
                &marathon::AppFilter::default(),
            )
            .await
            .map_err(|e| self.error(format!("GET {}", path::APPS), e))?;
        Ok(apps
            .into_iter()
            .filter_map(|a| Some((a.get("id")?.as_str()?.to_string(), a)))
            .collect())
    }

    /// One multi-app `PUT /v2/apps` (each app with its `id`, a full
    /// definition: `partialUpdate=false`): Marathon creates, scales and
    /// replaces them in one deployment, or refuses the whole list.
    /// `force=true`: the latest document wins over a deployment still
    /// running. Returns the deployment id.
    pub async fn put_apps(&self, apps: &[Value]) -> Result<Option<String>> {
        let v = self
            .client
            .put_apps_raw(apps, true, Some(false))
            .await
            .map_err(|e| self.error(format!("PUT {}", path::APPS), e))?;
        Ok(deployment_id(&v))
    }

    pub async fn delete_app(&self, id: &str) -> Result<Option<String>> {
        let v = self
            .client
            .delete_app_raw(id, Some(true))
            .await
            .map_err(|e| self.error(format!("DELETE {}", path::app(id)), e))?;
        Ok(deployment_id(&v))
    }

    /// Ids of the deployments still running.
    pub async fn deployment_ids(&self) -> Result<Vec<String>> {
        let list = self
            .client
            .list_deployments_raw()
            .await
            .map_err(|e| self.error(format!("GET {}", path::DEPLOYMENTS), e))?;
        Ok(list
            .iter()
            .filter_map(|d| d.get("id")?.as_str().map(str::to_string))
            .collect())
    }

    /// GET /ping (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        self.client
            .ping()
            .await
            .map(drop)
            .map_err(|e| self.error(format!("GET {}", path::PING), e))
    }
}

/// `deploymentId` of a DeploymentResult, or the first of an AppInfo's `deployments`.
fn deployment_id(v: &Value) -> Option<String> {
    v.get("deploymentId")
        .and_then(Value::as_str)
        .or_else(|| v.get("deployments")?.get(0)?.get("id")?.as_str())
        .map(str::to_string)
}
