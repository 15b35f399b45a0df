//! `docker.parameters`: Marathon's free-form `docker run --key=value` flags,
//! mapped onto the Docker API's container configuration.
//!
//! Pure: [`apply_parameters`] edits a `Config`/`HostConfig` pair and returns
//! every problem at once, so the control plane can answer one 422 listing
//! them all ([`validate_parameters`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::container::Config;
use bollard::models::{DeviceMapping, HostConfig, HostConfigLogConfig, ResourcesUlimits};

/// Keys accepted in `docker.parameters` (without the leading `--`), aliases
/// included (`e` = `env`, `u` = `user`, `w` = `workdir`, `v` = `volume`).
const SUPPORTED: &[&str] = &[
    "add-host",
    "cap-add",
    "cap-drop",
    "cpu-period",
    "cpu-quota",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "device",
    "dns",
    "dns-option",
    "dns-search",
    "e",
    "entrypoint",
    "env",
    "group-add",
    "hostname",
    "init",
    "ipc",
    "label",
    "log-driver",
    "log-opt",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "net",
    "network",
    "oom-kill-disable",
    "oom-score-adj",
    "pid",
    "pids-limit",
    "privileged",
    "read-only",
    "security-opt",
    "shm-size",
    "stop-signal",
    "sysctl",
    "tmpfs",
    "u",
    "ulimit",
    "user",
    "userns",
    "uts",
    "v",
    "volume",
    "volumes-from",
    "w",
    "workdir",
];

/// Label prefix the runtime reserves for its own labels.
const RESERVED_LABEL_PREFIX: &str = "mdo.";

/// The `docker.parameters` keys this runtime understands (no leading `--`).
pub fn supported_parameters() -> &'static [&'static str] {
    SUPPORTED
}

/// Checks `docker.parameters` without starting anything. `Err` lists every
/// problem (unknown key, bad value), one message each, for a 422's `details`.
pub fn validate_parameters(params: &[(String, String)]) -> Result<(), Vec<String>> {
    let mut config = Config::<String>::default();
    let mut host = HostConfig::default();
    apply_parameters(params, &mut config, &mut host)
}

