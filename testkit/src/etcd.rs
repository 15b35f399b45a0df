//! A real etcd server per test: its own temp data dir, free loopback ports,
//! readiness polled with a deadline, killed (and its data removed) on drop.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running etcd member owned by a test.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    name: String,
    listen: String,
}

impl Etcd {
    /// Starts a fresh single-member etcd on free loopback ports and waits until
    /// it answers `/health`. Fails loudly when the `etcd` binary is missing.
    pub fn start() -> Result<Etcd> {
        Etcd::start_listening_on("127.0.0.1")
    }

    /// Starts etcd listening on every interface, so that containers on the
    /// Docker bridge can reach it (tests only; the advertised URL stays loopback).
    pub fn start_on_all_interfaces() -> Result<Etcd> {
        Etcd::start_listening_on("0.0.0.0")
    }

    fn start_listening_on(listen: &str) -> Result<Etcd> {
        // A port found free can be taken before etcd binds it (by another
        // test's server or a client's ephemeral port): then etcd exits at
        // once with "address already in use", and the next try takes others.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new().prefix("mdo-etcd-").tempdir()?;
            let client_port = free_port()?;
            let peer_port = free_port()?;
            let mut etcd = Etcd {
                child: None,
                dir,
                client_port,
                peer_port,
                name: format!("test-{client_port}"),
                listen: listen.to_string(),
            };
            match etcd.spawn() {
                Ok(()) => return Ok(etcd),
                Err(e) if attempt < 5 && format!("{e:#}").contains("address already in use") => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let initial_cluster = format!("{}=http://127.0.0.1:{}", self.name, self.peer_port);
        let child = member_command(
            &self.name,
            &self.dir.path().join("data"),
            &format!("http://{}:{}", self.listen, self.client_port),
            &self.endpoint(),
            self.peer_port,
            &initial_cluster,
            log,
        )?
        .spawn()
        .context("starting etcd")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let addr = format!("127.0.0.1:{}", self.client_port);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "etcd exited early ({status}); log:\n{}",
                        std::fs::read_to_string(self.dir.path().join("etcd.log"))
                            .unwrap_or_default()
                    );
                }
            }
            if health_ok(&addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd on {addr} not healthy within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and waits for it; data is kept, so `restart`
    /// brings back the same cluster.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel
    /// but nothing answers, which is what a hung or partitioned etcd looks
    /// like to a client (unlike [`Etcd::stop`], which refuses at once).
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a [`Etcd::pause`]d server go on (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, sig: &str) {
        let child = self.child.as_ref().expect("etcd is running");
        let status = std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} etcd");
    }

    /// Starts the server again on the same ports and data dir.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real etcd cluster of several members, all on loopback: each member has
