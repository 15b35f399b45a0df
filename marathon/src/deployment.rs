//! Deployments (`/v2/deployments`, `DeploymentResult`, event plans) and groups.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checks::ReadinessCheckResult;
use crate::{App, Timestamp};

/// Deployment action names (`deploymentAction.raml`).
pub mod action {
    pub const START_APPLICATION: &str = "StartApplication";
    pub const STOP_APPLICATION: &str = "StopApplication";
    pub const SCALE_APPLICATION: &str = "ScaleApplication";
    pub const RESTART_APPLICATION: &str = "RestartApplication";
    pub const START_POD: &str = "StartPod";
    pub const STOP_POD: &str = "StopPod";
    pub const SCALE_POD: &str = "ScalePod";
    pub const RESTART_POD: &str = "RestartPod";
    pub const RESOLVE_ARTIFACTS: &str = "ResolveArtifacts";
}

/// A running deployment as listed by `GET /v2/deployments` (DeploymentStepInfo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub version: Timestamp,
    #[serde(default)]
    pub affected_apps: Vec<String>,
    #[serde(default)]
    pub affected_pods: Vec<String>,
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
    /// Actions of the current step, each with `readinessCheckResults`.
    #[serde(default)]
    pub current_actions: Vec<DeploymentAction>,
    /// 1-based; 0 before the first step starts.
    #[serde(default)]
    pub current_step: u32,
    #[serde(default)]
    pub total_steps: u32,
}

/// One step of a plan: actions that run concurrently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStep {
    #[serde(default)]
    pub actions: Vec<DeploymentAction>,
}

/// `{"action":"ScaleApplication","app":"/foo"}` (see [`action`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAction {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Present (maybe empty) in `currentActions`, absent in `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check_results: Option<Vec<ReadinessCheckResult>>,
}

impl DeploymentAction {
    /// An action on an app (as written in `steps`).
    pub fn app(action: &str, app_id: impl Into<String>) -> Self {
        Self {
            action: action.to_owned(),
            app: Some(app_id.into()),
            pod: None,
            readiness_check_results: None,
        }
    }
}

/// `{"deploymentId":"<uuid>","version":"<ts>"}`: the body of every call that starts a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentResult {
    pub deployment_id: String,
    pub version: Timestamp,
}

/// The `plan` of deployment events. `original`/`target` (full root groups)
/// are only in the heavy format; light plans omit them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    pub id: String,
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
    pub version: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
}

/// A group (`GET /v2/groups`); the root group has id `/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub apps: Vec<App>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub pods: Vec<Value>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Timestamp>,
}
