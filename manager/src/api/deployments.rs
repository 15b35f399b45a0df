//! `/v2/deployments`, `/v2/queue`, `/v2/groups` (reads; writes in [`super::groups`]).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{CoreData, Query};
use crate::core::Core;
use crate::error::ApiError;
use crate::ids;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/deployments", web::get().to(list))
        .route("/v2/deployments/{id}", web::delete().to(cancel))
        .route("/v2/queue", web::get().to(queue))
        .route("/v2/queue/{tail:.+}/delay", web::delete().to(reset_delay))
        .route("/v2/groups", web::get().to(root_group))
        .route("/v2/groups/{tail:.*}", web::get().to(group));
}

async fn list(core: CoreData) -> HttpResponse {
    let s = core.state();
    let list: Vec<marathon::Deployment> = s.deployments.values().map(|d| d.to_marathon()).collect();
    HttpResponse::Ok().json(list)
}

async fn cancel(
    core: CoreData,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    match core.cancel_deployment(&id, force).await? {
        None => Ok(HttpResponse::Accepted().finish()),
        Some(d) => Ok(HttpResponse::Ok()
            .insert_header(("Marathon-Deployment-Id", d.id.clone()))
            .json(Core::deployment_result(&d))),
    }
}

async fn queue(core: CoreData) -> HttpResponse {
    let view = core.state().queue_view(std::time::Instant::now());
    HttpResponse::Ok().json(view)
}

async fn reset_delay(core: CoreData, tail: web::Path<String>) -> Result<HttpResponse, ApiError> {
    core.reset_delay(&ids::canonical(&tail))?;
    Ok(HttpResponse::NoContent().finish())
}

async fn root_group(core: CoreData) -> HttpResponse {
    HttpResponse::Ok().json(core.state().group_view("/", core.started_at))
}

async fn group(core: CoreData, tail: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = ids::canonical(&tail);
    let view = core.state().group_view(&id, core.started_at);
    view.map(|g| HttpResponse::Ok().json(g))
        .ok_or_else(|| ApiError::not_found(format!("Group '{id}' does not exist")))
}
