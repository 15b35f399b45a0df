//! etcd with TLS and client-certificate authentication, for tests of every
//! component's TLS settings: a throw-away CA, a server certificate for
//! 127.0.0.1/localhost and a client certificate, all made by `openssl` in
//! the server's temp dir; free loopback ports; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::etcd::{etcd_binary, etcdctl_with, free_port};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Writes `ca.pem` (+ `ca.key`), `server.{pem,key}` and `client.{pem,key}`
/// into `dir`: RSA 2048, valid one day, the server's names 127.0.0.1 and
/// localhost, both certificates usable for server and client auth.
pub fn make_certs(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=mdo-test-ca",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    for name in ["server", "client"] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        )?;
    }
    Ok(())
}

/// A single etcd member serving clients on `https://127.0.0.1:<port>` only,
/// requiring a client certificate signed by its CA (`--client-cert-auth`).
pub struct EtcdTls {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
}

impl EtcdTls {
    /// Makes the certificates, starts etcd and waits until it answers a
    /// health check over TLS with the client certificate.
    pub fn start() -> Result<EtcdTls> {
        let dir = tempfile::Builder::new().prefix("mdo-etcd-tls-").tempdir()?;
        make_certs(dir.path())?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let endpoint = format!("https://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let d = dir.path();
        let child = Command::new(etcd_binary()?)
            .args(["--name", "tls", "--log-level", "warn", "--data-dir"])
            .arg(d.join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tls={peer}")])
            .arg("--cert-file")
            .arg(d.join("server.pem"))
            .arg("--key-file")
            .arg(d.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(d.join("ca.pem"))
            .arg("--client-cert-auth")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd with TLS")?;
        let mut etcd = EtcdTls {
            child: Some(child),
            dir,
            client_port,
        };
        etcd.wait_ready(Duration::from_secs(20))?;
        Ok(etcd)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "etcd (TLS) exited early ({status}); log:\n{}",
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
                );
            }
            if self.etcdctl(&["endpoint", "health"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd (TLS) on {} not healthy within {timeout:?}",
                    self.endpoint()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The client certificate etcd accepts.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts one and checks that it is secured: `etcdctl` trusting its CA
    /// without a client certificate is refused.
    pub fn start_secured() -> EtcdTls {
        let etcd = EtcdTls::start().expect("TLS etcd");
        let ca = etcd.ca();
        let ca_only = ["--cacert".as_ref(), ca.as_os_str()];
        assert!(
            etcdctl_with(
                &etcd.endpoint(),
                &ca_only,
                &["get", "/services/", "--prefix"]
            )
            .is_err(),
            "a client without a certificate must be refused"
        );
        etcd
    }

    /// Settings for a client trusting this server's CA and presenting the
    /// client certificate.
    pub fn client_settings(&self) -> registry::Settings {
        registry::Settings {
            tls: Some(registry::Tls {
                ca: Some(self.ca()),
                cert: Some(self.client_cert()),
                key: Some(self.client_key()),
            }),
            ..registry::Settings::new([self.endpoint()])
        }
    }

    /// The CA, client certificate and key paths, as text (for flags and
    /// environment variables).
    pub fn client_files(&self) -> (String, String, String) {
        let text = |p: PathBuf| p.to_str().expect("UTF-8 temp path").to_string();
        (
            text(self.ca()),
            text(self.client_cert()),
            text(self.client_key()),
        )
    }

    /// Runs `etcdctl` against this server with the CA and the client
    /// certificate; its stdout, or an error with its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let (ca, cert, key) = (self.ca(), self.client_cert(), self.client_key());
        let flags = [
            "--cacert".as_ref(),
            ca.as_os_str(),
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ];
        etcdctl_with(&self.endpoint(), &flags, args)
    }
}

impl Drop for EtcdTls {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
