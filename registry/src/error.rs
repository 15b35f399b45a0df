use std::fmt;

/// Which kind of name failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Service,
    Group,
    Container,
    /// A Marathon app id (the manager's state keys).
    AppId,
    /// A task id (the manager's state keys).
    TaskId,
    /// A deployment id (the manager's state keys).
    Deployment,
    /// An app version (the manager's state keys).
    Version,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Service => "service",
            NameKind::Group => "group",
            NameKind::Container => "container",
            NameKind::AppId => "app id",
            NameKind::TaskId => "task id",
            NameKind::Deployment => "deployment id",
            NameKind::Version => "app version",
        })
    }
}

/// Everything the registry can fail with. Variants are the ones a caller can
/// act on: a bad name or setting (fix the input), a bad record (report it),
/// an etcd failure (retry).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service, group or container name outside the allowed pattern.
    #[error("invalid {kind} name {value:?}: {reason}")]
    InvalidName {
        kind: NameKind,
        value: String,
        reason: &'static str,
    },
    /// A registry prefix that cannot be used (contains `..`, empty segments).
    #[error(
        "invalid registry prefix {0:?}: it must be an absolute path without '..' or empty segments"
    )]
    InvalidPrefix(String),
    /// Connection settings that cannot be used (bad endpoint, bad port...).
    #[error("invalid etcd settings: {0}")]
    InvalidSettings(String),
    /// A TLS file that cannot be read.
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A record in etcd (or about to be written) that is not a valid instance.
    #[error("invalid record at {key}: {reason}")]
    InvalidRecord { key: String, reason: String },
    /// etcd answered with an error or could not be reached.
    #[error("etcd: {0}")]
    Etcd(#[source] Box<etcd_client::Error>),
    /// An etcd request did not finish within the request timeout.
    #[error("etcd request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// `apply` failed part-way: the first `applied` operations were applied
    /// (their chunks committed); the outcome of the failing chunk is unknown.
    /// Retrying with compares is safe.
    #[error("etcd failed after {applied} of {total} operations were applied: {source}")]
    Partial {
        applied: usize,
        total: usize,
        #[source]
        source: Box<Error>,
    },
    /// A transaction with more operations than etcd accepts in one
    /// (`--max-txn-ops`): refused before anything was sent.
    #[error(
        "this change needs {ops} etcd operations in one transaction, more than the limit of {max} (etcd --max-txn-ops)"
    )]
    TooManyOps { ops: usize, max: usize },
    /// A transaction etcd refused for its size (`--max-request-bytes`,
    /// 1.5 MiB by default): nothing of it was written.
    #[error(
        "this change is about {bytes} bytes, more than etcd accepts in one request (--max-request-bytes, 1.5 MiB by default)"
    )]
    RequestTooLarge { bytes: usize },
    /// A raw key outside the prefix this connection was made for.
    #[error("key {key:?} is outside the prefix {prefix:?}")]
    OutsidePrefix { key: String, prefix: String },
    /// The watch was cancelled by the server for a reason other than compaction.
    #[error("watch cancelled by etcd: {0}")]
    WatchCancelled(String),
    /// The watch stream ended (the server went away); it will be resumed.
    #[error("watch stream closed by etcd")]
    WatchClosed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Error {
        Error::Etcd(Box::new(e))
    }
}
