//! Every kind of bad input gets its status and a clear message, nothing is
//! applied, and the deployer keeps serving.

mod common;

use common::{app_ids, Deployer, Manager};
use serde_json::Value;

fn messages(body: &Value) -> String {
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_are_refused_and_nothing_is_applied() {
    let manager = Manager::start();
    let deployer = Deployer::start_with(&manager.url, |c| c.limits.max_bytes = 64 * 1024);

    // (body, content type, status, text the answer must contain)
    let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
        (b"deploy:\n  web:\n    cmd: [sleep\n".to_vec(), Some("application/yaml"), 400, "line"),
        (b"{\"deploy\": {\"web\": {\"cmd\": }}}".to_vec(), Some("application/json"), 400, "Invalid JSON at line 1"),
        (b"deploy:\n  web:\n    cmd: sleep 100\n    instances: -1\n".to_vec(), None, 422, "/deploy/web/instances"),
        (b"deploy:\n  web:\n    cmd: sleep 100\n    imgae: nginx\n".to_vec(), None, 422, "did you mean \\\"image\\\""),
        (b"deploy:\n  Web_App:\n    cmd: sleep 100\n".to_vec(), None, 422, "not a valid Marathon id segment"),
        (b"deploy:\n  web:\n    cmd: sleep 100\n    cpus: lots\n".to_vec(), None, 422, "expected a number"),
        // one good service and one bad: nothing at all is applied
        (b"deploy:\n  good:\n    cmd: sleep 100\n  bad:\n    cmd: sleep 100\n    ports: {http: 0}\n".to_vec(), None, 422, "/deploy/bad/ports/http"),
        (format!("deploy:\n  web:\n    cmd: \"{}\"\n", "x".repeat(70 * 1024)).into_bytes(), None, 413, "over the limit"),
        (b"deploy: {web: {cmd: x}}".to_vec(), Some("image/png"), 415, "unsupported media type"),
        (deep_document().into_bytes(), None, 400, "deeper"),
        (alias_bomb().into_bytes(), None, 400, "alias"),
        (b"- just\n- a list\n".to_vec(), None, 422, "expected a mapping"),
        // a marathon: map the Marathon API would refuse is caught before anything is applied
        (b"deploy:\n  a:\n    cmd: sleep 100\n  web:\n    cmd: sleep 100\n    marathon: {backoffSeconds: soon}\n".to_vec(), None, 422, "/deploy/web/marathon"),
        (b"".to_vec(), None, 422, "empty"),
    ];
    for (body, ct, status, needle) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        let started = std::time::Instant::now();
        let (got, answer) = deployer.post("/deploy", ct, body).await;
        assert_eq!(got, status, "status for {preview:?}: {answer}");
        assert!(
            messages(&answer).contains(needle),
            "{preview:?}: {answer} should mention {needle}"
        );
        assert!(
            answer["message"].is_string(),
            "Marathon error body for {preview:?}: {answer}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{preview:?} took {:?}",
            started.elapsed()
        );
        // still serving
        let (health, _) = deployer.get("/metrics").await;
        assert_eq!(health, 200);
    }
    assert_eq!(
        app_ids(&manager.url).await,
        Vec::<String>::new(),
        "nothing may be applied"
    );
    let (_, metrics) = deployer.get("/metrics").await;
    assert!(
        metrics.contains("deployer_deploy_requests_total{status=\"422\"}"),
        "{metrics}"
    );
}

fn deep_document() -> String {
    format!(
        "deploy: {{web: {{cmd: x, marathon: {{a: {}1{}}}}}}}\n",
        "[".repeat(200),
        "]".repeat(200)
    )
}

fn alias_bomb() -> String {
    let mut doc = String::from("x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..10 {
        let p = i - 1;
        doc.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    doc.push_str("deploy: {web: {cmd: x, marathon: {labels: {bomb: *x9}}}}\n");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_unreachable_is_a_502_with_a_clear_message() {
    let closed = testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{closed}");
    let deployer = Deployer::start(&url);
    let (status, body) = deployer
        .post("/deploy", None, "deploy: {web: {cmd: sleep 100}}")
        .await;
    assert_eq!(status, 502, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("unreachable") && msg.contains(&url), "{msg}");
    let (status, body) = deployer.get("/services").await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = deployer.get("/health").await;
    assert_eq!(status, 503, "{body}");
    // and it keeps serving
    let (status, _) = deployer
        .post(
            "/deploy",
            None,
            "deploy: {web: {cmd: sleep 100, instances: -3}}",
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = deployer.get("/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_everything_but_health_and_ping() {
    let closed = testkit::free_port().unwrap();
    let deployer = Deployer::start_with(&format!("http://127.0.0.1:{closed}"), |c| {
        c.auth_token = Some("s3cret".into())
    });
    let (status, body) = deployer.post("/deploy", None, "deploy: {}").await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Invalid username or password.");
    let (status, _) = deployer.get("/services").await;
    assert_eq!(status, 401);
    let (status, body) = deployer.get("/ping").await;
    assert_eq!((status, body.as_str()), (200, "pong"));
    let (status, _) = deployer.get("/health").await;
    assert_eq!(status, 503, "open, and truthful: the manager is not there");
    let resp = reqwest::Client::new()
        .post(format!("{}/deploy", deployer.url))
        .bearer_auth("s3cret")
        .body("deploy: {}")
        .send()
        .await
        .unwrap();
    // authorised: reaches the (absent) manager
    assert_eq!(resp.status().as_u16(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_query_values_are_bounded_and_never_crash_the_handler() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let doc = "deploy: {web: {cmd: sleep 100, cpus: 0.01, mem: 8}}";
    for timeout in [
        "1e300", "1e19", "-1", "0", "nan", "NaN", "inf", "-inf", "3601", "soon", "",
    ] {
        let (status, body) = deployer
            .post(
                &format!("/deploy?wait=true&timeout={timeout}"),
                Some("application/yaml"),
                doc,
            )
            .await;
        assert_eq!(status, 400, "timeout={timeout}: {body}");
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("expected seconds, more than 0 and at most 3600"),
            "timeout={timeout}: {body}"
        );
        // still serving
        let (status, _) = deployer.get("/metrics").await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        app_ids(&manager.url).await,
        Vec::<String>::new(),
        "nothing may be applied"
    );
    // A bounded timeout works.
    let (status, body) = deployer
        .post(
            "/deploy?wait=true&timeout=60",
            Some("application/yaml"),
            doc,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    assert_eq!(app_ids(&manager.url).await, vec!["/web".to_string()]);
}
