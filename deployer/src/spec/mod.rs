//! The deploy document: `deploy:` (service -> spec) and `remove:` (service ->
//! `{labels}`), validated from a parsed JSON value into typed specs.
//!
//! Validation collects every problem with its path (`/deploy/web/instances`)
//! so one 422 tells the user everything; unknown fields get a suggestion when
//! they look like a typo of a known one.
//!
//! By concern: the typed specs (`types`), the field parsers that record
//! problems (`fields`), one service definition section by section
//! (`service`) and its health checks (`health`).

mod fields;
mod health;
mod service;
mod types;

use std::collections::BTreeSet;

use serde_json::Value;

use registry::naming;

pub use fields::suggest;
pub use service::SERVICE_FIELDS;
pub use types::*;

use fields::{as_map, check_fields, escape, labels_at, Problems};
use service::service;

const TOP_FIELDS: &[&str] = &["deploy", "remove"];
const REMOVE_FIELDS: &[&str] = &["labels"];

/// Validates a parsed document. Every problem is reported, with its path.
pub fn validate(doc: &Value) -> Result<Document, Vec<Detail>> {
    let mut p = Problems::default();
    let mut out = Document::default();
    let Some(top) = (match doc {
        Value::Null => {
            p.add(
                "/",
                "the document is empty: expected a mapping with deploy and/or remove",
            );
            None
        }
        other => as_map(other, "/", &mut p),
    }) else {
        return Err(p.0);
    };
    check_fields(top, TOP_FIELDS, "", &mut p);
    if let Some(deploy) = top.get("deploy").filter(|v| !v.is_null()) {
        if let Some(services) = as_map(deploy, "/deploy", &mut p) {
            for (name, spec) in services {
                let path = format!("/deploy/{}", escape(name));
                if let Some(problem) = naming::service_problem(name) {
                    p.add(&path, format!("service name {problem}"));
                }
                if let Some(s) = service(name, spec, &path, &mut p) {
                    out.deploy.push(s);
                }
            }
        }
    }
    if let Some(remove) = top.get("remove").filter(|v| !v.is_null()) {
        if let Some(services) = as_map(remove, "/remove", &mut p) {
            for (name, spec) in services {
                let path = format!("/remove/{}", escape(name));
                if let Some(problem) = naming::service_problem(name) {
                    p.add(&path, format!("service name {problem}"));
                }
                let labels = match spec {
                    Value::Null => Vec::new(),
                    other => match as_map(other, &path, &mut p) {
                        Some(m) => {
                            check_fields(m, REMOVE_FIELDS, &path, &mut p);
                            labels_at(m.get("labels"), &format!("{path}/labels"), &mut p)
                        }
                        None => Vec::new(),
                    },
                };
                out.remove.push(RemoveSpec {
                    service: name.clone(),
                    labels,
                });
            }
        }
    }
    cross_checks(&out, &mut p);
    if p.0.is_empty() {
        Ok(out)
    } else {
        Err(p.0)
    }
}

/// App ids must not collide with each other or with a group (`/web` beside
/// `/web/x`), and one document may not both deploy and remove an app.
fn cross_checks(doc: &Document, p: &mut Problems) {
    let deploy_ids: BTreeSet<String> = doc.deploy.iter().map(|s| s.app_id()).collect();
    let all: Vec<(String, String)> = doc
        .deploy
        .iter()
        .map(|s| (s.app_id(), format!("/deploy/{}", escape(&s.service))))
        .collect();
    // Sorted ids: an app `/a` clashes with the first id after `/a/` when that one starts with it.
    for (id, path) in &all {
        let prefix = format!("{id}/");
        if let Some(other) = deploy_ids
            .range(prefix.clone()..)
            .next()
            .filter(|o| o.starts_with(&prefix))
        {
            p.add(
                path,
                format!("app id {id} clashes with the group of app {other}"),
            );
        }
    }
    for r in &doc.remove {
        if deploy_ids.contains(&r.app_id()) {
            p.add(
                &format!("/remove/{}", escape(&r.service)),
                format!(
                    "{} is both deployed and removed by this document",
                    r.app_id()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
