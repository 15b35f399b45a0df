//! What the subscriber and the deployer need from the client beyond the
//! typed calls: raw-JSON app calls that keep unknown fields, the lean read
//! of apps with tasks, event subscriptions, a URL prefix, and credentials
//! that never show in `Debug`, `Display` or an error.

#[allow(dead_code)]
mod common;

use common::{Request, Response, Server};
use marathon::{AppFilter, Client, Error, TaskState};
use serde_json::json;

const TS: &str = "2026-11-22T10:00:00.000Z";

fn routes(req: &Request) -> Response {
    let path = req.path.strip_prefix("/prefix").unwrap_or(&req.path);
    match (req.method.as_str(), path) {
        ("GET", "/v2/apps") => Response::json(
            200,
            json!({"apps": [{"id": "/dev/web", "version": TS, "futureField": {"kept": [1, 2]},
                "labels": {"SERVICE_NAME": "web"}, "healthChecks": [{"protocol": "TCP"}],
                "tasks": [{"id": "dev_web.instance-1._app.1", "appId": "/dev/web", "host": "h",
                           "state": "TASK_RUNNING", "ports": [31000], "slaveId": "n1",
                           "healthCheckResults": [{"alive": true}], "somethingNew": 1}]}]}),
        ),
        ("PUT", "/v2/apps") => Response::json(200, json!({"deploymentId": "d1", "version": TS})),
        ("DELETE", "/v2/apps/dev/web") => Response::Full {
            status: 200,
            headers: vec![],
            body: String::new(),
        },
        ("DELETE", "/v2/apps/dev/locked") => Response::json(
            409,
            json!({"message": "App is locked", "deployments": [{"id": "d9"}]}),
        ),
        ("GET", "/v2/deployments") => Response::json(
            200,
            json!([{"id": "d1", "affectedApps": ["/dev/web"], "x": 1}]),
        ),
        ("GET", "/v2/eventSubscriptions") => {
            Response::json(200, json!({"callbackUrls": ["http://h:5001/callback?a=1"]}))
        }
        (m @ ("POST" | "DELETE"), "/v2/eventSubscriptions") => {
            let ty = if m == "POST" {
                "subscribe_event"
            } else {
                "unsubscribe_event"
            };
            Response::json(
                200,
                json!({"eventType": ty, "timestamp": TS, "clientIp": "127.0.0.1",
                    "callbackUrl": "http://h:5001/callback?a=1"}),
            )
        }
        ("GET", "/ping") => Response::Full {
            status: 200,
            headers: vec![],
            body: "pong".into(),
        },
        _ => Response::json(404, json!({"message": format!("URI not found: {path}")})),
    }
}

#[tokio::test]
async fn raw_calls_keep_unknown_fields() {
    let server = Server::start(routes).await;
    let client = Client::new(&server.url()).unwrap();

    let apps = client
        .list_apps_raw(&["apps.tasks", "apps.counts"], &AppFilter::default())
        .await
        .unwrap();
    assert_eq!(apps[0]["futureField"], json!({"kept": [1, 2]}));
    assert_eq!(apps[0]["tasks"][0]["somethingNew"], 1);

    let sent = [json!({"id": "/dev/web", "cmd": "sleep 1", "someExtension": {"a": true}})];
    let r = client.put_apps_raw(&sent, true, Some(false)).await.unwrap();
    assert_eq!(r["deploymentId"], "d1");
    assert_eq!(
        client.delete_app_raw("/dev/web", Some(true)).await.unwrap(),
        serde_json::Value::Null,
        "an empty answer is Null"
    );
    match client.delete_app_raw("/dev/locked", Some(true)).await {
        Err(Error::Conflict { deployments, .. }) => assert_eq!(deployments, ["d9"]),
        other => panic!("{other:?}"),
    }
    let deployments = client.list_deployments_raw().await.unwrap();
    assert_eq!(deployments[0]["id"], "d1");
    assert_eq!(deployments[0]["x"], 1);

    let reqs = server.requests();
    let list = reqs.iter().find(|r| r.method == "GET").unwrap();
    assert_eq!(list.query, "embed=apps.tasks&embed=apps.counts");
    let put = reqs.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.query, "force=true&partialUpdate=false");
    assert_eq!(put.json(), json!(sent), "the definitions went as given");
    let del = reqs.iter().find(|r| r.method == "DELETE").unwrap();
    assert_eq!(
        (del.path.as_str(), del.query.as_str()),
        ("/v2/apps/dev/web", "force=true")
    );
}

#[tokio::test]
async fn lean_apps_with_tasks() {
    let server = Server::start(routes).await;
    let client = Client::new(&server.url()).unwrap();
    let apps = client.apps_with_tasks().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, "/dev/web");
    assert_eq!(apps[0].health_checks, 1);
    let task = &apps[0].tasks.as_ref().unwrap()[0];
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.slave_id.as_deref(), Some("n1"));
    assert!(task.health_check_results[0].alive);
    assert_eq!(server.requests()[0].query, "embed=apps.tasks");
}

#[tokio::test]
async fn event_subscriptions() {
    let server = Server::start(routes).await;
    let client = Client::new(&server.url()).unwrap();
    let cb = "http://h:5001/callback?a=1";
    assert_eq!(client.list_event_subscriptions().await.unwrap(), [cb]);
    let e = client.create_event_subscription(cb).await.unwrap();
    assert_eq!(e.event_type(), "subscribe_event");
    let e = client.delete_event_subscription(cb).await.unwrap();
    assert_eq!(e.event_type(), "unsubscribe_event");
    let reqs = server.requests();
    let post = reqs.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(
        post.query,
        "callbackUrl=http%3A%2F%2Fh%3A5001%2Fcallback%3Fa%3D1"
    );
}

/// Moved from the subscriber's own client: percent-encoded userinfo
/// becomes basic auth, decoded; a path prefix is kept.
#[tokio::test]
async fn userinfo_with_escapes_and_a_path_prefix() {
    let server = Server::start(routes).await;
    let url = format!("http://us%40r:p%3Aw@127.0.0.1:{}/prefix", server.port);
    let client = Client::new(&url).unwrap();
    client.ping().await.unwrap();
    client.apps_with_tasks().await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/prefix/ping");
    assert_eq!(reqs[1].path, "/prefix/v2/apps");
    // base64("us@r:p:w")
    assert_eq!(reqs[0].header("authorization"), Some("Basic dXNAcjpwOnc="));

    let plain = Client::new(&format!("http://127.0.0.1:{}", server.port)).unwrap();
    plain.ping().await.unwrap();
    assert_eq!(server.requests()[2].header("authorization"), None);
}

#[test]
fn secrets_never_show() {
    let secret = "s3cret-pw-915";
    let client = Client::builder(format!("http://mdo-user:{secret}@127.0.0.1:8080/x"))
        .build()
        .unwrap();
    for shown in [format!("{client:?}"), client.to_string()] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("mdo-user"), "{shown}");
    }
    assert_eq!(client.to_string(), "http://127.0.0.1:8080/x");
    let token = Client::builder("http://127.0.0.1:8080")
        .token(secret)
        .build()
        .unwrap();
    assert!(!format!("{token:?}").contains(secret));
    for bad in [
        format!("ftp://mdo-user:{secret}@h:1"),
        format!("http://mdo-user:{secret}@h:99999"),
    ] {
        let e = Client::new(&bad).unwrap_err().to_string();
        assert!(matches!(Client::new(&bad), Err(Error::Url(_))), "{e}");
        assert!(!e.contains(secret) && !e.contains("mdo-user"), "{e}");
    }
}