/// Applies `params` in order (later values win for single-valued flags).
pub(crate) fn apply_parameters(
    params: &[(String, String)],
    config: &mut Config<String>,
    host: &mut HostConfig,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (raw_key, value) in params {
        let key = raw_key.trim().trim_start_matches('-');
        if let Err(problem) = apply_one(key, value, config, host) {
            problems.push(format!("docker parameter '{raw_key}': {problem}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn apply_one(
    key: &str,
    value: &str,
    config: &mut Config<String>,
    host: &mut HostConfig,
) -> Result<(), String> {
    let v = value.trim();
    match key {
        "add-host" => {
            let (name, ip) = v.split_once(':').ok_or("expected host:ip")?;
            if name.is_empty() || ip.is_empty() {
                return Err("expected host:ip".into());
            }
            push(&mut host.extra_hosts, v.to_string());
        }
        "cap-add" => push(&mut host.cap_add, non_empty(v)?),
        "cap-drop" => push(&mut host.cap_drop, non_empty(v)?),
        "cpu-period" => host.cpu_period = Some(parse_int(v)?),
        "cpu-quota" => host.cpu_quota = Some(parse_int(v)?),
        "cpu-shares" => host.cpu_shares = Some(parse_int(v)?),
        "cpus" => {
            let cpus: f64 = v.parse().map_err(|_| format!("'{v}' is not a number"))?;
            if cpus.is_nan() || cpus <= 0.0 {
                return Err("must be positive".into());
            }
            host.nano_cpus = Some((cpus * 1e9).round() as i64);
        }
        "cpuset-cpus" => host.cpuset_cpus = Some(non_empty(v)?),
        "cpuset-mems" => host.cpuset_mems = Some(non_empty(v)?),
        "device" => {
            let mut parts = v.split(':');
            let on_host = non_empty(parts.next().unwrap_or(""))?;
            let in_container = parts
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(&on_host)
                .to_string();
            let perms = parts
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("rwm")
                .to_string();
            push(
                &mut host.devices,
                DeviceMapping {
                    path_on_host: Some(on_host.clone()),
                    path_in_container: Some(in_container),
                    cgroup_permissions: Some(perms),
                },
            );
        }
        "dns" => push(&mut host.dns, non_empty(v)?),
        "dns-option" | "dns-opt" => push(&mut host.dns_options, non_empty(v)?),
        "dns-search" => push(&mut host.dns_search, non_empty(v)?),
        "env" | "e" => {
            let (name, _) = v.split_once('=').ok_or("expected NAME=value")?;
            if name.is_empty() {
                return Err("expected NAME=value".into());
            }
            let env = config.env.get_or_insert_with(Vec::new);
            env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(name));
            env.push(v.to_string());
        }
        "entrypoint" => config.entrypoint = Some(vec![non_empty(v)?]),
        "group-add" => push(&mut host.group_add, non_empty(v)?),
        "hostname" => config.hostname = Some(non_empty(v)?),
        "init" => host.init = Some(parse_bool(v)?),
        "label" => {
            let (name, val) = v.split_once('=').unwrap_or((v, ""));
            if name.is_empty() {
                return Err("expected key=value".into());
            }
            if name.starts_with(RESERVED_LABEL_PREFIX) {
                return Err(format!(
                    "labels starting with '{RESERVED_LABEL_PREFIX}' are reserved"
                ));
            }
            config
                .labels
                .get_or_insert_with(HashMap::new)
                .insert(name.to_string(), val.to_string());
        }
        "log-driver" => {
            host.log_config
                .get_or_insert_with(HostConfigLogConfig::default)
                .typ = Some(non_empty(v)?);
        }
        "log-opt" => {
            let (name, val) = v.split_once('=').ok_or("expected key=value")?;
            host.log_config
                .get_or_insert_with(HostConfigLogConfig::default)
                .config
                .get_or_insert_with(HashMap::new)
                .insert(name.to_string(), val.to_string());
        }
        "memory-reservation" => host.memory_reservation = Some(parse_size(v)?),
        "memory-swap" => host.memory_swap = Some(if v == "-1" { -1 } else { parse_size(v)? }),
        "memory-swappiness" => {
            let n = parse_int(v)?;
            if !(0..=100).contains(&n) {
                return Err("must be between 0 and 100".into());
            }
            host.memory_swappiness = Some(n);
        }
        "ipc" => host.ipc_mode = Some(non_empty(v)?),
        "network" | "net" => {
            // Other networks come from the app's `networks`.
            if v != "host" && !v.starts_with("container:") {
                return Err(
                    "only 'host' or 'container:<name>' (other networks: the app's 'networks')"
                        .into(),
                );
            }
            host.network_mode = Some(v.to_string());
        }
        "oom-kill-disable" => host.oom_kill_disable = Some(parse_bool(v)?),
        "oom-score-adj" => host.oom_score_adj = Some(parse_int(v)?),
        "pid" => host.pid_mode = Some(non_empty(v)?),
        "pids-limit" => host.pids_limit = Some(parse_int(v)?),
        "privileged" => host.privileged = Some(parse_bool(v)?),
        "read-only" => host.readonly_rootfs = Some(parse_bool(v)?),
        "security-opt" => push(&mut host.security_opt, non_empty(v)?),
        "shm-size" => host.shm_size = Some(parse_size(v)?),
        "stop-signal" => config.stop_signal = Some(non_empty(v)?),
        "sysctl" => {
            let (name, val) = v.split_once('=').ok_or("expected name=value")?;
            host.sysctls
                .get_or_insert_with(HashMap::new)
                .insert(name.to_string(), val.to_string());
        }
        "tmpfs" => {
            let (path, opts) = v.split_once(':').unwrap_or((v, ""));
            if !path.starts_with('/') {
                return Err("expected an absolute path[:options]".into());
            }
            host.tmpfs
                .get_or_insert_with(HashMap::new)
                .insert(path.to_string(), opts.to_string());
        }
        "ulimit" => push(&mut host.ulimits, parse_ulimit(v)?),
        "user" | "u" => config.user = Some(non_empty(v)?),
        "userns" => host.userns_mode = Some(non_empty(v)?),
        "uts" => host.uts_mode = Some(non_empty(v)?),
        "volume" | "v" => {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = matches!(parts.len(), 2 | 3)
                && parts[0].starts_with('/')
                && parts[1].starts_with('/')
                && parts
                    .get(2)
                    .is_none_or(|m| m.split(',').all(|o| !o.is_empty()));
            if !ok {
                return Err("expected /host/path:/container/path[:ro|rw]".into());
            }
            push(&mut host.binds, v.to_string());
        }
        "volumes-from" => push(&mut host.volumes_from, non_empty(v)?),
        "workdir" | "w" => {
            if !v.starts_with('/') {
                return Err("expected an absolute path".into());
            }
            config.working_dir = Some(v.to_string());
        }
        _ => {
            return Err(format!(
                "unknown parameter (supported: {})",
                SUPPORTED.join(", ")
            ))
        }
    }
    Ok(())
}

/// What a refused host-access request is told.
pub const HOST_ACCESS_HINT: &str = "start the manager with --allow-host-access to allow it";

/// Host paths no task mounts without `--allow-host-access`: these, the
/// manager's data folder and `--protected-host-paths`, with everything
/// below them and every folder above them (mounting `/var` exposes
/// `/var/run/docker.sock`).
pub const PROTECTED_HOST_PATHS: &[&str] = &[
    "/",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
];

/// Every parameter of `params` that reaches into the host (privileged,
/// capabilities, devices, security options, the host's or another
/// container's namespaces, another container's volumes, a protected host
/// path), as (index, message). `extra` = protected paths beyond
/// [`PROTECTED_HOST_PATHS`].
pub fn host_access_problems(
    params: &[(String, String)],
    extra: &[PathBuf],
) -> Vec<(usize, String)> {
    params
        .iter()
        .enumerate()
        .filter_map(|(i, (raw_key, value))| {
            let key = raw_key.trim().trim_start_matches('-');
            host_access_reason(key, value.trim(), extra).map(|why| {
                (
                    i,
                    format!("docker parameter '{raw_key}': {why}; {HOST_ACCESS_HINT}"),
                )
            })
        })
        .collect()
}

fn host_access_reason(key: &str, v: &str, extra: &[PathBuf]) -> Option<String> {
    match key {
        "privileged" => parse_bool(v)
            .unwrap_or(true)
            .then(|| "privileged containers are not allowed".into()),
        "cap-add" => Some(format!("adds the capability '{v}'")),
        "device" => Some(format!("gives the container the host device '{v}'")),
        "security-opt" if !is_no_new_privileges(v) => {
            Some(format!("changes the container's security options ('{v}')"))
        }
        "pid" | "ipc" | "uts" | "userns" | "network" | "net" => {
            if v == "host" {
                Some(format!("joins the host's {key} namespace"))
            } else {
                v.strip_prefix("container:")
                    .map(|other| format!("joins the {key} namespace of container '{other}'"))
            }
        }
        "volumes-from" => Some(format!("mounts the volumes of container '{v}'")),
        "volume" | "v" => protected_host_path(v.split(':').next().unwrap_or(""), extra),
        _ => None,
    }
}

/// `no-new-privileges` (alone or `:true` / `=true`) only takes rights away.
fn is_no_new_privileges(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    matches!(
        v.as_str(),
        "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
    )
}

/// Why mounting the host path `given` exposes a protected host path, if it
/// does: the path, written however (`/etc/../etc`, `//etc/`), and where
/// its symbolic links lead are both compared with [`PROTECTED_HOST_PATHS`]
/// and `extra` (and where theirs lead). A relative path is a named Docker
/// volume, not a host path.
pub fn protected_host_path(given: &str, extra: &[PathBuf]) -> Option<String> {
    let lexical = lexically_normal(given)?;
    // Docker cleans the path, then the kernel follows links; the raw form
    // resolved too covers a link followed by `..`.
    let candidates = [resolved(&lexical), lexical, resolved(Path::new(given))];
    let protected = PROTECTED_HOST_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(extra.iter().cloned())
        .filter_map(|p| lexically_normal(&p.to_string_lossy()));
    for guarded in protected {
        let forms = [resolved(&guarded), guarded.clone()];
        let hit = candidates
            .iter()
            .any(|c| forms.iter().any(|g| overlaps(c, g)));
        if hit {
            return Some(format!(
                "the host path '{given}' exposes the protected host path '{}'",
                guarded.display()
            ));
        }
    }
    None
}

/// `candidate` is `guarded`, below it, or above it (`/` guards only itself).
fn overlaps(candidate: &Path, guarded: &Path) -> bool {
    if guarded == Path::new("/") {
        return candidate == guarded;
    }
    candidate.starts_with(guarded) || guarded.starts_with(candidate)
}

/// An absolute path without `.`, `..`, repeated or trailing slashes (`..`
/// above `/` stays at `/`); `None` when relative.
fn lexically_normal(path: &str) -> Option<PathBuf> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(PathBuf::from(format!("/{}", parts.join("/"))))
}

/// Where `path` leads on this host: its longest existing ancestor with
/// symbolic links resolved, plus the rest.
fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = cur.canonicalize() {
            return rest.iter().rev().fold(real, |acc, p| acc.join(p));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn push<T>(list: &mut Option<Vec<T>>, item: T) {
    list.get_or_insert_with(Vec::new).push(item);
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("a value is required".into())
    } else {
        Ok(v.to_string())
    }
}

fn parse_int(v: &str) -> Result<i64, String> {
    v.parse().map_err(|_| format!("'{v}' is not an integer"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("'{v}' is not a boolean")),
    }
}

/// `docker run` sizes: `1024`, `64k`, `64m`, `1g`, `64mb`, `64MiB`... (bytes).
pub(crate) fn parse_size(v: &str) -> Result<i64, String> {
    let bad = || format!("'{v}' is not a size (e.g. 512m, 1g)");
    let lower = v.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult) as i64)
}

