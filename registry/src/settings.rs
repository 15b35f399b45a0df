//! Connection settings. Pure: callers read flags and environment variables
//! and hand the strings to [`Settings::from_parts`] / [`resolve_endpoints`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::normalize_prefix;

/// `http://127.0.0.1:2379`
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
/// `/services`
pub const DEFAULT_PREFIX: &str = "/services";
const DEFAULT_ETCD_PORT: &str = "2379";

/// TLS material: a CA to trust and optionally a client certificate + key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach the registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Full URLs (`http://host:port` or `https://host:port`).
    pub endpoints: Vec<String>,
    /// Normalised key prefix (`/services` by default).
    pub prefix: String,
    /// User name and password.
    pub auth: Option<(String, String)>,
    pub tls: Option<Tls>,
    pub connect_timeout: Duration,
    /// Bound on every unary request (reads, writes); not on watch streams.
    pub request_timeout: Duration,
    /// Operations per transaction (etcd's `--max-txn-ops`, 128 by default).
    pub max_txn_ops: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            auth: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_txn_ops: crate::connection::MAX_TXN_OPS,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .field("password", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_txn_ops", &self.max_txn_ops)
            .finish()
    }
}

impl Settings {
    /// Settings for these endpoints (already full URLs), defaults elsewhere.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Settings {
        Settings {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Settings::default()
        }
    }

    /// Builds validated settings from raw strings (flags or env values).
    /// `None` or empty strings mean "not given". Endpoints are comma
    /// separated; without a scheme they get `https://` when TLS material is
    /// given, `http://` otherwise.
    pub fn from_parts(
        endpoints: Option<&str>,
        prefix: Option<&str>,
        user: Option<&str>,
        password: Option<&str>,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Settings> {
        let tls = match (ca, cert, key) {
            (None, None, None) => None,
            (ca, cert, key) => {
                if cert.is_some() != key.is_some() {
                    return Err(Error::InvalidSettings(
                        "a client certificate needs its key (and a key its certificate)".into(),
                    ));
                }
                Some(Tls { ca, cert, key })
            }
        };
        let auth = match (nonempty(user), password) {
            (Some(u), p) => Some((u.to_string(), p.unwrap_or_default().to_string())),
            (None, Some(p)) if !p.is_empty() => {
                return Err(Error::InvalidSettings(
                    "an etcd password was given without a user".into(),
                ))
            }
            (None, _) => None,
        };
        let raw = parse_endpoints(nonempty(endpoints).unwrap_or(DEFAULT_HOST_PORT))?;
        let mut list = Vec::with_capacity(raw.len());
        for e in raw {
            if tls.is_some() && e.starts_with("http://") {
                return Err(Error::InvalidSettings(format!(
                    "endpoint {e} is plain http but TLS settings were given"
                )));
            }
            list.push(with_scheme(&e, tls.is_some()));
        }
        Ok(Settings {
            endpoints: list,
            prefix: normalize_prefix(nonempty(prefix).unwrap_or(DEFAULT_PREFIX))?,
            auth,
            tls,
            ..Settings::default()
        })
    }

    /// Same settings with another prefix (normalised).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Settings> {
        self.prefix = normalize_prefix(prefix)?;
        Ok(self)
    }

    /// Same settings with a user and password.
    pub fn with_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Settings {
        self.auth = Some((user.into(), password.into()));
        self
    }
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// [`DEFAULT_ENDPOINT`] before its scheme is settled.
const DEFAULT_HOST_PORT: &str = "127.0.0.1:2379";

