//! Setting values read the same way by every binary: booleans
//! ([`parse_bool`], also a clap value parser) and the Marathon URL with the
//! `MARATHON_HOST` / `MARATHON_PORT` fallback of earlier releases
//! ([`marathon_url`]).

/// Default Marathon API URL (DESIGN.md).
pub const DEFAULT_MARATHON_URL: &str = "http://127.0.0.1:8080";

/// Default port with `MARATHON_HOST` when `MARATHON_PORT` is absent.
pub const DEFAULT_MARATHON_PORT: u16 = 8080;

/// A boolean setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`
/// (any case, surrounding spaces ignored); anything else is an error that
/// lists what is accepted. Use as a clap value parser on `bool` flags
/// (`#[arg(long, env = "X", value_parser = daemon::parse_bool)]`): the flag
/// alone still means true, and its environment variable reads this way.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean (use true/false, 1/0, yes/no or on/off)"
        )),
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// The Marathon API URL: `url` (`--marathon-url` / `MARATHON_URL`) when
/// given; else `host` (`MARATHON_HOST`) with `port` (`MARATHON_PORT`,
/// default 8080) — a host that has a scheme keeps it (`https://m` becomes
/// `https://m:8080`) and one that has a port keeps it; else
/// [`DEFAULT_MARATHON_URL`]. The result is an http(s) URL without a
/// trailing slash; anything else is an error (user info never shown).
pub fn marathon_url(
    url: Option<&str>,
    host: Option<&str>,
    port: Option<&str>,
) -> Result<String, String> {
    let chosen = if let Some(u) = non_empty(url) {
        u.to_string()
    } else if let Some(h) = non_empty(host) {
        let port = match non_empty(port) {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("MARATHON_PORT {p:?} is not a port number"))?,
            None => DEFAULT_MARATHON_PORT,
        };
        let (scheme, rest) = match h.split_once("://") {
            Some((s, r)) => (s, r),
            None => ("http", h),
        };
        let rest = rest.trim_end_matches('/');
        let authority = &rest[rest.rfind('@').map_or(0, |i| i + 1)..];
        let has_port = match authority.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => authority.contains(':'),
        };
        if has_port {
            format!("{scheme}://{rest}")
        } else {
            format!("{scheme}://{rest}:{port}")
        }
    } else {
        DEFAULT_MARATHON_URL.to_string()
    };
    let shown = crate::redact_url(&chosen);
    let parsed = url::Url::parse(&chosen).map_err(|e| format!("Marathon URL {shown:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "Marathon URL {shown:?}: must be http(s)://host[:port]"
        ));
    }
    Ok(chosen.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for v in [
            "true", "TRUE", "True", "1", "yes", "YES", "on", "On", " true ",
        ] {
            assert_eq!(parse_bool(v), Ok(true), "{v:?}");
        }
        for v in ["false", "FALSE", "0", "no", "No", "off", "OFF"] {
            assert_eq!(parse_bool(v), Ok(false), "{v:?}");
        }
        for v in ["", "2", "y", "n", "truee", "enable"] {
            let e = parse_bool(v).unwrap_err();
            assert!(
                e.contains("true/false, 1/0, yes/no or on/off"),
                "{v:?}: {e}"
            );
        }
    }

    #[test]
    fn a_clap_flag_reads_its_variable_with_parse_bool() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[arg(long, env = "DAEMON_TEST_FLAG_NEVER_SET", value_parser = parse_bool)]
            flag: bool,
        }
        assert!(!Cli::try_parse_from(["t"]).unwrap().flag);
        assert!(Cli::try_parse_from(["t", "--flag"]).unwrap().flag);
    }

    #[test]
    fn marathon_url_resolution_table() {
        let cases: &[crate::fallback_table::Row<&str>] = &[
            (None, None, None, Ok("http://127.0.0.1:8080")),
            (
                Some("http://m:9090/"),
                Some("other"),
                Some("1"),
                Ok("http://m:9090"),
            ),
            (
                None,
                Some("marathon.local"),
                None,
                Ok("http://marathon.local:8080"),
            ),
            (
                None,
                Some("marathon.local"),
                Some("8081"),
                Ok("http://marathon.local:8081"),
            ),
            // A host with a scheme keeps it (never http://https://m:8080).
            (None, Some("https://m"), None, Ok("https://m:8080")),
            (
                None,
                Some("https://m.example"),
                Some("443"),
                Ok("https://m.example:443"),
            ),
            (None, Some("http://m/"), Some("81"), Ok("http://m:81")),
            // A host with a port keeps it.
            (None, Some("m:7000"), Some("8081"), Ok("http://m:7000")),
            (None, Some("https://m:9443"), None, Ok("https://m:9443")),
            (None, Some("[::1]"), None, Ok("http://[::1]:8080")),
            (None, Some("[::1]:81"), None, Ok("http://[::1]:81")),
            (None, Some("u:p@m"), None, Ok("http://u:p@m:8080")),
            (Some(""), Some("m"), None, Ok("http://m:8080")),
            (
                Some("http://user:pw@m:8080"),
                None,
                None,
                Ok("http://user:pw@m:8080"),
            ),
            (None, Some("m"), Some("eighty"), Err(())),
            (None, Some("ftp://m"), None, Err(())),
            (Some("ftp://m"), None, None, Err(())),
            (Some("not a url"), None, None, Err(())),
        ];
        crate::fallback_table::check(cases, marathon_url);
    }

    #[test]
    fn marathon_url_errors_never_show_passwords() {
        let e = marathon_url(Some("ftp://user:s3cret@m"), None, None).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
