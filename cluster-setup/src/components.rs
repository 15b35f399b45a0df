//! The stack's components and the `up` / `status` / `down` subcommands.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::cli::{CommonArgs, UpArgs};
use crate::etcd_auth::{self, Credentials};
use crate::images::{self, DockerInfo};
use crate::procs::Managed;
use crate::{install, Result, SetupError};

/// One component: how to start it and how to tell it is healthy.
struct Component {
    managed: Managed,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    health_url: String,
    /// Where users reach it.
    url: String,
}

/// Addresses derived from the flags and from Docker.
struct Layout {
    state_dir: PathBuf,
    etcd_local: String,
    /// etcd as containers reach it (the Docker bridge gateway), when Docker answers.
    etcd_for_containers: String,
    /// The address other containers use to reach published ports.
    advertise: String,
    manager_url: String,
    deployer_url: String,
    subscriber_url: String,
}

fn layout(args: &CommonArgs, docker: Option<&DockerInfo>) -> anyhow::Result<Layout> {
    let state_dir = crate::absolute(&args.state_dir)?;
    let etcd_local = format!("http://127.0.0.1:{}", args.etcd_port);
    let (etcd_for_containers, advertise) = match docker.and_then(|d| d.bridge_gateway.clone()) {
        Some(gw) => (format!("http://{gw}:{}", args.etcd_port), gw),
        None => (etcd_local.clone(), "127.0.0.1".to_string()),
    };
    Ok(Layout {
        state_dir,
        etcd_local,
        etcd_for_containers,
        advertise,
        manager_url: format!("http://127.0.0.1:{}", args.manager_port),
        deployer_url: format!("http://127.0.0.1:{}", args.deployer_port),
        subscriber_url: format!("http://127.0.0.1:{}", args.subscriber_port),
    })
}

fn components(
    args: &CommonArgs,
    l: &Layout,
    bins: &Path,
    docker_mode: &str,
    etcd_bin: &Path,
    docker: Option<&DockerInfo>,
    etcd_creds: Option<&Credentials>,
) -> Vec<Component> {
    let mut etcd_listen = format!("http://127.0.0.1:{}", args.etcd_port);
    if let Some(gw) = docker.and_then(|d| d.bridge_gateway.as_ref()) {
        // Containers on the default bridge reach etcd through the gateway;
        // etcd listens there and on loopback only, never on every interface.
        etcd_listen.push_str(&format!(",http://{gw}:{}", args.etcd_port));
    }
    let peer = format!("http://127.0.0.1:{}", args.etcd_peer_port);
    let mut auth_env = Vec::new();
    if let Some(token) = &args.auth_token {
        auth_env.push(("MDO_AUTH_TOKEN".to_string(), token.clone()));
        auth_env.push(("MARATHON_TOKEN".to_string(), token.clone()));
    }
    // Each part's own etcd user (through the environment: never on a
    // command line), and the read-only one the manager hands to tasks.
    let etcd_env = |user: &str| -> Vec<(String, String)> {
        etcd_creds
            .map(|c| {
                vec![
                    ("ETCD_USER".to_string(), user.to_string()),
                    ("ETCD_PASSWORD".to_string(), c.password(user).to_string()),
                ]
            })
            .unwrap_or_default()
    };
    let mut manager_env = auth_env.clone();
    manager_env.extend(etcd_env(etcd_auth::MANAGER));
    if let Some(c) = etcd_creds {
        manager_env.push((
            "MANAGER_CONTAINER_ETCD_USER".into(),
            etcd_auth::GUEST.into(),
        ));
        manager_env.push((
            "MANAGER_CONTAINER_ETCD_PASSWORD".into(),
            c.password(etcd_auth::GUEST).into(),
        ));
    }
    let mut subscriber_env = auth_env.clone();
    subscriber_env.extend(etcd_env(etcd_auth::SUBSCRIBER));
    // The dashboard only reads the registry: the read-only user is enough.
    let mut deployer_env = auth_env.clone();
    deployer_env.extend(etcd_env(etcd_auth::GUEST));
    let s = |v: &str| v.to_string();
    vec![
        Component {
            managed: Managed::new(&l.state_dir, "etcd", "etcd"),
            binary: etcd_bin.to_path_buf(),
            args: vec![
                s("--name"),
                s("mdo"),
                s("--data-dir"),
                l.state_dir.join("etcd").display().to_string(),
                s("--listen-client-urls"),
                etcd_listen,
                s("--advertise-client-urls"),
                l.etcd_local.clone(),
                s("--listen-peer-urls"),
                peer.clone(),
                s("--initial-advertise-peer-urls"),
                peer.clone(),
                s("--initial-cluster"),
                format!("mdo={peer}"),
                // With authentication on, the components' etcd client
                // authenticates once per connection and does not renew its
                // token; etcd drops a simple token after this many idle
                // seconds (default 300), which would lock out a manager
                // that had nothing to write for five minutes.
                s("--auth-token-ttl"),
                s("315360000"),
            ],
            env: vec![],
            health_url: format!("{}/health", l.etcd_local),
            url: l.etcd_local.clone(),
        },
        Component {
            managed: Managed::new(&l.state_dir, "manager", "manager"),
            binary: bins.join("manager"),
            args: vec![
                s("--listen"),
                format!("127.0.0.1:{}", args.manager_port),
                s("--etcd-endpoints"),
                l.etcd_local.clone(),
                s("--container-etcd-endpoints"),
                l.etcd_for_containers.clone(),
                s("--advertise-address"),
                l.advertise.clone(),
                s("--data-dir"),
                l.state_dir.join("manager").display().to_string(),
                s("--docker"),
                docker_mode.to_string(),
                // The state folder holds etcd's data and the etcd passwords:
                // no app mounts it without --allow-host-access.
                s("--protected-host-paths"),
                l.state_dir.display().to_string(),
            ],
            env: manager_env,
            health_url: format!("{}/ping", l.manager_url),
            url: l.manager_url.clone(),
        },
        Component {
            managed: Managed::new(&l.state_dir, "subscriber", "subscriber"),
            binary: bins.join("subscriber"),
            args: vec![
                s("--listen"),
                format!("127.0.0.1:{}", args.subscriber_port),
                s("--marathon-url"),
                l.manager_url.clone(),
                s("--etcd-endpoints"),
                l.etcd_local.clone(),
                s("--dashboard-url"),
                format!("{}/", l.deployer_url),
            ],
            env: subscriber_env,
            health_url: format!("{}/health", l.subscriber_url),
            url: l.subscriber_url.clone(),
        },
        Component {
            managed: Managed::new(&l.state_dir, "deployer", "deployer"),
            binary: bins.join("deployer"),
            args: vec![
                s("serve"),
                s("--listen"),
                format!("127.0.0.1:{}", args.deployer_port),
                s("--marathon-url"),
                l.manager_url.clone(),
                s("--etcd-endpoints"),
                l.etcd_local.clone(),
                s("--container-etcd-endpoints"),
                l.etcd_for_containers.clone(),
                s("--registry-view-url"),
                format!("{}/info", l.subscriber_url),
            ],
            env: deployer_env,
            health_url: format!("{}/health", l.deployer_url),
            url: l.deployer_url.clone(),
        },
    ]
}

