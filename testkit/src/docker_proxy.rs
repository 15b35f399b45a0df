//! A Unix-socket proxy in front of the Docker engine's socket, for fault
//! injection: point the manager at [`DockerProxy::host`] (`--docker-socket`)
//! and switch the proxy to pass traffic, stall (accept and never answer),
//! refuse (close connections), delay matching requests by a fixed time, or
//! hold matching requests until told otherwise.
//!
//! Requests are read one by one (HTTP/1.1 heads, `Content-Length` bodies);
//! a chunked or upgraded request turns the rest of its connection into a
//! plain byte copy. Responses are copied back as they come (streams too).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// What the proxy does with every connection and request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward (subject to the request rules).
    #[default]
    Pass,
    /// Accept, read nothing and answer nothing until the mode changes.
    Stall,
    /// Close every new connection, and every open one at its next request.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Delay(Duration),
    Hold,
}

#[derive(Debug, Clone)]
struct Rule {
    method: String,
    path: String,
    action: Action,
}

#[derive(Debug, Clone, Default)]
struct Setup {
    mode: Mode,
    rules: Vec<Rule>,
}

impl Setup {
    fn action_for(&self, method: &str, path: &str) -> Option<Action> {
        self.rules
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(method) && path.contains(&r.path))
            .map(|r| r.action)
    }
}

/// Requests seen (head read) and forwarded (sent to the engine), in order.
#[derive(Debug, Default)]
struct Log {
    seen: Vec<(String, String)>,
    forwarded: Vec<(String, String)>,
}

/// The proxy; stops (and removes its socket) on drop.
pub struct DockerProxy {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    setup: watch::Sender<Setup>,
    log: Arc<Mutex<Log>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The engine's socket as the Docker CLI finds it (`DOCKER_HOST=unix://...`
/// or `/var/run/docker.sock`).
pub fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

impl DockerProxy {
    /// Starts a proxy to [`engine_socket`] in [`Mode::Pass`].
    pub fn start() -> anyhow::Result<DockerProxy> {
        Self::start_to(&engine_socket())
    }

    /// Starts a proxy to the engine socket `upstream`.
    pub fn start_to(upstream: &Path) -> anyhow::Result<DockerProxy> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("docker.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
        std_listener.set_nonblocking(true)?;
        let (setup, setup_rx) = watch::channel(Setup::default());
        let log = Arc::new(Mutex::new(Log::default()));
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let upstream = upstream.to_path_buf();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("docker-proxy".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("docker proxy: runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match UnixListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("docker proxy: listener: {e}");
                            return;
                        }
                    };
                    let accept = async {
                        loop {
                            let Ok((conn, _)) = listener.accept().await else {
                                continue;
                            };
                            tokio::spawn(serve(
                                conn,
                                upstream.clone(),
                                setup_rx.clone(),
                                thread_log.clone(),
                            ));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })?;
        Ok(DockerProxy {
            socket,
            _dir: dir,
            setup,
            log,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The proxy's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`: a `DOCKER_HOST` / `--docker-socket` value.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn set_mode(&self, mode: Mode) {
        self.setup.send_modify(|s| s.mode = mode);
    }

    /// Delays every request whose method is `method` and whose path contains
    /// `path` (e.g. `POST`, `/containers/create`) by `by` before forwarding.
    pub fn delay(&self, method: &str, path: &str, by: Duration) {
        self.add_rule(method, path, Action::Delay(by));
    }

    /// Holds matching requests (unanswered) until the rule is cleared.
    pub fn hold(&self, method: &str, path: &str) {
        self.add_rule(method, path, Action::Hold);
    }

    /// Drops every request rule (held requests go on).
    pub fn clear_rules(&self) {
        self.setup.send_modify(|s| s.rules.clear());
    }

    fn add_rule(&self, method: &str, path: &str, action: Action) {
        self.setup.send_modify(|s| {
            s.rules.push(Rule {
                method: method.to_string(),
                path: path.to_string(),
                action,
            })
        });
    }

    /// How many matching requests reached the proxy so far.
    pub fn seen(&self, method: &str, path: &str) -> usize {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        count(&log.seen, method, path)
    }

    /// How many matching requests were forwarded to the engine so far.
    pub fn forwarded(&self, method: &str, path: &str) -> usize {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        count(&log.forwarded, method, path)
    }
}

fn count(list: &[(String, String)], method: &str, path: &str) -> usize {
    list.iter()
        .filter(|(m, p)| m.eq_ignore_ascii_case(method) && p.contains(path))
        .count()
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits while the mode is [`Mode::Stall`]; false when it is (or becomes) refuse.
async fn wait_passing(setup: &mut watch::Receiver<Setup>) -> bool {
    loop {
        let mode = setup.borrow_and_update().mode;
        match mode {
            Mode::Pass => return true,
            Mode::Refuse => return false,
            Mode::Stall => {
                if setup.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Applies the request rules to one request; false when the connection
/// must close (refuse).
async fn apply_rules(setup: &mut watch::Receiver<Setup>, method: &str, path: &str) -> bool {
    loop {
        if !wait_passing(setup).await {
            return false;
        }
        let action = setup.borrow().action_for(method, path);
        match action {
            None => return true,
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                return true;
            }
            Some(Action::Hold) => {
                if setup.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

struct Head {
    method: String,
    path: String,
    content_length: usize,
    raw_after: bool,
}

fn parse_head(head: &str) -> Head {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let mut content_length = 0;
    let mut raw_after = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "content-length" => content_length = value.parse().unwrap_or(0),
            "transfer-encoding" if value.contains("chunked") => raw_after = true,
            "upgrade" => raw_after = true,
            "connection" if value.contains("upgrade") => raw_after = true,
            _ => {}
        }
    }
    Head {
        method,
        path,
        content_length,
        raw_after,
    }
}

async fn read_more(from: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match from.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn serve(
    conn: UnixStream,
    upstream: PathBuf,
    mut setup: watch::Receiver<Setup>,
    log: Arc<Mutex<Log>>,
) {
    if !wait_passing(&mut setup).await {
        return;
    }
    let Ok(up) = UnixStream::connect(&upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = conn.into_split();
    let (mut up_read, mut up_write) = up.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if !read_more(&mut client_read, &mut buf).await {
                back.abort();
                return;
            }
        };
        let head = parse_head(&String::from_utf8_lossy(&buf[..head_end]));
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .push((head.method.clone(), head.path.clone()));
        if !apply_rules(&mut setup, &head.method, &head.path).await {
            back.abort();
            return;
        }
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .forwarded
            .push((head.method.clone(), head.path.clone()));
        if head.raw_after {
            if up_write.write_all(&buf).await.is_err() {
                back.abort();
                return;
            }
            let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
            let _ = up_write.shutdown().await;
            let _ = back.await;
            return;
        }
        let total = head_end + head.content_length;
        while buf.len() < total {
            if !read_more(&mut client_read, &mut buf).await {
                back.abort();
                return;
            }
        }
        if up_write.write_all(&buf[..total]).await.is_err() {
            back.abort();
            return;
        }
        buf.drain(..total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let h = parse_head(
            "POST /v1.41/containers/create?name=x HTTP/1.1\r\nContent-Length: 12\r\nHost: d\r\n\r\n",
        );
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/v1.41/containers/create?name=x");
        assert_eq!(h.content_length, 12);
        assert!(!h.raw_after);
        let h = parse_head(
            "POST /exec/1/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        );
        assert!(h.raw_after);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }
}
