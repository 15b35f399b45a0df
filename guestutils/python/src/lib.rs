//! `guestutils._native`: the Python face of the `guestutils` crate.
//!
//! One tokio runtime for the whole interpreter (re-created after a fork),
//! one etcd connection per distinct setting, the GIL released around every
//! etcd call. The environment is read from the process at each call, so
//! changes to `os.environ` are seen.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use guestutils::lookup::{port_or_default, Side};
use guestutils::{AsyncGuestUtils, Environment, Error};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use registry::{Registry, Settings};
use tokio::runtime::Runtime;

create_exception!(
    guestutils,
    GuestUtilsError,
    PyException,
    "Raised when a lookup cannot answer (missing environment, too few nodes, \
     unknown container or port, etcd unreachable). Also importable as \
     MaestroEnvironmentError."
);

struct Shared {
    pid: u32,
    runtime: &'static Runtime,
    registries: HashMap<Settings, Registry>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

fn to_py(e: Error) -> PyErr {
    GuestUtilsError::new_err(e.to_string())
}

/// The runtime of this process, created once (again in a forked child:
/// the parent's worker threads do not exist there, so it is leaked).
fn runtime() -> Result<&'static Runtime, Error> {
    let mut guard = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some(shared) = guard.as_ref() {
        if shared.pid == pid {
            return Ok(shared.runtime);
        }
    }
    let runtime: &'static Runtime = Box::leak(Box::new(guestutils::runtime()?));
    *guard = Some(Shared {
        pid,
        runtime,
        registries: HashMap::new(),
    });
    Ok(runtime)
}

async fn registry_for(settings: Settings) -> Result<Registry, Error> {
    if let Some(reg) = SHARED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|s| s.registries.get(&settings).cloned())
    {
        return Ok(reg);
    }
    let reg = Registry::connect(&settings).await?;
    if let Some(shared) = SHARED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        shared.registries.insert(settings, reg.clone());
    }
    Ok(reg)
}

type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Runs an etcd lookup with the GIL released.
fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: for<'a> FnOnce(&'a AsyncGuestUtils) -> Lookup<'a, T> + Send,
{
    py.allow_threads(move || {
        let rt = runtime()?;
        rt.block_on(async move {
            let env = Environment::from_process_env();
            let registry = registry_for(env.settings()?).await?;
            let guest = AsyncGuestUtils::with_registry(env, registry);
            f(&guest).await
        })
    })
    .map_err(to_py)
}

fn env_only<T>(f: impl FnOnce(&AsyncGuestUtils) -> Result<T, Error>) -> PyResult<T> {
    f(&AsyncGuestUtils::new(Environment::from_process_env())).map_err(to_py)
}

/// Port lookups return `default` (possibly None) when the port is unknown,
/// as maestro-ng did.
fn port_or_none(r: Result<u16, Error>, default: Option<u16>) -> Result<Option<u16>, Error> {
    match r {
        Ok(p) => Ok(Some(p)),
        Err(Error::UnknownPort { .. }) => Ok(default),
        Err(e) => Err(e),
    }
}

/// The environment (group) this container belongs to: ``SERVICE_GROUP``,
/// else ``MARATHON_APP_LABEL_SERVICE_GROUP``, else the sorted ``LABELS``
/// joined with ``.``, else derived from ``MARATHON_APP_ID`` (``default``
/// for a top-level app).
#[pyfunction]
fn get_environment_name() -> PyResult<String> {
    env_only(|g| g.get_environment_name())
}

/// The service this container is an instance of: ``SERVICE_NAME``, else
/// ``MARATHON_APP_LABEL_SERVICE_NAME``, else the last segment of
/// ``MARATHON_APP_ID``.
#[pyfunction]
fn get_service_name() -> PyResult<String> {
    env_only(|g| g.get_service_name())
}

/// This container's name (the task id): ``CONTAINER_NAME``, else
/// ``MESOS_TASK_ID``.
#[pyfunction]
fn get_container_name() -> PyResult<String> {
    env_only(|g| g.get_container_name())
}

/// The address other containers reach this one's external ports at:
/// ``CONTAINER_HOST_ADDRESS``, else ``HOST``.
#[pyfunction]
fn get_container_host_address() -> PyResult<String> {
    env_only(|g| g.get_container_host_address())
}

/// This container's own (internal) address, from its registry record, else
/// ``CONTAINER_INTERNAL_ADDRESS``.
#[pyfunction]
fn get_container_internal_address(py: Python<'_>) -> PyResult<String> {
    run(py, |g| Box::pin(g.get_container_internal_address()))
}

