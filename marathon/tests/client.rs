//! The client and the event stream against an in-test HTTP server.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Request, Response, Server};
use futures::StreamExt;
use marathon::{
    sse, AppFilter, Client, Error, Event, KillResult, StreamConfig, StreamItem, TaskState,
};
use serde_json::json;

const TS: &str = "2026-11-22T10:00:00.000Z";

fn app_info(id: &str) -> serde_json::Value {
    json!({"id": id, "cmd": "sleep 1", "instances": 1, "labels": {}, "version": TS,
        "tasksStaged": 0, "tasksRunning": 1, "tasksHealthy": 0, "tasksUnhealthy": 0,
        "deployments": [], "tasks": [{"id": "dev_web.instance-1._app.1", "appId": id,
        "host": "h", "state": "TASK_RUNNING", "ports": [31000], "servicePorts": [],
        "ipAddresses": [], "healthCheckResults": [], "localVolumes": []}]})
}

fn routes(req: &Request) -> Response {
    let dep = json!({"deploymentId": "d1", "version": TS});
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/ping") => Response::Full {
            status: 200,
            headers: vec![],
            body: "pong".into(),
        },
        ("GET", "/v2/info") => Response::json(
            200,
            json!({"name": "marathon", "version": "1.11.0",
            "elected": true, "leader": "h:8080", "marathon_config": {}, "zookeeper_config": {},
            "http_config": {"http_port": 8080}}),
        ),
        ("GET", "/v2/apps") => Response::json(200, json!({"apps": [app_info("/dev/web")]})),
        ("POST", "/v2/apps") => Response::json(201, app_info(req.json()["id"].as_str().unwrap())),
        ("PUT", "/v2/apps") => Response::json(
            422,
            json!({"message": "Object is not valid",
            "details": [{"path": "/0/cpus", "errors": ["got -1.0, expected 0.0 or more"]}]}),
        ),
        ("GET", "/v2/apps/dev/web") => Response::json(200, json!({"app": app_info("/dev/web")})),
        ("PUT", "/v2/apps/dev/web") => Response::json(200, dep),
        ("DELETE", "/v2/apps/missing") => {
            Response::json(404, json!({"message": "App '/missing' does not exist"}))
        }
        ("POST", "/v2/apps/locked/restart") => Response::json(
            409,
            json!({
            "message": "App is locked by one or more deployments.", "deployments": [{"id": "d9"}]}),
        ),
        ("DELETE", "/v2/apps/dev/web/tasks/dev_web.instance-1._app.1") => {
            Response::json(200, json!({"task": app_info("/dev/web")["tasks"][0]}))
        }
        ("POST", "/v2/tasks/delete") if req.query.contains("scale=true") => {
            Response::json(200, dep)
        }
        ("POST", "/v2/tasks/delete") => Response::json(200, json!({"tasks": []})),
        ("DELETE", "/v2/deployments/d1") => Response::Full {
            status: 202,
            headers: vec![],
            body: String::new(),
        },
        ("GET", "/v2/apps/dev/web/versions") => Response::json(200, json!({"versions": [TS]})),
        ("GET", "/v2/leader") => Response::json(500, json!({"message": "boom"})),
        ("DELETE", "/v2/leader") => Response::json(200, json!({"message": "Leadership abdicated"})),
        _ => Response::json(
            404,
            json!({"message": format!("URI not found: {}", req.path)}),
        ),
    }
}

