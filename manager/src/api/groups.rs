//! `/v2/groups` writes: create (`POST`), change or scale (`PUT`), remove
//! (`DELETE`). Each is one deployment over the group's apps
//! ([`crate::core::Core::create_group`] and friends); reads are in
//! [`super::deployments`].

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{read_body, CoreData, Query};
use crate::core::Core;
use crate::error::ApiError;
use crate::ids;
use crate::state::DeploymentRecord;
use crate::validation;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/groups", web::post().to(create))
        .route("/v2/groups", web::put().to(update_named))
        .route("/v2/groups/{tail:.+}", web::put().to(update))
        .route("/v2/groups/{tail:.+}", web::delete().to(delete));
}

fn answer(status: StatusCode, d: &DeploymentRecord, location: Option<String>) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Marathon-Deployment-Id", d.id.clone()));
    if let Some(l) = location {
        b.insert_header((header::LOCATION, l));
    }
    b.json(Core::deployment_result(d))
}

async fn create(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let (group, d) = core.create_group(body, force).await?;
    Ok(answer(
        StatusCode::CREATED,
        &d,
        Some(format!("/v2/groups{group}")),
    ))
}

/// `PUT /v2/groups` with the group's id in the body.
async fn update_named(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let group = crate::core::body_group_id(&body).unwrap_or_else(|| "/".into());
    let d = core.update_group(&group, body, force).await?;
    Ok(answer(StatusCode::OK, &d, None))
}

async fn update(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let d = core
        .update_group(&ids::canonical(&tail), body, force)
        .await?;
    Ok(answer(StatusCode::OK, &d, None))
}

async fn delete(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let d = core.delete_group(&ids::canonical(&tail), force).await?;
    Ok(answer(StatusCode::OK, &d, None))
}
