//! `service_change(service, delta)` from the user's watch_methods.py, in an
//! embedded CPython. The interpreter is initialised only here, i.e. only in
//! Python mode: exec mode never pays for it.
//!
//! Calls run on tokio's blocking pool with the GIL held; the watcher runs
//! one callback at a time, so calls never overlap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use serde_json::Value;
use tracing::{error, info};

use super::{HookError, Notification};
use crate::delta::Node;

/// Which optional keyword arguments the user's function accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    pub added: bool,
    pub removed: bool,
    pub nodes: bool,
}

pub struct PythonHook {
    path: PathBuf,
    function: Arc<Py<PyAny>>,
    extras: Extras,
}

impl std::fmt::Debug for PythonHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonHook")
            .field("path", &self.path)
            .field("extras", &self.extras)
            .finish()
    }
}

/// Loads the module and finds `service_change`. Runs the module's top-level
/// code, like `import watch_methods` would (its folder goes first on
/// `sys.path`, so it can import its neighbours).
const LOADER: &str = r#"
def load(path):
    import importlib.util, os, sys
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("watch_methods", path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s as a Python module" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["watch_methods"] = module
    spec.loader.exec_module(module)
    function = getattr(module, "service_change", None)
    if function is None or not callable(function):
        raise AttributeError("%s defines no function service_change(service, delta)" % path)
    return function, accepted(function)

def accepted(function):
    # Plain functions and methods: read the code object (cheaper than
    # importing inspect, which costs ~2 MB of resident memory).
    code = getattr(function, "__code__", None)
    if code is not None:
        if code.co_flags & 0x08:  # CO_VARKEYWORDS: **kwargs
            return (True, True, True)
        names = code.co_varnames[code.co_posonlyargcount:code.co_argcount + code.co_kwonlyargcount]
        return tuple(n in names for n in ("added", "removed", "nodes"))
    import inspect
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return (False, False, False)
    kinds = inspect.Parameter
    if any(p.kind == kinds.VAR_KEYWORD for p in parameters.values()):
        return (True, True, True)
    def takes(name):
        p = parameters.get(name)
        return p is not None and p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    return (takes("added"), takes("removed"), takes("nodes"))
"#;

impl PythonHook {
    /// Initialises the interpreter (first call only) and loads `path`.
    /// Errors carry the Python traceback.
    pub fn load(path: &Path) -> Result<PythonHook, HookError> {
        Python::with_gil(|py| {
            let loaded = (|| -> PyResult<(Py<PyAny>, Extras)> {
                let code = std::ffi::CString::new(LOADER).expect("no NUL in the loader");
                let loader =
                    PyModule::from_code(py, &code, c"<watcher loader>", c"_mdo_watcher_loader")?;
                let result = loader
                    .getattr("load")?
                    .call1((path.to_string_lossy().into_owned(),))?;
                let (function, (added, removed, nodes)): (Py<PyAny>, (bool, bool, bool)) =
                    result.extract()?;
                Ok((
                    function,
                    Extras {
                        added,
                        removed,
                        nodes,
                    },
                ))
            })();
            flush_std_streams(py);
            match loaded {
                Ok((function, extras)) => {
                    info!(
                        path = %path.display(),
                        python = %py.version().split_whitespace().next().unwrap_or(""),
                        added = extras.added,
                        removed = extras.removed,
                        nodes = extras.nodes,
                        "loaded service_change"
                    );
                    Ok(PythonHook {
                        path: path.to_path_buf(),
                        function: Arc::new(function),
                        extras,
                    })
                }
                Err(e) => Err(HookError::PythonLoad {
                    path: path.to_path_buf(),
                    traceback: format_error(py, &e),
                }),
            }
        })
    }

    /// The optional arguments the function takes.
    pub fn extras(&self) -> Extras {
        self.extras
    }

    /// Calls `service_change` on the blocking pool; an exception comes back
    /// as [`HookError::PythonRaised`] with its traceback.
    pub async fn run(&self, n: &Notification) -> Result<(), HookError> {
        let function = Arc::clone(&self.function);
        let extras = self.extras;
        let service = n.watch.clone();
        let delta = n.change.delta;
        let pick = |wanted: bool, nodes: &[Node]| wanted.then(|| nodes.to_vec());
        let added = pick(extras.added, &n.change.added);
        let removed = pick(extras.removed, &n.change.removed);
        let nodes = pick(extras.nodes, &n.change.nodes);
        let outcome = tokio::task::spawn_blocking(move || {
            Python::with_gil(|py| {
                let result = (|| -> PyResult<()> {
                    let kwargs = PyDict::new(py);
                    for (name, value) in [("added", added), ("removed", removed), ("nodes", nodes)]
                    {
                        if let Some(list) = value {
                            let records = PyList::empty(py);
                            for node in &list {
                                records.append(to_py(py, &node.record)?)?;
                            }
                            kwargs.set_item(name, records)?;
                        }
                    }
                    let kwargs = (!kwargs.is_empty()).then_some(kwargs);
                    function.call(py, (service, delta), kwargs.as_ref())?;
                    Ok(())
                })();
                flush_std_streams(py);
                result.map_err(|e| format_error(py, &e))
            })
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(traceback)) => Err(HookError::PythonRaised { traceback }),
            Err(join) => {
                error!(error = %join, "the Python callback thread failed");
                Err(HookError::PythonRaised {
                    traceback: join.to_string(),
                })
            }
        }
    }
}

/// A record as Python sees it: dicts, lists, str, int, float, bool, None.
fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (k, v) in fields {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// The exception with its traceback, as Python prints it.
fn format_error(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let traceback = py.import("traceback")?;
        let lines = traceback.getattr("format_exception")?.call1((
            err.get_type(py),
            err.value(py),
            err.traceback(py),
        ))?;
        let lines: Vec<String> = lines.extract()?;
        Ok(lines.concat())
    })();
    formatted.unwrap_or_else(|_| err.to_string())
}

/// print() in user code is buffered when stdout is not a terminal: flush
/// after every call so the output shows up next to our logs.
fn flush_std_streams(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for stream in ["stdout", "stderr"] {
            if let Ok(s) = sys.getattr(stream) {
                if !s.is_none() {
                    let _ = s.call_method0("flush");
                }
            }
        }
    }
}
