//! The data tables: our binaries, the programs that are not ours, the shell
//! words before a program, and the names that are no setting.

/// Our binaries (the manager's package also builds `mdo-task-shim`).
pub(crate) const BINARIES: &[&str] = &[
    "manager",
    "subscriber",
    "deployer",
    "watcher",
    "cluster-setup",
    "mdo-task-shim",
];

/// Programs the documents show that are not ours: their flags are theirs.
pub(crate) const OTHER_PROGRAMS: &[&str] = &[
    "apt-get",
    "bash",
    "cargo",
    "cp",
    "curl",
    "debootstrap",
    "docker",
    "etcd",
    "etcdctl",
    "haproxy",
    "install",
    "maturin",
    "pip",
    "pytest",
    "python",
    "python3",
    "sh",
    "systemctl",
];

/// Shell words that come before the program of a command.
pub(crate) const SHELL_PREFIXES: &[&str] = &[
    "do", "then", "else", "elif", "if", "while", "until", "time", "exec", "!", "{",
];

/// Names in backticks that look like environment variables but are no
/// setting of any binary, so no `--help` lists them.
pub(crate) const NOT_SETTINGS: &[(&str, &str)] = &[
    // HTTP methods, named beside the routes they call.
    ("GET", "HTTP method"),
    ("POST", "HTTP method"),
    ("PUT", "HTTP method"),
    ("PATCH", "HTTP method"),
    ("DELETE", "HTTP method"),
    // The environment the manager gives every task (docs/environment.md).
    ("PORT0", "task environment"),
    ("PORT", "task environment"),
    ("PORTS", "task environment"),
    ("PORT_<NAME>", "task environment"),
    ("HOST", "task environment"),
    ("MESOS_TASK_ID", "task environment"),
    ("MARATHON_APP_ID", "task environment"),
    ("MARATHON_APP_VERSION", "task environment"),
    ("MARATHON_APP_DOCKER_IMAGE", "task environment"),
    ("MARATHON_APP_RESOURCE_CPUS", "task environment"),
    (
        "MEM",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    (
        "DISK",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    (
        "GPUS",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    ("MARATHON_APP_LABELS", "task environment"),
    ("MARATHON_APP_LABEL_<NAME>", "task environment"),
    ("MARATHON_APP_LABEL_SERVICE_NAME", "task environment"),
    ("CONTAINER_NAME", "task environment"),
    ("CONTAINER_HOST_ADDRESS", "task environment"),
    (
        "SERVICE_NAME",
        "task environment, and an app label the deployer sets",
    ),
    (
        "SERVICE_GROUP",
        "task environment, and an app label the deployer sets",
    ),
    (
        "LABELS",
        "task environment the deployer sets in each app's env",
    ),
    (
        "ETCD_CACERT",
        "guestutils' earlier name for ETCD_CA, still read (a library: no --help)",
    ),
    // App labels the deployer sets (deployer/README.md).
    ("SERVICE_LABELS", "app label"),
    ("MDO_MANAGED_BY", "app label"),
    ("MDO_FIXED_HOST", "app label"),
    // Marathon task states (docs/registry.md).
    ("TASK_RUNNING", "task state"),
    ("TASK_KILLING", "task state"),
    // Variables of other programs.
    (
        "CI",
        "read by scripts/test.sh and the tests, not by a binary",
    ),
    ("PYO3_PYTHON", "pyo3's build setting (watcher/README.md)"),
    ("CARGO_TARGET_DIR", "cargo's setting (watcher/README.md)"),
    (
        "LD_LIBRARY_PATH",
        "the dynamic loader's setting (watcher/README.md)",
    ),
    (
        "ETCD_NAME",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_INITIAL_CLUSTER",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_CLIENT_CERT_AUTH",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_ADVERTISE_CLIENT_URLS",
        "etcd server configuration (docs/multi-host.md)",
    ),
];