fn http_client(args: &CommonArgs) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &args.auth_token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow!("the auth token has characters not allowed in a header"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(5))
        // Servers close idle keep-alive connections after a few seconds; a
        // pooled connection must never outlive that (the demo posts after
        // minutes of image building).
        .pool_idle_timeout(Duration::from_secs(1))
        .build()?)
}

async fn healthy(client: &reqwest::Client, url: &str) -> std::result::Result<(), String> {
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(format!("{status}: {}", body.trim()))
        }
        Err(e) => Err(if e.is_connect() {
            "not answering".into()
        } else {
            e.to_string()
        }),
    }
}

fn check_port_free(port: u16, what: &str) -> Result<()> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Err(SetupError::Usage(format!(
            "port {port} for {what} is taken by another program; pick another with its --*-port flag"
        )));
    }
    Ok(())
}

/// `cluster-setup up`.
pub async fn up(args: &UpArgs) -> Result<()> {
    let common = &args.common;
    let started_at = Instant::now();
    // Everything missing from the system in one apt-get: etcd, and what the
    // build (protoc, Python headers) and the demo (debootstrap, venv) need.
    let mut needs = vec![
        install::Need::Program("etcd", "etcd-server"),
        install::Need::Program("etcdctl", "etcd-client"),
    ];
    if common.bin_dir.is_none() {
        needs.extend(install::STACK_NEEDS);
    }
    if args.demo {
        needs.extend(install::DEMO_NEEDS);
    }
    install::ensure(&needs, !args.no_install)?;
    let etcd_bin = install::which("etcd").ok_or_else(|| anyhow!("etcd not found on PATH"))?;
    let docker = match args.docker.as_str() {
        "off" => None,
        mode => match images::docker_info() {
            Some(info) => Some(info),
            None if mode == "on" => {
                return Err(anyhow!("--docker on, but the Docker engine does not answer").into())
            }
            None => {
                eprintln!("Docker does not answer: the manager will run command tasks only");
                None
            }
        },
    };
    if args.demo && docker.is_none() {
        return Err(anyhow!("--demo needs the Docker engine, which does not answer").into());
    }
    let l = layout(common, docker.as_ref())?;
    std::fs::create_dir_all(&l.state_dir)
        .with_context(|| format!("creating {}", l.state_dir.display()))?;
    let bins = install::binaries(common.bin_dir.as_deref(), common.release, !args.no_install)?;
    let docker_mode = if docker.is_some() { "on" } else { "off" };
    let client = http_client(common)?;
    // Authentication, once on in this state folder, stays on.
    let etcd_creds = match Credentials::load(&l.state_dir)? {
        Some(c) => {
            if args.no_etcd_auth {
                println!(
                    "etcd authentication was turned on in {} and stays on (remove that folder to start without it)",
                    l.state_dir.display()
                );
            }
            Some(c)
        }
        None if args.no_etcd_auth => None,
        None => Some(Credentials::load_or_create(&l.state_dir)?),
    };
    let etcdctl = install::which("etcdctl");
    let ports = [
        ("etcd", common.etcd_port),
        ("manager", common.manager_port),
        ("subscriber", common.subscriber_port),
        ("deployer", common.deployer_port),
    ];
    for c in components(
        common,
        &l,
        &bins,
        docker_mode,
        &etcd_bin,
        docker.as_ref(),
        etcd_creds.as_ref(),
    ) {
        let pid = if let Some(pid) = c.managed.running_pid() {
            println!("{:<10} already running (pid {pid})", c.managed.name);
            pid
        } else {
            let port = ports
                .iter()
                .find(|(n, _)| *n == c.managed.name)
                .map(|(_, p)| *p);
            if let Some(port) = port {
                check_port_free(port, &c.managed.name)?;
            }
            let pid = c.managed.spawn(&c.binary, &c.args, &c.env)?;
            println!(
                "{:<10} started (pid {pid}), log {}",
                c.managed.name,
                c.managed.log_file.display()
            );
            pid
        };
        wait_healthy(&client, &c, pid, Duration::from_secs(common.wait_secs)).await?;
        if c.managed.name == "etcd" {
            if let Some(creds) = &etcd_creds {
                let etcdctl = etcdctl.as_deref().ok_or_else(|| {
                    anyhow!("etcdctl not found on PATH (Debian package etcd-client)")
                })?;
                match etcd_auth::ensure(etcdctl, &l.etcd_local, creds)? {
                    etcd_auth::Outcome::Enabled => println!(
                        "etcd       authentication on: users {}, {}, {} (passwords in {}, mode 0600)",
                        etcd_auth::MANAGER,
                        etcd_auth::SUBSCRIBER,
                        etcd_auth::GUEST,
                        creds.dir.display()
                    ),
                    etcd_auth::Outcome::AlreadyOn => {}
                }
            }
        }
    }
    println!();
    println!("mdo is up ({:.1} s):", started_at.elapsed().as_secs_f64());
    println!("  etcd        {}", l.etcd_local);
    println!(
        "  manager     {}   (Marathon API: /v2/apps, /v2/tasks, /v2/events)",
        l.manager_url
    );
    println!(
        "  subscriber  {}   (/info, /cleanup, /health)",
        l.subscriber_url
    );
    println!(
        "  deployer    {}   (POST /deploy, dashboard at /)",
        l.deployer_url
    );
    println!("  state       {}", l.state_dir.display());
    match &etcd_creds {
        Some(c) => println!(
            "  registry    {}",
            etcd_auth::read_hint(&l.etcd_local, c)
        ),
        None => println!("  registry    etcdctl --endpoints {} get --prefix /services/   (etcd authentication off)", l.etcd_local),
    }
    if args.demo {
        demo(args, &l, &client).await?;
        println!(
            "demo deployed ({:.1} s in all)",
            started_at.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn wait_healthy(
    client: &reqwest::Client,
    c: &Component,
    pid: i32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !crate::procs::is_alive(pid) {
            return Err(anyhow!(
                "{} (pid {pid}) exited during start-up; see {}",
                c.managed.name,
                c.managed.log_file.display()
            )
            .into());
        }
        match healthy(client, &c.health_url).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!(
        "{} not healthy after {timeout:?} ({last}); see {}",
        c.managed.name,
        c.managed.log_file.display()
    )
    .into())
}

async fn demo(args: &UpArgs, l: &Layout, client: &reqwest::Client) -> Result<()> {
    let image_args = crate::cli::ImageArgs {
        base_tag: images::BASE_TAG.into(),
        example_tag: images::EXAMPLE_TAG.into(),
        mirror: None,
        force: false,
        state_dir: l.state_dir.clone(),
        bin_dir: args.common.bin_dir.clone(),
    };
    let allow_install = !args.no_install;
    images::base_image(&image_args, allow_install)?;
    images::example_image(&image_args, allow_install)?;
    let root =
        crate::workspace_root().ok_or_else(|| anyhow!("--demo runs from the mdo checkout"))?;
    let doc_path = root.join("example-image").join("deploy.yml");
    let doc = std::fs::read_to_string(&doc_path)
        .with_context(|| format!("reading {}", doc_path.display()))?;
    let resp = client
        .post(format!("{}/deploy?wait=true", l.deployer_url))
        .timeout(Duration::from_secs(180))
        .header("Content-Type", "application/yaml")
        .body(doc)
        .send()
        .await
        .context("posting the demo to the deployer")?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(anyhow!("the deployer refused the demo ({status}): {body}").into());
    }
    println!("demo: {body}");
    println!(
        "the proxy's address: curl -s {}/info -H 'Accept: application/json'",
        l.subscriber_url
    );
    Ok(())
}

/// `cluster-setup status`: exit 0 when every component is running and healthy.
pub async fn status(args: &CommonArgs) -> Result<()> {
    let l = layout(args, None)?;
    let client = http_client(args)?;
    let bins = PathBuf::new();
    let mut all_ok = true;
    let creds = Credentials::load(&l.state_dir)?;
    for c in components(args, &l, &bins, "off", Path::new("etcd"), None, None) {
        let line = match c.managed.running_pid() {
            None => {
                all_ok = false;
                "not running".to_string()
            }
            Some(pid) => match healthy(&client, &c.health_url).await {
                Ok(()) => format!("healthy   pid {pid}  {}", c.url),
                Err(e) => {
                    all_ok = false;
                    format!("UNHEALTHY pid {pid}  {} ({e})", c.url)
                }
            },
        };
        println!("{:<10} {line}", c.managed.name);
    }
    match &creds {
        Some(c) => {
            println!(
                "etcd auth  on: {} (read/write {}), {} (read/write {}), {} (read {}, handed to tasks); passwords in {} (mode 0600)",
                etcd_auth::MANAGER,
                etcd_auth::MANAGER_PREFIX,
                etcd_auth::SUBSCRIBER,
                etcd_auth::REGISTRY_PREFIX,
                etcd_auth::GUEST,
                etcd_auth::REGISTRY_PREFIX,
                c.dir.display()
            );
            println!(
                "read the registry: {}",
                etcd_auth::read_hint(&l.etcd_local, c)
            );
        }
        None => println!(
            "etcd auth  off; read the registry: etcdctl --endpoints {} get --prefix /services/",
            l.etcd_local
        ),
    }
    if all_ok {
        Ok(())
    } else {
        Err(anyhow!("some components are not running or not healthy").into())
    }
}

/// `cluster-setup down`: apps first (through the manager, so their
/// containers and processes stop), then the processes by pid file, in reverse
/// start order.
pub async fn down(args: &CommonArgs) -> Result<()> {
    let l = layout(args, None)?;
    let client = http_client(args)?;
    let bins = PathBuf::new();
    let comps = components(args, &l, &bins, "off", Path::new("etcd"), None, None);
    if comps[1].managed.running_pid().is_some() {
        if let Err(e) = remove_all_apps(&client, &l.manager_url).await {
            eprintln!("warning: could not stop the apps through the manager: {e:#}");
        }
    }
    for c in comps.iter().rev() {
        if c.managed.stop(Duration::from_secs(15)) {
            println!("{:<10} stopped", c.managed.name);
        } else {
            println!("{:<10} was not running", c.managed.name);
        }
    }
    Ok(())
}

async fn remove_all_apps(client: &reqwest::Client, manager: &str) -> anyhow::Result<()> {
    let apps: serde_json::Value = client
        .get(format!("{manager}/v2/apps"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ids: Vec<String> = apps["apps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|app| app["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for id in &ids {
        client
            .delete(format!("{manager}/v2/apps{id}?force=true"))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("deleting {id}"))?;
        println!("app {id} removed");
    }
    // Wait until the manager reports no task left, so no container outlives `down`.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let tasks: serde_json::Value = client
            .get(format!("{manager}/v2/tasks"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let left = tasks["tasks"].as_array().map(|t| t.len()).unwrap_or(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} tasks still running after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
