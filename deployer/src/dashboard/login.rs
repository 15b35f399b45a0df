//! Reading the dashboard of a token-protected deployer from a browser.
//!
//! A browser cannot put a bearer header on a page load or an EventSource,
//! so a sign-in form (`POST /dashboard/login`, plain HTML, no script)
//! checks the API token and sets a session cookie (`HttpOnly`,
//! `SameSite=Strict`) holding a random per-process secret, never the token.
//! The cookie only opens reads (`GET`/`HEAD`): every action (`/deploy`,
//! `/scale`, `/restart`, `/remove`) still needs `Authorization: Bearer
//! <token>`, which the page's script sends from the token typed into the
//! page. A restart of the deployer ends every session.

use std::io::Read;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::render::esc;
use crate::http::State;
use daemon::http::constant_time_eq;

pub const COOKIE: &str = "mdo_dashboard";

/// The per-process session secret (32 random bytes, hex).
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Paths anyone may load: the sign-in form and what it needs.
pub fn is_open(method: &Method, path: &str) -> bool {
    matches!(path, "/dashboard/login" | "/dashboard/style.css")
        && (method == Method::GET || method == Method::POST || method == Method::HEAD)
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(header: Option<&str>) -> Option<&str> {
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == COOKIE).then_some(v)
    })
}

/// A read with a valid session cookie.
pub fn session_allows(req_method: &Method, cookie: Option<&str>, secret: &str) -> bool {
    (req_method == Method::GET || req_method == Method::HEAD)
        && cookie.is_some_and(|c| constant_time_eq(c.as_bytes(), secret.as_bytes()))
}

/// Page loads a browser makes (answered with the sign-in form, not JSON).
pub fn is_page(method: &Method, path: &str, accept: Option<&str>) -> bool {
    method == Method::GET
        && (path == "/" || path == "/dashboard/app")
        && accept.is_none_or(|a| a.contains("text/html"))
}

/// The sign-in form, with `status` (401 before signing in).
pub fn form(status: StatusCode, problem: Option<&str>) -> HttpResponse {
    let problem = problem
        .map(|p| format!("<p class=\"bad\" id=\"login-error\">{}</p>", esc(p)))
        .unwrap_or_default();
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mdo dashboard: sign in</title>\
<link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head><body><main><form id=\"login\" method=\"post\" action=\"/dashboard/login\">\
<h1>mdo dashboard</h1><p>This deployer needs its API token (<code>--auth-token</code>). Signing in lets this browser read \
the dashboard; actions still send the token with each request.</p>{problem}\
<p><label>API token <input id=\"login-token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus></label> \
<button id=\"login-button\" type=\"submit\">Sign in</button></p></form></main></body></html>\n"
        ))
}

fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

pub async fn show(state: web::Data<State>) -> HttpResponse {
    if state.config.auth_token.is_none() {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish();
    }
    form(StatusCode::OK, None)
}

pub async fn sign_in(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(token) = state.config.auth_token.as_deref() else {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish();
    };
    let given = form_token(&body).unwrap_or_default();
    if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        return form(
            StatusCode::UNAUTHORIZED,
            Some("That is not this deployer's token."),
        );
    }
    let secure = if req.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        state.board.session_secret
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((header::SET_COOKIE, cookie))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_reads_only() {
        assert!(session_allows(&Method::GET, Some("s3cret"), "s3cret"));
        assert!(!session_allows(&Method::POST, Some("s3cret"), "s3cret"));
        assert!(!session_allows(&Method::GET, Some("s3cre"), "s3cret"));
        assert!(!session_allows(&Method::GET, None, "s3cret"));
        assert!(is_open(&Method::POST, "/dashboard/login"));
        assert!(!is_open(&Method::GET, "/dashboard/live"));
        assert!(is_page(
            &Method::GET,
            "/",
            Some("text/html,application/xhtml+xml")
        ));
        assert!(!is_page(&Method::GET, "/", Some("application/json")));
        assert_eq!(form_token(b"token=a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(new_secret().unwrap().len(), 64);
        assert_eq!(
            cookie_value(Some("a=1; mdo_dashboard=xyz; b=2")),
            Some("xyz")
        );
        assert_eq!(cookie_value(Some("a=1")), None);
    }
}
