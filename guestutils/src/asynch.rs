//! The async API.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

use registry::{Instance, InstanceName, Registry, Scope, Snapshot, WatchEvent};
use tokio::sync::OnceCell;

use crate::env::Environment;
use crate::error::{Error, Result};
use crate::lookup::{find_port, node_list, port_or_default, Side};

/// maestro-ng's guest functions over the live registry. Environment-only
/// lookups never touch etcd; the connection is made on first use.
#[derive(Debug)]
pub struct AsyncGuestUtils {
    env: Environment,
    registry: OnceCell<Registry>,
}

impl AsyncGuestUtils {
    /// Lookups for a task with this environment.
    pub fn new(env: Environment) -> AsyncGuestUtils {
        AsyncGuestUtils {
            env,
            registry: OnceCell::new(),
        }
    }

    /// Lookups for this process (reads the environment once, now).
    pub fn from_process_env() -> AsyncGuestUtils {
        AsyncGuestUtils::new(Environment::from_process_env())
    }

    /// Lookups over an existing connection (its settings win over the
    /// environment's etcd variables).
    pub fn with_registry(env: Environment, registry: Registry) -> AsyncGuestUtils {
        AsyncGuestUtils {
            env,
            registry: OnceCell::new_with(Some(registry)),
        }
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The connection, made from the environment's settings on first use.
    pub async fn registry(&self) -> Result<&Registry> {
        self.registry
            .get_or_try_init(|| async {
                let settings = self.env.settings()?;
                Ok(Registry::connect(&settings).await?)
            })
            .await
    }

    /// The environment name: this task's group (`SERVICE_GROUP`, ...).
    pub fn get_environment_name(&self) -> Result<String> {
        self.env.group()
    }

    /// This task's service (`SERVICE_NAME`, ...).
    pub fn get_service_name(&self) -> Result<String> {
        self.env.service_name()
    }

    /// This task's container name (`CONTAINER_NAME` or `MESOS_TASK_ID`).
    pub fn get_container_name(&self) -> Result<String> {
        self.env.container_name()
    }

    /// The address peers reach this container's external ports at
    /// (`CONTAINER_HOST_ADDRESS` or `HOST`).
    pub fn get_container_host_address(&self) -> Result<String> {
        self.env.host_address()
    }

    /// This container's own record, if registered.
    async fn own_record(&self) -> Result<Option<Instance>> {
        let service = self.get_service_name()?;
        let container = self.get_container_name()?;
        let snapshot = self.registry().await?.list_service(&service).await?;
        Ok(snapshot
            .find_container(&container)
            .map(|e| e.instance.clone()))
    }

    /// This container's internal address: from its record, else
    /// `CONTAINER_INTERNAL_ADDRESS`.
    pub async fn get_container_internal_address(&self) -> Result<String> {
        let from_record = self.own_record().await;
        if let Ok(Some(Instance {
            internal_address: Some(addr),
            ..
        })) = &from_record
        {
            return Ok(addr.clone());
        }
        if let Some(addr) = self.env.get("CONTAINER_INTERNAL_ADDRESS") {
            return Ok(addr.to_string());
        }
        from_record?;
        Err(Error::NoInternalAddress {
            container: self.get_container_name()?,
        })
    }

    /// This container's exposed (container-side) port `name`: from its
    /// record, else `PORT_<NAME>`, else `default`; an error when none is
    /// known.
    pub async fn get_port(&self, name: &str, default: Option<u16>) -> Result<u16> {
        let from_record = self.own_record().await;
        if let Ok(Some(instance)) = &from_record {
            if let Some(p) = find_port(instance, name) {
                return Ok(p.exposed);
            }
        }
        if let Some(p) = self.env.port(name)? {
            return Ok(p);
        }
        if let Some(d) = default {
            return Ok(d);
        }
        from_record?;
        Err(Error::UnknownPort {
            service: self.get_service_name()?,
            container: self.get_container_name()?,
            port: name.to_string(),
        })
    }

    async fn service(&self, service: &str) -> Result<Snapshot> {
        Ok(self.registry().await?.list_service(service).await?)
    }

    /// `host[:port...]` for every instance of `service` carrying all of
    /// `labels` (external ports, sorted by container name). Instances
    /// reported unhealthy (`healthy: false`) or lacking a requested port are
    /// left out; an error when fewer than `minimum` remain.
    pub async fn get_node_list<P: AsRef<str>, L: AsRef<str>>(
        &self,
        service: &str,
        ports: &[P],
        minimum: usize,
        labels: &[L],
    ) -> Result<Vec<String>> {
        let snapshot = self.service(service).await?;
        let nodes = node_list(snapshot.instances(), ports, labels);
        if nodes.len() < minimum {
            return Err(Error::NotEnoughNodes {
                service: service.to_string(),
                minimum,
                found: nodes.len(),
            });
        }
        Ok(nodes)
    }

    /// The record of one container of `service` (what the `get_specific_*`
    /// lookups read).
    pub async fn specific_instance(&self, service: &str, container: &str) -> Result<Instance> {
        let snapshot = self.service(service).await?;
        snapshot
            .find_container(container)
            .map(|e| e.instance.clone())
            .ok_or_else(|| Error::UnknownContainer {
                service: service.to_string(),
                container: container.to_string(),
            })
    }

    /// The host address of one container of `service`.
    pub async fn get_specific_host(&self, service: &str, container: &str) -> Result<String> {
        Ok(self.specific_instance(service, container).await?.host)
    }

    /// The external port `port` of one container of `service`, else `default`.
    pub async fn get_specific_port(
        &self,
        service: &str,
        container: &str,
        port: &str,
        default: Option<u16>,
    ) -> Result<u16> {
        let instance = self.specific_instance(service, container).await?;
        port_or_default(&instance, port, Side::External, default)
    }

    /// The exposed (container-side) port `port` of one container, else `default`.
    pub async fn get_specific_exposed_port(
        &self,
        service: &str,
        container: &str,
        port: &str,
        default: Option<u16>,
    ) -> Result<u16> {
        let instance = self.specific_instance(service, container).await?;
        port_or_default(&instance, port, Side::Exposed, default)
    }

    /// Waits until at least `minimum` instances of `service` are registered
    /// and returns their node list (hosts only). Follows a watch, no polling.
    pub async fn wait_for_nodes(
        &self,
        service: &str,
        minimum: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.wait_for_node_list::<&str, &str>(service, &[], minimum, &[], timeout)
            .await
    }

    /// [`wait_for_nodes`](Self::wait_for_nodes) with ports and labels, like
    /// [`get_node_list`](Self::get_node_list).
    pub async fn wait_for_node_list<P: AsRef<str>, L: AsRef<str>>(
        &self,
        service: &str,
        ports: &[P],
        minimum: usize,
        labels: &[L],
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let registry = self.registry().await?;
        let scope = Scope::service(service);
        let mut found = 0;
        let attempt = async {
            let snapshot = registry.list(&scope).await?;
            let nodes = node_list(snapshot.instances(), ports, labels);
            found = nodes.len();
            if nodes.len() >= minimum {
                return Ok::<_, Error>(nodes);
            }
            let mut watch = registry.watch(scope.clone(), Some(snapshot.revision + 1));
            let mut known: BTreeMap<InstanceName, Instance> = snapshot
                .entries
                .into_iter()
                .map(|e| (e.name, e.instance))
                .collect();
            while let Some(item) = watch.next().await {
                match item {
                    Ok(WatchEvent::Relisted(s)) => {
                        known = s
                            .entries
                            .into_iter()
                            .map(|e| (e.name, e.instance))
                            .collect()
                    }
                    Ok(WatchEvent::Put(instance, _)) => {
                        known.insert(instance.name()?, instance);
                    }
                    Ok(WatchEvent::Delete(name, _)) => {
                        known.remove(&name);
                    }
                    // The stream recovers from errors by itself.
                    Err(_) => continue,
                }
                let nodes = node_list(known.values(), ports, labels);
                found = nodes.len();
                if nodes.len() >= minimum {
                    return Ok(nodes);
                }
            }
            unreachable!("registry watches never end")
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                service: service.to_string(),
                minimum,
                found,
                timeout,
            }),
        }
    }
}
