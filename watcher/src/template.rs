//! Template mode (`--template SRC:DEST[:COMMAND]`), like consul-template:
//! files rendered with minijinja from the instances of the watched services,
//! written atomically and only when their bytes change, each followed by an
//! optional shell command (a graceful reload).
//!
//! The context of every template: `services`, a map from each WATCHES entry
//! as written (`ingestor`, `cache.prod`) to the list of its instance records
//! (the registry's JSON), sorted by container name; and the function
//! `service(name)`, the same list, which fails on a name that is not watched.
//!
//! Templates are read and compiled once, at start-up ([`Templates::load`]: a
//! missing or unparsable file is a usage error). A render error later keeps
//! the last good file and is logged; the watcher goes on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::select_all;
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior, Value};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::delta::{InstanceSet, Node};

/// One `--template SRC:DEST[:COMMAND]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub src: PathBuf,
    pub dest: PathBuf,
    /// Run with `sh -c` after DEST was rewritten.
    pub command: Option<String>,
}

impl TemplateSpec {
    /// Splits on the first two colons only: COMMAND may contain colons.
    pub fn parse(spec: &str) -> Result<TemplateSpec, String> {
        let mut parts = spec.splitn(3, ':');
        let src = parts.next().unwrap_or("");
        let Some(dest) = parts.next() else {
            return Err("expected SRC:DEST[:COMMAND]".into());
        };
        if src.trim().is_empty() {
            return Err("the template file (SRC) is empty".into());
        }
        if dest.trim().is_empty() {
            return Err("the output file (DEST) is empty".into());
        }
        let dest_path = PathBuf::from(dest);
        if dest.ends_with('/') || dest_path.file_name().is_none() {
            return Err("the output file (DEST) must name a file".into());
        }
        let command = parts
            .next()
            .filter(|c| !c.trim().is_empty())
            .map(str::to_string);
        Ok(TemplateSpec {
            src: PathBuf::from(src),
            dest: dest_path,
            command,
        })
    }
}

/// A template that cannot be used: `main` prints it as one line, exit 64.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid template {path}: {message}")]
    Syntax { path: PathBuf, message: String },
}

/// The compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    specs: Vec<TemplateSpec>,
}

/// What happened to one template in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// DEST rewritten (its bytes differed or it did not exist).
    Written,
    /// DEST already held exactly the rendered bytes.
    Unchanged,
    /// Render or write failed; DEST untouched. The message is one line.
    Failed(String),
}

impl Templates {
    /// Reads and compiles every template.
    pub fn load(specs: &[TemplateSpec]) -> Result<Templates, LoadError> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // Printing or iterating a missing value is an error (a typo must not
        // silently produce a broken configuration); `if x.missing` and
        // `x.missing | default(...)` still work.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.add_function("service", service);
        for spec in specs {
            let source = std::fs::read_to_string(&spec.src).map_err(|source| LoadError::Read {
                path: spec.src.clone(),
                source,
            })?;
            env.add_template_owned(name_of(spec), source)
                .map_err(|e| LoadError::Syntax {
                    path: spec.src.clone(),
                    message: describe(&e),
                })?;
        }
        Ok(Templates {
            env,
            specs: specs.to_vec(),
        })
    }

    pub fn specs(&self) -> &[TemplateSpec] {
        &self.specs
    }

    /// The context of a pass: `services` (WATCHES entry -> instance
    /// records sorted by container), converted once for every template.
    pub fn context(services: &BTreeMap<&str, Vec<&Node>>) -> Value {
        minijinja::context! { services => Value::from_serialize(services) }
    }

    /// Renders template `index` with a [`Templates::context`]. The error is
    /// one line with the line number.
    pub fn render(&self, index: usize, context: &Value) -> Result<String, String> {
        let spec = &self.specs[index];
        let template = self
            .env
            .get_template(&name_of(spec))
            .map_err(|e| describe(&e))?;
        template.render(context).map_err(|e| describe(&e))
    }
}

fn name_of(spec: &TemplateSpec) -> String {
    spec.src.display().to_string()
}

/// `service(name)`: the instances of a watched entry.
fn service(state: &State, name: &str) -> Result<Value, minijinja::Error> {
    let services = state.lookup("services").unwrap_or_default();
    let list = services.get_attr(name)?;
    if list.is_undefined() {
        let watched: Vec<String> = services
            .try_iter()
            .map(|keys| keys.map(|k| k.to_string()).collect())
            .unwrap_or_default();
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "service {name:?} is not watched (WATCHES: {})",
                watched.join(",")
            ),
        ));
    }
    Ok(list)
}

