//! Task, deployment, queue, subscription and group endpoints.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::apps::{KillResult, TasksBody};
use super::{path, Query};
use crate::{
    Client, Deployment, DeploymentResult, Error, Event, EventSubscriptions, Group, QueueItem,
    Result, Task,
};

#[derive(Deserialize)]
struct QueueBody {
    queue: Vec<QueueItem>,
}

#[derive(Serialize)]
struct IdsBody<'a> {
    ids: &'a [&'a str],
}

impl Client {
    /// `GET /v2/tasks[?status=running&status=staging]`.
    pub async fn list_tasks(&self, status: &[&str]) -> Result<Vec<Task>> {
        let q: Query = status.iter().map(|s| ("status", s.to_string())).collect();
        let body: TasksBody = self.get(self.url(path::TASKS, None, &[]), &q).await?;
        Ok(body.tasks)
    }

    /// `POST /v2/tasks/delete` with `{"ids": [...]}`.
    pub async fn delete_tasks(&self, ids: &[&str], scale: bool, force: bool) -> Result<KillResult> {
        let q = vec![("scale", scale.to_string()), ("force", force.to_string())];
        let url = self.url(path::TASKS_DELETE, None, &[]);
        self.json(Method::POST, url, &q, Some(&IdsBody { ids }))
            .await
    }

    /// `GET /v2/deployments`.
    pub async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        self.get(self.url(path::DEPLOYMENTS, None, &[]), &Vec::new())
            .await
    }

    /// `DELETE /v2/deployments/{id}`: rollback (`Some(result)`), or with
    /// `force` cancel only (202, `None`).
    pub async fn delete_deployment(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<DeploymentResult>> {
        let url = self.url(path::DEPLOYMENTS, None, &[id]);
        let q = vec![("force", force.to_string())];
        let (_, bytes) = self.call::<()>(Method::DELETE, url, &q, None).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(Error::Decode)
    }

    /// `GET /v2/queue`.
    pub async fn queue(&self) -> Result<Vec<QueueItem>> {
        let body: QueueBody = self
            .get(self.url(path::QUEUE, None, &[]), &Vec::new())
            .await?;
        Ok(body.queue)
    }

    /// `DELETE /v2/queue/{appId}/delay`: reset the launch backoff.
    pub async fn delete_queue_delay(&self, app_id: &str) -> Result<()> {
        let url = self.url(path::QUEUE, Some(app_id), &["delay"]);
        self.call::<()>(Method::DELETE, url, &Vec::new(), None)
            .await?;
        Ok(())
    }

    /// `GET /v2/eventSubscriptions` -> callback URLs.
    pub async fn list_event_subscriptions(&self) -> Result<Vec<String>> {
        let url = self.url(path::EVENT_SUBSCRIPTIONS, None, &[]);
        let body: EventSubscriptions = self.get(url, &Vec::new()).await?;
        Ok(body.callback_urls)
    }

    /// `POST /v2/eventSubscriptions?callbackUrl=..` -> the `subscribe_event`.
    pub async fn create_event_subscription(&self, callback_url: &str) -> Result<Event> {
        let url = self.url(path::EVENT_SUBSCRIPTIONS, None, &[]);
        let q = vec![("callbackUrl", callback_url.to_owned())];
        self.json::<_, ()>(Method::POST, url, &q, None).await
    }

    /// `DELETE /v2/eventSubscriptions?callbackUrl=..` -> the `unsubscribe_event`.
    pub async fn delete_event_subscription(&self, callback_url: &str) -> Result<Event> {
        let url = self.url(path::EVENT_SUBSCRIPTIONS, None, &[]);
        let q = vec![("callbackUrl", callback_url.to_owned())];
        self.json::<_, ()>(Method::DELETE, url, &q, None).await
    }

    /// `GET /v2/groups[/{id}]` (`/` or empty for the root group).
    pub async fn group(&self, id: &str) -> Result<Group> {
        self.get(self.url(path::GROUPS, Some(id), &[]), &Vec::new())
            .await
    }
}
