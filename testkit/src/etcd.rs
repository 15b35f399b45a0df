//! A real etcd server per test: its own temp data dir, free loopback ports,
//! readiness polled with a deadline, killed (and its data removed) on drop.

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
        etcd.spawn()?;
        Ok(etcd)
    }

    fn spawn(&mut self) -> Result<()> {
        let listen = self.listen.clone();
        let bin = etcd_binary()?;
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let child = Command::new(bin)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(format!("http://{listen}:{}", self.client_port))
            .arg("--advertise-client-urls")
            .arg(self.endpoint())
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer_port))
            .arg("--initial-cluster")
            .arg(format!("{}=http://127.0.0.1:{}", self.name, self.peer_port))
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
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

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> Result<u16> {
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
