//! The Marathon side as the writer and the resync driver see it: app
//! definitions and the full list of apps with their tasks.

use std::future::Future;

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
