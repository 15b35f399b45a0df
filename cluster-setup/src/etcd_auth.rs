//! Least privilege in the single-machine etcd: authentication on, one user
//! and role per part, generated passwords kept under the state folder.
//!
//! | user             | may                                          |
//! |------------------|----------------------------------------------|
//! | `root`           | everything (only `cluster-setup` uses it)    |
//! | `mdo-manager`    | read and write `/mdo/manager/`               |
//! | `mdo-subscriber` | read and write `/services/`                  |
//! | `mdo-guest`      | read `/services/` (handed to tasks)          |
//!
//! Anonymous requests are refused once authentication is on. The passwords
//! live in `<state>/etcd-auth/<user>.password` (folder 0700, files 0600) and
//! are never printed; the components get theirs through the environment.
//! Setting up goes through `etcdctl` (Debian's etcd-client), so this crate
//! needs no gRPC stack of its own; passwords reach it on stdin and in
//! `ETCDCTL_USER`, never on a command line.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

pub const ROOT: &str = "root";
pub const MANAGER: &str = "mdo-manager";
pub const SUBSCRIBER: &str = "mdo-subscriber";
pub const GUEST: &str = "mdo-guest";

/// The manager's state prefix and the registry prefix, as the components
/// use them by default (with the trailing `/`, so `/services-x` is not
/// covered).
pub const MANAGER_PREFIX: &str = "/mdo/manager/";
pub const REGISTRY_PREFIX: &str = "/services/";

/// What each non-root user may do: (user, permission, key prefix).
pub const GRANTS: [(&str, &str, &str); 3] = [
    (MANAGER, "readwrite", MANAGER_PREFIX),
    (SUBSCRIBER, "readwrite", REGISTRY_PREFIX),
    (GUEST, "read", REGISTRY_PREFIX),
];

/// The users' passwords, read from or written to the state folder.
/// `Debug` shows no password.
pub struct Credentials {
    pub dir: PathBuf,
    root: String,
    manager: String,
    subscriber: String,
    guest: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `<state>/etcd-auth`.
    pub fn dir_in(state_dir: &Path) -> PathBuf {
        state_dir.join("etcd-auth")
    }

    /// The passwords kept in `state_dir`, when authentication was set up there.
    pub fn load(state_dir: &Path) -> Result<Option<Credentials>> {
        let dir = Self::dir_in(state_dir);
        if !dir.join(format!("{ROOT}.password")).is_file() {
            return Ok(None);
        }
        let read = |user: &str| -> Result<String> {
            let path = dir.join(format!("{user}.password"));
            let p =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let p = p.trim().to_string();
            if p.is_empty() {
                bail!("{} is empty", path.display());
            }
            Ok(p)
        };
        Ok(Some(Credentials {
            root: read(ROOT)?,
            manager: read(MANAGER)?,
            subscriber: read(SUBSCRIBER)?,
            guest: read(GUEST)?,
            dir,
        }))
    }

    /// The kept passwords, or new ones written (folder 0700, files 0600).
    pub fn load_or_create(state_dir: &Path) -> Result<Credentials> {
        if let Some(c) = Self::load(state_dir)? {
            return Ok(c);
        }
        let dir = Self::dir_in(state_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let c = Credentials {
            root: new_password()?,
            manager: new_password()?,
            subscriber: new_password()?,
            guest: new_password()?,
            dir,
        };
        // root last: its file is what `load` looks for.
        for user in [MANAGER, SUBSCRIBER, GUEST, ROOT] {
            let path = c.dir.join(format!("{user}.password"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(f, "{}", c.password(user))?;
        }
        Ok(c)
    }

    pub fn password(&self, user: &str) -> &str {
        match user {
            ROOT => &self.root,
            MANAGER => &self.manager,
            SUBSCRIBER => &self.subscriber,
            _ => &self.guest,
        }
    }

    pub fn password_file(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.password"))
    }
}

/// 32 characters from the kernel's random source (190 bits).
fn new_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // 62 symbols: drop bytes >= 248 so each symbol is equally likely.
    let out: String = bytes
        .iter()
        .filter(|b| **b < 248)
        .take(32)
        .map(|b| ALPHABET[(*b % 62) as usize] as char)
        .collect();
    if out.len() < 32 {
        return new_password();
    }
    Ok(out)
}

/// `etcdctl` against one endpoint, as `user` (anonymous when None), with
/// `stdin` fed to it.
struct Etcdctl<'a> {
    program: &'a Path,
    endpoint: &'a str,
}

impl Etcdctl<'_> {
    fn run(&self, user: Option<(&str, &str)>, args: &[&str], stdin: &str) -> Result<String> {
        let mut cmd = Command::new(self.program);
        cmd.env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_USER")
            .env_remove("ETCDCTL_PASSWORD")
            .args(["--endpoints", self.endpoint, "--command-timeout=10s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((name, password)) = user {
            cmd.env("ETCDCTL_USER", format!("{name}:{password}"));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", self.program.display()))?;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            // etcdctl prints a JSON warning line per retry, then `Error: ...`.
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .rev()
                .find(|l| l.starts_with("Error:"))
                .unwrap_or_else(|| err.lines().last().unwrap_or("no output"));
            Err(anyhow!("etcdctl {}: {}", args.join(" "), line.trim()))
        }
    }
}

/// What `ensure` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Users and roles created, authentication turned on.
    Enabled,
    /// Already on, and the kept root password works.
    AlreadyOn,
}

