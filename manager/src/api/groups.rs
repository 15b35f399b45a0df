//! `/v2/groups` writes: create (`POST`), change or scale (`PUT`), remove
//! (`DELETE`). Each is one deployment over the group's apps
//! ([`crate::core::Core::create_group`] and friends); reads are in
//! [`super::deployments`].

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::{deployment_response, force_and_body, CoreData, Query};
use crate::error::ApiError;
use crate::ids;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/groups", web::post().to(create))
        .route("/v2/groups", web::put().to(update))
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

/// `PUT /v2/groups/{id}`, or `PUT /v2/groups` with the group's id in the
/// body (the root group without one).
async fn update(
    core: CoreData,
    req: HttpRequest,
    path: Option<GroupId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (force, body) = force_and_body(&core, &req, payload).await?;
    let group = match path {
        Some(GroupId(id)) => id,
        None => crate::core::body_group_id(&body).unwrap_or_else(|| "/".into()),
    };
    let d = core.update_group(&group, body, force).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

async fn delete(
    core: CoreData,
    req: HttpRequest,
    group: GroupId,
) -> Result<HttpResponse, ApiError> {
    let force = Query::of(&req).flag("force", false)?;
    let d = core.delete_group(&group.0, force).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

/// The group a path names (`/v2/groups/{id}`), canonical.
struct GroupId(String);

impl FromRequest for GroupId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.match_info().get("tail") {
            Some(tail) => Ok(GroupId(ids::canonical(tail))),
            None => Err(ApiError::uri_not_found(req.path())),
        })
    }
}
