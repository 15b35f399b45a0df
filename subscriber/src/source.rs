//! The Marathon side as the writer and the resync driver see it: app
//! definitions and the full list of apps with their tasks. The real source
//! is [`marathon::Client`] (built by [`client`]); tests use their own.

use std::future::Future;
use std::time::Duration;

use crate::convert::app_spec;
use crate::model::{AppSpec, TaskInfo};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The app does not exist (any more).
    #[error("app {0} not found")]
    NotFound(String),
    /// Marathon could not be reached or answered an error.
    #[error("marathon unavailable: {0}")]
    Unavailable(String),
}

pub trait AppSource: Send + Sync + 'static {
    /// The current definition of one app.
    fn app(&self, id: &str) -> impl Future<Output = Result<AppSpec, SourceError>> + Send;
    /// Every app with its tasks (`/v2/apps?embed=apps.tasks`).
    fn apps_with_tasks(
        &self,
    ) -> impl Future<Output = Result<Vec<(AppSpec, Vec<TaskInfo>)>, SourceError>> + Send;
}

/// The subscriber's Marathon client: `url` may carry basic-auth userinfo,
/// `token` is sent as a bearer token (and wins over userinfo). Calls time
/// out after 60 s; the event stream reconnects after 100 ms, doubling up
/// to 5 s, and a stream silent for 35 s (Marathon heartbeats every 10 s)
/// is reconnected.
pub fn client(url: &str, token: Option<String>) -> Result<marathon::Client, marathon::Error> {
    marathon::Client::builder(url)
        .maybe_token(token)
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .stream_config(marathon::StreamConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(35),
            ..marathon::StreamConfig::default()
        })
        .user_agent(concat!("mdo-subscriber/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl AppSource for marathon::Client {
    async fn app(&self, id: &str) -> Result<AppSpec, SourceError> {
        match self.get_app(id, &[]).await {
            Ok(info) => Ok(app_spec(&info.app)),
            Err(marathon::Error::NotFound { .. }) => Err(SourceError::NotFound(id.to_string())),
            Err(e) => Err(SourceError::Unavailable(e.to_string())),
        }
    }

    async fn apps_with_tasks(&self) -> Result<Vec<(AppSpec, Vec<TaskInfo>)>, SourceError> {
        // The lean read (marathon::lean), not the full types: for
        // thousands of tasks those are many times slower.
        let apps = marathon::Client::apps_with_tasks(self)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        Ok(apps.into_iter().map(crate::apps_list::spec).collect())
    }
}
