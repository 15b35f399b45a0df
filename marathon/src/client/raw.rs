//! Raw-JSON calls: for a caller that must keep every field of an app as
//! Marathon sent it (the deployer compares and re-sends whole definitions,
//! including fields this crate does not model). Same URLs, credentials and
//! errors as the typed calls.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{flag, path, AppFilter, Query};
use crate::{Client, Error, Result};

#[derive(Deserialize)]
struct AppsBody {
    apps: Vec<Value>,
}

impl Client {
    async fn value<B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        url: url::Url,
        query: &Query,
        body: Option<&B>,
    ) -> Result<Value> {
        let (_, bytes) = self.call(method, url, query, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(Error::Decode)
    }

    /// `GET /v2/apps` with `embed` values and filters, each app as it came.
    pub async fn list_apps_raw(&self, embed: &[&str], filter: &AppFilter) -> Result<Vec<Value>> {
        let q = super::apps::list_query(embed, filter);
        let (_, bytes) = self
            .call::<()>(Method::GET, self.url(path::APPS, None, &[]), &q, None)
            .await?;
        let body: AppsBody = serde_json::from_slice(&bytes).map_err(Error::Decode)?;
        Ok(body.apps)
    }

    /// `PUT /v2/apps` with a list of app definitions as JSON values; the
    /// answer (a deployment result) as it came.
    pub async fn put_apps_raw(
        &self,
        apps: &[Value],
        force: bool,
        partial_update: Option<bool>,
    ) -> Result<Value> {
        let mut q = vec![("force", force.to_string())];
        flag(&mut q, "partialUpdate", partial_update);
        let url = self.url(path::APPS, None, &[]);
        self.value(Method::PUT, url, &q, Some(apps)).await
    }

    /// `DELETE /v2/apps/{id}`; the answer as it came (`Null` when empty).
    pub async fn delete_app_raw(&self, id: &str, force: Option<bool>) -> Result<Value> {
        let mut q = Vec::new();
        flag(&mut q, "force", force);
        let url = self.url(path::APPS, Some(id), &[]);
        self.value::<()>(Method::DELETE, url, &q, None).await
    }

    /// `GET /v2/deployments`, each deployment as it came.
    pub async fn list_deployments_raw(&self) -> Result<Vec<Value>> {
        let url = self.url(path::DEPLOYMENTS, None, &[]);
        let (_, bytes) = self.call::<()>(Method::GET, url, &Vec::new(), None).await?;
        serde_json::from_slice(&bytes).map_err(Error::Decode)
    }
}