/// Turns authentication on in the etcd at `endpoint` with the users of
/// [`GRANTS`], or checks that it is on with these passwords. Idempotent: a
/// run interrupted half way is completed by the next one.
pub fn ensure(etcdctl: &Path, endpoint: &str, c: &Credentials) -> Result<Outcome> {
    let e = Etcdctl {
        program: etcdctl,
        endpoint,
    };
    // Anonymous `user list` works only while authentication is off.
    let existing = match e.run(None, &["user", "list"], "") {
        Ok(list) => list,
        Err(err) if is_auth_refusal(&err.to_string()) => {
            return match e.run(Some((ROOT, &c.root)), &["user", "list"], "") {
                Ok(_) => Ok(Outcome::AlreadyOn),
                Err(err) => Err(anyhow!(
                    "etcd at {endpoint} has authentication on, and the root password kept in {} does not work ({err:#}); \
                     stop the stack and remove the state folder to start over",
                    c.password_file(ROOT).display()
                )),
            };
        }
        Err(err) => return Err(err.context(format!("etcd at {endpoint} did not answer"))),
    };
    let existing: Vec<&str> = existing.lines().map(str::trim).collect();
    for user in [ROOT, MANAGER, SUBSCRIBER, GUEST] {
        if existing.contains(&user) {
            // Left by an interrupted run: set the kept password again.
            e.run(
                None,
                &["user", "passwd", user, "--interactive=false"],
                c.password(user),
            )?;
        } else {
            e.run(
                None,
                &["user", "add", user, "--interactive=false"],
                c.password(user),
            )?;
        }
    }
    let roles = e.run(None, &["role", "list"], "")?;
    let roles: Vec<&str> = roles.lines().map(str::trim).collect();
    for role in [ROOT, MANAGER, SUBSCRIBER, GUEST] {
        if !roles.contains(&role) {
            e.run(None, &["role", "add", role], "")?;
        }
    }
    for (role, perm, prefix) in GRANTS {
        e.run(
            None,
            &[
                "role",
                "grant-permission",
                role,
                perm,
                "--prefix=true",
                prefix,
            ],
            "",
        )?;
    }
    for user in [ROOT, MANAGER, SUBSCRIBER, GUEST] {
        e.run(None, &["user", "grant-role", user, user], "")?;
    }
    e.run(None, &["auth", "enable"], "")?;
    Ok(Outcome::Enabled)
}

/// etcd's answers to an anonymous request while authentication is on.
fn is_auth_refusal(message: &str) -> bool {
    [
        "user name is empty",
        "permission denied",
        "invalid auth token",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// How to read the registry with etcdctl, for `status` and `up`.
pub fn read_hint(endpoint: &str, c: &Credentials) -> String {
    format!(
        "ETCDCTL_USER={GUEST}:$(cat {}) etcdctl --endpoints {endpoint} get --prefix {REGISTRY_PREFIX}",
        c.password_file(GUEST).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::load_or_create(dir.path()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for user in [ROOT, MANAGER, SUBSCRIBER, GUEST] {
            let p = c.password(user);
            assert_eq!(p.len(), 32);
            assert!(p.chars().all(|ch| ch.is_ascii_alphanumeric()));
            assert!(seen.insert(p.to_string()), "two users share a password");
            let mode = fs::metadata(c.password_file(user))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{user}");
        }
        let mode = fs::metadata(&c.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(!format!("{c:?}").contains(c.password(ROOT)));

        // A second run keeps them.
        let again = Credentials::load_or_create(dir.path()).unwrap();
        for user in [ROOT, MANAGER, SUBSCRIBER, GUEST] {
            assert_eq!(again.password(user), c.password(user));
        }
    }

    #[test]
    fn no_credentials_until_created() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::load(dir.path()).unwrap().is_none());
    }
}
