//! App endpoints (`/v2/apps...`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{flag, path, Query};
use crate::{App, AppInfo, Client, DeploymentResult, Result, Task, Timestamp};

/// Filters of `GET /v2/apps` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFilter {
    /// Case-insensitive substring of the app id.
    pub id: Option<String>,
    /// Case-insensitive substring of `cmd`.
    pub cmd: Option<String>,
    /// Label selector, e.g. `SERVICE_NAME==web,env in (dev,prod)`.
    pub label: Option<String>,
}

/// What a task kill returned: the killed tasks, or a deployment when scaling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum KillResult {
    Tasks { tasks: Vec<Task> },
    Task { task: Task },
    Deployment(DeploymentResult),
}

#[derive(Deserialize)]
struct AppsBody {
    apps: Vec<AppInfo>,
}
#[derive(Deserialize)]
struct AppBody {
    app: AppInfo,
}
#[derive(Deserialize)]
pub(super) struct TasksBody {
    pub(super) tasks: Vec<Task>,
}
#[derive(Deserialize)]
struct VersionsBody {
    versions: Vec<Timestamp>,
}
#[derive(Serialize)]
struct InstancesBody {
    instances: u32,
}

/// The query of `GET /v2/apps`: `embed` values, then the filters.
pub(super) fn list_query(embed: &[&str], filter: &AppFilter) -> Query {
    let mut q: Query = embed.iter().map(|e| ("embed", e.to_string())).collect();
    for (k, v) in [
        ("id", &filter.id),
        ("cmd", &filter.cmd),
        ("label", &filter.label),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    q
}

impl Client {
    /// `GET /v2/apps` with `embed` values (e.g. `apps.tasks`) and filters.
    pub async fn list_apps(&self, embed: &[&str], filter: &AppFilter) -> Result<Vec<AppInfo>> {
        let q = list_query(embed, filter);
        let body: AppsBody = self.get(self.url(path::APPS, None, &[]), &q).await?;
        Ok(body.apps)
    }

    /// `GET /v2/apps/{id}` (Marathon always embeds tasks, counts, deployments).
    pub async fn get_app(&self, id: &str, embed: &[&str]) -> Result<AppInfo> {
        let q: Query = embed.iter().map(|e| ("embed", e.to_string())).collect();
        let body: AppBody = self.get(self.url(path::APPS, Some(id), &[]), &q).await?;
        Ok(body.app)
    }

    /// `POST /v2/apps` (201 with the new app).
    pub async fn create_app<B: Serialize + ?Sized>(&self, app: &B) -> Result<AppInfo> {
        let url = self.url(path::APPS, None, &[]);
        self.json(Method::POST, url, &Vec::new(), Some(app)).await
    }

    /// `PUT /v2/apps/{id}`: update (or create). `body` is an [`App`], an
    /// update object or `{"version": ts}` (rollback). `partial_update: None`
    /// keeps Marathon's default (true).
    pub async fn put_app<B: Serialize + ?Sized>(
        &self,
        id: &str,
        body: &B,
        force: bool,
        partial_update: Option<bool>,
    ) -> Result<DeploymentResult> {
        let mut q = vec![("force", force.to_string())];
        flag(&mut q, "partialUpdate", partial_update);
        let url = self.url(path::APPS, Some(id), &[]);
        self.json(Method::PUT, url, &q, Some(body)).await
    }

    /// `PATCH /v2/apps/{id}` (never creates).
    pub async fn patch_app<B: Serialize + ?Sized>(
        &self,
        id: &str,
        body: &B,
        force: bool,
    ) -> Result<DeploymentResult> {
        let url = self.url(path::APPS, Some(id), &[]);
        let q = vec![("force", force.to_string())];
        self.json(Method::PATCH, url, &q, Some(body)).await
    }

    /// `PUT /v2/apps`: create or update several apps in one deployment.
    pub async fn put_apps<B: Serialize + ?Sized>(
        &self,
        apps: &B,
        force: bool,
        partial_update: Option<bool>,
    ) -> Result<DeploymentResult> {
        let mut q = vec![("force", force.to_string())];
        flag(&mut q, "partialUpdate", partial_update);
        let url = self.url(path::APPS, None, &[]);
        self.json(Method::PUT, url, &q, Some(apps)).await
    }

    /// `DELETE /v2/apps/{id}`; `force: None` keeps Marathon's default (true).
    pub async fn delete_app(&self, id: &str, force: Option<bool>) -> Result<DeploymentResult> {
        let mut q = Vec::new();
        flag(&mut q, "force", force);
        let url = self.url(path::APPS, Some(id), &[]);
        self.json::<_, ()>(Method::DELETE, url, &q, None).await
    }

    /// `POST /v2/apps/{id}/restart`.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<DeploymentResult> {
        let url = self.url(path::APPS, Some(id), &["restart"]);
        let q = vec![("force", force.to_string())];
        self.json::<_, ()>(Method::POST, url, &q, None).await
    }

    /// Scale: `PUT /v2/apps/{id}` with `{"instances": n}`.
    pub async fn scale_app(
        &self,
        id: &str,
        instances: u32,
        force: bool,
    ) -> Result<DeploymentResult> {
        self.put_app(id, &InstancesBody { instances }, force, None)
            .await
    }

    /// `GET /v2/apps/{id}/versions`.
    pub async fn app_versions(&self, id: &str) -> Result<Vec<Timestamp>> {
        let url = self.url(path::APPS, Some(id), &["versions"]);
        let body: VersionsBody = self.get(url, &Vec::new()).await?;
        Ok(body.versions)
    }

    /// `GET /v2/apps/{id}/versions/{version}` (a bare app).
    pub async fn app_version(&self, id: &str, version: &str) -> Result<App> {
        let url = self.url(path::APPS, Some(id), &["versions", version]);
        self.get(url, &Vec::new()).await
    }

    /// `GET /v2/apps/{id}/tasks`.
    pub async fn app_tasks(&self, id: &str) -> Result<Vec<Task>> {
        let url = self.url(path::APPS, Some(id), &["tasks"]);
        let body: TasksBody = self.get(url, &Vec::new()).await?;
        Ok(body.tasks)
    }

    /// `DELETE /v2/apps/{id}/tasks[?host=..&scale=..&force=..]`.
    pub async fn kill_app_tasks(
        &self,
        id: &str,
        host: Option<&str>,
        scale: bool,
        force: bool,
    ) -> Result<KillResult> {
        let mut q = vec![("scale", scale.to_string()), ("force", force.to_string())];
        if let Some(h) = host {
            q.push(("host", h.to_owned()));
        }
        let url = self.url(path::APPS, Some(id), &["tasks"]);
        self.json::<_, ()>(Method::DELETE, url, &q, None).await
    }

    /// `DELETE /v2/apps/{id}/tasks/{taskId}`.
    pub async fn kill_task(
        &self,
        app_id: &str,
        task_id: &str,
        scale: bool,
        force: bool,
    ) -> Result<KillResult> {
        let q = vec![("scale", scale.to_string()), ("force", force.to_string())];
        let url = self.url(path::APPS, Some(app_id), &["tasks", task_id]);
        self.json::<_, ()>(Method::DELETE, url, &q, None).await
    }
}