/// its own free client and peer ports and its own data dir (one temp dir for
/// the cluster), and every member is killed (data removed) on drop.
/// [`EtcdCluster::start`] returns once every member answers `/health` with a
/// leader elected.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    initial_cluster: String,
    token: String,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `size` members (`member-1`, `member-2`, ...) as one new cluster.
    pub fn start(size: usize) -> Result<EtcdCluster> {
        if size == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let dir = tempfile::Builder::new()
            .prefix("mdo-etcd-cluster-")
            .tempdir()?;
        let mut members = Vec::with_capacity(size);
        for i in 1..=size {
            members.push(Member {
                name: format!("member-{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        // One token for the whole cluster, unique to this test run.
        let token = format!("mdo-test-{}", members[0].client_port);
        let mut cluster = EtcdCluster {
            members,
            dir,
            initial_cluster,
            token,
        };
        // Every member must run before any of them can elect a leader.
        for i in 0..size {
            cluster.spawn_member(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Spawns member `i` on its ports and data dir (a member whose data dir
    /// exists rejoins the cluster it belongs to).
    fn spawn_member(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let endpoint = format!("http://127.0.0.1:{}", m.client_port);
        let mut cmd = member_command(
            &m.name,
            &self.dir.path().join(&m.name),
            &endpoint,
            &endpoint,
            m.peer_port,
            &self.initial_cluster,
            log,
        )?;
        cmd.arg("--initial-cluster-token").arg(&self.token);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting etcd {}", m.name))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Starts member `i` again (after [`Self::stop_member`]) on the same
    /// ports and data, without waiting: with a majority of members down
    /// nobody is healthy until enough of them are back; see
    /// [`Self::wait_all_healthy`].
    pub fn restart_member(&mut self, i: usize) -> Result<()> {
        self.stop_member(i);
        self.spawn_member(i)
    }

    /// Waits until every member answers `/health` with a leader elected.
    pub fn wait_all_healthy(&mut self, timeout: Duration) -> Result<()> {
        self.wait_healthy(timeout)
    }

    /// True when member `i`'s process runs.
    pub fn member_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The index of the current leader, as the running members report it
    /// (`etcdctl endpoint status`); `None` when no running member knows one.
    pub fn leader(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.member_running(i))
            .collect();
        if running.is_empty() {
            return None;
        }
        let endpoints: Vec<String> = running.iter().map(|&i| self.endpoint(i)).collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoints.join(",")])
            .args([
                "--command-timeout",
                "2s",
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        status.as_array()?.iter().find_map(|e| {
            let s = &e["Status"];
            let leader = s["leader"].as_u64()?;
            if s["header"]["member_id"].as_u64()? != leader {
                return None;
            }
            let endpoint = e["Endpoint"].as_str()?;
            running
                .iter()
                .copied()
                .find(|&i| self.endpoint(i) == endpoint)
        })
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut healthy = 0;
            for m in &mut self.members {
                if let Some(child) = m.child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "etcd {} exited early ({status}); log:\n{}",
                            m.name,
                            std::fs::read_to_string(
                                self.dir.path().join(format!("{}.log", m.name))
                            )
                            .unwrap_or_default()
                        );
                    }
                }
                if health_ok(&format!("127.0.0.1:{}", m.client_port)) {
                    healthy += 1;
                }
            }
            if healthy == self.members.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| {
                        let log = self.dir.path().join(format!("{}.log", m.name));
                        format!(
                            "--- {}:\n{}",
                            m.name,
                            std::fs::read_to_string(log).unwrap_or_default()
                        )
                    })
                    .collect();
                bail!(
                    "etcd cluster: {healthy} of {} members healthy after {timeout:?}; logs:\n{}",
                    self.members.len(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `http://127.0.0.1:<port>` of member `i` (0-based).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client endpoint, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The temp dir holding every member's data dir and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills (SIGKILL) member `i` and waits for it; the others keep running.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

/// The command line of one etcd member (plain HTTP, log level warn, output to
/// `log`), ready to spawn.
fn member_command(
    name: &str,
    data_dir: &Path,
    listen_client_url: &str,
    advertise_client_url: &str,
    peer_port: u16,
    initial_cluster: &str,
    log: std::fs::File,
) -> Result<Command> {
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new(etcd_binary()?);
    cmd.arg("--name")
        .arg(name)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(listen_client_url)
        .arg("--advertise-client-urls")
        .arg(advertise_client_url)
        .arg("--listen-peer-urls")
        .arg(&peer_url)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer_url)
        .arg("--initial-cluster")
        .arg(initial_cluster)
        .arg("--log-level")
        .arg("warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd)
}

/// Finds the etcd binary: `$ETCD_BIN`, then `PATH`, then Debian's location.
pub fn etcd_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ETCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = crate::which("etcd") {
        return Ok(p);
    }
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("etcd binary not found: install the Debian package etcd-server (apt-get install etcd-server) or set ETCD_BIN")
}

/// A free TCP port on loopback (bound then released), below the kernel's
/// ephemeral range (32768 and up by default), so that no client connection
/// of another test is handed the same port before its server binds it.
/// Falls back to a kernel-chosen port when 64 picks are all taken.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut x = seed ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 29;
        let port = 20_000 + (x % 12_000) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(l.local_addr()?.port());
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn health_ok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("valid address"),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    (buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")) && buf.contains("true")
}

/// A user [`enable_auth`] creates, with one role granting `permission`
/// (`read`, `write` or `readwrite`) on the keys under `prefix`.
pub struct LimitedUser<'a> {
    pub role: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub permission: &'a str,
    pub prefix: &'a str,
}

impl<'a> LimitedUser<'a> {
    /// A user whose role covers the registry (`/services/`).
    pub fn services(
        role: &'a str,
        user: &'a str,
        password: &'a str,
        permission: &'a str,
    ) -> LimitedUser<'a> {
        LimitedUser {
            role,
            user,
            password,
            permission,
            prefix: "/services/",
        }
    }
}

/// `root`'s password in an etcd from [`Etcd::start_with_user`].
pub const ROOT_PASSWORD: &str = "rootpw";

impl Etcd {
    /// Starts one with authentication on: `root` (password
    /// [`ROOT_PASSWORD`]) and `user`. Checked: an anonymous `etcdctl` read
    /// is refused.
    pub fn start_with_user(user: &LimitedUser) -> Etcd {
        let etcd = Etcd::start().expect("etcd");
        enable_auth(&etcd.endpoint(), ROOT_PASSWORD, user);
        assert!(
            etcdctl(&etcd.endpoint(), &["get", "/services/", "--prefix"]).is_err(),
            "an anonymous client must be refused"
        );
        etcd
    }

    /// Settings for `root` (password [`ROOT_PASSWORD`]) on an etcd from
    /// [`Etcd::start_with_user`]: a client that may write anywhere.
    pub fn root_settings(&self) -> registry::Settings {
        registry::Settings::new([self.endpoint()]).with_auth("root", ROOT_PASSWORD)
    }
}

/// Runs `etcdctl` (API v3) against `endpoint`, anonymously; its stdout, or an
/// error with its stderr.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Result<String> {
    etcdctl_with(endpoint, &[], args)
}

/// [`etcdctl`] with connection `flags` (TLS material) before `args`.
pub(crate) fn etcdctl_with(endpoint: &str, flags: &[&OsStr], args: &[&str]) -> Result<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(flags)
        .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
        .args(args)
        .output()
        .context("running etcdctl")?;
    if !out.status.success() {
        bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns authentication on in the etcd at `endpoint` (through etcdctl):
/// `root` with `root_password`, plus `limited`. Anonymous requests are
/// refused afterwards. Panics with etcdctl's message when a step fails.
pub fn enable_auth(endpoint: &str, root_password: &str, limited: &LimitedUser) {
    let run = |args: &[&str]| {
        if let Err(e) = etcdctl(endpoint, args) {
            panic!("{e}");
        }
    };
    run(&["user", "add", &format!("root:{root_password}")]);
    run(&["role", "add", limited.role]);
    run(&[
        "role",
        "grant-permission",
        limited.role,
        limited.permission,
        limited.prefix,
        "--prefix=true",
    ]);
    run(&[
        "user",
        "add",
        &format!("{}:{}", limited.user, limited.password),
    ]);
    run(&["user", "grant-role", limited.user, limited.role]);
    run(&["auth", "enable"]);
}
