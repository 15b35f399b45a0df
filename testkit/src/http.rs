//! One HTTP request of a test, sent and read whole: the tests' checks read
//! the body, and a request that gets no answer, or a body that is not what
//! was asked for, fails the test naming the URL.

use serde_json::Value;

/// Sends `req` and reads the answer as JSON (any status).
pub async fn json(req: reqwest::RequestBuilder) -> Value {
    let resp = send(req).await;
    let url = resp.url().to_string();
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("{url}: the answer is not JSON: {e}"))
}

/// Sends `req` and reads the answer as text (any status).
pub async fn text(req: reqwest::RequestBuilder) -> String {
    let resp = send(req).await;
    let url = resp.url().to_string();
    resp.text()
        .await
        .unwrap_or_else(|e| panic!("{url}: reading the answer: {e}"))
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send()
        .await
        .unwrap_or_else(|e| panic!("no answer: {e}"))
}
