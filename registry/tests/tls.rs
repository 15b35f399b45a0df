//! TLS with a CA and a client certificate, against a real etcd started with
//! `--client-cert-auth` on free ports (certificates made by `openssl`).

use std::time::Duration;

use registry::{Registry, Settings};
use testkit::EtcdTls;

#[tokio::test]
async fn tls_with_ca_and_client_certificate() {
    let etcd = EtcdTls::start().unwrap();
    let d = etcd.dir();
    let client_port = etcd.client_port();
    let endpoint = etcd.endpoint();

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
