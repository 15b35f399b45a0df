//! A small Marathon API stub for the subscriber's tests and the subscriber
//! benchmark's load generator: serves `/v2/apps?embed=apps.tasks`,
//! `/v2/apps/{id}`, `/v2/events` (SSE) and `/v2/eventSubscriptions` (with
//! delivery by POST), and lets the test start and kill tasks (emitting the
//! matching events), hold a `/v2/apps` answer (to stage races) and go down.
//! Plain tokio (no framework).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Notify};

#[derive(Default)]
struct State {
    /// app id -> app JSON (without tasks)
    apps: BTreeMap<String, Value>,
    /// app id -> task id -> task JSON
    tasks: BTreeMap<String, BTreeMap<String, Value>>,
    callbacks: Vec<String>,
}

pub struct Stub {
    pub url: String,
    state: Mutex<State>,
    events: broadcast::Sender<String>,
    down: AtomicBool,
    hold: Mutex<Option<Arc<Notify>>>,
    /// Signalled when a held `/v2/apps` answer has taken its snapshot.
    pub held_snapshot_taken: Notify,
    pub apps_requests: AtomicU64,
    seq: AtomicU64,
    http: reqwest::Client,
    callback_tx: tokio::sync::mpsc::UnboundedSender<String>,
}

pub const VERSION: &str = "2026-11-22T10:00:00.000Z";

fn now() -> String {
    chrono_like_now()
}

