//! The command-line actions, the subcommands other than `serve`: apply,
//! render, status, remove, talking to the Marathon API directly. Each
//! returns text for stdout or a [`CliError`] whose exit code `main` uses.
//! Their clap definitions are in [`crate::config`].

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::apply::{self, DeployError, DeployReport};
use crate::config::Settings;
use crate::parse::{Format, Limits};
use crate::plan::Removal;
use crate::services;
use crate::spec::Detail;
use crate::upstream::{Marathon, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input (file, document, arguments): exit 64.
    #[error("{0}")]
    Input(String),
    /// The Marathon API is unreachable: exit 69.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (the API refused, deployments did not finish): exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 64,
            CliError::Unavailable(_) => 69,
            CliError::Failed(_) => 1,
        }
    }
}

/// All details on one line: `/deploy/web/instances: must not be negative; ...`.
fn one_line(details: &[Detail]) -> String {
    details
        .iter()
        .map(|d| format!("{}: {}", d.path, d.errors.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<UpstreamError> for CliError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unreachable { .. } => CliError::Unavailable(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<DeployError> for CliError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Parse(p) => CliError::Input(p.to_string()),
            DeployError::Invalid(d) => {
                CliError::Input(format!("invalid document: {}", one_line(&d)))
            }
            DeployError::Upstream { source, applied } => {
                let done: Vec<&str> = applied.iter().map(|r| r.app_id.as_str()).collect();
                let suffix = if done.is_empty() {
                    String::new()
                } else {
                    format!(" (already applied: {})", done.join(", "))
                };
                match CliError::from(source) {
                    CliError::Unavailable(m) => CliError::Unavailable(format!("{m}{suffix}")),
                    other => CliError::Failed(format!("{other}{suffix}")),
                }
            }
        }
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, CliError> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Input(format!("reading stdin: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(file).map_err(|e| CliError::Input(format!("reading {}: {e}", file.display())))
}

fn format_of(file: &Path, body: &[u8]) -> Format {
    match file.extension().and_then(|e| e.to_str()) {
        Some("json") => Format::Json,
        Some("yaml") | Some("yml") => Format::Yaml,
        _ => Format::sniff(body),
    }
}

/// `deployer render FILE`: the app JSON, one pretty array.
pub fn render(file: &Path, settings: &Settings) -> Result<String, CliError> {
    let body = read_file(file)?;
    let limits = Limits {
        max_bytes: usize::MAX,
        ..Limits::default()
    };
    let doc = apply::load(&body, format_of(file, &body), &limits)?;
    let (desired, _) = apply::prepare(&doc, &settings.translate)?;
    let apps: Vec<&serde_json::Value> = desired.iter().map(|d| &d.app).collect();
    Ok(serde_json::to_string_pretty(&apps).unwrap_or_default())
}

/// `deployer apply FILE [--wait]`.
pub async fn apply_file(
    file: &Path,
    wait: Option<Duration>,
    settings: &Settings,
) -> Result<String, CliError> {
    let body = read_file(file)?;
    let limits = Limits {
        max_bytes: usize::MAX,
        ..Limits::default()
    };
    let doc = apply::load(&body, format_of(file, &body), &limits)?;
    let (desired, removals) = apply::prepare(&doc, &settings.translate)?;
    let marathon = Marathon::new(&settings.marathon)?;
    let services = apply::apply(&marathon, &desired, &removals).await?;
    finish(&marathon, services, wait).await
}

/// `deployer remove SERVICE [--labels a,b]`.
pub async fn remove(
    service: &str,
    labels: &[String],
    settings: &Settings,
) -> Result<String, CliError> {
    if let Some(p) = registry::naming::service_problem(service) {
        return Err(CliError::Input(format!("service name {p}")));
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    for l in &labels {
        if let Some(p) = registry::naming::name_problem(l) {
            return Err(CliError::Input(format!("label {p}")));
        }
    }
    let labels = registry::naming::canonical_labels(&labels);
    let removal = Removal {
        service: service.to_string(),
        app_id: registry::naming::app_id(service, &labels),
        labels,
    };
    let marathon = Marathon::new(&settings.marathon)?;
    let services = apply::apply(&marathon, &[], &[removal]).await?;
    finish(&marathon, services, None).await
}

async fn finish(
    marathon: &Marathon,
    mut services: Vec<apply::ServiceReport>,
    wait: Option<Duration>,
) -> Result<String, CliError> {
    let mut complete = None;
    if let Some(timeout) = wait {
        let total = services
            .iter()
            .filter_map(|s| s.deployment_id.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner} deployments {pos}/{len} [{bar:30}] {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let done = apply::wait(marathon, &mut services, timeout, |finished, _| {
            bar.set_position(finished as u64)
        })
        .await;
        bar.finish_and_clear();
        complete = Some(done?);
    }
    let mut out = String::new();
    for s in &services {
        let mut line = format!(
            "{:<9} {:<30} instances={}",
            format!("{:?}", s.action).to_lowercase(),
            s.app_id,
            s.instances
        );
        if let Some(d) = &s.deployment_id {
            line.push_str(&format!(" deployment={d}"));
        }
        if let Some(o) = s.outcome {
            line.push_str(&format!(" {}", format!("{o:?}").to_lowercase()));
        }
        if let Some(r) = s.tasks_running {
            line.push_str(&format!(" running={r}"));
        }
        if !s.changes.is_empty() {
            line.push_str(&format!(" changed={}", s.changes.join(",")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if complete == Some(false) {
        let report = DeployReport {
            services,
            complete,
            dry_run: false,
        };
        return Err(CliError::Failed(format!(
            "deployments did not finish in time: {}",
            serde_json::to_string(&report).unwrap_or_default()
        )));
    }
    Ok(out)
}

/// `deployer status`: a table (or JSON).
pub async fn status(json: bool, settings: &Settings) -> Result<String, CliError> {
    let marathon = Marathon::new(&settings.marathon)?;
    let apps = marathon.apps().await?;
    let view = services::view(&apps);
    if json {
        Ok(serde_json::to_string_pretty(&view).unwrap_or_default())
    } else {
        Ok(services::table(&view))
    }
}
