//! `/v2/deployments`, `/v2/queue`, `/v2/groups` (read).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

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
    let s = core.state();
    let items: Vec<serde_json::Value> = s
        .queue
        .values()
        .filter_map(|w| {
            let app = s.apps.get(&w.app_id)?;
            let backoff = s.backoff.get(&w.app_id);
            let overdue = backoff.is_none_or(|b| b.next_launch <= std::time::Instant::now());
            let time_left = backoff
                .map(|b| b.next_launch.saturating_duration_since(std::time::Instant::now()).as_secs())
                .unwrap_or(0);
            Some(json!({
                "count": w.count,
                "delay": {"timeLeftSeconds": time_left, "overdue": overdue},
                "since": w.since,
                "app": app,
                "processedOffersSummary": {"processedOffersCount": 0, "unusedOffersCount": 0, "rejectSummaryLastOffers": [], "rejectSummaryLaunchAttempt": []},
                "lastUnusedOffers": [],
            }))
        })
        .collect();
    HttpResponse::Ok().json(json!({ "queue": items }))
}

async fn reset_delay(core: CoreData, tail: web::Path<String>) -> Result<HttpResponse, ApiError> {
    core.reset_delay(&ids::canonical(&tail))?;
    Ok(HttpResponse::NoContent().finish())
}

fn group_json(core: &Core, group_id: &str) -> Option<serde_json::Value> {
    let s = core.state();
    let prefix = if group_id == "/" {
        "/".to_string()
    } else {
        format!("{group_id}/")
    };
    let mut apps = Vec::new();
    let mut subgroups = std::collections::BTreeSet::new();
    for app in s.apps.values().filter(|a| a.id.starts_with(&prefix)) {
        let rest = &app.id[prefix.len()..];
        match rest.split_once('/') {
            None => apps.push(app.clone()),
            Some((sub, _)) => {
                subgroups.insert(format!("{prefix}{sub}"));
            }
        }
    }
    if group_id != "/" && apps.is_empty() && subgroups.is_empty() {
        return None;
    }
    let version = s
        .apps
        .values()
        .filter_map(|a| a.version)
        .max()
        .unwrap_or(core.started_at);
    drop(s);
    let groups: Vec<serde_json::Value> = subgroups
        .iter()
        .filter_map(|g| group_json(core, g))
        .collect();
    Some(json!({
        "id": group_id, "apps": apps, "groups": groups, "pods": [], "dependencies": [], "version": version,
    }))
}

async fn root_group(core: CoreData) -> HttpResponse {
    HttpResponse::Ok().json(group_json(&core, "/"))
}

async fn group(core: CoreData, tail: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = ids::canonical(&tail);
    group_json(&core, &id)
        .map(|g| HttpResponse::Ok().json(g))
        .ok_or_else(|| ApiError::NotFound(format!("Group '{id}' does not exist")))
}
