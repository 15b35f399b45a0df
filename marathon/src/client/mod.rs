//! Async Marathon client (reqwest, rustls).
//!
//! One method per endpoint the mdo components use, typed results, and
//! typed errors ([`Error`]); raw-JSON variants where a caller must keep
//! fields this crate does not model (`raw`), and a lean decoder of apps
//! with their tasks ([`crate::lean`]). Credentials: a bearer token
//! ([`ClientBuilder::token`]) or basic auth taken from the URL's userinfo
//! (`http://user:pass@host:8080`); neither is ever printed (`Debug` and
//! `Display` show the URL without userinfo). The event stream lives in
//! [`crate::stream`]. Marathon's REST paths are spelled in [`path`] only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::stream::StreamConfig;
use crate::{Error, Info, Leader, Result};

mod apps;
mod logs;
pub mod path;
mod raw;
mod system;

pub use apps::{AppFilter, KillResult};

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    stream: StreamConfig,
    user_agent: String,
}

impl ClientBuilder {
    /// Bearer token sent as `Authorization: Bearer <token>` (wins over URL userinfo).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|t: &String| !t.is_empty());
        self
    }

    /// Like [`ClientBuilder::token`], ignoring `None`.
    pub fn maybe_token(self, token: Option<String>) -> Self {
        match token {
            Some(t) => self.token(t),
            None => self,
        }
    }

    /// Whole-request timeout for ordinary calls (default 30 s; not used for events).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// TCP connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reconnect and idle settings of [`Client::events`].
    pub fn stream_config(mut self, config: StreamConfig) -> Self {
        self.stream = config;
        self
    }

    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    pub fn build(self) -> Result<Client> {
        let shown = without_userinfo(self.base_url.trim());
        let mut base =
            Url::parse(self.base_url.trim()).map_err(|e| Error::Url(format!("{shown:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Url(format!("{shown:?}: not an http(s) URL")));
        }
        let basic = if base.username().is_empty() {
            None
        } else {
            let user = decode(base.username());
            let pass = base.password().map(decode);
            Some((user, pass))
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        let auth = match (self.token, basic) {
            (Some(t), _) => Some(Auth::Bearer(t)),
            (None, Some((u, p))) => Some(Auth::Basic(u, p)),
            (None, None) => None,
        };
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(Error::Transport)?;
        // No total timeout (the stream never ends) and redirects by hand so
        // credentials survive the standby -> leader hop.
        let stream_http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                stream_http,
                base,
                auth,
                stream: self.stream,
            }),
        })
    }
}

/// Percent-decodes URL userinfo (`p%40ss` -> `p@ss`).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `scheme://user:pass@host/...` -> `scheme://host/...`, for messages about
/// a URL that may not even parse.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic(String, Option<String>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::Basic(..) => f.write_str("Basic(***)"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    http: reqwest::Client,
    pub(crate) stream_http: reqwest::Client,
    base: Url,
    auth: Option<Auth>,
    pub(crate) stream: StreamConfig,
}

/// An async Marathon API client. Cheap to clone. `Debug` and `Display`
/// never show credentials.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Display for Client {
    /// The base URL without credentials, e.g. `http://127.0.0.1:8080/`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.inner.base.as_str())
    }
}

type Query = Vec<(&'static str, String)>;

fn flag(q: &mut Query, name: &'static str, value: Option<bool>) {
    if let Some(v) = value {
        q.push((name, v.to_string()));
    }
}

impl Client {
    /// A client with default settings for this base URL.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::builder(base_url).build()
    }

    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            stream: StreamConfig::default(),
            user_agent: concat!("mdo-marathon/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The base URL (without credentials).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// `base` + a [`path`] + the `/`-separated segments of `id` + `tail`
    /// segments (each percent-encoded).
    pub(crate) fn url(&self, path: &str, id: Option<&str>, tail: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        {
            let mut segs = url.path_segments_mut().expect("checked http(s) base");
            segs.pop_if_empty();
            segs.extend(path.split('/').filter(|s| !s.is_empty()));
            if let Some(id) = id {
                segs.extend(id.split('/').filter(|s| !s.is_empty()));
            }
            segs.extend(tail);
        }
        url
    }

    pub(crate) fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.inner.auth {
            Some(Auth::Bearer(t)) => req.bearer_auth(t),
            Some(Auth::Basic(u, p)) => req.basic_auth(u, p.as_ref()),
            None => req,
        }
    }

    pub(crate) async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &Query,
        body: Option<&B>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            let json = serde_json::to_vec(b).map_err(Error::Decode)?;
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(json);
        }
        let resp = self.authorize(req).send().await.map_err(Error::Transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(Error::Transport)?;
        if status.is_success() {
            Ok((status, bytes))
        } else {
            Err(Error::from_response(status.as_u16(), &bytes))
        }
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &Query,
        body: Option<&B>,
    ) -> Result<T> {
        let (_, bytes) = self.call(method, url, query, body).await?;
        serde_json::from_slice(&bytes).map_err(Error::Decode)
    }

    async fn get<T: DeserializeOwned>(&self, url: Url, query: &Query) -> Result<T> {
        self.json::<T, ()>(Method::GET, url, query, None).await
    }

    /// `GET /ping` -> `pong`.
    pub async fn ping(&self) -> Result<String> {
        let url = self.url(path::PING, None, &[]);
        let (_, b) = self.call::<()>(Method::GET, url, &Vec::new(), None).await?;
        Ok(String::from_utf8_lossy(&b)
            .trim()
            .trim_matches('"')
            .to_owned())
    }

    /// `GET /v2/info`.
    pub async fn info(&self) -> Result<Info> {
        self.get(self.url(path::INFO, None, &[]), &Vec::new()).await
    }

    /// `GET /v2/leader` (404 [`Error::NotFound`] when there is no leader).
    pub async fn leader(&self) -> Result<Leader> {
        self.get(self.url(path::LEADER, None, &[]), &Vec::new())
            .await
    }

    /// `DELETE /v2/leader`: ask the leader to abdicate; returns its message.
    pub async fn abdicate_leader(&self) -> Result<String> {
        let url = self.url(path::LEADER, None, &[]);
        let body: crate::ErrorBody = self
            .json::<_, ()>(Method::DELETE, url, &Vec::new(), None)
            .await?;
        Ok(body.message)
    }
}