#[tokio::test]
async fn client_calls_and_error_mapping() {
    let server = Server::start(routes).await;
    let client = Client::builder(server.url())
        .token("s3cret")
        .build()
        .unwrap();

    assert_eq!(client.ping().await.unwrap(), "pong");
    let info = client.info().await.unwrap();
    assert_eq!(info.version, "1.11.0");
    assert_eq!(info.http_config.http_port, Some(8080));

    let filter = AppFilter {
        label: Some("SERVICE_NAME==web".into()),
        ..AppFilter::default()
    };
    let apps = client
        .list_apps(&["apps.tasks", "apps.counts"], &filter)
        .await
        .unwrap();
    assert_eq!(apps[0].app.id, "/dev/web");
    assert_eq!(
        apps[0].cmd.as_deref(),
        Some("sleep 1"),
        "AppInfo derefs to its App"
    );
    assert_eq!(apps[0].tasks.as_ref().unwrap()[0].state, TaskState::Running);

    let mut app = marathon::App::new("/dev/new");
    app.cmd = Some("sleep 1".into());
    let created = client.create_app(&app).await.unwrap();
    assert_eq!(created.app.id, "/dev/new");

    assert_eq!(
        client.get_app("/dev/web", &[]).await.unwrap().tasks_running,
        1
    );
    let r = client.scale_app("/dev/web", 3, false).await.unwrap();
    assert_eq!(r.deployment_id, "d1");
    assert_eq!(
        client.app_versions("dev/web").await.unwrap()[0].to_string(),
        TS
    );

    match client.delete_app("/missing", None).await {
        Err(Error::NotFound { message }) => assert_eq!(message, "App '/missing' does not exist"),
        other => panic!("{other:?}"),
    }
    match client.restart_app("/locked", false).await {
        Err(Error::Conflict { deployments, .. }) => assert_eq!(deployments, ["d9"]),
        other => panic!("{other:?}"),
    }
    match client
        .put_apps(&json!([{"id": "/x", "cpus": -1}]), false, None)
        .await
    {
        Err(Error::Invalid { status: 422, body }) => {
            assert_eq!(body.message, "Object is not valid");
            assert!(
                matches!(body.details, Some(marathon::ErrorDetails::List(ref l)) if l[0].path == "/0/cpus")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(client.leader().await, Err(Error::Server { status: 500, ref message }) if message == "boom")
    );

    match client
        .kill_task("/dev/web", "dev_web.instance-1._app.1", false, false)
        .await
        .unwrap()
    {
        KillResult::Task { task } => assert_eq!(task.id, "dev_web.instance-1._app.1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .delete_tasks(&["a", "b"], false, false)
            .await
            .unwrap(),
        KillResult::Tasks { tasks: vec![] }
    );
    assert!(matches!(
        client.delete_tasks(&["a"], true, false).await.unwrap(),
        KillResult::Deployment(ref d) if d.deployment_id == "d1"
    ));
    assert_eq!(client.delete_deployment("d1", true).await.unwrap(), None);

    // What went over the wire.
    let reqs = server.requests();
    assert!(reqs
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer s3cret")));
    let list = reqs
        .iter()
        .find(|r| r.method == "GET" && r.path == "/v2/apps")
        .unwrap();
    assert_eq!(
        list.query,
        "embed=apps.tasks&embed=apps.counts&label=SERVICE_NAME%3D%3Dweb"
    );
    let scale = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.path == "/v2/apps/dev/web")
        .unwrap();
    assert_eq!(scale.json(), json!({"instances": 3}));
    assert_eq!(scale.query, "force=false");
    assert_eq!(scale.header("content-type"), Some("application/json"));
    let create = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path == "/v2/apps")
        .unwrap();
    assert_eq!(create.json()["id"], "/dev/new");
    assert!(create.json().get("ports").is_none());
    let del = reqs.iter().find(|r| r.path == "/v2/tasks/delete").unwrap();
    assert_eq!(del.json(), json!({"ids": ["a", "b"]}));
    assert_eq!(del.query, "scale=false&force=false");
    let missing = reqs.iter().find(|r| r.path == "/v2/apps/missing").unwrap();
    assert_eq!(missing.query, "", "force omitted keeps Marathon's default");
}

#[tokio::test]
async fn basic_auth_comes_from_url_userinfo() {
    let server = Server::start(routes).await;
    let url = format!("http://user:p%40ss@127.0.0.1:{}/", server.port);
    let client = Client::new(&url).unwrap();
    assert_eq!(
        client.base_url().as_str(),
        format!("http://127.0.0.1:{}/", server.port)
    );
    assert!(
        !format!("{client:?}").contains("p@ss"),
        "credentials in Debug output"
    );
    client.ping().await.unwrap();
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic dXNlcjpwQHNz")
    );
}

#[test]
fn bad_base_urls_are_rejected() {
    assert!(matches!(Client::new("not a url"), Err(Error::Url(_))));
    assert!(matches!(Client::new("ftp://h/"), Err(Error::Url(_))));
}

fn status_frame(task: &str) -> String {
    let data = json!({"eventType": "status_update_event", "timestamp": TS, "slaveId": "n",
        "taskId": task, "taskStatus": "TASK_RUNNING", "message": "", "appId": "/web",
        "host": "h", "ipAddresses": [], "ports": [31000], "version": TS});
    sse::frame("status_update_event", &data.to_string())
}

#[tokio::test]
async fn event_stream_redirects_reconnects_and_detects_idle() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = Server::start(move |req| {
        if req.path == "/v2/events" {
            // A standby: redirect to the leader (relative Location, query kept).
            return Response::Full {
                status: 302,
                headers: vec![("Location", format!("/leader/v2/events?{}", req.query))],
                body: String::new(),
            };
        }
        assert_eq!(req.path, "/leader/v2/events");
        match counter.fetch_add(1, Ordering::SeqCst) {
            0 => {
                let attached = sse::frame(
                    "event_stream_attached",
                    &json!({"eventType": "event_stream_attached", "timestamp": TS,
                        "remoteAddress": "127.0.0.1"})
                    .to_string(),
                );
                let (a, b) = attached.split_at(17);
                let lf = status_frame("t1").replace("\r\n", "\n");
                let unknown = sse::frame(
                    "future_event",
                    &json!({"eventType": "future_event", "timestamp": TS}).to_string(),
                );
                Response::Stream {
                    chunks: vec![
                        a.into(),
                        b.into(),
                        sse::HEARTBEAT.into(),
                        lf,
                        ":comment\r\n".into(),
                        unknown,
                    ],
                    hold: false,
                }
            }
            1 => Response::json(503, json!({"message": "leader unknown"})),
            2 => Response::Stream {
                chunks: vec![status_frame("t2"), sse::HEARTBEAT.into()],
                hold: true,
            },
            3 => Response::Hang,
            _ => Response::Stream {
                chunks: vec![status_frame("t3")],
                hold: true,
            },
        }
    })
    .await;
    let config = StreamConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        idle_timeout: Duration::from_millis(300),
        ..StreamConfig::default()
    };
    let client = Client::builder(server.url())
        .token("tok")
        .stream_config(config)
        .build()
        .unwrap();
    let mut stream = client.events(&["status_update_event", "event_stream_attached"]);

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.last().map(String::as_str) != Some("event:t3") {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("stream made progress")
            .expect("stream never ends");
        seen.push(match item {
            Ok(StreamItem::Connected) => "connected".to_owned(),
            Ok(StreamItem::Disconnected) => "disconnected".to_owned(),
            Ok(StreamItem::Event(Event::StatusUpdate(e))) => format!("event:{}", e.task_id),
            Ok(StreamItem::Event(e)) => format!("event:{}", e.event_type()),
            Err(Error::Server { status, message }) => format!("error:{status}:{message}"),
            Err(Error::Idle { .. }) => "idle".to_owned(),
            Err(e) => format!("other error: {e}"),
        });
    }
    assert_eq!(
        seen,
        [
            "connected",
            "event:event_stream_attached",
            "event:t1",
            "event:future_event",
            "disconnected",
            "error:503:leader unknown",
            "connected",
            "event:t2",
            "idle",
            "disconnected",
            "idle",
            "connected",
            "event:t3",
        ]
    );
    let reqs = server.requests();
    for r in &reqs {
        assert_eq!(r.header("accept"), Some("text/event-stream"), "{r:?}");
        assert_eq!(r.header("authorization"), Some("Bearer tok"), "{r:?}");
        assert_eq!(
            r.query,
            "event_type=status_update_event&event_type=event_stream_attached&plan-format=light"
        );
    }
    assert_eq!(reqs.iter().filter(|r| r.path == "/v2/events").count(), 5);
}