/// The one scheme rule for etcd endpoints, in every binary and guestutils:
/// an endpoint without a scheme gets `https://` when TLS is configured
/// (`tls`), `http://` otherwise; one with a scheme keeps it.
pub fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// Splits a comma-separated endpoint list. Each entry is `scheme://host:port`
/// (http or https) or `host[:port]` (the port defaults to 2379; the scheme
/// is left to [`Settings::from_parts`]). Empty entries are skipped; at least
/// one endpoint is required.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) if s == "http" || s == "https" => (Some(s), r),
            Some((s, _)) => {
                return Err(Error::InvalidSettings(format!(
                    "endpoint {raw:?}: scheme {s:?} is not http or https"
                )))
            }
            None => (None, raw),
        };
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
            return Err(Error::InvalidSettings(format!(
                "endpoint {raw:?} is not host:port"
            )));
        }
        let (host, port) = split_host_port(hostport);
        if host.is_empty() {
            return Err(Error::InvalidSettings(format!(
                "endpoint {raw:?} has no host"
            )));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Error::InvalidSettings(format!("endpoint {raw:?}: bad port {p:?}")))?
                .to_string(),
            None => DEFAULT_ETCD_PORT.to_string(),
        };
        let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
        out.push(format!("{scheme}{host}:{port}"));
    }
    if out.is_empty() {
        return Err(Error::InvalidSettings("no etcd endpoint given".into()));
    }
    Ok(out)
}

fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        // [ipv6]:port
        if let Some((h, after)) = rest.split_once(']') {
            let host = &s[..h.len() + 2];
            return (host, after.strip_prefix(':'));
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

/// The compatibility rule: `ETCD_HOST_ADDRESS[:ETCD_PORT]` -> one endpoint
/// `host:port` (port 2379 unless given), its scheme kept when the host has
/// one, else left to [`with_scheme`] (https with TLS).
pub fn compat_endpoint(host: &str, port: Option<&str>) -> Result<String> {
    let host = host.trim();
    let port = port.map(str::trim).filter(|p| !p.is_empty());
    let joined = match port {
        Some(p) => format!("{}:{p}", host.trim_end_matches('/')),
        None => host.to_string(),
    };
    let parsed = parse_endpoints(&joined)?;
    Ok(parsed.into_iter().next().expect("one endpoint"))
}

/// The endpoint fallback of DESIGN.md: `ETCD_ENDPOINTS` (comma separated),
/// else `ETCD_HOST_ADDRESS[:ETCD_PORT]`, else `127.0.0.1:2379`. Pure: pass
/// the variables' values. Returns the list as a comma-separated string for
/// [`Settings::from_parts`]; endpoints given without a scheme stay so, and
/// get theirs there ([`with_scheme`]).
pub fn resolve_endpoints(
    etcd_endpoints: Option<&str>,
    etcd_host_address: Option<&str>,
    etcd_port: Option<&str>,
) -> Result<String> {
    if let Some(list) = etcd_endpoints.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(parse_endpoints(list)?.join(","));
    }
    if let Some(host) = etcd_host_address.map(str::trim).filter(|s| !s.is_empty()) {
        return compat_endpoint(host, etcd_port);
    }
    Ok(DEFAULT_HOST_PORT.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists() {
        let cases: [(&str, Option<&[&str]>); 9] = [
            ("http://127.0.0.1:2379", Some(&["http://127.0.0.1:2379"])),
            (
                "http://a:1, https://b:2 ,c:3",
                Some(&["http://a:1", "https://b:2", "c:3"]),
            ),
            ("etcd", Some(&["etcd:2379"])),
            ("[::1]:2380,[::1]", Some(&["[::1]:2380", "[::1]:2379"])),
            ("http://a:1/", Some(&["http://a:1"])),
            ("", None),
            (" , ", None),
            ("ftp://a:1", None),
            ("a:notaport", None),
        ];
        for (input, expected) in cases {
            let got = parse_endpoints(input).ok();
            let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn scheme_rule() {
        // (endpoint, TLS configured) -> endpoint used.
        let cases = [
            ("e:2379", false, "http://e:2379"),
            ("e:2379", true, "https://e:2379"),
            ("http://e:2379", false, "http://e:2379"),
            ("https://e:2379", false, "https://e:2379"),
            ("https://e:2379", true, "https://e:2379"),
            ("[::1]:2379", true, "https://[::1]:2379"),
        ];
        for (endpoint, tls, want) in cases {
            assert_eq!(with_scheme(endpoint, tls), want, "{endpoint} tls={tls}");
        }
    }

    #[test]
    fn compat_rule() {
        assert_eq!(compat_endpoint("10.0.0.1", None).unwrap(), "10.0.0.1:2379");
        assert_eq!(
            compat_endpoint("10.0.0.1", Some("4001")).unwrap(),
            "10.0.0.1:4001"
        );
        assert_eq!(compat_endpoint("etcd", Some("")).unwrap(), "etcd:2379");
        assert_eq!(
            compat_endpoint("https://etcd", Some("4001")).unwrap(),
            "https://etcd:4001"
        );
        assert!(compat_endpoint("10.0.0.1", Some("x")).is_err());
        assert!(compat_endpoint("", None).is_err());
    }

    #[test]
    fn endpoint_fallbacks() {
        let cases = [
            (
                (Some("http://a:1,b:2"), Some("h"), Some("9")),
                "http://a:1,b:2",
            ),
            ((Some(" "), Some("h"), Some("9")), "h:9"),
            ((None, Some("h"), None), "h:2379"),
            ((None, None, Some("9")), "127.0.0.1:2379"),
            ((None, None, None), "127.0.0.1:2379"),
        ];
        for ((e, h, p), expected) in cases {
            assert_eq!(resolve_endpoints(e, h, p).unwrap(), expected);
        }
    }

    /// The arguments of [`Settings::from_parts`], all absent by default.
    #[derive(Clone, Copy, Default)]
    struct Parts<'a> {
        endpoints: Option<&'a str>,
        prefix: Option<&'a str>,
        user: Option<&'a str>,
        password: Option<&'a str>,
        ca: Option<&'a str>,
        cert: Option<&'a str>,
        key: Option<&'a str>,
    }

    impl Parts<'_> {
        fn settings(self) -> Result<Settings> {
            Settings::from_parts(
                self.endpoints,
                self.prefix,
                self.user,
                self.password,
                self.ca.map(PathBuf::from),
                self.cert.map(PathBuf::from),
                self.key.map(PathBuf::from),
            )
        }
    }

    #[test]
    fn settings_from_parts() {
        /// What the settings hold: endpoints, prefix, user/password, TLS.
        type Want<'a> = (&'a [&'a str], &'a str, Option<(&'a str, &'a str)>, bool);
        let root = Some(("root", "pw"));
        let cases: &[(Parts, Option<Want>)] = &[
            (
                Parts {
                    endpoints: Some("a:1,https://b:2"),
                    ..Parts::default()
                },
                Some((&["http://a:1", "https://b:2"], "/services", None, false)),
            ),
            (
                Parts {
                    prefix: Some("/x/"),
                    user: Some("root"),
                    password: Some("pw"),
                    ca: Some("/ca.pem"),
                    ..Parts::default()
                },
                Some((&["https://127.0.0.1:2379"], "/x", root, true)),
            ),
            (
                Parts {
                    endpoints: Some("a:1"),
                    prefix: Some("/x/"),
                    user: Some("root"),
                    password: Some("pw"),
                    ca: Some("/ca.pem"),
                    ..Parts::default()
                },
                Some((&["https://a:1"], "/x", root, true)),
            ),
            // An explicit http:// endpoint with TLS.
            (
                Parts {
                    endpoints: Some("http://a:1"),
                    ca: Some("/ca"),
                    ..Parts::default()
                },
                None,
            ),
            // A certificate without its key.
            (
                Parts {
                    endpoints: Some("a:1"),
                    cert: Some("/c"),
                    ..Parts::default()
                },
                None,
            ),
            // A password without a user.
            (
                Parts {
                    password: Some("pw"),
                    ..Parts::default()
                },
                None,
            ),
            (
                Parts {
                    prefix: Some("/a/../b"),
                    ..Parts::default()
                },
                None,
            ),
        ];
        for (i, (parts, want)) in cases.iter().enumerate() {
            let got = parts.settings();
            let Some((endpoints, prefix, auth, tls)) = want else {
                assert!(got.is_err(), "case {i}: {got:?}");
                continue;
            };
            let s = got.unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(s.endpoints, *endpoints, "case {i}");
            assert_eq!(s.prefix, *prefix, "case {i}");
            let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
            assert_eq!(s.auth, auth, "case {i}");
            assert_eq!(s.tls.is_some(), *tls, "case {i}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let s = Settings::default().with_auth("root", "s3cr3t-pw");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("root"));
    }
}
