//! The HTTP APIs' shared plumbing. The bearer-token check (manager, deployer, subscriber): with
//! a token configured, every route but [`OPEN_PATHS`] needs
//! `Authorization: Bearer <token>`, compared in constant time; a request
//! without it gets 401 with `WWW-Authenticate: Bearer` and Marathon's body
//! `{"message": "Invalid username or password."}` ([`unauthorized`], with
//! the `http` feature). Also the request body limit ([`read_body`]).

/// Routes open without the token (health checks and load balancers).
pub const OPEN_PATHS: &[&str] = &["/ping", "/health"];

/// The message of a 401 (Marathon's words).
pub const UNAUTHORIZED_MESSAGE: &str = "Invalid username or password.";

/// The `WWW-Authenticate` value of a 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"mdo\"";

/// Whether `path` is open without the token.
pub fn is_open_path(path: &str) -> bool {
    OPEN_PATHS.contains(&path)
}

/// Compares secrets without leaking, through timing, where they differ
/// (only whether their lengths do).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header value is `Bearer <token>` (spaces
/// around the token ignored).
pub fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

#[cfg(feature = "http")]
pub use self::actix::{bearer_ok, read_body, unauthorized, BodyError};

/// The actix-web side (feature `http`).
#[cfg(feature = "http")]
mod actix {
    use actix_web::http::header;
    use actix_web::{web, HttpRequest, HttpResponse};
    use futures::StreamExt;

    use super::{bearer_matches, UNAUTHORIZED_MESSAGE, WWW_AUTHENTICATE};

    /// Whether the request carries `Authorization: Bearer <token>`.
    pub fn bearer_ok(headers: &header::HeaderMap, token: &str) -> bool {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        bearer_matches(value, token)
    }

    /// The 401 every API answers without the token.
    pub fn unauthorized() -> HttpResponse {
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, WWW_AUTHENTICATE))
            .json(serde_json::json!({ "message": UNAUTHORIZED_MESSAGE }))
    }

    /// Why [`read_body`] stopped.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum BodyError {
        /// The body is `size` bytes or more, over `limit` (answer 413).
        TooLarge { size: usize, limit: usize },
        /// The connection failed while reading (answer 400).
        Read(String),
    }

    /// The request body, at most `limit` bytes: a `Content-Length` over it
    /// is refused before reading, a body that grows past it while read is
    /// refused at that point.
    pub async fn read_body(
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: usize,
    ) -> Result<web::Bytes, BodyError> {
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > limit {
                return Err(BodyError::TooLarge { size: len, limit });
            }
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge {
                    size: body.len() + chunk.len(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_table() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("Bearer s3cret"), true),
            (Some("Bearer  s3cret "), true),
            (Some("Bearer s3cre"), false),
            (Some("Bearer s3cretx"), false),
            (Some("bearer s3cret"), false),
            (Some("Basic s3cret"), false),
            (Some("s3cret"), false),
            (Some("Bearer "), false),
            (None, false),
        ];
        for (header, want) in cases {
            assert_eq!(bearer_matches(*header, "s3cret"), *want, "{header:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn open_paths() {
        assert!(is_open_path("/ping") && is_open_path("/health"));
        assert!(!is_open_path("/v2/apps") && !is_open_path("/health/x"));
    }
}
