//! `POST /deploy`: a document in, a report per service out.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use tracing::{info, warn};

use super::error::ApiError;
use super::State;
use crate::apply::{self, DeployReport};
use crate::parse::Format;

/// Longest `timeout` a request may ask for, in seconds (one hour; the
/// server's `--wait-timeout` may cap it lower).
const MAX_TIMEOUT_SECS: f64 = 3600.0;

#[derive(Debug, Default, PartialEq)]
struct DeployQuery {
    wait: bool,
    timeout: Option<Duration>,
    /// Plan only: report what would be done, apply nothing.
    dry_run: bool,
}

/// The query string as sent: every value kept as text so a bad one is
/// refused with a message naming it (unknown parameters are ignored).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DeployParams {
    wait: Option<String>,
    timeout: Option<String>,
    dry_run: Option<String>,
}

impl DeployParams {
    fn check(&self) -> Result<DeployQuery, ApiError> {
        let bad = |k: &str, v: &str, what: &str| ApiError::BadRequest {
            message: format!("query parameter {k}={v}: {what}"),
            details: Vec::new(),
        };
        let flag = |k: &str, v: &Option<String>| match v.as_deref() {
            None => Ok(false),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(bad(k, v, "expected true or false")),
            },
        };
        let timeout = match self.timeout.as_deref() {
            None => None,
            Some(v) => {
                let expected =
                    format!("expected seconds, more than 0 and at most {MAX_TIMEOUT_SECS}");
                let secs: f64 = v.parse().map_err(|_| bad("timeout", v, &expected))?;
                // NaN fails both comparisons.
                if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
                    return Err(bad("timeout", v, &expected));
                }
                Some(Duration::from_secs_f64(secs))
            }
        };
        Ok(DeployQuery {
            wait: flag("wait", &self.wait)?,
            timeout,
            dry_run: flag("dry_run", &self.dry_run)?,
        })
    }
}

/// A query string actix could not read into [`DeployParams`] (a parameter
/// given twice) is a 400 like any other bad parameter.
fn query(q: Result<web::Query<DeployParams>, actix_web::Error>) -> Result<DeployQuery, ApiError> {
    let q = q.map_err(|e| ApiError::BadRequest {
        message: format!("query string: {e}"),
        details: Vec::new(),
    })?;
    q.check()
}

pub async fn deploy(
    state: web::Data<State>,
    req: HttpRequest,
    params: Result<web::Query<DeployParams>, actix_web::Error>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = handle(&state, &req, params, payload).await;
    let status = match &result {
        Ok(_) => "200".to_string(),
        Err(e) => actix_web::ResponseError::status_code(e)
            .as_u16()
            .to_string(),
    };
    state.metrics.inc("deployer_deploy_requests_total", &status);
    if let Err(e) = &result {
        match e {
            ApiError::Upstream { .. } => {
                state
                    .metrics
                    .inc("deployer_marathon_errors_total", "unreachable_or_failed");
                warn!(error = %e, "deploy failed at the Marathon API");
            }
            ApiError::Rejected { .. } => {
                state
                    .metrics
                    .inc("deployer_marathon_errors_total", "rejected");
                warn!(error = %e, "the Marathon API refused a definition");
            }
            _ => info!(status = %status, error = %e, "deploy document refused"),
        }
    }
    result.map(|report| HttpResponse::Ok().json(report))
}

async fn handle(
    state: &State,
    req: &HttpRequest,
    params: Result<web::Query<DeployParams>, actix_web::Error>,
    payload: web::Payload,
) -> Result<DeployReport, ApiError> {
    let q = query(params)?;
    let limit = state.config.limits.max_bytes;
    let too_large = |size: usize| {
        ApiError::TooLarge(format!(
            "document is {size} bytes or more, over the limit of {limit} bytes"
        ))
    };
    let body = daemon::http::read_body(req, payload, limit)
        .await
        .map_err(|e| match e {
            daemon::http::BodyError::TooLarge { size, .. } => too_large(size),
            daemon::http::BodyError::Read(e) => ApiError::BadRequest {
                message: format!("reading the body: {e}"),
                details: Vec::new(),
            },
        })?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type, &body).map_err(|_| {
        ApiError::UnsupportedMediaType(content_type.unwrap_or_default().to_string())
    })?;
    let doc = apply::load(&body, format, &state.config.limits)?;
    let (desired, removals) = apply::prepare(&doc, &state.config.settings.translate)?;

    // One document at a time: plans are made against the state the previous one left.
    let _guard = state.apply_lock.lock().await;
    if q.dry_run {
        let services = apply::preview(&state.marathon, &desired, &removals).await?;
        return Ok(DeployReport {
            services,
            complete: None,
            dry_run: true,
        });
    }
    let mut services = apply::apply(&state.marathon, &desired, &removals).await?;
    for s in &services {
        state.metrics.inc(
            "deployer_app_actions_total",
            &format!("{:?}", s.action).to_lowercase(),
        );
    }
    let mut complete = None;
    if q.wait {
        let timeout = q
            .timeout
            .unwrap_or(state.config.wait_timeout)
            .min(state.config.wait_timeout);
        let done = apply::wait(&state.marathon, &mut services, timeout, |_, _| {}).await?;
        complete = Some(done);
    }
    Ok(DeployReport {
        services,
        complete,
        dry_run: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Result<DeployQuery, ApiError> {
        super::query(web::Query::<DeployParams>::from_query(q).map_err(Into::into))
    }

    #[test]
    fn query_parsing() {
        assert_eq!(query("").unwrap(), DeployQuery::default());
        assert_eq!(
            query("wait=true&timeout=2.5").unwrap(),
            DeployQuery {
                wait: true,
                timeout: Some(Duration::from_millis(2500)),
                dry_run: false,
            }
        );
        assert!(query("dry_run=true").unwrap().dry_run);
        assert!(query("dry_run=nope").is_err());
        assert!(query("wait").unwrap().wait);
        assert!(query("wait=maybe").is_err());
        assert!(
            query("wait=%74rue").unwrap().wait,
            "values are percent-decoded"
        );
        let twice = query("wait=true&wait=false").unwrap_err().to_string();
        assert!(twice.contains("wait"), "{twice}");
        let secs = |t: &str| query(&format!("timeout={t}")).map(|q| q.timeout);
        for ok in ["0.001", "1", "2.5", "3600"] {
            assert!(secs(ok).is_ok(), "{ok}");
        }
        assert_eq!(secs("3600").unwrap(), Some(Duration::from_secs(3600)));
        for bad in [
            "-1", "0", "-0", "3600.5", "1e300", "1e19", "nan", "NaN", "inf", "-inf", "", "soon",
        ] {
            let e = secs(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected seconds, more than 0 and at most 3600"),
                "{bad}: {e}"
            );
        }
    }
}
