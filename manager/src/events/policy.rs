//! Where event callbacks may go (`/v2/eventSubscriptions`): a callback URL
//! is an address the manager will POST to on anyone's behalf, so it must not
//! reach what only the manager should reach.
//!
//! Refused unless `--callback-allow` names them (a CIDR covering the address,
//! or the URL's host name): link-local and cloud metadata addresses
//! (169.254.0.0/16, fe80::/10, fd00:ec2::254, and the same behind IPv4-mapped
//! or NAT64 IPv6 forms) and the manager's own etcd endpoints (host and port;
//! loopback and unspecified addresses count as one host).
//!
//! Registration checks what the URL says (scheme, literal addresses, host
//! names equal to an etcd endpoint's); delivery checks every address a host
//! name resolves to, right before connecting to exactly that address, so a
//! name that later resolves somewhere refused (DNS rebinding) gets nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An IP network, `addr/bits` (a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0-{max}"))?,
        };
        Ok(Cidr {
            net: canonical(net),
            bits,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.bits as usize)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.bits as usize)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Why an address is refused for callbacks by default, if it is.
fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(a) => refused_v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            if s[0] & 0xffc0 == 0xfe80 {
                return Some("a link-local address");
            }
            if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                return Some("a cloud metadata address");
            }
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = a.octets();
                return refused_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            None
        }
    }
}

fn refused_v4(a: Ipv4Addr) -> Option<&'static str> {
    a.is_link_local()
        .then_some("a link-local or cloud metadata address")
}

/// Loopback and unspecified addresses all reach this machine.
fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_loopback() || ip.is_unspecified()
}

fn same_host(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b) || (is_local(a) && is_local(b))
}

/// Host names compared as DNS does (case, trailing dot).
fn norm_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn is_localhost_name(h: &str) -> bool {
    h == "localhost" || h.ends_with(".localhost")
}

/// One etcd endpoint: its host as written and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EtcdHost {
    Addr(IpAddr),
    Name(String),
}

/// What `--callback-allow` permits and what is refused.
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    allow_nets: Vec<Cidr>,
    /// Lower-case host names, allowed whatever they resolve to.
    allow_hosts: Vec<String>,
    etcd: Vec<(EtcdHost, u16)>,
}

