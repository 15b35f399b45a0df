//! Setting a benchmark up and tearing it down: the manager and the deployer
//! binaries started and waited for, apps deleted until no task is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;
use testkit::{ChildGuard, Etcd};

/// A manager process started for a benchmark.
pub struct Manager {
    pub guard: ChildGuard,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Manager {
    /// SIGTERM, then waits for the process to exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.guard.id().to_string()])
            .status();
        let _ = self.guard.child().wait();
    }
}

/// Spawns the manager command `cmd` (from [`crate::manager_command`], with
/// the caller's flags added) and waits until it serves `GET /v2/apps` (60 s
/// at most), polling every 2 ms so that start-up times can be measured.
pub async fn serve_manager(mut cmd: Command, base: String) -> Result<Manager> {
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    let m = Manager {
        guard: ChildGuard::new(child),
        base,
    };
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/v2/apps", m.base)).send().await {
            if r.status() == 200 {
                let v: Value = r.json().await?;
                if v["apps"].as_array().is_some() {
                    return Ok(m);
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("manager did not serve within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts `deployer serve` on a free port against `marathon` (and this
/// etcd, for the dashboard's registry reads), its output discarded, and
/// waits until it listens. Returns the guard and the base URL.
pub fn start_deployer(
    bin: &Path,
    marathon: &str,
    etcd_endpoint: Option<&str>,
) -> Result<(ChildGuard, String)> {
    let port = testkit::free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--marathon-url", marathon]);
    if let Some(e) = etcd_endpoint {
        cmd.args(["--etcd-endpoints", e]);
    }
    let child = cmd
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let guard = ChildGuard::new(child);
    wait_port(port)?;
    Ok((guard, format!("http://127.0.0.1:{port}")))
}

/// The manager (Docker off) on a fresh etcd and `deployer serve` in front
/// of it, their data in a scratch folder: what the deployer and dashboard
/// benches measure. Dropped in field order: processes first, the folder last.
pub struct DeployerStack {
    _deployer: ChildGuard,
    _manager: Manager,
    pub etcd: Etcd,
    /// The manager's base URL.
    pub marathon: String,
    /// The deployer's base URL.
    pub deployer: String,
    pub deployer_bin: PathBuf,
    /// Scratch space, removed on drop.
    pub dir: TempDir,
}

/// Starts a [`DeployerStack`]; with `deployer_reads_etcd` the deployer gets
/// the etcd endpoint too (the dashboard reads the registry).
pub async fn deployer_stack(name: &str, deployer_reads_etcd: bool) -> Result<DeployerStack> {
    let manager_bin = crate::sibling_binary("manager")?;
    let deployer_bin = crate::sibling_binary("deployer")?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("mdo-{name}-"))
        .tempdir()?;
    let etcd = Etcd::start()?;
    let (mut cmd, marathon) =
        crate::manager_command(&manager_bin, &etcd.endpoint(), &dir.path().join("manager"))?;
    cmd.args(["--docker", "off"]).stderr(Stdio::null());
    let manager = serve_manager(cmd, marathon.clone()).await?;
    let endpoint = etcd.endpoint();
    let (guard, deployer) = start_deployer(
        &deployer_bin,
        &marathon,
        deployer_reads_etcd.then_some(endpoint.as_str()),
    )?;
    Ok(DeployerStack {
        _deployer: guard,
        _manager: manager,
        etcd,
        marathon,
        deployer,
        deployer_bin,
        dir,
    })
}

/// Waits (30 s at most) until something listens on the loopback `port`.
pub fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Deletes the apps (`?force=true`, whatever the answer) and waits until no
/// task is left.
pub async fn delete_apps(http: &reqwest::Client, base: &str, ids: &[String]) -> Result<()> {
    for id in ids {
        let _ = http
            .delete(format!("{base}/v2/apps{id}?force=true"))
            .send()
            .await?;
    }
    wait_no_tasks(http, base).await
}

/// Waits (60 s at most) until the manager at `base` lists no task.
pub async fn wait_no_tasks(http: &reqwest::Client, base: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{base}/v2/tasks"))
            .send()
            .await?
            .json()
            .await?;
        if v["tasks"].as_array().is_some_and(Vec::is_empty) {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("tasks still running after deleting the apps");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What reaches a running manager's API (the chain, the fault stack): its
/// client and URL, and [`ManagerApi::api`] on them.
// Only concrete types implement it and their callers await `api` in place,
// so the future's `Send`-ness needs no bound here.
#[allow(async_fn_in_trait)]
pub trait ManagerApi {
    fn http(&self) -> &reqwest::Client;

    /// `http://127.0.0.1:<port>` of the manager.
    fn manager_base(&self) -> String;

    /// One call to the manager's API: status and JSON body (`Null` when the
    /// body is not JSON).
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        api_call(self.http(), &self.manager_base(), method, path, body).await
    }
}

/// One call to a manager's API at `base`: status and JSON body (`Null`
/// when the body is not JSON).
pub async fn api_call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let mut rb = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}
