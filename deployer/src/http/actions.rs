//! One-app actions: `POST /scale` (`{"app_id": "/dev/web", "instances": 3}`),
//! `POST /restart` and `POST /remove` (`{"app_id": "/dev/web"}`). The
//! dashboard's buttons call these, under the same token as `/deploy`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::error::ApiError;
use super::State;

/// Most instances a scale may ask for (the manager's own bound).
const MAX_INSTANCES: u32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    app_id: String,
    #[serde(default)]
    instances: Option<u32>,
}

fn target(body: &[u8]) -> Result<Target, ApiError> {
    let t: Target = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!(
            "expected JSON {{\"app_id\": \"/group/service\"[, \"instances\": n]}}: {e}"
        ),
        details: Vec::new(),
    })?;
    if !t.app_id.starts_with('/') || t.app_id.len() < 2 || t.app_id.contains("..") {
        return Err(ApiError::BadRequest {
            message: format!("app_id {:?} is not an app id like /dev/web", t.app_id),
            details: Vec::new(),
        });
    }
    Ok(t)
}

fn refused(e: marathon::Error, app_id: &str) -> ApiError {
    match e {
        marathon::Error::NotFound { .. } => ApiError::AppNotFound(app_id.to_string()),
        marathon::Error::Conflict { message, .. } => ApiError::Rejected {
            status: 409,
            message: format!("the Marathon API refused it: {message}"),
            details: Value::Null,
            applied: Vec::new(),
        },
        marathon::Error::Invalid { status, body } => ApiError::Rejected {
            status,
            message: format!("the Marathon API refused it: {}", body.message),
            details: serde_json::to_value(&body.details).unwrap_or(Value::Null),
            applied: Vec::new(),
        },
        other => ApiError::Upstream {
            message: format!("the Marathon API failed: {other}"),
            details: Value::Null,
            applied: Vec::new(),
        },
    }
}

fn done(state: &State, action: &str, app_id: &str, deployment_id: String) -> HttpResponse {
    state.metrics.inc("deployer_app_actions_total", action);
    info!(app_id = %app_id, action, deployment_id = %deployment_id, "applied from the API");
    HttpResponse::Ok().json(json!({
        "app_id": app_id, "action": action, "deployment_id": deployment_id,
    }))
}

pub async fn scale(state: web::Data<State>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let t = target(&body)?;
    let Some(n) = t.instances.filter(|n| *n <= MAX_INSTANCES) else {
        return Err(ApiError::BadRequest {
            message: format!("instances: a whole number from 0 to {MAX_INSTANCES} is required"),
            details: Vec::new(),
        });
    };
    let id = state
        .board
        .cluster
        .scale(&t.app_id, n)
        .await
        .map_err(|e| refused(e, &t.app_id))?;
    Ok(done(&state, "scaled", &t.app_id, id))
}

pub async fn restart(state: web::Data<State>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let t = target(&body)?;
    let id = state
        .board
        .cluster
        .restart(&t.app_id)
        .await
        .map_err(|e| refused(e, &t.app_id))?;
    Ok(done(&state, "restarted", &t.app_id, id))
}

pub async fn remove(state: web::Data<State>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let t = target(&body)?;
    let id = state
        .board
        .cluster
        .remove(&t.app_id)
        .await
        .map_err(|e| refused(e, &t.app_id))?;
    Ok(done(&state, "removed", &t.app_id, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = target(br#"{"app_id": "/dev/web", "instances": 3}"#).unwrap();
        assert_eq!((t.app_id.as_str(), t.instances), ("/dev/web", Some(3)));
        for bad in [
            &br#"{"app_id": "web"}"#[..],
            br#"{"app_id": "/"}"#,
            br#"{"app_id": "/a/../b"}"#,
            br#"{"app_id": "/a", "instances": -1}"#,
            br#"{"app_id": "/a", "extra": 1}"#,
            b"nope",
        ] {
            assert!(target(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
