//! TLS with a CA and a client certificate, against a real etcd started with
//! `--client-cert-auth` on free ports (certificates made by `openssl`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use registry::{Registry, Settings};
use testkit::{free_port, ChildGuard};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, server.{pem,key}, client.{pem,key} in `dir`.
fn make_certs(dir: &Path) {
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
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
    }
}

#[tokio::test]
async fn tls_with_ca_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let (client_port, peer_port) = (free_port().unwrap(), free_port().unwrap());
    let endpoint = format!("https://127.0.0.1:{client_port}");
    let log = std::fs::File::create(d.join("etcd.log")).unwrap();
    let _etcd = ChildGuard::new(
        Command::new(testkit::etcd::etcd_binary().unwrap())
            .args(["--name", "tls", "--data-dir"])
            .arg(d.join("data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("tls=http://127.0.0.1:{peer_port}"),
            ])
            .arg("--cert-file")
            .arg(d.join("server.pem"))
            .arg("--key-file")
            .arg(d.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(d.join("ca.pem"))
            .arg("--client-cert-auth")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // Endpoint given without a scheme: TLS settings make it https.
    let mut settings = Settings::from_parts(
        Some(&format!("127.0.0.1:{client_port}")),
        None,
        None,
        None,
        Some(d.join("ca.pem")),
        Some(d.join("client.pem")),
        Some(d.join("client.key")),
    )
    .unwrap();
    settings.request_timeout = Duration::from_secs(2);
    assert_eq!(settings.endpoints, vec![endpoint.clone()]);

    let reg = Registry::connect(&settings).await.unwrap();
    let name = registry::InstanceName::new("web", "default", "t1").unwrap();
    let instance = registry::Instance {
        schema: 1,
        service: "web".into(),
        group: "default".into(),
        labels: vec![],
        container: "t1".into(),
        app_id: "/web".into(),
        app_version: String::new(),
        node: "n".into(),
        host: "10.0.0.1".into(),
        internal_address: None,
        ports: Default::default(),
        state: "TASK_RUNNING".into(),
        healthy: None,
        started_at: String::new(),
        owner: "default".into(),
    };
    testkit::eventually_async("etcd answers over TLS", Duration::from_secs(20), || {
        let reg = reg.clone();
        let i = instance.clone();
        async move { reg.put(&i).await.ok() }
    })
    .await;
    assert_eq!(reg.get(&name).await.unwrap().unwrap().instance, instance);
    assert_eq!(reg.list_all().await.unwrap().entries.len(), 1);

    // Trusting the CA but without a client certificate: refused.
    let mut no_cert = settings.clone();
    no_cert.tls = Some(registry::Tls {
        ca: Some(d.join("ca.pem")),
        cert: None,
        key: None,
    });
    let refused = match Registry::connect(&no_cert).await {
        Ok(r) => r.list_all().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate must be refused");

    // A missing TLS file is a clear error.
    let mut missing = settings.clone();
    missing.tls.as_mut().unwrap().ca = Some(d.join("nope.pem"));
    assert!(matches!(
        Registry::connect(&missing).await,
        Err(registry::Error::TlsFile { .. })
    ));
}
