//! `/v2/apps` and everything below it.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use marathon::{App, AppInfo, DeploymentRef, TaskState};
use serde_json::json;

use super::{client_ip, deployment_response, force_and_body, read_body, CoreData, Query};
use crate::error::ApiError;
use crate::events;
use crate::ids;
use crate::state::{State, TaskRecord};
use crate::validation;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v2/apps")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .route(web::put().to(update_many::<false>))
            .route(web::patch().to(update_many::<true>)),
    )
    .service(
        web::resource("/v2/apps/{tail:.+}")
            .route(web::get().to(get_sub))
            .route(web::put().to(update::<true>))
            .route(web::patch().to(update::<false>))
            .route(web::delete().to(delete_sub))
            .route(web::post().to(post_sub)),
    );
}

/// What `embed` asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Embed {
    pub tasks: bool,
    pub last_task_failure: bool,
    pub task_stats: bool,
    pub readiness: bool,
}

impl Embed {
    pub fn parse(values: &[&str]) -> Embed {
        let mut e = Embed::default();
        for v in values {
            let v = v
                .strip_prefix("group.apps.")
                .or_else(|| v.strip_prefix("apps."))
                .or_else(|| v.strip_prefix("app."))
                .unwrap_or(v);
            match v {
                "tasks" => e.tasks = true,
                "lastTaskFailure" => e.last_task_failure = true,
                "failures" => {
                    e.tasks = true;
                    e.last_task_failure = true
                }
                "taskStats" => e.task_stats = true,
                "readiness" => e.readiness = true,
                _ => {}
            }
        }
        e
    }
}

/// The status view of one app.
pub fn app_info(s: &State, app: &App, embed: Embed) -> AppInfo {
    let tasks: Vec<&TaskRecord> = s.tasks_of(&app.id).collect();
    app_info_with(s, app, &tasks, embed)
}

/// The status views of many apps, with their tasks gathered in one walk.
fn app_infos<'a>(s: &State, apps: impl Iterator<Item = &'a App>, embed: Embed) -> Vec<AppInfo> {
    let by_app = s.tasks_by_app();
    apps.map(|a| {
        let tasks = by_app.get(a.id.as_str()).map_or(&[][..], Vec::as_slice);
        app_info_with(s, a, tasks, embed)
    })
    .collect()
}

/// The status view of one app whose tasks are `tasks`.
fn app_info_with(s: &State, app: &App, tasks: &[&TaskRecord], embed: Embed) -> AppInfo {
    let mut info = AppInfo::new(app.clone());
    for t in tasks {
        match t.state {
            TaskState::Staging | TaskState::Starting => info.tasks_staged += 1,
            TaskState::Running => info.tasks_running += 1,
            _ => {}
        }
        match s.healthy(t) {
            Some(true) => info.tasks_healthy += 1,
            Some(false) => info.tasks_unhealthy += 1,
            None => {}
        }
    }
    info.deployments = s
        .deployments_of(&app.id)
        .into_iter()
        .map(|id| DeploymentRef { id })
        .collect();
    if embed.tasks {
        info.tasks = Some(tasks.iter().map(|t| s.task_json(t)).collect());
    }
    if embed.last_task_failure {
        info.last_task_failure = s.last_failure.get(&app.id).cloned();
    }
    if embed.readiness {
        info.readiness_check_results = Some(Vec::new());
    }
    if embed.task_stats {
        info.task_stats = Some(json!({}));
    }
    info
}

async fn list(core: CoreData, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    let embed = Embed::parse(&q.all("embed"));
    let id_filter = q.get("id").map(str::to_lowercase);
    let cmd_filter = q.get("cmd").map(str::to_lowercase);
    let label = q.get("label").map(str::to_string);
    let s = core.state();
    let apps = s
        .apps
        .values()
        .filter(|a| {
            id_filter
                .as_ref()
                .is_none_or(|f| a.id.to_lowercase().contains(f.as_str()))
        })
        .filter(|a| {
            cmd_filter.as_ref().is_none_or(|f| {
                a.cmd
                    .as_ref()
                    .is_some_and(|c| c.to_lowercase().contains(f.as_str()))
            })
        })
        .filter(|a| {
            label
                .as_ref()
                .is_none_or(|l| validation::label_selector_matches(l, &a.labels))
        });
    let apps = app_infos(&s, apps, embed);
    drop(s);
    Ok(HttpResponse::Ok().json(super::wrap("apps", &apps)))
}

