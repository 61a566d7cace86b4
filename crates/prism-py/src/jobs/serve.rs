//! `serve`: the viewer on a background thread (`prism_viewer::spawn`), stopped by
//! `Server.stop()` (or when the `Server` is garbage-collected).

use std::path::PathBuf;
use std::sync::Mutex;

use prism_viewer::{BackgroundServer, ServeOptions, Workspace};
use pyo3::prelude::*;

use crate::errors::{from_lib, invalid, Kind};
use crate::runtime;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    m.add_class::<Server>()?;
    Ok(())
}

/// A running viewer. `url` is where it answers; `stop()` stops it.
#[pyclass(module = "prism_xai._prism", name = "Server", frozen)]
pub struct Server {
    url: String,
    server: Mutex<Option<BackgroundServer>>,
}

/// Serves ViRelAy projects in the browser, like `prism serve`, from a background thread:
/// returns once the server listens. `port=0` picks a free port (see `Server.url`). A
/// non-loopback `host` needs `allow_remote=True`; `allowed_hosts` are host names answered
/// besides IP addresses and `localhost`; `token=True` makes a random token, a string is the
/// token (`Server.url` carries it).
#[pyfunction]
#[pyo3(signature = (projects, *, host="127.0.0.1".to_string(), port=8080, cache_mib=256,
    allow_remote=false, allowed_hosts=Vec::new(), token=None))]
#[allow(clippy::too_many_arguments)]
fn serve(
    py: Python<'_>,
    projects: &Bound<'_, PyAny>,
    host: String,
    port: u16,
    cache_mib: usize,
    allow_remote: bool,
    allowed_hosts: Vec<String>,
    token: Option<&Bound<'_, PyAny>>,
) -> PyResult<Server> {
    let projects: Vec<PathBuf> = match projects.extract::<PathBuf>() {
        Ok(one) => vec![one],
        Err(_) => projects.extract().map_err(|_| {
            invalid(format!(
                "serve: `projects` must be a project file or a list of them, got {}",
                super::describe(projects)
            ))
        })?,
    };
    if projects.is_empty() {
        return Err(invalid("serve: `projects` names no project file"));
    }
    let token = match token {
        None => None,
        Some(t) => match t.extract::<bool>() {
            Ok(false) => None,
            Ok(true) => Some(
                prism_viewer::guard::generate_token().map_err(|e| from_lib(Kind::Viewer, &e))?,
            ),
            Err(_) => Some(t.extract::<String>().map_err(|_| {
                invalid(format!(
                    "serve: `token` must be True, False, None or a string, got {}",
                    super::describe(t)
                ))
            })?),
        },
    };
    if let Some(t) = &token {
        prism_viewer::guard::validate_token(t)
            .map_err(|e| invalid(format!("serve: `token`: {e}")))?;
    }
    let options = ServeOptions {
        host,
        port,
        cache_bytes: cache_mib.max(1) << 20,
        allow_remote,
        allowed_hosts,
        token: token.clone(),
    };
    let server = runtime::compute(py, || {
        let workspace = Workspace::open(&projects)?;
        prism_viewer::spawn(workspace, &options)
    })
    .map_err(|e| from_lib(Kind::Viewer, &e))?;
    // A wildcard address is not one a browser can open: the URL names the loopback address.
    let query: Vec<(&str, &str)> = token.iter().map(|t| ("token", t.as_str())).collect();
    Ok(Server {
        url: prism_viewer::browser_url(server.addr(), &query),
        server: Mutex::new(Some(server)),
    })
}

#[pymethods]
impl Server {
    /// The address the viewer answers on, e.g. `http://127.0.0.1:8080/` (with `?token=…` when
    /// it needs a token).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Whether the viewer still runs.
    #[getter]
    fn running(&self) -> bool {
        self.server
            .lock()
            .map(|s| s.as_ref().is_some_and(BackgroundServer::is_running))
            .unwrap_or(false)
    }

    /// Stops the viewer (open requests finish first). Stopping twice does nothing.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let server = match self.server.lock() {
            Ok(mut s) => s.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match server {
            Some(mut s) => py
                .detach(move || s.stop())
                .map_err(|e| from_lib(Kind::Viewer, &e)),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Server({:?})", self.url)
    }
}
