//! Test images built locally (this machine has no registry): `FROM scratch`
//! plus Debian's static busybox, tagged once and reused by every test.
//!
//! Building is idempotent and safe under parallel test processes (nextest):
//! a file lock serialises builders, and a tag that already exists is reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Busybox image, revision 1: `/www/index.html` says `mdo-test v1`.
pub const BUSYBOX_V1: &str = "mdo-test/busybox:1";
/// Same image with `/www/index.html` saying `mdo-test v2` (rolling updates).
pub const BUSYBOX_V2: &str = "mdo-test/busybox:2";
/// Busybox with a Docker HEALTHCHECK: healthy while `/tmp/healthy` exists
/// (checked every second).
pub const BUSYBOX_HEALTH: &str = "mdo-test/busybox-health:1";

/// Where the static busybox comes from (`busybox-static` on Debian).
const BUSYBOX_BIN: &str = "/bin/busybox";

/// Ensures [`BUSYBOX_V1`] exists and returns its tag.
pub fn busybox() -> &'static str {
    ensure(BUSYBOX_V1, "mdo-test v1", None);
    BUSYBOX_V1
}

/// Ensures [`BUSYBOX_V2`] exists and returns its tag.
pub fn busybox_v2() -> &'static str {
    ensure(BUSYBOX_V2, "mdo-test v2", None);
    BUSYBOX_V2
}

/// Ensures [`BUSYBOX_HEALTH`] exists and returns its tag.
pub fn busybox_with_healthcheck() -> &'static str {
    ensure(
        BUSYBOX_HEALTH,
        "mdo-test health",
        Some(
            r#"HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD ["/bin/sh","-c","test -f /tmp/healthy"]"#,
        ),
    );
    BUSYBOX_HEALTH
}

/// True when the engine has an image under `tag`.
pub fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Builds `tag` unless it exists. The default command serves `/www` with
/// `busybox httpd` on `$HTTP_PORT` (default 8080).
fn ensure(tag: &str, index_html: &str, extra: Option<&str>) {
    // One builder per process at a time, and one across processes (flock).
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    if image_exists(tag) {
        return;
    }
    let lock_path = std::env::temp_dir().join("mdo-test-images.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    let _flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", lock_path.display()));
    if image_exists(tag) {
        return;
    }
    let ctx = tempfile::tempdir().expect("temp dir for the image build context");
    write_context(ctx.path(), index_html, extra);
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run `docker build`");
    assert!(
        out.status.success(),
        "building test image {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `_flock` unlocks on drop.
}

fn write_context(dir: &Path, index_html: &str, extra: Option<&str>) {
    let bin = PathBuf::from(BUSYBOX_BIN);
    assert!(
        bin.is_file(),
        "{BUSYBOX_BIN} is missing: install Debian's busybox-static to build test images"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::copy(&bin, dir.join("bin/busybox")).expect("copy busybox into the build context");
    fs::write(dir.join("www/index.html"), format!("{index_html}\n")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let mut dockerfile = String::from(
        "FROM scratch\n\
         COPY bin/busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/tmp\", \"/root\"]\n\
         COPY etc /etc\n\
         COPY www /www\n\
         LABEL mdo.test-image=\"1\"\n\
         CMD [\"/bin/sh\", \"-c\", \"exec httpd -f -p ${HTTP_PORT:-8080} -h /www\"]\n",
    );
    if let Some(line) = extra {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}
