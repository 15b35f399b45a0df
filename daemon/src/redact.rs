//! URLs as they may be logged: without user info (`user:password@`) and
//! with the values of secret-looking query parameters replaced. Every
//! binary logs endpoints and URLs through [`redact_url`], so a password in
//! a `--marathon-url` or an etcd endpoint never reaches a log.

/// Query parameters whose values are never logged.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "auth",
    "password",
    "passwd",
    "secret",
    "key",
    "api_key",
    "apikey",
];

/// What replaces a hidden value.
pub const REDACTED: &str = "redacted";

/// `url` without user info and with secret query values replaced (also for
/// scheme-less `user:pw@host:port/...`). Anything else is kept as written;
/// this never fails.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    format!("{scheme}{host}{}", redact_query(tail))
}

/// Every URL of a list (a comma-separated endpoint list: split first).
pub fn redact_urls<S: AsRef<str>>(urls: &[S]) -> Vec<String> {
    urls.iter().map(|u| redact_url(u.as_ref())).collect()
}

fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (path, rest) = tail.split_at(q + 1);
    let (query, fragment) = match rest.find('#') {
        Some(h) => rest.split_at(h),
        None => (rest, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", pairs.join("&"))
}

/// Whether a query parameter's value is a secret: one of the well-known
/// names, or any name that contains `token`, `secret` or `password`
/// (`x-auth-token`, `client_secret`, ...).
pub fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_PARAMS.contains(&key.as_str())
        || ["token", "secret", "password"]
            .iter()
            .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_secret_values_go() {
        let table = [
            ("http://u:pw@m:8080/v2", "http://m:8080/v2"),
            ("https://u@m", "https://m"),
            ("https://u:p@ss@m:1/x?a=1", "https://m:1/x?a=1"),
            ("u:pw@h:2379", "h:2379"),
            ("http://m:8080", "http://m:8080"),
            (
                "http://m/cb?token=s3cret&x=1",
                "http://m/cb?token=redacted&x=1",
            ),
            (
                "http://m/cb?X=1&Password=a#frag",
                "http://m/cb?X=1&Password=redacted#frag",
            ),
            ("http://m/a@b", "http://m/a@b"),
            (
                "http://m/cb?x-auth-token=t&client_secret=s&ok=1",
                "http://m/cb?x-auth-token=redacted&client_secret=redacted&ok=1",
            ),
            ("", ""),
            ("not a url", "not a url"),
        ];
        for (input, want) in table {
            assert_eq!(redact_url(input), want, "{input}");
        }
        assert_eq!(
            redact_urls(&["http://a:b@h1:2379", "http://h2:2379"]),
            vec!["http://h1:2379", "http://h2:2379"]
        );
    }
}
