//! The few Marathon API calls the subscriber makes, over reqwest with the
//! `marathon` crate's types: apps with tasks, one app, event subscriptions
//! and the `/v2/events` stream (parsed with `marathon::sse`).

use std::time::Duration;

use marathon::{AppInfo, Event};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::convert::app_spec;
use crate::model::{AppSpec, TaskInfo};
use crate::source::{AppSource, SourceError};

/// Event types the subscriber asks the stream for.
pub const EVENT_TYPES: &[&str] = &[
    "status_update_event",
    "instance_health_changed_event",
    "health_status_changed_event",
];

#[derive(Clone)]
pub struct MarathonApi {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
    basic: Option<(String, String)>,
    token: Option<String>,
}

impl std::fmt::Debug for MarathonApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonApi")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AppBody {
    app: AppInfo,
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

impl MarathonApi {
    /// `url` may carry basic-auth userinfo; `token` is sent as a bearer token.
    pub fn new(url: &str, token: Option<String>) -> Result<MarathonApi, url::ParseError> {
        let mut base = Url::parse(url)?;
        let basic = if base.username().is_empty() {
            None
        } else {
            let user = percent_decode(base.username());
            let pass = base.password().map(percent_decode).unwrap_or_default();
            let _ = base.set_username("");
            let _ = base.set_password(None);
            Some((user, pass))
        };
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client builds");
        let stream_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client builds");
        Ok(MarathonApi {
            http,
            stream_http,
            base,
            basic,
            token,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("valid path")
    }

    fn auth(&self, rb: RequestBuilder) -> RequestBuilder {
        let rb = match &self.basic {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        };
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// The raw body of `GET /v2/apps?embed=apps.tasks`.
    pub async fn apps_body(&self) -> Result<bytes::Bytes, SourceError> {
        let mut url = self.url("v2/apps");
        url.query_pairs_mut().append_pair("embed", "apps.tasks");
        let resp = self
            .auth(self.http.get(url))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("GET /v2/apps: HTTP {}", resp.status())));
        }
        resp.bytes().await.map_err(unavailable)
    }

    pub async fn get_app(&self, id: &str) -> Result<AppInfo, SourceError> {
        let url = self.url(&format!("v2/apps/{}", id.trim_start_matches('/')));
        let resp = self
            .auth(self.http.get(url))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(SourceError::NotFound(id.to_string()));
        }
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "GET /v2/apps{id}: HTTP {}",
                resp.status()
            )));
        }
        let body: AppBody = resp.json().await.map_err(unavailable)?;
        Ok(body.app)
    }

    async fn subscription(
        &self,
        method: reqwest::Method,
        callback: &str,
    ) -> Result<(), SourceError> {
        let mut url = self.url("v2/eventSubscriptions");
        url.query_pairs_mut().append_pair("callbackUrl", callback);
        let resp = self
            .auth(self.http.request(method.clone(), url))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(unavailable(format!(
                "{method} /v2/eventSubscriptions: HTTP {status} {body}"
            )));
        }
        Ok(())
    }

    pub async fn subscribe(&self, callback: &str) -> Result<(), SourceError> {
        self.subscription(reqwest::Method::POST, callback).await
    }

    pub async fn unsubscribe(&self, callback: &str) -> Result<(), SourceError> {
        self.subscription(reqwest::Method::DELETE, callback).await
    }

    /// The callback URLs Marathon currently posts to.
    pub async fn subscriptions(&self) -> Result<Vec<String>, SourceError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            callback_urls: Vec<String>,
        }
        let resp = self
            .auth(self.http.get(self.url("v2/eventSubscriptions")))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "GET /v2/eventSubscriptions: HTTP {}",
                resp.status()
            )));
        }
        Ok(resp
            .json::<Body>()
            .await
            .map_err(unavailable)?
            .callback_urls)
    }

    /// Opens `/v2/events` (filtered to the types we act on).
    pub async fn open_events(&self) -> Result<reqwest::Response, SourceError> {
        let mut url = self.url("v2/events");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("plan-format", "light");
            for t in EVENT_TYPES {
                q.append_pair("event_type", t);
            }
        }
        let resp = self
            .auth(self.stream_http.get(url))
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache")
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "GET /v2/events: HTTP {}",
                resp.status()
            )));
        }
        Ok(resp)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl AppSource for MarathonApi {
    async fn app(&self, id: &str) -> Result<AppSpec, SourceError> {
        Ok(app_spec(&self.get_app(id).await?.app))
    }

    async fn apps_with_tasks(&self) -> Result<Vec<(AppSpec, Vec<TaskInfo>)>, SourceError> {
        // The lean decoder (crate::apps_list), not the marathon crate's
        // types: for thousands of tasks those are many times slower.
        let body = self.apps_body().await?;
        crate::apps_list::decode(&body).map_err(unavailable)
    }
}

/// Parses one SSE data payload or callback body.
pub fn parse_event(json: &str) -> Result<Event, serde_json::Error> {
    Event::from_json(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth() {
        let api = MarathonApi::new("http://us%40r:p%3Aw@127.0.0.1:8080/prefix", None).unwrap();
        assert_eq!(api.basic, Some(("us@r".into(), "p:w".into())));
        assert_eq!(
            api.url("v2/apps").as_str(),
            "http://127.0.0.1:8080/prefix/v2/apps"
        );
        let api = MarathonApi::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(api.basic, None);
        assert_eq!(
            api.url("/v2/apps").as_str(),
            "http://127.0.0.1:8080/v2/apps"
        );
    }
}