/// One line: what went wrong and where (minijinja's line number).
fn describe(e: &minijinja::Error) -> String {
    let mut out = match e.line() {
        Some(line) => format!("line {line}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        let _ = write!(out, ": {detail}");
    }
    // Errors raised inside a function or filter keep their cause here.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out.replace('\n', " ")
}

/// Writes `content` to `dest` unless `dest` already holds exactly it:
/// a temporary file in the same folder, fsync, rename over `dest` (which
/// keeps its permission bits), fsync of the folder. Returns whether it wrote.
pub fn write_if_changed(dest: &Path, content: &[u8]) -> std::io::Result<bool> {
    let existing = match std::fs::metadata(dest) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &existing {
        if meta.len() == content.len() as u64 && std::fs::read(dest)? == content {
            return Ok(false);
        }
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest.file_name().expect("checked when parsed");
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.watcher-{}-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(meta) = &existing {
            options.mode(meta.permissions().mode() & 0o7777);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(content)?;
        if let Some(meta) = &existing {
            // The mode given to open() is filtered by the umask: set it exactly.
            file.set_permissions(std::fs::Permissions::from_mode(
                meta.permissions().mode() & 0o7777,
            ))?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable once the folder is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// The latest instance set of each watch (None until its first listing).
pub type StateRx = watch::Receiver<Option<InstanceSet>>;

/// Renders every template once every watch has its first listing, then
/// signals `ready` (the child may start), then renders again after each
/// change of the watched records: at once, then at most once per `window`.
/// COMMAND runs after each rewrite, except at the first pass when
/// `skip_first_commands` (a child is about to start on the fresh files).
/// Returns when `stop` is cancelled or a watch ended.
pub async fn run(
    templates: Templates,
    mut states: Vec<(String, StateRx)>,
    window: Duration,
    skip_first_commands: bool,
    ready: oneshot::Sender<()>,
    stop: CancellationToken,
) {
    for (name, rx) in &mut states {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.wait_for(Option::is_some) => if r.is_err() {
                debug!(watch = %name, "watch ended before its first listing");
                return;
            },
        }
    }
    pass(&templates, &mut states, !skip_first_commands).await;
    let _ = ready.send(());

    let mut quiet_until: Option<Instant> = None;
    let mut pending = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = any_changed(&mut states) => {
                if !changed {
                    return;
                }
                let now = Instant::now();
                if quiet_until.is_some_and(|until| now < until) {
                    pending = true;
                    continue;
                }
                pass(&templates, &mut states, true).await;
                quiet_until = (!window.is_zero()).then(|| now + window);
            }
            _ = sleep_until(quiet_until.unwrap_or_else(Instant::now)), if quiet_until.is_some() => {
                quiet_until = None;
                if std::mem::take(&mut pending) {
                    let now = Instant::now();
                    pass(&templates, &mut states, true).await;
                    quiet_until = (!window.is_zero()).then(|| now + window);
                }
            }
        }
    }
}

/// Resolves when one of the watches published a new state (true), or when
/// one of them ended (false).
async fn any_changed(states: &mut [(String, StateRx)]) -> bool {
    if states.is_empty() {
        return std::future::pending().await;
    }
    let (result, _, _) = select_all(states.iter_mut().map(|(_, rx)| Box::pin(rx.changed()))).await;
    result.is_ok()
}

/// One pass over every template with the current states.
async fn pass(templates: &Templates, states: &mut [(String, StateRx)], run_commands: bool) {
    let snapshot: Vec<(String, InstanceSet)> = states
        .iter_mut()
        .map(|(name, rx)| {
            (
                name.clone(),
                rx.borrow_and_update().clone().unwrap_or_default(),
            )
        })
        .collect();
    let services: BTreeMap<&str, Vec<&Node>> = snapshot
        .iter()
        .map(|(name, set)| (name.as_str(), set.values().collect()))
        .collect();
    let context = Templates::context(&services);
    for (index, spec) in templates.specs().iter().enumerate() {
        let outcome = match templates.render(index, &context) {
            Ok(text) => {
                let dest = spec.dest.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_if_changed(&dest, text.as_bytes()))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                match written {
                    Ok(true) => Outcome::Written,
                    Ok(false) => Outcome::Unchanged,
                    Err(e) => Outcome::Failed(format!("cannot write {}: {e}", spec.dest.display())),
                }
            }
            Err(message) => Outcome::Failed(message),
        };
        match outcome {
            Outcome::Written => {
                info!(template = %spec.src.display(), dest = %spec.dest.display(), "template rendered, file written");
                match &spec.command {
                    Some(command) if run_commands => run_command(spec, command).await,
                    Some(_) => {
                        debug!(dest = %spec.dest.display(), "first render before the application starts: command not run")
                    }
                    None => {}
                }
            }
            Outcome::Unchanged => {
                debug!(template = %spec.src.display(), dest = %spec.dest.display(), "template rendered, file unchanged")
            }
            Outcome::Failed(message) => warn!(
                "template {} failed, keeping {} as it is: {message}",
                spec.src.display(),
                spec.dest.display()
            ),
        }
    }
}

async fn run_command(spec: &TemplateSpec, command: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("WATCH_TEMPLATE_DEST", &spec.dest)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {
            info!(dest = %spec.dest.display(), command, status = %s, "template command done")
        }
        Ok(s) => {
            warn!(dest = %spec.dest.display(), command, status = %s, "template command failed, going on")
        }
        Err(e) => {
            warn!(dest = %spec.dest.display(), command, error = %e, "cannot start the template command, going on")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_table() {
        let ok = |src: &str, dest: &str, cmd: Option<&str>| {
            Some(TemplateSpec {
                src: src.into(),
                dest: dest.into(),
                command: cmd.map(Into::into),
            })
        };
        let cases = [
            ("a.j2:/etc/a.cfg", ok("a.j2", "/etc/a.cfg", None)),
            ("a.j2:/etc/a.cfg:", ok("a.j2", "/etc/a.cfg", None)),
            (
                "a.j2:out:kill -USR2 $(cat /run/h.pid)",
                ok("a.j2", "out", Some("kill -USR2 $(cat /run/h.pid)")),
            ),
            (
                "a.j2:out:echo a:b:c; true",
                ok("a.j2", "out", Some("echo a:b:c; true")),
            ),
            ("a.j2", None),
            (":out", None),
            ("a.j2:", None),
            ("a.j2:/etc/", None),
            ("a.j2:..", None),
        ];
        for (input, expected) in cases {
            assert_eq!(TemplateSpec::parse(input).ok(), expected, "{input:?}");
        }
    }

    fn templates(dir: &Path, text: &str) -> Result<Templates, LoadError> {
        let src = dir.join("t.j2");
        std::fs::write(&src, text).unwrap();
        Templates::load(&[TemplateSpec {
            src,
            dest: dir.join("out"),
            command: None,
        }])
    }

    fn node(container: &str, port: u16) -> Node {
        Node::new(
            container,
            json!({"container": container, "host": "10.0.0.5", "healthy": null,
                   "ports": {"api": {"external": port, "exposed": 5000, "protocol": "tcp"}}}),
        )
    }

    #[test]
    fn context_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = node("a", 31001);
        let b = node("b", 31002);
        let services = Templates::context(&[("ingestor", vec![&a, &b])].into());
        let t = templates(
            dir.path(),
            "{% for r in services.ingestor %}{{ r.container }} {{ r.host }}:{{ r.ports.api.external }}\n{% endfor %}\
             {{ service('ingestor') | length }}{% if services.ingestor[0].healthy %}!{% endif %}\n",
        )
        .unwrap();
        assert_eq!(
            t.render(0, &services).unwrap(),
            "a 10.0.0.5:31001\nb 10.0.0.5:31002\n2\n"
        );

        // JSON output for tools that read it; null stays null.
        let t = templates(dir.path(), "{{ service('ingestor')[0].healthy | tojson }} {{ services.ingestor[1].ports | tojson }}").unwrap();
        assert_eq!(
            t.render(0, &services).unwrap(),
            r#"null {"api":{"exposed":5000,"external":31002,"protocol":"tcp"}}"#
        );

        let t = templates(dir.path(), "ok\n{{ service('proxy') }}").unwrap();
        let e = t.render(0, &services).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("\"proxy\" is not watched (WATCHES: ingestor)"),
            "{e}"
        );

        let t = templates(
            dir.path(),
            "\n\n{% for r in services.ingestor %}{{ r.ports.web.external }}{% endfor %}",
        )
        .unwrap();
        let e = t.render(0, &services).unwrap_err();
        assert!(e.starts_with("line 3: "), "{e}");

        let t = templates(dir.path(), "{{ services.ingestor[0].typo }}").unwrap();
        assert!(t.render(0, &services).unwrap_err().contains("undefined"));

        match templates(dir.path(), "a\n{% for x in y %}\n") {
            Err(LoadError::Syntax { message, .. }) => {
                assert!(message.starts_with("line 2: syntax error"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let missing = Templates::load(&[TemplateSpec {
            src: dir.path().join("none.j2"),
            dest: dir.path().join("out"),
            command: None,
        }]);
        assert!(matches!(missing, Err(LoadError::Read { .. })));
    }

    #[test]
    fn writes_only_changes_atomically_keeping_the_mode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.cfg");
        assert!(write_if_changed(&dest, b"one\n").unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"one\n");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&dest).unwrap();
        assert!(!write_if_changed(&dest, b"one\n").unwrap());
        assert_eq!(std::fs::metadata(&dest).unwrap().ino(), before.ino());
        assert!(write_if_changed(&dest, b"two\n").unwrap());
        let after = std::fs::metadata(&dest).unwrap();
        assert_ne!(
            after.ino(),
            before.ino(),
            "replaced, not rewritten in place"
        );
        assert_eq!(after.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(&dest).unwrap(), b"two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["out.cfg"], "no temporary file left");
        // A folder that does not exist: an error, nothing written.
        assert!(write_if_changed(&dir.path().join("no/out"), b"x").is_err());
    }
}
