//! The whole flow on the real Docker engine: `cluster-setup up --demo`, then
//! records in etcd, guestutils inside the proxy, requests spread over the
//! ingestors, the same through the HAProxy load balancer whose configuration
//! the watcher renders (template mode), a scale-up seen by both, `/cleanup` repairing a
//! damaged registry, and `cluster-setup down` leaving nothing behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{eventually, free_port};

struct Stack {
    bin_dir: PathBuf,
    state: tempfile::TempDir,
    ports: Ports,
    up: bool,
}

#[derive(Clone, Copy)]
struct Ports {
    etcd: u16,
    peer: u16,
    manager: u16,
    deployer: u16,
    subscriber: u16,
}

impl Stack {
    fn cluster_setup(&self, args: &[&str]) -> Output {
        let p = self.ports;
        Command::new(self.bin_dir.join("cluster-setup"))
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(["--etcd-port", &p.etcd.to_string()])
            .args(["--etcd-peer-port", &p.peer.to_string()])
            .args(["--manager-port", &p.manager.to_string()])
            .args(["--deployer-port", &p.deployer.to_string()])
            .args(["--subscriber-port", &p.subscriber.to_string()])
            .arg("--bin-dir")
            .arg(&self.bin_dir)
            .current_dir(testkit::workspace_root())
            .output()
            .expect("cluster-setup runs")
    }

