//! The fastest exit path: containerd's task events. Docker runs every
//! container through containerd, which publishes `/tasks/exit` (with the
//! exit status) as soon as the container's shim has reaped the process.
//! Docker's own `die` event comes only after Docker has deleted the task
//! in containerd, 15-50 ms later on a 2-core machine. Peers wait for that
//! report, so the runtime follows containerd's events too, as one more
//! source for [`Shared::claim_exit`]: whichever path sees the exit first
//! reports it, the `die` event and `wait` remain the fallbacks (an engine
//! without a reachable containerd socket, a gap while reconnecting).
//!
//! The subscription is containerd's gRPC `Events/Subscribe` over its Unix
//! socket, filtered to Docker's namespace and the two topics. The messages
//! are declared here with prost (five fields in all), so no protobuf
//! compiler or generated code is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use daemon::Backoff;
use prost::Message;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::recover::classify_code;
use super::shared::{OomSeen, Shared};

/// Docker's namespace in containerd.
pub const NAMESPACE: &str = "moby";
/// Where a local engine's containerd listens: Docker's own (dockerd started
/// it), then the system one.
pub const DEFAULT_SOCKETS: [&str; 2] = [
    "/run/docker/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
];
const TOPIC_EXIT: &str = "/tasks/exit";
const TOPIC_OOM: &str = "/tasks/oom";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Whether the engine at `docker_socket` (None: bollard's default) runs on
/// this machine: a Unix socket, not `tcp://` or `http://`.
pub fn engine_is_local(docker_socket: Option<&str>) -> bool {
    docker_socket.is_none_or(|s| !(s.starts_with("tcp://") || s.starts_with("http://")))
}

/// The first of [`DEFAULT_SOCKETS`] that exists, for an engine on this
/// machine (`docker_socket` None or a Unix socket); None otherwise.
pub fn detect_socket(docker_socket: Option<&str>) -> Option<PathBuf> {
    if !engine_is_local(docker_socket) {
        return None;
    }
    DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[derive(Clone, PartialEq, Message)]
struct SubscribeRequest {
    #[prost(string, repeated, tag = "1")]
    filters: Vec<String>,
}

/// `containerd.services.events.v1.Envelope` (the timestamp, field 1, is
/// not read).
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(string, tag = "2")]
    namespace: String,
    #[prost(string, tag = "3")]
    topic: String,
    #[prost(message, optional, tag = "4")]
    event: Option<AnyEvent>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct AnyEvent {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `containerd.events.TaskExit` (`exited_at`, field 5, is not read).
#[derive(Clone, PartialEq, Message)]
struct TaskExit {
    #[prost(string, tag = "1")]
    container_id: String,
    /// The process: equal to `container_id` for the container's own
    /// process, an exec id otherwise.
    #[prost(string, tag = "2")]
    id: String,
    #[prost(uint32, tag = "3")]
    pid: u32,
    #[prost(uint32, tag = "4")]
    exit_status: u32,
}

/// `containerd.events.TaskOOM`.
#[derive(Clone, PartialEq, Message)]
struct TaskOom {
    #[prost(string, tag = "1")]
    container_id: String,
}

/// What one envelope says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    /// The container's own process ended with this status (128 + signal
    /// when a signal ended it, as Docker reports it).
    Exit { container_id: String, status: i64 },
    /// The container ran out of memory (comes before its exit).
    Oom { container_id: String },
    /// Anything else: an exec's exit, another namespace, an undecodable body.
    Other,
}

/// Decodes one envelope (pure; the wire bytes of the event inside).
fn seen(envelope: &Envelope) -> Seen {
    if envelope.namespace != NAMESPACE {
        return Seen::Other;
    }
    let Some(any) = &envelope.event else {
        return Seen::Other;
    };
    match envelope.topic.as_str() {
        TOPIC_EXIT => match TaskExit::decode(any.value.as_slice()) {
            Ok(e) if !e.container_id.is_empty() && e.id == e.container_id => Seen::Exit {
                container_id: e.container_id,
                status: i64::from(e.exit_status),
            },
            _ => Seen::Other,
        },
        TOPIC_OOM => match TaskOom::decode(any.value.as_slice()) {
            Ok(o) if !o.container_id.is_empty() => Seen::Oom {
                container_id: o.container_id,
            },
            _ => Seen::Other,
        },
        _ => Seen::Other,
    }
}

/// Opens the event subscription on `socket`.
async fn subscribe(socket: &Path) -> Result<tonic::Streaming<Envelope>, String> {
    let path = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://containerd")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let filters = [TOPIC_EXIT, TOPIC_OOM]
        .iter()
        .map(|t| format!("namespace=={NAMESPACE},topic==\"{t}\""))
        .collect();
    let mut request = tonic::Request::new(SubscribeRequest { filters });
    request.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(NAMESPACE),
    );
    let codec = tonic::codec::ProstCodec::<SubscribeRequest, Envelope>::default();
    grpc.server_streaming(
        request,
        http::uri::PathAndQuery::from_static(SUBSCRIBE),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|e| format!("subscribe: {}", e.message()))
}

