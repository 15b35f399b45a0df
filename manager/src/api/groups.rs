//! `/v2/groups` writes: create (`POST`), change or scale (`PUT`), remove
//! (`DELETE`). Each is one deployment over the group's apps
//! ([`crate::core::Core::create_group`] and friends); reads are in
//! [`super::deployments`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{deployment_response, force_and_body, CoreData, Query};
use crate::error::ApiError;
use crate::ids;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/groups", web::post().to(create))
        .route("/v2/groups", web::put().to(update_named))
        .route("/v2/groups/{tail:.+}", web::put().to(update))
        .route("/v2/groups/{tail:.+}", web::delete().to(delete));
}

async fn create(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (force, body) = force_and_body(&core, &req, payload).await?;
    let (group, d) = core.create_group(body, force).await?;
    Ok(deployment_response(
        StatusCode::CREATED,
        &d,
        Some(&format!("/v2/groups{group}")),
    ))
}

/// `PUT /v2/groups` with the group's id in the body.
async fn update_named(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (force, body) = force_and_body(&core, &req, payload).await?;
    let group = crate::core::body_group_id(&body).unwrap_or_else(|| "/".into());
    let d = core.update_group(&group, body, force).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

async fn update(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (force, body) = force_and_body(&core, &req, payload).await?;
    let d = core
        .update_group(&ids::canonical(&tail), body, force)
        .await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

async fn delete(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let d = core.delete_group(&ids::canonical(&tail), force).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}