fn chrono_like_now() -> String {
    // Milliseconds precision, UTC, Marathon's format.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let ms = d.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The app both shapes below start from: one instance of `sleep 1000` on
/// the network `mode`.
fn sleeping_app(id: &str, mode: &str) -> Value {
    json!({
        "id": id,
        "version": VERSION,
        "instances": 1,
        "cmd": "sleep 1000",
        "labels": {},
        "networks": [{"mode": mode}],
    })
}

/// A bridge-networked app with named port mappings.
pub fn bridge_app(id: &str, ports: &[(&str, u32)]) -> Value {
    let mut app = sleeping_app(id, "container/bridge");
    app["container"] = json!({"type": "DOCKER", "docker": {"image": "busybox"},
        "portMappings": ports.iter().map(|(n, cp)| json!({"containerPort": cp, "hostPort": 0, "servicePort": 0, "protocol": "tcp", "name": n})).collect::<Vec<_>>()});
    app
}

/// A host-networked command app with named port definitions.
pub fn host_app(id: &str, port_names: &[&str]) -> Value {
    let mut app = sleeping_app(id, "host");
    app["portDefinitions"] = port_names
        .iter()
        .map(|n| json!({"port": 0, "protocol": "tcp", "name": n}))
        .collect();
    app
}

impl Stub {
    pub async fn start() -> Arc<Stub> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (events, _) = broadcast::channel(100_000);
        let (callback_tx, mut callback_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stub = Arc::new(Stub {
            url,
            state: Mutex::new(State::default()),
            events,
            down: AtomicBool::new(false),
            hold: Mutex::new(None),
            held_snapshot_taken: Notify::new(),
            apps_requests: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            http: reqwest::Client::new(),
            callback_tx,
        });
        let s = stub.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                // As Marathon's HTTP server (Akka) does: without it, Nagle
                // holds each small SSE event until the previous one is
                // ACKed, and delayed ACKs turn that into stalls of tens of
                // milliseconds on the event stream.
                let _ = conn.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(conn).await;
                });
            }
        });
        // Callback delivery, in order.
        let s = stub.clone();
        tokio::spawn(async move {
            while let Some(body) = callback_rx.recv().await {
                let urls = s.state.lock().unwrap().callbacks.clone();
                for u in urls {
                    let _ = s
                        .http
                        .post(&u)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                }
            }
        });
        stub
    }

    pub fn add_app(&self, app: Value) {
        let id = app["id"].as_str().expect("app id").to_string();
        let mut g = self.state.lock().unwrap();
        g.apps.insert(id.clone(), app);
        g.tasks.entry(id).or_default();
    }

    pub fn remove_app(&self, id: &str) {
        let mut g = self.state.lock().unwrap();
        g.apps.remove(id);
        g.tasks.remove(id);
    }

    fn safe_id(app_id: &str) -> String {
        app_id.trim_start_matches('/').replace('/', "_")
    }

    /// Starts a task (TASK_RUNNING + event); returns its id.
    pub fn start_task(&self, app_id: &str, host_ports: &[u32]) -> String {
        let id = self.next_task_id(app_id);
        self.start_task_with_id(app_id, &id, host_ports);
        id
    }

    pub fn start_task_with_id(&self, app_id: &str, id: &str, host_ports: &[u32]) {
        let ts = self.put_task(app_id, id, host_ports);
        self.emit_status(app_id, id, "TASK_RUNNING", host_ports, &ts);
    }

    /// Kills a task: TASK_KILLING, gone from the list, TASK_KILLED.
    pub fn kill_task(&self, app_id: &str, id: &str) {
        let ts = now();
        self.emit_status(app_id, id, "TASK_KILLING", &[], &ts);
        self.forget_task(app_id, id);
        self.emit_status(app_id, id, "TASK_KILLED", &[], &ts);
    }

    /// Removes a task from the list without any event (a missed event).
    pub fn forget_task(&self, app_id: &str, id: &str) {
        if let Some(t) = self.state.lock().unwrap().tasks.get_mut(app_id) {
            t.remove(id);
        }
    }

    /// Adds a running task to the list without any event (a missed event).
    pub fn add_task_silently(&self, app_id: &str, host_ports: &[u32]) -> String {
        let id = self.next_task_id(app_id);
        self.put_task(app_id, &id, host_ports);
        id
    }

    /// A fresh task id of the app, in Marathon's shape.
    fn next_task_id(&self, app_id: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.instance-{n:08}-0000-1000-8000-000000000000._app.1",
            Self::safe_id(app_id)
        )
    }

    /// Lists a TASK_RUNNING task started now; returns its timestamp.
    fn put_task(&self, app_id: &str, id: &str, host_ports: &[u32]) -> String {
        let ts = now();
        let task = json!({
            "id": id, "appId": app_id, "host": "127.0.0.1", "slaveId": "node-1",
            "state": "TASK_RUNNING", "stagedAt": ts, "startedAt": ts, "version": VERSION,
            "ports": host_ports, "servicePorts": [],
            "ipAddresses": [{"ipAddress": "172.17.0.9", "protocol": "IPv4"}],
            "healthCheckResults": [], "localVolumes": []
        });
        self.state
            .lock()
            .unwrap()
            .tasks
            .entry(app_id.to_string())
            .or_default()
            .insert(id.to_string(), task);
        ts
    }

    pub fn task_ids(&self) -> Vec<String> {
        let g = self.state.lock().unwrap();
        let mut v: Vec<String> = g.tasks.values().flat_map(|t| t.keys().cloned()).collect();
        v.sort();
        v
    }

    pub fn emit_status(&self, app_id: &str, id: &str, status: &str, ports: &[u32], ts: &str) {
        let ev = json!({
            "eventType": "status_update_event", "timestamp": ts, "slaveId": "node-1",
            "taskId": id, "taskStatus": status, "message": "", "appId": app_id,
            "host": "127.0.0.1", "ipAddresses": [{"ipAddress": "172.17.0.9", "protocol": "IPv4"}],
            "ports": ports, "version": VERSION
        });
        self.emit(ev);
    }

    pub fn emit(&self, ev: Value) {
        let text = ev.to_string();
        let _ = self.events.send(text.clone());
        if !self.state.lock().unwrap().callbacks.is_empty() {
            let _ = self.callback_tx.send(text);
        }
    }

    pub fn callbacks(&self) -> Vec<String> {
        self.state.lock().unwrap().callbacks.clone()
    }

    pub fn stream_clients(&self) -> usize {
        self.events.receiver_count()
    }

    /// While down, every request gets 503 and open streams end.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let _ = self.events.send(String::new());
        }
    }

    /// The next `/v2/apps` answer takes its snapshot, signals
    /// `held_snapshot_taken`, then waits until the returned Notify fires.
    pub fn hold_next_apps_list(&self) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        *self.hold.lock().unwrap() = Some(n.clone());
        n
    }

    fn take_hold(&self) -> Option<Arc<Notify>> {
        self.hold.lock().unwrap().take()
    }

    /// The `/v2/apps` body, serialised straight from the stored JSON
    /// (without cloning every task: as the benchmark's load generator it
    /// answers 10,000 tasks).
    fn apps_body(&self, with_tasks: bool) -> String {
        const STATUS: [&str; 5] = [
            "tasksRunning",
            "tasksStaged",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
        ];
        let g = self.state.lock().unwrap();
        let mut out =
            Vec::with_capacity(1024 + 600 * g.tasks.values().map(|t| t.len()).sum::<usize>());
        out.extend_from_slice(b"{\"apps\":[");
        for (i, (id, app)) in g.apps.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let tasks = g.tasks.get(id);
            let plain = app.as_object().is_some_and(|o| {
                !o.is_empty()
                    && !o.contains_key("tasks")
                    && STATUS.iter().all(|k| !o.contains_key(*k))
            });
            if !plain {
                serde_json::to_writer(&mut out, &self.app_info(app, tasks, with_tasks)).unwrap();
                continue;
            }
            serde_json::to_writer(&mut out, app).unwrap();
            out.pop(); // the closing brace
            let n = tasks.map_or(0, |t| t.len());
            out.extend_from_slice(
                format!(",\"tasksRunning\":{n},\"tasksStaged\":0,\"tasksHealthy\":0,\"tasksUnhealthy\":0,\"deployments\":[]").as_bytes(),
            );
            if with_tasks {
                out.extend_from_slice(b",\"tasks\":[");
                for (j, t) in tasks.into_iter().flat_map(|t| t.values()).enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, t).unwrap();
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    fn app_info(
        &self,
        app: &Value,
        tasks: Option<&BTreeMap<String, Value>>,
        with_tasks: bool,
    ) -> Value {
        let mut a = app.clone();
        let tasks: Vec<Value> = tasks
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        a["tasksRunning"] = json!(tasks.len());
        a["tasksStaged"] = json!(0);
        a["tasksHealthy"] = json!(0);
        a["tasksUnhealthy"] = json!(0);
        a["deployments"] = json!([]);
        if with_tasks {
            a["tasks"] = Value::Array(tasks);
        }
        a
    }

    async fn serve(self: Arc<Self>, conn: TcpStream) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).await? == 0 {
                    return Ok(());
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).await?;
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            if self.down.load(Ordering::SeqCst) {
                respond(&mut w, 503, r#"{"message":"down"}"#).await?;
                continue;
            }
            match (method.as_str(), path) {
                ("GET", "/v2/events") => return self.stream(w).await,
                ("GET", "/v2/apps") => {
                    self.apps_requests.fetch_add(1, Ordering::Relaxed);
                    let body = self.apps_body(query.contains("tasks"));
                    let hold = self.take_hold();
                    if let Some(n) = hold {
                        self.held_snapshot_taken.notify_one();
                        n.notified().await;
                    }
                    respond(&mut w, 200, &body).await?;
                }
                ("GET", p) if p.starts_with("/v2/apps/") => {
                    let id = &p["/v2/apps".len()..];
                    let found = {
                        let g = self.state.lock().unwrap();
                        g.apps
                            .get(id)
                            .map(|a| self.app_info(a, g.tasks.get(id), true))
                    };
                    match found {
                        Some(a) => respond(&mut w, 200, &json!({ "app": a }).to_string()).await?,
                        None => {
                            respond(
                                &mut w,
                                404,
                                &json!({"message": format!("App '{id}' does not exist")})
                                    .to_string(),
                            )
                            .await?
                        }
                    }
                }
                (m, "/v2/eventSubscriptions") => {
                    let cb = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("callbackUrl="))
                        .map(url_decode);
                    let body = self.subscriptions(m, cb);
                    respond(&mut w, 200, &body.to_string()).await?;
                }
                _ => {
                    respond(
                        &mut w,
                        404,
                        &json!({"message": format!("URI not found: {path}")}).to_string(),
                    )
                    .await?
                }
            }
        }
    }

    fn subscriptions(&self, m: &str, cb: Option<String>) -> Value {
        let mut g = self.state.lock().unwrap();
        match (m, cb) {
            ("POST", Some(u)) => {
                if !g.callbacks.contains(&u) {
                    g.callbacks.push(u.clone());
                }
                json!({"callbackUrl": u, "clientIp": "127.0.0.1", "eventType": "subscribe_event", "timestamp": now()})
            }
            ("DELETE", Some(u)) => {
                g.callbacks.retain(|c| c != &u);
                json!({"callbackUrl": u, "clientIp": "127.0.0.1", "eventType": "unsubscribe_event", "timestamp": now()})
            }
            _ => json!({"callbackUrls": g.callbacks}),
        }
    }

    async fn stream(&self, mut w: tokio::net::tcp::OwnedWriteHalf) -> std::io::Result<()> {
        let mut rx = self.events.subscribe();
        w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=UTF-8\r\nConnection: close\r\n\r\n",
        )
        .await?;
        w.flush().await?;
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
            match msg {
                Err(_) => w.write_all(b"\r\n").await?,
                Ok(Ok(m)) if m.is_empty() => {
                    if self.down.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
                Ok(Ok(m)) => {
                    // Batch whatever else is ready into one write.
                    let mut out = sse_frame(&m);
                    while let Ok(m) = rx.try_recv() {
                        if m.is_empty() {
                            continue;
                        }
                        out.push_str(&sse_frame(&m));
                        if out.len() > 256 * 1024 {
                            break;
                        }
                    }
                    w.write_all(out.as_bytes()).await?;
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => return Ok(()),
                Ok(Err(_)) => return Ok(()),
            }
            w.flush().await?;
        }
    }
}

/// One SSE frame for an event (its `eventType` names the event).
fn sse_frame(event: &str) -> String {
    let ty = serde_json::from_str::<Value>(event)
        .ok()
        .and_then(|v| v["eventType"].as_str().map(str::to_string))
        .unwrap_or_default();
    format!("event: {ty}\r\ndata: {event}\r\n\r\n")
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn respond(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.flush().await
}