impl CallbackPolicy {
    /// `allow`: CIDRs, addresses or host names (`--callback-allow`);
    /// `etcd_endpoints`: URLs (`http://h:2379`) or `host:port` of the
    /// manager's etcd, refused as callback targets.
    pub fn new(allow: &[String], etcd_endpoints: &[String]) -> Result<CallbackPolicy, String> {
        let mut policy = CallbackPolicy::default();
        for entry in allow.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if entry.contains('/') || entry.parse::<IpAddr>().is_ok() || entry.starts_with('[') {
                policy.allow_nets.push(Cidr::parse(entry)?);
            } else if entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                policy.allow_hosts.push(norm_host(entry));
            } else {
                return Err(format!(
                    "{entry:?} is not a CIDR, an address or a host name"
                ));
            }
        }
        for ep in etcd_endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
        {
            let with_scheme = if ep.contains("://") {
                ep.to_string()
            } else {
                format!("http://{ep}")
            };
            let Ok(url) = url::Url::parse(&with_scheme) else {
                continue;
            };
            let port = url.port().unwrap_or(2379);
            let host = match url.host() {
                Some(url::Host::Ipv4(a)) => EtcdHost::Addr(a.into()),
                Some(url::Host::Ipv6(a)) => EtcdHost::Addr(a.into()),
                Some(url::Host::Domain(d)) if is_localhost_name(&norm_host(d)) => {
                    EtcdHost::Addr(Ipv4Addr::LOCALHOST.into())
                }
                Some(url::Host::Domain(d)) => EtcdHost::Name(norm_host(d)),
                None => continue,
            };
            if !policy.etcd.contains(&(host.clone(), port)) {
                policy.etcd.push((host, port));
            }
        }
        Ok(policy)
    }

    /// Whether `host` (a URL's host name) is allowed whatever it resolves to.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = norm_host(host);
        self.allow_hosts.contains(&host)
    }

    fn net_allowed(&self, ip: IpAddr) -> bool {
        self.allow_nets.iter().any(|n| n.contains(ip))
    }

    /// Registration check of a callback URL: `Err(reason)` when refused.
    /// Looks only at what the URL says (no DNS).
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "Invalid URL '{}': only http and https callbacks are supported",
                redacted_url(url)
            ));
        }
        let Some(host) = url.host() else {
            return Err(format!("Invalid URL '{}': no host", redacted_url(url)));
        };
        let port = url.port_or_known_default().unwrap_or(80);
        match host {
            url::Host::Ipv4(a) => self.check_addr_static(SocketAddr::new(a.into(), port)),
            url::Host::Ipv6(a) => self.check_addr_static(SocketAddr::new(a.into(), port)),
            url::Host::Domain(d) => {
                if self.host_allowed(d) {
                    return Ok(());
                }
                let name = norm_host(d);
                if is_localhost_name(&name) {
                    return self
                        .check_addr_static(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
                }
                for (h, p) in &self.etcd {
                    if *p == port && *h == EtcdHost::Name(name.clone()) {
                        return Err(etcd_refusal(&format!("{d}:{port}")));
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks an address against everything known without DNS.
    fn check_addr_static(&self, addr: SocketAddr) -> Result<(), String> {
        let ip = addr.ip();
        if self.net_allowed(ip) {
            return Ok(());
        }
        if let Some(kind) = refused_kind(ip) {
            return Err(format!(
                "{ip} is {kind}; callbacks to it need --callback-allow"
            ));
        }
        for (h, p) in &self.etcd {
            if *p == addr.port() && matches!(h, EtcdHost::Addr(e) if same_host(*e, ip)) {
                return Err(etcd_refusal(&addr.to_string()));
            }
        }
        Ok(())
    }

    /// Delivery check of one resolved address: also compares it with what
    /// the etcd endpoints' host names resolve to now.
    pub async fn check_addr(&self, addr: SocketAddr) -> Result<(), String> {
        self.check_addr_static(addr)?;
        if self.net_allowed(addr.ip()) {
            return Ok(());
        }
        for (h, p) in &self.etcd {
            let EtcdHost::Name(name) = h else { continue };
            if *p != addr.port() {
                continue;
            }
            if let Ok(found) = tokio::net::lookup_host((name.as_str(), *p)).await {
                for a in found {
                    if same_host(a.ip(), addr.ip()) {
                        return Err(etcd_refusal(&addr.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `host:port` and keeps the addresses callbacks may use;
    /// `Err(reason)` when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if self.host_allowed(host) {
            return Ok(found);
        }
        let mut ok = Vec::new();
        let mut refusal = None;
        for a in found {
            match self.check_addr(a).await {
                Ok(()) => ok.push(a),
                Err(e) => refusal = Some(e),
            }
        }
        match (ok.is_empty(), refusal) {
            (false, _) => Ok(ok),
            (true, Some(e)) => Err(format!("{host} resolves to a refused address: {e}")),
            (true, None) => Err(format!("{host} has no address")),
        }
    }
}

fn etcd_refusal(target: &str) -> String {
    format!("{target} is the manager's etcd endpoint; callbacks to it need --callback-allow")
}

/// `url` without user info and without the values of secret query
/// parameters (`token=...`), for logs and messages: the one redaction every
/// binary uses ([`daemon::redact_url`]).
pub fn redacted_url(url: &url::Url) -> String {
    daemon::redact_url(url.as_str())
}

/// [`redacted_url`] of a URL given as text (also when it does not parse).
pub fn redacted(raw: &str) -> String {
    daemon::redact_url(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let n = Cidr::parse("169.254.169.254").unwrap();
        assert!(n.contains("169.254.169.254".parse().unwrap()));
        assert!(!n.contains("169.254.169.253".parse().unwrap()));
        let n = Cidr::parse("fe80::/10").unwrap();
        assert!(n.contains("febf::1".parse().unwrap()));
        assert!(!n.contains("fec0::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "x/8", "10.0.0.0/", "host"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_refusals() {
        let p = CallbackPolicy::new(&[], &["http://127.0.0.1:2379".into()]).unwrap();
        for ok in [
            "http://127.0.0.1:9090/cb",
            "https://example.com/cb",
            "http://10.0.0.1:2379/",
            "http://[::1]:8080/",
            "http://example.com:2379/",
        ] {
            assert!(p.check_url(&url(ok)).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://h/x", "only http and https"),
            ("http://169.254.169.254/latest/meta-data", "metadata"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[::ffff:169.254.169.254]/", "metadata"),
            ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
            ("http://[fd00:ec2::254]/", "metadata"),
            ("http://127.0.0.1:2379/v3/kv/put", "etcd"),
            ("http://localhost:2379/", "etcd"),
            ("http://0.0.0.0:2379/", "etcd"),
            ("http://[::1]:2379/", "etcd"),
        ] {
            let err = p.check_url(&url(bad)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let p = CallbackPolicy::new(&[], &["https://etcd.internal:2379".into()]).unwrap();
        assert!(p.check_url(&url("http://ETCD.internal.:2379/")).is_err());
        assert!(p.check_url(&url("http://etcd.internal:2380/")).is_ok());
    }

    #[test]
    fn allowances() {
        let p = CallbackPolicy::new(
            &[
                "169.254.0.0/16".into(),
                "fe80::1".into(),
                "127.0.0.1".into(),
                "Meta.Example".into(),
            ],
            &["127.0.0.1:2379".into()],
        )
        .unwrap();
        for ok in [
            "http://169.254.169.254/",
            "http://[fe80::1]/",
            "http://127.0.0.1:2379/",
            "http://meta.example/",
        ] {
            assert!(p.check_url(&url(ok)).is_ok(), "{ok}");
        }
        assert!(p.check_url(&url("http://[fe80::2]/")).is_err());
        assert!(p.check_url(&url("ftp://meta.example/")).is_err());
        assert!(CallbackPolicy::new(&["a b".into()], &[]).is_err());
        assert!(CallbackPolicy::new(&["10.0.0.0/40".into()], &[]).is_err());
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let p = CallbackPolicy::new(&[], &["http://localhost:2379".into()]).unwrap();
        assert!(p.resolve("127.0.0.1", 8080).await.is_ok());
        let err = p.resolve("localhost", 2379).await.unwrap_err();
        assert!(err.contains("etcd"), "{err}");
        let err = p.resolve("169.254.169.254", 80).await.unwrap_err();
        assert!(err.contains("metadata"), "{err}");
        let p =
            CallbackPolicy::new(&["localhost".into()], &["http://localhost:2379".into()]).unwrap();
        assert!(p.resolve("localhost", 2379).await.is_ok());
    }

    #[test]
    fn redaction() {
        assert_eq!(redacted("http://u:secret@h:1/x"), "http://h:1/x");
        assert_eq!(
            redacted("http://h/cb?a=1&token=s3cret&access_token=x"),
            "http://h/cb?a=1&token=redacted&access_token=redacted"
        );
        assert_eq!(redacted("http://h/cb?a=1"), "http://h/cb?a=1");
        assert_eq!(redacted("nope"), "nope");
    }
}