    fn etcd(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd)
    }

    /// etcdctl as one of the users `up` made (passwords from the state
    /// folder, through the environment), or anonymous.
    fn etcdctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.etcd()])
            .args(args);
        if let Some(user) = user {
            let file = self
                .state
                .path()
                .join("etcd-auth")
                .join(format!("{user}.password"));
            let password = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            cmd.env("ETCDCTL_USER", format!("{user}:{}", password.trim()));
        }
        cmd.output().expect("etcdctl runs")
    }

    fn manager(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.manager)
    }

    fn subscriber(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.subscriber)
    }

    fn deployer(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.deployer)
    }

    /// Every record under /services, key -> JSON.
    fn records(&self) -> Vec<(String, Value)> {
        let out = self.etcdctl(Some("mdo-guest"), &["get", "--prefix", "/services/"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .filter_map(|c| Some((c[0].to_string(), serde_json::from_str(c[1]).ok()?)))
            .collect()
    }

    fn records_of(&self, service: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|(_, v)| v["service"] == service)
            .map(|(_, v)| v)
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.up {
            let out = self.cluster_setup(&["down"]);
            eprintln!("down (cleanup): {}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

fn http_get(url: &str) -> Option<(u16, String)> {
    plain_http::request("GET", url, None)
}

mod plain_http {
    //! A tiny blocking GET/POST over std's TcpStream, so the test needs no
    //! extra HTTP stack.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn request(method: &str, url: &str, body: Option<(&str, &str)>) -> Option<(u16, String)> {
        request_with(method, url, body, "Accept: application/json\r\n")
    }

    /// The same with `headers` (each line ending in CRLF) instead of
    /// `Accept: application/json`.
    pub fn request_with(
        method: &str,
        url: &str,
        body: Option<(&str, &str)>,
        headers: &str,
    ) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (hostport, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let mut s = TcpStream::connect(hostport).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\n{headers}");
        if let Some((ctype, b)) = body {
            req.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
                b.len()
            ));
            req.push_str("\r\n");
            req.push_str(b);
        } else {
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }
}

/// Port name -> `host:port` endpoints, as the registry's records give them.
type Endpoints = std::collections::BTreeMap<String, BTreeSet<String>>;

/// The deployer's dashboard page, as a browser loads it (with the token the
/// stack was started with, if any: `MDO_AUTH_TOKEN`, which `up` reads too).
fn dashboard_page(deployer: &str) -> Option<(u16, String)> {
    let auth = std::env::var("MDO_AUTH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    plain_http::request_with(
        "GET",
        &format!("{deployer}/"),
        None,
        &format!("Accept: text/html\r\n{auth}"),
    )
}

fn endpoints_of(records: &[Value]) -> Endpoints {
    let mut out = Endpoints::new();
    for r in records {
        let host = r["host"].as_str().unwrap_or_default();
        for (name, port) in r["ports"].as_object().into_iter().flatten() {
            out.entry(name.clone())
                .or_default()
                .insert(format!("{host}:{}", port["external"]));
        }
    }
    out
}

/// The endpoints the dashboard's row of `app` shows as registered (`None`
/// when the row is missing or shows an address known only from Marathon).
fn dashboard_endpoints(html: &str, app: &str) -> Option<Endpoints> {
    let row = html
        .split("<tr class=\"svc ")
        .skip(1)
        .find(|r| r.contains(&format!("data-app=\"{app}\"")))?;
    let row = row.split("</tr>").next()?;
    let cell = row.split_once("<td class=\"endpoints\">")?.1;
    if cell.contains("unregistered") {
        return None;
    }
    let mut out = Endpoints::new();
    for port in cell.split("<div><b>").skip(1) {
        let (name, rest) = port.split_once("</b>")?;
        let addrs = rest
            .split("<span class=\"ep\">")
            .skip(1)
            .filter_map(|a| a.split_once("</span>").map(|x| x.0.to_string()));
        out.entry(name.to_string()).or_default().extend(addrs);
    }
    Some(out)
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

fn docker_ok() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .status
        .success()
}

/// Container ids of running containers carrying `label=value`.
fn containers_with_label(label: &str) -> Vec<String> {
    let out = docker(&["ps", "-q", "--filter", &format!("label={label}")]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Running containers of the demo's apps (app id under `/demo/`), as
/// `id app-id` lines.
fn demo_containers() -> Vec<String> {
    let out = docker(&[
        "ps",
        "--filter",
        "label=mdo.app-id",
        "--format",
        "{{.ID}} {{.Label \"mdo.app-id\"}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(1)
                .is_some_and(|app| app.starts_with("/demo/"))
        })
        .map(String::from)
        .collect()
}

/// On a panic, prints the last lines of every demo container's log and of
/// the stack's component logs, so a failure says what the watchers saw.
struct LogsOnPanic {
    state: PathBuf,
}

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for line in demo_containers() {
            let Some((id, app)) = line.split_once(' ') else {
                continue;
            };
            let out = docker(&["logs", "--tail", "80", id]);
            eprintln!(
                "--- docker logs {id} ({app}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for c in ["manager", "subscriber", "deployer"] {
            let log = self.state.join("logs").join(format!("{c}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {} (last lines):", log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn proxy_container() -> Option<String> {
    containers_with_label("mdo.app-id=/demo/proxy")
        .into_iter()
        .next()
}

/// The ingestors' answers (their container names) to `requests` GETs through
/// the proxy or the load balancer at `proxy`, one connection per request.
fn names_through_proxy(proxy: &str, requests: usize) -> BTreeSet<String> {
    (0..requests)
        .filter_map(|_| http_get(&format!("http://{proxy}/")))
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body.trim().to_string())
        .collect()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cluster-setup"))
        .parent()
        .expect("binary has a folder")
        .to_path_buf()
}

#[test]
fn up_demo_discovery_scaling_cleanup_and_down() {
    if !docker_ok() {
        assert!(
            !testkit::in_ci(),
            "CI=true but the Docker engine does not answer"
        );
        eprintln!("skipping: no Docker engine (this test fails instead under CI=true)");
        return;
    }
    for b in ["manager", "subscriber", "deployer", "watcher"] {
        assert!(
            bin_dir().join(b).is_file(),
            "{b} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)"
        );
    }
    let ports = Ports {
        etcd: free_port().unwrap(),
        peer: free_port().unwrap(),
        manager: free_port().unwrap(),
        deployer: free_port().unwrap(),
        subscriber: free_port().unwrap(),
    };
    let mut stack = Stack {
        bin_dir: bin_dir(),
        state: tempfile::Builder::new()
            .prefix("mdo-e2e-")
            .tempdir()
            .unwrap(),
        ports,
        up: true,
    };
    // Dropped before `stack` (whose drop takes the stack down): on a
    // failure, the demo's container logs and the stack's own logs are shown.
    let _diagnostics = LogsOnPanic {
        state: stack.state.path().to_path_buf(),
    };

    // 1. One command to a running stack with the demo deployed.
    let started = Instant::now();
    let up = stack.cluster_setup(&["up", "--demo"]);
    let took = started.elapsed();
    assert!(
        up.status.success(),
        "up --demo failed: {}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!("cluster-setup up --demo took {:.1} s", took.as_secs_f64());

    // Running it again starts nothing twice.
    let again = stack.cluster_setup(&["up"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again_out = String::from_utf8_lossy(&again.stdout);
    for c in ["etcd", "manager", "subscriber", "deployer"] {
        assert!(
            again_out
                .lines()
                .any(|l| l.starts_with(c) && l.contains("already running")),
            "second up restarted {c}: {again_out}"
        );
    }

    // `status` reports every component healthy.
    let status = stack.cluster_setup(&["status"]);
    let status_out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status: {status_out}");
    for c in ["etcd", "manager", "subscriber", "deployer"] {
        assert!(
            status_out
                .lines()
                .any(|l| l.starts_with(c) && l.contains("healthy")),
            "{c} not healthy in: {status_out}"
        );
    }

    // 2. A record for every ingestor and the proxy.
    let ingestors = eventually("3 ingestor records", Duration::from_secs(120), || {
        let r = stack.records_of("ingestor");
        (r.len() == 3).then_some(r)
    });
    let proxy_rec = eventually("the proxy record", Duration::from_secs(120), || {
        stack.records_of("proxy").into_iter().next()
    });
    let ingestor_names: BTreeSet<String> = ingestors
        .iter()
        .map(|r| r["container"].as_str().unwrap().to_string())
        .collect();
    let proxy_port = proxy_rec["ports"]["http"]["external"]
        .as_u64()
        .expect("named port http");
    let proxy = format!("127.0.0.1:{proxy_port}");

    // etcd authentication is on by default: anonymous requests are refused,
    // the guest user (handed to tasks) reads the registry and writes nothing.
    let anon = stack.etcdctl(None, &["put", "/services/forged", "x"]);
    assert!(!anon.status.success(), "anonymous put accepted");
    let anon = stack.etcdctl(None, &["get", "--prefix", "/services/"]);
    assert!(!anon.status.success(), "anonymous read accepted");
    for key in [
        "/services/ingestor/demo/containers/forged",
        "/mdo/manager/apps/x",
        "/other",
    ] {
        let put = stack.etcdctl(Some("mdo-guest"), &["put", key, "x"]);
        assert!(!put.status.success(), "guest wrote {key}");
        assert!(
            String::from_utf8_lossy(&put.stderr).contains("permission denied"),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
    }

    // 3. guestutils inside the proxy container lists every ingestor.
    let pc = proxy_container().expect("proxy container running");
    let listed = eventually(
        "guestutils in the proxy lists 3 ingestors",
        Duration::from_secs(30),
        || {
            let out = docker(&[
            "exec",
            &pc,
            "python3",
            "-c",
            "import guestutils, json; print(json.dumps(guestutils.get_node_list('ingestor', ports=['api'])))",
        ]);
            let nodes: Vec<String> = serde_json::from_slice(&out.stdout).ok()?;
            (nodes.len() == 3).then_some(nodes)
        },
    );
    for r in &ingestors {
        let expect = format!(
            "{}:{}",
            r["host"].as_str().unwrap(),
            r["ports"]["api"]["external"]
        );
        assert!(listed.contains(&expect), "{expect} missing from {listed:?}");
    }

    // 4. Requests through the proxy reach every ingestor.
    let last_seen = std::cell::RefCell::new(None);
    let seen = eventually(
        "the proxy reaches all 3 ingestors",
        Duration::from_secs(60),
        || {
            let seen = names_through_proxy(&proxy, 12);
            if seen == ingestor_names {
                return Some(seen);
            }
            // Each new partial answer once, with the proxy's upstream list,
            // so a timeout says which ingestor was missing and why.
            if last_seen.borrow().as_ref() != Some(&seen) {
                let upstreams = http_get(&format!("http://{proxy}/upstreams"));
                eprintln!(
                    "through the proxy so far: {seen:?} of {ingestor_names:?}; its upstreams: {upstreams:?}"
                );
                *last_seen.borrow_mut() = Some(seen);
            }
            None
        },
    );
    assert_eq!(seen, ingestor_names);

    // 4b. The same through HAProxy, whose configuration the lb's watcher
    // renders from the ingestors' records.
    let lb_rec = eventually("the lb record", Duration::from_secs(120), || {
        stack.records_of("lb").into_iter().next()
    });
    let lb = format!(
        "127.0.0.1:{}",
        lb_rec["ports"]["http"]["external"]
            .as_u64()
            .expect("named port http")
    );
    eventually(
        "HAProxy reaches all 3 ingestors",
        Duration::from_secs(60),
        || (names_through_proxy(&lb, 12) == ingestor_names).then_some(()),
    );

    // 4c. The dashboard lists every demo service with the endpoints its
    // registry records give (host:external per named port), none of them
    // only from Marathon.
    eventually(
        "the dashboard shows the registry's endpoints of every demo service",
        Duration::from_secs(60),
        || {
            let (status, html) = dashboard_page(&stack.deployer())?;
            assert_ne!(status, 401, "the dashboard refused the demo's token");
            if status != 200 {
                return None;
            }
            ["ingestor", "proxy", "lb"]
                .iter()
                .all(|service| {
                    let wanted = endpoints_of(&stack.records_of(service));
                    let shown = dashboard_endpoints(&html, &format!("/demo/{service}"));
                    !wanted.is_empty() && shown == Some(wanted)
                })
                .then_some(())
        },
    );

    // 5. Scale up: the proxy's watcher fires and the new instance gets requests.
    let (status, body) = plain_http::request(
        "PUT",
        &format!("{}/v2/apps/demo/ingestor", stack.manager()),
        Some(("application/json", r#"{"instances": 4}"#)),
    )
    .expect("manager answers");
    assert_eq!(status, 200, "scale: {body}");
    let four = eventually("4 ingestor records", Duration::from_secs(120), || {
        let r = stack.records_of("ingestor");
        (r.len() == 4).then_some(r)
    });
    // From the moment the registry has the new instance, HAProxy sends it
    // requests within 5 s (render, atomic write, graceful reload).
    let new_name = four
        .iter()
        .map(|r| r["container"].as_str().unwrap().to_string())
        .find(|n| !ingestor_names.contains(n))
        .expect("a new ingestor");
    eventually(
        "HAProxy reaches the new ingestor within 5 s of its record",
        Duration::from_secs(5),
        || {
            names_through_proxy(&lb, 16)
                .contains(&new_name)
                .then_some(())
        },
    );
    eventually(
        "the watcher in the proxy fired with delta +1",
        Duration::from_secs(60),
        || {
            let out = docker(&["exec", &pc, "cat", "/tmp/watch.log"]);
            let log = String::from_utf8_lossy(&out.stdout).to_string();
            log.lines()
                .any(|l| l.contains("ingestor delta=+1") && l.ends_with("upstreams=4"))
                .then_some(())
        },
    );
    eventually(
        "the new ingestor receives requests",
        Duration::from_secs(30),
        || {
            names_through_proxy(&proxy, 12)
                .contains(&new_name)
                .then_some(())
        },
    );

    // 6. Damage etcd by hand; /cleanup repairs it and says so.
    let victim = stack
        .records()
        .into_iter()
        .find(|(_, v)| v["container"] == new_name.as_str())
        .expect("record of the new ingestor");
    let del = stack.etcdctl(Some("mdo-subscriber"), &["del", &victim.0]);
    assert!(del.status.success());
    let ghost_key = "/services/ingestor/demo/containers/ghost-instance";
    let mut ghost = victim.1.clone();
    ghost["container"] = "ghost-instance".into();
    let put = stack.etcdctl(
        Some("mdo-subscriber"),
        &["put", ghost_key, &ghost.to_string()],
    );
    assert!(put.status.success());
    let (status, body) = plain_http::request(
        "POST",
        &format!("{}/cleanup", stack.subscriber()),
        Some(("application/json", "")),
    )
    .expect("subscriber answers");
    assert_eq!(status, 200, "cleanup: {body}");
    let summary: Value = serde_json::from_str(&body).expect("JSON summary");
    assert_eq!(summary["added"], 1, "{summary}");
    assert_eq!(summary["removed"], 1, "{summary}");
    let keys: Vec<String> = stack.records().into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&victim.0), "deleted record restored");
    assert!(
        !keys.iter().any(|k| k == ghost_key),
        "invented record removed"
    );

    // 7. down leaves no managed container and no component process.
    let pids: Vec<i32> = ["etcd", "manager", "subscriber", "deployer"]
        .iter()
        .map(|c| {
            std::fs::read_to_string(stack.state.path().join("run").join(format!("{c}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    let down = stack.cluster_setup(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    stack.up = false;
    // Other tests share the engine and run managed containers of their own;
    // only the demo's (app ids under /demo/) belong to this stack.
    let left = demo_containers();
    assert!(left.is_empty(), "demo containers left after down: {left:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "pid {pid} still running"
        );
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(true)
}