async fn create(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (force, body) = force_and_body(&core, &req, payload).await?;
    let (app, d) = core.create_app(body, force).await?;
    core.bus
        .publish(&events::build::api_post(&client_ip(&req), req.path(), &app));
    let mut info = AppInfo::new(app.clone());
    info.deployments = vec![DeploymentRef { id: d.id.clone() }];
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, app.id.clone()))
        .insert_header(("Marathon-Deployment-Id", d.id.clone()))
        .json(info))
}

/// `PUT /v2/apps` (`partialUpdate` from the query, default true) or, with
/// `PATCH`, `PATCH /v2/apps` (always partial).
async fn update_many<const PATCH: bool>(
    core: CoreData,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    let force = q.flag("force", false)?;
    let partial = PATCH || q.flag("partialUpdate", true)?;
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let d = core.update_many(body, partial, force, !PATCH).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

/// What the path below `/v2/apps/` addresses.
#[derive(Debug, PartialEq)]
enum Target {
    App(String),
    GroupApps(String),
    Restart(String),
    Tasks(String),
    Task(String, String),
    Versions(String),
    Version(String, String),
}

fn target(tail: &str) -> Target {
    let path = format!("/{}", tail.trim_start_matches('/'));
    if let Some(id) = path.strip_suffix("/restart") {
        return Target::Restart(ids::canonical(id));
    }
    if let Some(id) = path.strip_suffix("/tasks") {
        return Target::Tasks(ids::canonical(id));
    }
    if let Some(id) = path.strip_suffix("/versions") {
        return Target::Versions(ids::canonical(id));
    }
    if let Some(i) = path.rfind("/tasks/") {
        return Target::Task(ids::canonical(&path[..i]), path[i + 7..].to_string());
    }
    if let Some(i) = path.rfind("/versions/") {
        return Target::Version(ids::canonical(&path[..i]), path[i + 10..].to_string());
    }
    if let Some(group) = path.strip_suffix("/*") {
        return Target::GroupApps(ids::canonical(group));
    }
    Target::App(ids::canonical(&path))
}

async fn get_sub(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    let s = core.state();
    match target(&tail) {
        Target::App(id) => {
            let app = s
                .apps
                .get(&id)
                .ok_or_else(|| ApiError::app_not_found(&id))?;
            let mut embed = Embed::parse(&q.all("embed"));
            embed.tasks = true;
            embed.last_task_failure = true;
            Ok(HttpResponse::Ok().json(super::wrap("app", &app_info(&s, app, embed))))
        }
        Target::GroupApps(group) => {
            let prefix = if group == "/" {
                "/".to_string()
            } else {
                format!("{group}/")
            };
            let embed = Embed::parse(&q.all("embed"));
            let apps = app_infos(
                &s,
                s.apps.values().filter(|a| a.id.starts_with(&prefix)),
                embed,
            );
            if apps.is_empty() {
                return Err(ApiError::not_found(format!(
                    "Group '{group}' does not exist"
                )));
            }
            Ok(HttpResponse::Ok().json(super::wrap("*", &apps)))
        }
        Target::Tasks(id) => {
            if !s.apps.contains_key(&id) {
                return Err(ApiError::app_not_found(&id));
            }
            let tasks: Vec<_> = s.tasks_of(&id).map(|t| s.task_json(t)).collect();
            Ok(HttpResponse::Ok().json(super::wrap("tasks", &tasks)))
        }
        Target::Versions(id) => {
            if !s.apps.contains_key(&id) {
                return Err(ApiError::app_not_found(&id));
            }
            let versions: Vec<String> = s
                .versions
                .get(&id)
                .map(|vs| vs.keys().rev().map(|v| v.to_string()).collect())
                .unwrap_or_default();
            Ok(HttpResponse::Ok().json(json!({"versions": versions})))
        }
        Target::Version(id, v) => {
            if !s.apps.contains_key(&id) {
                return Err(ApiError::app_not_found(&id));
            }
            let app = v
                .parse::<marathon::Timestamp>()
                .ok()
                .and_then(|ts| s.versions.get(&id).and_then(|vs| vs.get(&ts)))
                .ok_or_else(|| {
                    ApiError::not_found(format!("App '{id}' does not exist in version {v}"))
                })?;
            Ok(HttpResponse::Ok().json(app))
        }
        _ => Err(ApiError::uri_not_found(req.path())),
    }
}

/// `PUT /v2/apps/{id}` (with `PUT`: `partialUpdate` from the query, default
/// true) or `PATCH /v2/apps/{id}` (always partial).
async fn update<const PUT: bool>(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Target::App(id) = target(&tail) else {
        return Err(ApiError::uri_not_found(req.path()));
    };
    let q = Query::of(&req);
    let force = q.flag("force", false)?;
    let partial = if PUT {
        q.flag("partialUpdate", true)?
    } else {
        true
    };
    if let Err(e) = ids::validate_app_id(&id) {
        return Err(ApiError::invalid("/id", &e));
    }
    let body = validation::parse_json(&read_body(&core, &req, payload).await?)?;
    let (created, d, app) = core.update_app(&id, body, partial, force, PUT).await?;
    core.bus
        .publish(&events::build::api_post(&client_ip(&req), req.path(), &app));
    if created {
        Ok(deployment_response(StatusCode::CREATED, &d, Some(&id)))
    } else {
        Ok(deployment_response(StatusCode::OK, &d, None))
    }
}

async fn post_sub(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Target::Restart(id) = target(&tail) else {
        return Err(ApiError::uri_not_found(req.path()));
    };
    let force = Query::of(&req).flag("force", false)?;
    let d = core.restart_app(&id, force).await?;
    Ok(deployment_response(StatusCode::OK, &d, None))
}

async fn delete_sub(
    core: CoreData,
    req: HttpRequest,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let q = Query::of(&req);
    match target(&tail) {
        Target::App(id) => {
            let force = q.flag("force", true)?;
            let d = core.delete_app(&id, force).await?;
            Ok(deployment_response(StatusCode::OK, &d, None))
        }
        Target::Tasks(id) => {
            let (scale, force) = q.kill_flags()?;
            let host = q.get("host").map(str::to_string);
            let task_ids: Vec<String> = {
                let s = core.state();
                if !s.apps.contains_key(&id) {
                    return Err(ApiError::app_not_found(&id));
                }
                s.tasks_of(&id)
                    .filter(|t| match host.as_deref() {
                        None | Some("*") | Some("") => true,
                        Some(h) => t.host == h || t.node == h,
                    })
                    .map(|t| t.id.clone())
                    .collect()
            };
            let (killed, d) = core.kill_tasks(&task_ids, scale, force).await?;
            match (scale, d) {
                (true, Some(d)) => Ok(deployment_response(StatusCode::OK, &d, None)),
                (true, None) => {
                    let version = core.next_version();
                    Ok(HttpResponse::Ok().json(json!({"deploymentId": uuid::Uuid::new_v4().to_string(), "version": version})))
                }
                (false, _) => Ok(HttpResponse::Ok().json(super::wrap("tasks", &killed))),
            }
        }
        Target::Task(id, task_id) => {
            let (scale, force) = q.kill_flags()?;
            if !core.state().apps.contains_key(&id) {
                return Err(ApiError::app_not_found(&id));
            }
            let resolved = core
                .resolve_task_ids(std::slice::from_ref(&task_id))
                .unwrap_or_default();
            let resolved: Vec<String> = {
                let s = core.state();
                resolved
                    .into_iter()
                    .filter(|t| s.tasks.get(t).is_some_and(|t| t.app_id == id))
                    .collect()
            };
            if resolved.is_empty() {
                return Err(ApiError::task_not_found(&task_id));
            }
            let (killed, d) = core.kill_tasks(&resolved, scale, force).await?;
            match (scale, d) {
                (true, Some(d)) => Ok(deployment_response(StatusCode::OK, &d, None)),
                _ => match killed.into_iter().next() {
                    Some(t) => Ok(HttpResponse::Ok().json(super::wrap("task", &t))),
                    None => Err(ApiError::task_not_found(&task_id)),
                },
            }
        }
        _ => Err(ApiError::uri_not_found(req.path())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let cases = [
            ("web", Target::App("/web".into())),
            ("prod/web", Target::App("/prod/web".into())),
            ("prod/web/restart", Target::Restart("/prod/web".into())),
            ("web/tasks", Target::Tasks("/web".into())),
            (
                "web/tasks/web.instance-x._app.1",
                Target::Task("/web".into(), "web.instance-x._app.1".into()),
            ),
            ("web/versions", Target::Versions("/web".into())),
            (
                "web/versions/2026-01-01T00:00:00.000Z",
                Target::Version("/web".into(), "2026-01-01T00:00:00.000Z".into()),
            ),
            ("prod/*", Target::GroupApps("/prod".into())),
        ];
        for (tail, want) in cases {
            assert_eq!(target(tail), want, "{tail}");
        }
        let e = Embed::parse(&["apps.tasks", "app.lastTaskFailure"]);
        assert!(e.tasks && e.last_task_failure);
        let e = Embed::parse(&["group.apps.failures"]);
        assert!(e.tasks && e.last_task_failure);
        assert!(!Embed::parse(&["apps.counts", "nonsense"]).tasks);
    }
}
