//! The task log extension of the mdo manager: `GET /v2/tasks/{id}/logs?tail=N`
//! (a real Marathon has no such endpoint and answers 404).

use reqwest::Method;

use super::path;
use crate::{Client, Result};

impl Client {
    /// The last `tail` lines of a task's output (stdout and stderr), as text.
    pub async fn task_log(&self, task_id: &str, tail: usize) -> Result<String> {
        let url = self.url(path::TASKS, None, &[task_id, "logs"]);
        let q = vec![("tail", tail.to_string())];
        let (_, bytes) = self.call::<()>(Method::GET, url, &q, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