/// This container's exposed (container-side) port ``name`` as an int: from
/// its registry record, else ``PORT_<NAME>``; ``default`` when unknown.
#[pyfunction]
#[pyo3(signature = (name, default = None))]
fn get_port(py: Python<'_>, name: String, default: Option<u16>) -> PyResult<Option<u16>> {
    run(py, move |g| {
        Box::pin(async move { port_or_none(g.get_port(&name, None).await, default) })
    })
}

/// ``["host[:port1[:port2]]", ...]`` for the instances of ``service``
/// carrying every label in ``labels``, with their external ports for the
/// named ``ports``, sorted by container name. Instances reported unhealthy
/// or lacking one of the ``ports`` are left out. Raises GuestUtilsError when
/// fewer than ``minimum`` remain.
#[pyfunction]
#[pyo3(
    signature = (service, ports = Vec::new(), minimum = 1, labels = Vec::new()),
    text_signature = "(service, ports=[], minimum=1, labels=[])"
)]
fn get_node_list(
    py: Python<'_>,
    service: String,
    ports: Vec<String>,
    minimum: usize,
    labels: Vec<String>,
) -> PyResult<Vec<String>> {
    run(py, move |g| {
        Box::pin(async move { g.get_node_list(&service, &ports, minimum, &labels).await })
    })
}

/// The host address of container ``container`` of ``service``.
#[pyfunction]
fn get_specific_host(py: Python<'_>, service: String, container: String) -> PyResult<String> {
    run(py, move |g| {
        Box::pin(async move { g.get_specific_host(&service, &container).await })
    })
}

/// Port ``port`` of container ``container`` of ``service``, as an int: the
/// exposed (container-side) one when ``exposed``, else the external
/// (host-side) one; ``default`` when it has no such port. The one native
/// lookup behind maestro's ``get_specific_port`` and
/// ``get_specific_exposed_port`` (defined in ``guestutils/__init__.py``).
#[pyfunction]
#[pyo3(signature = (service, container, port, default = None, exposed = false))]
fn specific_port(
    py: Python<'_>,
    service: String,
    container: String,
    port: String,
    default: Option<u16>,
    exposed: bool,
) -> PyResult<Option<u16>> {
    let side = if exposed {
        Side::Exposed
    } else {
        Side::External
    };
    run(py, move |g| {
        Box::pin(async move {
            let instance = g.specific_instance(&service, &container).await?;
            port_or_none(port_or_default(&instance, &port, side, None), default)
        })
    })
}

/// Blocks until at least ``minimum`` instances of ``service`` (with every
/// label in ``labels``) are registered and returns their node list, like
/// get_node_list. Raises GuestUtilsError after ``timeout`` seconds.
#[pyfunction]
#[pyo3(
    signature = (service, minimum = 1, timeout = 60.0, ports = Vec::new(), labels = Vec::new()),
    text_signature = "(service, minimum=1, timeout=60.0, ports=[], labels=[])"
)]
fn wait_for_nodes(
    py: Python<'_>,
    service: String,
    minimum: usize,
    timeout: f64,
    ports: Vec<String>,
    labels: Vec<String>,
) -> PyResult<Vec<String>> {
    if !(timeout.is_finite() && timeout >= 0.0) {
        return Err(GuestUtilsError::new_err(format!(
            "timeout must be a non-negative number of seconds, got {timeout}"
        )));
    }
    let timeout = Duration::from_secs_f64(timeout);
    run(py, move |g| {
        Box::pin(async move {
            g.wait_for_node_list(&service, &ports, minimum, &labels, timeout)
                .await
        })
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GuestUtilsError", m.py().get_type::<GuestUtilsError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(get_environment_name, m)?)?;
    m.add_function(wrap_pyfunction!(get_service_name, m)?)?;
    m.add_function(wrap_pyfunction!(get_container_name, m)?)?;
    m.add_function(wrap_pyfunction!(get_container_host_address, m)?)?;
    m.add_function(wrap_pyfunction!(get_container_internal_address, m)?)?;
    m.add_function(wrap_pyfunction!(get_port, m)?)?;
    m.add_function(wrap_pyfunction!(get_node_list, m)?)?;
    m.add_function(wrap_pyfunction!(get_specific_host, m)?)?;
    m.add_function(wrap_pyfunction!(specific_port, m)?)?;
    m.add_function(wrap_pyfunction!(wait_for_nodes, m)?)?;
    Ok(())
}
