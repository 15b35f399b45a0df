//! A thin client for the parts of the Marathon v2 API the deployer calls.
//!
//! Apps travel as plain JSON so that anything a service's `marathon:` map
//! sets survives the round trip and can be compared. Basic-auth userinfo in
//! the URL is sent as basic auth (reqwest does that); a token as Bearer.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
    http: reqwest::Client,
    base: String,
    /// The base URL without userinfo, for messages and logs.
    shown: String,
    token: Option<String>,
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
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            .build()
            .map_err(|e| UpstreamError::Unreachable {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        let base = config.url.trim_end_matches('/').to_string();
        let shown = match reqwest::Url::parse(&base) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string().trim_end_matches('/').to_string()
            }
            Err(_) => base.clone(),
        };
        Ok(Marathon {
            http,
            base,
            shown,
            token: config.token.clone(),
        })
    }

    /// The URL without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let what = format!(
            "{method} {}",
            path_and_query.split('?').next().unwrap_or(path_and_query)
        );
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path_and_query))
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| UpstreamError::Unreachable {
            url: self.shown.clone(),
            reason: describe(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| UpstreamError::Unreachable {
            url: self.shown.clone(),
            reason: describe(&e),
        })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if !status.is_success() => {
                    json!({"message": String::from_utf8_lossy(&bytes).trim()})
                }
                Err(e) => {
                    return Err(UpstreamError::Protocol {
                        what,
                        reason: e.to_string(),
                    })
                }
            }
        };
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| status.to_string());
            let details = value.get("details").cloned().unwrap_or(Value::Null);
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                what,
                message,
                details,
            });
        }
        Ok((status, value))
    }

    /// Every app with its tasks, keyed by app id.
    pub async fn apps(&self) -> Result<BTreeMap<String, Value>> {
        let (_, v) = self
            .call(
                Method::GET,
                "/v2/apps?embed=apps.tasks&embed=apps.counts",
                None,
            )
            .await?;
        let apps =
            v.get("apps")
                .and_then(Value::as_array)
                .ok_or_else(|| UpstreamError::Protocol {
                    what: "GET /v2/apps".into(),
                    reason: "no \"apps\" list".into(),
                })?;
        Ok(apps
            .iter()
            .filter_map(|a| Some((a.get("id")?.as_str()?.to_string(), a.clone())))
            .collect())
    }

    /// One multi-app `PUT /v2/apps` (each app with its `id`, a full
    /// definition: `partialUpdate=false`): Marathon creates, scales and
    /// replaces them in one deployment, or refuses the whole list.
    /// `force=true`: the latest document wins over a deployment still
    /// running. Returns the deployment id.
    pub async fn put_apps(&self, apps: &[Value]) -> Result<Option<String>> {
        let body = Value::Array(apps.to_vec());
        let (_, v) = self
            .call(
                Method::PUT,
                "/v2/apps?force=true&partialUpdate=false",
                Some(&body),
            )
            .await?;
        Ok(deployment_id(&v))
    }

    pub async fn delete_app(&self, id: &str) -> Result<Option<String>> {
        let path = format!("/v2/apps{}?force=true", id);
        let (_, v) = self.call(Method::DELETE, &path, None).await?;
        Ok(deployment_id(&v))
    }

    /// Ids of the deployments still running.
    pub async fn deployment_ids(&self) -> Result<Vec<String>> {
        let (_, v) = self.call(Method::GET, "/v2/deployments", None).await?;
        let list = v.as_array().ok_or_else(|| UpstreamError::Protocol {
            what: "GET /v2/deployments".into(),
            reason: "not a list".into(),
        })?;
        Ok(list
            .iter()
            .filter_map(|d| d.get("id")?.as_str().map(str::to_string))
            .collect())
    }

    /// GET /ping (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .http
            .get(format!("{}/ping", self.base))
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable {
                url: self.shown.clone(),
                reason: describe(&e),
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(UpstreamError::Status {
                status: resp.status().as_u16(),
                what: "GET /ping".into(),
                message: resp.status().to_string(),
                details: Value::Null,
            })
        }
    }
}

/// `deploymentId` of a DeploymentResult, or the first of an AppInfo's `deployments`.
fn deployment_id(v: &Value) -> Option<String> {
    v.get("deploymentId")
        .and_then(Value::as_str)
        .or_else(|| v.get("deployments")?.get(0)?.get("id")?.as_str())
        .map(str::to_string)
}

/// reqwest's top-level message hides the cause ("error sending request"):
/// walk the chain for the useful part, without the URL (it may hold userinfo).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    } else if e.is_connect() {
        parts.push("connection failed".to_string());
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    if parts.is_empty() {
        parts.push(e.without_url_string());
    }
    parts.join(": ")
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), "<url>");
        }
        s
    }
}
