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
///
/// The interpreter starts without `site` (see [`start_interpreter`]);
/// `add_site_packages` then puts on `sys.path` what `site` would have put
/// there: the user and global site-packages folders (Debian's dist-packages
/// included: site computes them) and the folders listed in their `.pth`
/// files. It does not run the `import` lines of `.pth` files, sitecustomize
/// or usercustomize: on a typical image those import a few MB of modules the
/// watcher never uses (`--python-site` restores the full site run).
/// Everything here avoids importlib.util and inspect, which cost ~1 MB and
/// ~2 MB of resident memory.
const LOADER: &str = r##"
import sys

def add_site_packages():
    import os, site  # with no_site set, importing site runs nothing
    if site.ENABLE_USER_SITE is None:
        site.ENABLE_USER_SITE = site.check_enableusersite()
    folders = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    folders += site.getsitepackages()
    for folder in folders:
        folder = os.path.abspath(folder)
        if folder in sys.path or not os.path.isdir(folder):
            continue
        sys.path.append(folder)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pth") and not n.startswith("."))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                if not line.strip() or line.startswith(("#", "import ", "import\t")):
                    continue
                extra = os.path.abspath(os.path.join(folder, line.rstrip()))
                if extra not in sys.path and os.path.exists(extra):
                    sys.path.append(extra)
    # The builtins site adds (exit(), quit(), help(), ...): cheap.
    site.setquit()
    site.setcopyright()
    site.sethelper()

def load(path, site_done):
    import os
    if not site_done:
        add_site_packages()
    try:
        from _frozen_importlib_external import spec_from_file_location
        from _frozen_importlib import module_from_spec
    except ImportError:
        from importlib.util import spec_from_file_location, module_from_spec
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = spec_from_file_location("watch_methods", path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s as a Python module" % path)
    module = module_from_spec(spec)
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
"##;

impl PythonHook {
    /// Initialises the interpreter (first call only; with Python's full
    /// `site` run when `full_site`) and loads `path`. Errors carry the
    /// Python traceback.
    pub fn load(path: &Path, full_site: bool) -> Result<PythonHook, HookError> {
        start_interpreter(full_site);
        Python::with_gil(|py| {
            let loaded = (|| -> PyResult<(Py<PyAny>, Extras)> {
                let code = std::ffi::CString::new(LOADER).expect("no NUL in the loader");
                let loader =
                    PyModule::from_code(py, &code, c"<watcher loader>", c"_mdo_watcher_loader")?;
                let result = loader
                    .getattr("load")?
                    .call1((path.to_string_lossy().into_owned(), site_ran(py)))?;
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

/// Starts the embedded interpreter once, as `python3 -S` unless
/// `full_site`: importing `site` also runs every `import` line of the `.pth`
/// files in site-packages (setuptools' distutils hack, certificate hooks,
/// coverage, ...), which pulls in dozens of modules: a few MB of resident
/// memory for the life of the watcher. The site-packages folders are added
/// by the loader instead. Everything else is pyo3's usual initialisation
/// (`Py_InitializeEx(0)`: no Python signal handlers, same locale handling).
fn start_interpreter(full_site: bool) {
    if !full_site {
        disable_site();
    }
    pyo3::prepare_freethreaded_python();
}

/// Whether `site` ran at start (false after [`disable_site`]).
fn site_ran(py: Python<'_>) -> bool {
    (|| -> PyResult<bool> {
        let no_site: i64 = py
            .import("sys")?
            .getattr("flags")?
            .getattr("no_site")?
            .extract()?;
        Ok(no_site == 0)
    })()
    .unwrap_or(true)
}

/// Sets CPython's `Py_NoSiteFlag` (what `-S` sets), read by the legacy
/// initialisation pyo3 uses. Deprecated since 3.12 in favour of `PyConfig`,
/// still honoured there; writing it needs `unsafe`, hence the one exception
/// to the workspace's no-unsafe rule (see Cargo.toml).
#[allow(unsafe_code, deprecated)]
fn disable_site() {
    // SAFETY: a plain `int` global of libpython, read only when the
    // interpreter is initialised. It is written here before
    // `prepare_freethreaded_python`, on the thread that starts the
    // interpreter, before any other thread touches Python; if the
    // interpreter was already running, the write has no effect.
    unsafe {
        pyo3::ffi::Py_NoSiteFlag = 1;
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