/// Follows containerd's exits of this runtime's containers until
/// cancelled, reconnecting with backoff. Only exits of containers in the
/// task table are claimed; the rest of the machine's containers are
/// ignored.
pub(super) async fn containerd_exits(
    shared: Arc<Shared>,
    socket: PathBuf,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let mut oom_seen = OomSeen::default();
    // The reports this stream claimed, cleaning up (the stream reads on).
    let mut finishing: JoinSet<()> = JoinSet::new();
    let mut warned = false;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = subscribe(&socket) => s,
        };
        match stream {
            Ok(mut stream) => {
                info!(socket = %socket.display(), "following containerd's task exits");
                warned = false;
                backoff.reset();
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => return,
                        next = stream.message() => next,
                    };
                    while finishing.try_join_next().is_some() {}
                    match next {
                        Ok(Some(envelope)) => {
                            handle(&shared, &mut oom_seen, &mut finishing, seen(&envelope))
                        }
                        Ok(None) => break,
                        Err(e) => {
                            debug!(error = %e.message(), "containerd event stream ended");
                            break;
                        }
                    }
                }
            }
            Err(e) if !warned => {
                warn!(socket = %socket.display(), error = %e, "containerd's events are not readable; exits come from Docker's events (slower)");
                warned = true;
            }
            Err(e) => debug!(error = %e, "containerd's events still not readable"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

fn handle(shared: &Arc<Shared>, oom_seen: &mut OomSeen, finishing: &mut JoinSet<()>, seen: Seen) {
    match seen {
        Seen::Oom { container_id } => {
            oom_seen.mark(container_id);
        }
        Seen::Exit {
            container_id,
            status,
        } => {
            let Some(task_id) = shared.task_of_container(&container_id) else {
                oom_seen.take(&container_id);
                return;
            };
            let oom = match oom_seen.take(&container_id) {
                true => true,
                // A SIGKILL without an `oom` event first: the kernel's OOM
                // killer and `docker kill` look the same here, and the
                // shim may publish the exit before the oom. The memory
                // cgroup's counter tells; when it cannot be read (removed
                // already, another layout), the die event reports instead.
                false if status == SIGKILL_STATUS => match oom_kills(&container_id) {
                    Some(n) => n > 0,
                    None => return,
                },
                false => false,
            };
            if shared.claim_exit(&task_id, &container_id) {
                let exit = classify_code(status, oom, None);
                let shared = shared.clone();
                finishing.spawn(async move {
                    shared.report_exit(&task_id, &container_id, exit).await;
                });
            }
        }
        Seen::Other => {}
    }
}

/// 128 + SIGKILL: how containerd reports a process ended by SIGKILL.
pub(super) const SIGKILL_STATUS: i64 = 137;

/// Where the container's memory cgroup may keep its OOM-kill counter
/// (`oom_kill`): cgroup v1 then v2, Docker's cgroupfs and systemd drivers.
fn memory_cgroup_files(container_id: &str) -> [PathBuf; 4] {
    let root = Path::new("/sys/fs/cgroup");
    [
        root.join(format!("memory/docker/{container_id}/memory.oom_control")),
        root.join(format!(
            "memory/system.slice/docker-{container_id}.scope/memory.oom_control"
        )),
        root.join(format!("docker/{container_id}/memory.events")),
        root.join(format!(
            "system.slice/docker-{container_id}.scope/memory.events"
        )),
    ]
}

/// The container's OOM kills from its memory cgroup; None when no layout
/// this knows holds it (e.g. the cgroup is gone already).
pub(super) fn oom_kills(container_id: &str) -> Option<u64> {
    memory_cgroup_files(container_id)
        .iter()
        .find_map(|path| counter(&std::fs::read_to_string(path).ok()?, "oom_kill"))
}

/// The value of `key` in a cgroup `key value` file (pure).
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(namespace: &str, topic: &str, body: Vec<u8>) -> Envelope {
        Envelope {
            namespace: namespace.into(),
            topic: topic.into(),
            event: Some(AnyEvent {
                type_url: "containerd.events.X".into(),
                value: body,
            }),
        }
    }

    fn exit(container: &str, id: &str, status: u32) -> Vec<u8> {
        TaskExit {
            container_id: container.into(),
            id: id.into(),
            pid: 42,
            exit_status: status,
        }
        .encode_to_vec()
    }

    #[test]
    fn envelopes_decode_to_what_the_runtime_needs() {
        let oom = TaskOom {
            container_id: "c1".into(),
        }
        .encode_to_vec();
        let cases = [
            (
                envelope(NAMESPACE, TOPIC_EXIT, exit("c1", "c1", 137)),
                Seen::Exit {
                    container_id: "c1".into(),
                    status: 137,
                },
            ),
            (
                envelope(NAMESPACE, TOPIC_EXIT, exit("c1", "c1", 0)),
                Seen::Exit {
                    container_id: "c1".into(),
                    status: 0,
                },
            ),
            (
                envelope(NAMESPACE, TOPIC_OOM, oom.clone()),
                Seen::Oom {
                    container_id: "c1".into(),
                },
            ),
            // An exec (health check) in the container ended: not the container.
            (
                envelope(NAMESPACE, TOPIC_EXIT, exit("c1", "exec-7", 1)),
                Seen::Other,
            ),
            // Another namespace's container.
            (
                envelope("k8s.io", TOPIC_EXIT, exit("c1", "c1", 1)),
                Seen::Other,
            ),
            (envelope(NAMESPACE, "/tasks/start", oom), Seen::Other),
            (
                envelope(NAMESPACE, TOPIC_EXIT, vec![0xff, 0xff]),
                Seen::Other,
            ),
            (
                envelope(NAMESPACE, TOPIC_EXIT, exit("", "", 1)),
                Seen::Other,
            ),
        ];
        for (env, want) in cases {
            assert_eq!(seen(&env), want, "{env:?}");
        }
        let empty = Envelope {
            namespace: NAMESPACE.into(),
            topic: TOPIC_EXIT.into(),
            event: None,
        };
        assert_eq!(seen(&empty), Seen::Other);
    }

    #[test]
    fn cgroup_counters_are_read_by_key() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(counter(v1, "oom_kill"), Some(1));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n";
        assert_eq!(counter(v2, "oom_kill"), Some(0));
        assert_eq!(counter("oom_kill_disable 0\n", "oom_kill"), None);
        assert_eq!(counter("oom_kill x\n", "oom_kill"), None);
        assert_eq!(oom_kills("no-such-container"), None);
    }

    #[test]
    fn only_a_local_engine_gets_a_containerd_socket() {
        assert_eq!(detect_socket(Some("tcp://10.0.0.1:2375")), None);
        assert_eq!(detect_socket(Some("http://10.0.0.1:2375")), None);
        // A local socket: whatever this machine has (maybe none).
        let local = detect_socket(Some("/var/run/docker.sock"));
        assert!(local.is_none_or(|p| p.exists()));
    }
}
