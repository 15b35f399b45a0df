//! An etcd that refuses anonymous clients, of either kind a component must
//! work with (issue 15), and the credentials a container is given for it.
//! One test body per component runs against both kinds.

use registry::Settings;

use crate::etcd::{Etcd, LimitedUser};
use crate::tls::EtcdTls;

/// A running secured etcd; stopped on drop.
pub enum SecuredEtcd {
    /// TLS, a client certificate required ([`EtcdTls::start_secured`]).
    ClientCert(EtcdTls),
    /// Authentication on: `root` and `user`, whose role covers only
    /// `/services/` ([`Etcd::start_with_user`]).
    User {
        etcd: Etcd,
        user: &'static str,
        password: &'static str,
    },
}

impl SecuredEtcd {
    /// An etcd requiring a client certificate.
    pub fn client_cert() -> SecuredEtcd {
        SecuredEtcd::ClientCert(EtcdTls::start_secured())
    }

    /// An etcd with authentication on, where `user` (role `mdo-<user>`)
    /// has `permission` (`read`, `readwrite`) on `/services/` only.
    pub fn user(user: &'static str, password: &'static str, permission: &str) -> SecuredEtcd {
        let role = format!("mdo-{user}");
        let etcd = Etcd::start_with_user(&LimitedUser::services(&role, user, password, permission));
        SecuredEtcd::User {
            etcd,
            user,
            password,
        }
    }

    pub fn endpoint(&self) -> String {
        match self {
            SecuredEtcd::ClientCert(etcd) => etcd.endpoint(),
            SecuredEtcd::User { etcd, .. } => etcd.endpoint(),
        }
    }

    /// Settings of a client that may write anywhere: the client
    /// certificate, or `root`.
    pub fn admin(&self) -> Settings {
        match self {
            SecuredEtcd::ClientCert(etcd) => etcd.client_settings(),
            SecuredEtcd::User { etcd, .. } => etcd.root_settings(),
        }
    }

    /// The environment a container gets to reach this etcd: `ETCD_ENDPOINTS`
    /// and the component's credentials (`ETCD_CA`/`ETCD_CERT`/`ETCD_KEY`, or
    /// `ETCD_USER`/`ETCD_PASSWORD`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("ETCD_ENDPOINTS", self.endpoint())];
        match self {
            SecuredEtcd::ClientCert(etcd) => {
                let (ca, cert, key) = etcd.client_files();
                env.extend([("ETCD_CA", ca), ("ETCD_CERT", cert), ("ETCD_KEY", key)]);
            }
            SecuredEtcd::User { user, password, .. } => {
                env.push(("ETCD_USER", user.to_string()));
                env.push(("ETCD_PASSWORD", password.to_string()));
            }
        }
        env
    }

    /// The secret a component must never log, when it has one.
    pub fn password(&self) -> Option<&'static str> {
        match self {
            SecuredEtcd::ClientCert(_) => None,
            SecuredEtcd::User { password, .. } => Some(password),
        }
    }
}
