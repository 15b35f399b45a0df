//! The dashboard's actions and sign-in against a real manager (command
//! tasks) on a real etcd: `POST /scale`, `/restart`, `/remove` as the page's
//! script sends them, each checked through the manager's API; and with
//! `--auth-token`, that actions need the bearer token (a signed-in cookie
//! only opens reads) and that the sign-in cookie is what deployer/README.md
//! promises.

mod common;

use common::{
    app, create_on_manager, running_task_ids, settled, Deployer, Manager, MANAGER_TIMEOUT,
};
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-dashboard-token";

/// Creates `/dash/web` (a `sleep` command task) directly on the manager and
/// waits for its `n` tasks.
async fn create_app(marathon: &str, n: usize) -> Vec<String> {
    create_on_manager(
        marathon,
        &json!({"id": "/dash/web", "cmd": "sleep 3600", "instances": n,
            "cpus": 0.01, "mem": 8}),
    )
    .await;
    settled(marathon, "/dash/web", n).await
}

/// POSTs an action as the page's script does (JSON body, `Content-Type:
/// application/json`), with the bearer token and/or a cookie.
async fn act(
    deployer: &Deployer,
    path: &str,
    body: &Value,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", deployer.url))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.expect("deployer answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A GET as a browser page load (`Accept: text/html`), with a cookie.
async fn page(deployer: &Deployer, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("{}{path}", deployer.url))
        .header("Accept", "text/html,application/xhtml+xml");
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.expect("deployer answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The manager's view of `/dash/web`: (instances, version, running task ids).
async fn snapshot(marathon: &str) -> (u64, String, Vec<String>) {
    let a = app(marathon, "/dash/web").await.expect("/dash/web exists");
    (
        a["instances"].as_u64().unwrap(),
        a["version"].as_str().unwrap().to_string(),
        running_task_ids(marathon, "/dash/web").await,
    )
}

fn assert_done(status: u16, body: &Value, action: &str) {
    assert_eq!(status, 200, "{action}: {body}");
    assert_eq!(body["app_id"], "/dash/web", "{body}");
    assert_eq!(body["action"], action, "{body}");
    assert!(
        body["deployment_id"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_restart_and_remove_as_the_page_sends_them() {
    let manager = Manager::start();
    let m = manager.url.as_str();
    let deployer = Deployer::start(m);
    let first = create_app(m, 1).await;

    // The page offers the three buttons for the app, and its script posts to
    // these very routes.
    let (status, detail) = page(&deployer, "/dashboard/app?fragment=1&id=/dash/web", None).await;
    assert_eq!(status, 200, "{detail}");
    assert!(
        detail.contains("class=\"actions js-only\" hidden data-app=\"/dash/web\""),
        "{detail}"
    );
    for button in [
        "class=\"scale\"",
        "class=\"restart\"",
        "class=\"remove danger\"",
    ] {
        assert!(detail.contains(button), "{button} missing: {detail}");
    }
    let (_, script) = deployer.get("/dashboard/app.js").await;
    for route in [
        "path = \"/scale\"",
        "path = \"/restart\"",
        "path = \"/remove\"",
    ] {
        assert!(script.contains(route), "the script no longer sends {route}");
    }

    // Scale 1 -> 3: the manager runs three tasks, the first one kept.
    let (status, body) = act(
        &deployer,
        "/scale",
        &json!({"app_id": "/dash/web", "instances": 3}),
        None,
        None,
    )
    .await;
    assert_done(status, &body, "scaled");
    let three = settled(m, "/dash/web", 3).await;
    assert!(
        three.contains(&first[0]),
        "scaling kept {first:?}: {three:?}"
    );
    assert_eq!(snapshot(m).await.0, 3);

    // Restart: three tasks again, every one of them new.
    let (status, body) = act(
        &deployer,
        "/restart",
        &json!({"app_id": "/dash/web"}),
        None,
        None,
    )
    .await;
    assert_done(status, &body, "restarted");
    let restarted = testkit::eventually_async(
        "three new tasks replace the old ones",
        MANAGER_TIMEOUT,
        || async {
            let a = app(m, "/dash/web").await?;
            let deploying = a["deployments"].as_array().is_some_and(|d| !d.is_empty());
            let ids = running_task_ids(m, "/dash/web").await;
            (!deploying && ids.len() == 3 && ids.iter().all(|id| !three.contains(id)))
                .then_some(ids)
        },
    )
    .await;
    assert_eq!(restarted.len(), 3);

    // Remove: the app and its tasks are gone from the manager and the page.
    let (status, body) = act(
        &deployer,
        "/remove",
        &json!({"app_id": "/dash/web"}),
        None,
        None,
    )
    .await;
    assert_done(status, &body, "removed");
    testkit::eventually_async(
        "/dash/web and its tasks are gone",
        MANAGER_TIMEOUT,
        || async {
            let tasks: Value = reqwest::get(format!("{m}/v2/tasks"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let left = tasks["tasks"]
                .as_array()?
                .iter()
                .any(|t| t["appId"] == "/dash/web");
            (app(m, "/dash/web").await.is_none() && !left).then_some(())
        },
    )
    .await;
    let (status, html) = page(&deployer, "/", None).await;
    assert_eq!(status, 200);
    assert!(!html.contains("data-app=\"/dash/web\""), "{html}");

    // An app the manager does not know: 404, for each action.
    for (path, body) in [
        ("/scale", json!({"app_id": "/dash/web", "instances": 1})),
        ("/restart", json!({"app_id": "/dash/web"})),
        ("/remove", json!({"app_id": "/dash/web"})),
    ] {
        let (status, body) = act(&deployer, path, &body, None, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("/dash/web"),
            "{path}: {body}"
        );
    }
    assert!(app(m, "/dash/web").await.is_none(), "a 404 created nothing");
}

/// Signs in through the form; returns the `Set-Cookie` header and the
/// `name=value` pair to send back.
async fn sign_in(deployer: &Deployer, token: &str) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/dashboard/login", deployer.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("deployer answers");
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, set_cookie, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_actions_need_the_bearer_and_a_session_cookie_is_not_enough() {
    let manager = Manager::start();
    let m = manager.url.as_str();
    let deployer = Deployer::start_with(m, |c| c.auth_token = Some(TOKEN.into()));
    create_app(m, 1).await;
    let before = snapshot(m).await;

    let (status, set_cookie, _) = sign_in(&deployer, TOKEN).await;
    assert_eq!(status, 303);
    let cookie = set_cookie
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let actions = [
        ("/scale", json!({"app_id": "/dash/web", "instances": 2})),
        ("/restart", json!({"app_id": "/dash/web"})),
        ("/remove", json!({"app_id": "/dash/web"})),
    ];
    for (path, body) in &actions {
        for (who, bearer, cookie) in [
            ("no token", None, None),
            ("a wrong token", Some("s3cret-wrong"), None),
            ("the session cookie only", None, Some(cookie.as_str())),
        ] {
            let (status, answer) = act(&deployer, path, body, bearer, cookie).await;
            assert_eq!(status, 401, "{path} with {who}: {answer}");
            assert_eq!(answer["message"], "Invalid username or password.");
            // Refused before the manager is asked: nothing changed there.
            assert_eq!(
                snapshot(m).await,
                before,
                "{path} with {who} changed the app"
            );
        }
    }

    // With the bearer token the same actions work.
    let (status, body) = act(&deployer, "/scale", &actions[0].1, Some(TOKEN), None).await;
    assert_done(status, &body, "scaled");
    let two = settled(m, "/dash/web", 2).await;
    let (status, body) = act(&deployer, "/restart", &actions[1].1, Some(TOKEN), None).await;
    assert_done(status, &body, "restarted");
    testkit::eventually_async("two new tasks", MANAGER_TIMEOUT, || async {
        let ids = running_task_ids(m, "/dash/web").await;
        (ids.len() == 2 && ids.iter().all(|id| !two.contains(id))).then_some(())
    })
    .await;
    let (status, body) = act(&deployer, "/remove", &actions[2].1, Some(TOKEN), None).await;
    assert_done(status, &body, "removed");
    testkit::eventually_async("/dash/web is gone", MANAGER_TIMEOUT, || async {
        app(m, "/dash/web").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_cookie_is_http_only_strict_and_opens_reads_only() {
    let manager = Manager::start();
    let m = manager.url.as_str();
    let deployer = Deployer::start_with(m, |c| c.auth_token = Some(TOKEN.into()));
    create_app(m, 1).await;

    // Before signing in: the page is the sign-in form, with 401.
    let (status, html) = page(&deployer, "/", None).await;
    assert_eq!(status, 401, "{html}");
    assert!(html.contains("<form id=\"login\""), "{html}");
    assert!(
        !html.contains("/dash/web"),
        "nothing of the cluster shown: {html}"
    );
    // A non-page read gets a plain 401.
    let (status, _) = deployer.get("/services").await;
    assert_eq!(status, 401);
    // The form itself is open.
    let (status, html) = page(&deployer, "/dashboard/login", None).await;
    assert_eq!(status, 200, "{html}");

    // A wrong token: the form again with why, and no cookie.
    let (status, set_cookie, _) = sign_in(&deployer, "not-it").await;
    assert_eq!(status, 401);
    assert_eq!(set_cookie, None);

    // The right token: a redirect to / with the session cookie.
    let (status, set_cookie, location) = sign_in(&deployer, TOKEN).await;
    assert_eq!((status, location.as_str()), (303, "/"));
    let set_cookie = set_cookie.expect("a session cookie");
    let attributes: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    let (name, value) = attributes[0].split_once('=').unwrap();
    assert_eq!(name, "mdo_dashboard", "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            attributes.contains(&attribute),
            "{attribute} missing: {set_cookie}"
        );
    }
    // A random value, never the token.
    assert!(!set_cookie.contains(TOKEN), "the token is in the cookie");
    assert_eq!(value.len(), 64, "{set_cookie}");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{set_cookie}");
    let cookie = attributes[0].to_string();

    // It opens the page and the dashboard's reads.
    let (status, html) = page(&deployer, "/", Some(&cookie)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-app=\"/dash/web\""), "{html}");
    assert!(!html.contains(TOKEN), "the page never holds the token");
    for path in [
        "/dashboard/live",
        "/dashboard/app?id=/dash/web",
        "/services",
    ] {
        let (status, body) = page(&deployer, path, Some(&cookie)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // A forged or stale value opens nothing.
    let forged = format!("mdo_dashboard={}", "0".repeat(64));
    let (status, html) = page(&deployer, "/", Some(&forged)).await;
    assert_eq!(status, 401, "{html}");

    // It never acts: /deploy with only the cookie is refused, nothing applied.
    let resp = reqwest::Client::new()
        .post(format!("{}/deploy", deployer.url))
        .header("Content-Type", "application/yaml")
        .header("Cookie", &cookie)
        .body("deploy: {other: {cmd: sleep 3600, cpus: 0.01, mem: 8}}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(app(m, "/other").await.is_none());

    // A restart of the deployer ends every session.
    drop(deployer);
    let restarted = Deployer::start_with(m, |c| c.auth_token = Some(TOKEN.into()));
    let (status, html) = page(&restarted, "/", Some(&cookie)).await;
    assert_eq!(status, 401, "the old session still opens the page: {html}");
    assert!(html.contains("<form id=\"login\""), "{html}");
}
