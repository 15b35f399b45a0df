//! `/v2/tasks`, `POST /v2/tasks/delete` and the task log extension
//! `GET /v2/tasks/{id}/logs?tail=N`.

use actix_web::{web, HttpRequest, HttpResponse};
use marathon::TaskState;
use serde_json::{json, Value};

use super::{read_body, CoreData, Query};
use crate::core::Core;
use crate::error::ApiError;
use crate::validation;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/tasks", web::get().to(list))
        .route("/v2/tasks/delete", web::post().to(delete))
        .route("/v2/tasks/{id}/logs", web::get().to(logs));
}

async fn list(core: CoreData, req: HttpRequest) -> HttpResponse {
    let q = Query::of(&req);
    let mut statuses: Vec<&str> = q.all("status");
    statuses.extend(q.all("status[]"));
    let wanted: Vec<TaskState> = statuses
        .iter()
        .filter_map(|s| match s.to_ascii_lowercase().as_str() {
            "running" => Some(TaskState::Running),
            "staging" => Some(TaskState::Staging),
            _ => None,
        })
        .collect();
    let s = core.state();
    let tasks: Vec<_> = s
        .tasks
        .values()
        .filter(|t| {
            wanted.is_empty()
                || wanted.contains(&t.state)
                || (wanted.contains(&TaskState::Staging) && t.state == TaskState::Starting)
        })
        .map(|t| s.task_json(t))
        .collect();
    HttpResponse::Ok().json(super::wrap("tasks", &tasks))
}

async fn delete(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    let (scale, force) = q.kill_flags()?;
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let ids: Vec<String> = match body.get("ids") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::invalid_json("/ids: error.expected.jsstring"))?,
        _ => return Err(ApiError::invalid_json("/ids: error.path.missing")),
    };
    let resolved = core
        .resolve_task_ids(&ids)
        .map_err(|bad| ApiError::bad_request(format!("Invalid task id '{bad}'. [{bad}]")))?;
    let (killed, d) = core.kill_tasks(&resolved, scale, force).await?;
    match (scale, d) {
        (true, Some(d)) => Ok(HttpResponse::Ok()
            .insert_header(("Marathon-Deployment-Id", d.id.clone()))
            .json(Core::deployment_result(&d))),
        (true, None) => Ok(HttpResponse::Ok().json(json!({"deploymentId": uuid::Uuid::new_v4().to_string(), "version": core.next_version()}))),
        (false, _) => Ok(HttpResponse::Ok().json(super::wrap("tasks", &killed))),
    }
}

async fn logs(
    core: CoreData,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    let tail = match q.get("tail") {
        None => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("tail must be a number, got {t:?}")))?,
        ),
    };
    let runtime = {
        let s = core.state();
        s.tasks.get(id.as_str()).map(|t| t.runtime.clone())
    };
    // Ended tasks: ask every runtime (it may keep their output for a while).
    let candidates: Vec<_> = match runtime {
        Some(name) => core
            .runtimes
            .iter()
            .filter(|r| r.name() == name)
            .cloned()
            .collect(),
        None => core.runtimes.clone(),
    };
    let follow = q.flag("follow", false)?;
    for rt in candidates {
        if let Ok(bytes) = rt.logs(&id, tail).await {
            if !follow {
                return Ok(HttpResponse::Ok()
                    .content_type("text/plain; charset=utf-8")
                    .body(bytes));
            }
            // Follow: the tail, then whatever the task writes until it ends.
            let core = core.get_ref().clone();
            let id = id.into_inner();
            let stream = async_stream::stream! {
                let mut seen = rt.logs(&id, None).await.map(|b| b.len()).unwrap_or(0);
                yield Ok::<_, actix_web::Error>(bytes::Bytes::from(bytes));
                loop {
                    let alive = core.state().tasks.contains_key(&id);
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                        _ = core.streams_end.cancelled() => {}
                    }
                    let Ok(now) = rt.logs(&id, None).await else { break };
                    if now.len() > seen {
                        yield Ok(bytes::Bytes::copy_from_slice(&now[seen..]));
                    }
                    seen = now.len();
                    // Shutdown: what was written so far went out; end here.
                    if !alive || core.streams_end.is_cancelled() || core.shutdown.is_cancelled() {
                        break;
                    }
                }
            };
            return Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .streaming(stream));
        }
    }
    Err(ApiError::task_not_found(&id))
}