/// `nofile=1024[:2048]`.
fn parse_ulimit(v: &str) -> Result<ResourcesUlimits, String> {
    let bad = || format!("'{v}' is not a ulimit (expected name=soft[:hard])");
    let (name, limits) = v.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let soft: i64 = soft.parse().map_err(|_| bad())?;
    let hard: i64 = hard.parse().map_err(|_| bad())?;
    if soft > hard && hard >= 0 {
        return Err(format!("'{v}': the soft limit exceeds the hard limit"));
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn common_flags_map_onto_the_container_config() {
        let mut c = Config::<String>::default();
        let mut h = HostConfig::default();
        apply_parameters(
            &p(&[
                ("add-host", "db:10.0.0.9"),
                ("hostname", "box"),
                ("label", "team=core"),
                ("env", "A=1"),
                ("e", "A=2"),
                ("user", "nobody"),
                ("workdir", "/srv"),
                ("ulimit", "nofile=1024:2048"),
                ("cap-add", "NET_ADMIN"),
                ("cap-drop", "MKNOD"),
                ("memory-swap", "128m"),
                ("--dns", "1.1.1.1"),
                ("shm-size", "64mb"),
                ("log-driver", "json-file"),
                ("log-opt", "max-size=1m"),
                ("volume", "/tmp:/data:ro"),
                ("init", ""),
            ]),
            &mut c,
            &mut h,
        )
        .unwrap();
        assert_eq!(h.extra_hosts, Some(vec!["db:10.0.0.9".to_string()]));
        assert_eq!(c.hostname.as_deref(), Some("box"));
        assert_eq!(c.labels.as_ref().unwrap()["team"], "core");
        assert_eq!(c.env, Some(vec!["A=2".to_string()]));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        let ul = &h.ulimits.as_ref().unwrap()[0];
        assert_eq!(
            (ul.name.as_deref(), ul.soft, ul.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(h.cap_drop, Some(vec!["MKNOD".to_string()]));
        assert_eq!(h.memory_swap, Some(128 * 1024 * 1024));
        assert_eq!(h.dns, Some(vec!["1.1.1.1".to_string()]));
        assert_eq!(h.shm_size, Some(64 * 1024 * 1024));
        let log = h.log_config.as_ref().unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.as_ref().unwrap()["max-size"], "1m");
        assert_eq!(h.binds, Some(vec!["/tmp:/data:ro".to_string()]));
        assert_eq!(h.init, Some(true));
    }

    #[test]
    fn every_problem_is_listed() {
        let errs = validate_parameters(&p(&[
            ("frobnicate", "1"),
            ("ulimit", "nofile"),
            ("memory-swap", "lots"),
            ("label", "mdo.task-id=x"),
            ("hostname", "ok"),
            ("restart", "always"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].starts_with("docker parameter 'frobnicate': unknown parameter"));
        assert!(errs[1].contains("'ulimit'"));
        assert!(errs[2].contains("'memory-swap'"));
        assert!(errs[3].contains("reserved"));
        assert!(errs[4].contains("'restart': unknown parameter"));
    }

    #[test]
    fn supported_list_validates() {
        assert!(validate_parameters(&[]).is_ok());
        assert!(supported_parameters().contains(&"add-host"));
    }

    #[test]
    fn host_access_parameters() {
        let none: &[PathBuf] = &[];
        let refused = [
            ("privileged", ""),
            ("--privileged", "true"),
            ("cap-add", "SYS_ADMIN"),
            ("device", "/dev/fuse"),
            ("security-opt", "seccomp=unconfined"),
            ("security-opt", "apparmor=unconfined"),
            ("pid", "host"),
            ("ipc", "host"),
            ("uts", "host"),
            ("userns", "host"),
            ("network", "host"),
            ("net", "container:other"),
            ("pid", "container:other"),
            ("volumes-from", "other"),
            ("volume", "/var/run/docker.sock:/var/run/docker.sock"),
            ("v", "/etc:/host-etc:ro"),
        ];
        for (k, v) in refused {
            let got = host_access_problems(&p(&[("hostname", "h"), (k, v)]), none);
            assert_eq!(got.len(), 1, "{k}={v}: {got:?}");
            assert_eq!(got[0].0, 1);
            assert!(got[0].1.contains("--allow-host-access"), "{got:?}");
            assert!(validate_parameters(&p(&[(k, v)])).is_ok(), "{k}={v} parses");
        }
        let fine = [
            ("privileged", "false"),
            ("cap-drop", "ALL"),
            ("security-opt", "no-new-privileges"),
            ("security-opt", "no-new-privileges:true"),
            ("ipc", "private"),
            ("ipc", "shareable"),
            ("volume", "/srv/data:/data"),
            ("tmpfs", "/run:size=1m"),
        ];
        for (k, v) in fine {
            assert_eq!(host_access_problems(&p(&[(k, v)]), none), vec![], "{k}={v}");
        }
        assert!(validate_parameters(&p(&[("network", "bridge")])).is_err());
    }

    #[test]
    fn protected_host_paths_in_any_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let extra = vec![data.clone(), PathBuf::from("/var/lib/etcd-x")];
        let d = data.display();
        let refused = [
            "/".to_string(),
            "//".into(),
            "/.".into(),
            "/etc".into(),
            "/etc/".into(),
            "/etc/../etc".into(),
            "//etc//ssl".into(),
            "/etc/./passwd".into(),
            "/proc/1".into(),
            "/sys".into(),
            "/dev/sda".into(),
            "/boot".into(),
            "/root/.ssh".into(),
            "/var/run/docker.sock".into(),
            "/run/docker.sock".into(),
            "/run".into(),
            "/var".into(),
            "/srv/../../etc".into(),
            format!("{d}"),
            format!("{d}/tasks"),
            format!("{d}/../data/"),
            tmp.path().display().to_string(),
            "/var/lib/etcd-x/member".into(),
        ];
        for path in &refused {
            let got = protected_host_path(path, &extra);
            assert!(got.is_some(), "{path} refused");
        }
        // A link to a protected folder is followed.
        let link = tmp.path().join("innocent");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert!(protected_host_path(&format!("{}/ssl", link.display()), &[]).is_some());
        for path in [
            "/srv/data",
            "/etcetera",
            "/home/u/x",
            "/var/lib/app",
            "named-volume",
        ] {
            assert_eq!(protected_host_path(path, &extra), None, "{path}");
        }
    }

    #[test]
    fn sizes() {
        let table = [
            ("1024", Some(1024)),
            ("1k", Some(1024)),
            ("64m", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("1g", Some(1 << 30)),
            ("1.5k", Some(1536)),
            ("x", None),
            ("12q", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input).ok(), want, "{input}");
        }
    }
}
