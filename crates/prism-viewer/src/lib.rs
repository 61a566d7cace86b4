//! Prism's web viewer: a read-only HTTP server and browser UI over ViRelAy-compatible projects.
//!
//! [`Workspace::open`] loads one or more ViRelAy project files (`project.yaml`: a dataset, a
//! label map, attribution files and analysis files, as ViRelAy and `prism project` write them).
//! Every file a project names must lie inside the project's directory. [`serve`] then answers a
//! JSON API (ViRelAy's routes and keys, plus binary endpoints that send embedding coordinates,
//! cluster labels and sample numbers as little-endian typed arrays) and serves the web UI, whose
//! files are embedded in the binary (`ui/`, plain JavaScript, no build step). Rendered images
//! (inputs, heatmaps in any of Prism's colour maps, overlays) are PNGs kept in a bounded cache.
//! Projects over a token dataset (`type: tokens`) show each sample as its text coloured by
//! relevance: the HTML page of `prism heatmap --tokens`, served without scripts.
//!
//! The server binds 127.0.0.1 unless told otherwise (another address needs
//! [`ServeOptions::allow_remote`]), only answers GET, never writes, and takes no file paths from
//! requests: samples, projects and analyses are addressed by number and name. Bad parameters get
//! a 4xx status with `{"errorMessage": …}`. On a shared machine ([`guard`]): requests whose
//! `Host` does not name the server are refused (DNS rebinding), an optional token must come with
//! every request, and every answer carries a restrictive Content-Security-Policy, `nosniff`,
//! `no-referrer`, no framing and no CORS header.
//!
//! It does not compute anything (attributions: `prism-attribution`; analyses:
//! `prism-analysis`); [`synthetic`] writes small generated projects for tests and benchmarks.

mod api;
mod assets;
pub mod cache;
pub mod dataset;
pub mod error;
pub mod guard;
pub mod natural;
mod render;
pub mod synthetic;
pub mod workspace;

pub use api::router;
pub use error::ViewerError;
pub use workspace::{LoadedProject, Workspace};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind, 127.0.0.1 by default (loopback only).
    pub host: String,
    /// Port; 0 picks a free one (see the `ready` callback of [`serve`]).
    pub port: u16,
    /// Bytes of rendered images and arrays kept in memory.
    pub cache_bytes: usize,
    /// Allow an address other than a loopback one (`0.0.0.0`, a network interface): anyone who
    /// can reach the machine can then read the projects (consider `token`). Without it such a
    /// `host` is an error.
    pub allow_remote: bool,
    /// Host names (no port) answered besides IP addresses and `localhost`, e.g. the machine's
    /// name on the network; requests naming any other host are refused (see [`guard`]).
    pub allowed_hosts: Vec<String>,
    /// A token every request must present (see [`guard`]; [`guard::generate_token`] makes one).
    pub token: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            cache_bytes: 256 << 20,
            allow_remote: false,
            allowed_hosts: Vec::new(),
            token: None,
        }
    }
}

/// The address a browser opens for a server bound to `addr`: a wildcard address (`0.0.0.0`,
/// `::`) becomes the loopback one. `query` (already encoded pairs, see [`url_encode`]) follows
/// `?`: the token and the UI's view state (`category`, `clustering`, `cluster`, …; see
/// `docs/viewer.md`).
pub fn browser_url(addr: SocketAddr, query: &[(&str, &str)]) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let mut url = format!("http://{host}:{}/", addr.port());
    for (i, (k, v)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&url_encode(k));
        url.push('=');
        url.push_str(&url_encode(v));
    }
    url
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~` (a query parameter's name or value).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serves `workspace` until Ctrl-C (or SIGTERM); `ready` gets the bound address once the server
/// listens. Blocks the calling thread (it runs its own Tokio runtime).
pub fn serve(
    workspace: Workspace,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ViewerError> {
    serve_until(workspace, options, ready, shutdown_signal())
}

/// Serves `workspace` until `shutdown` completes.
fn serve_until(
    workspace: Workspace,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ViewerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ViewerError::Server {
            message: "cannot start the async runtime".into(),
            source,
        })?;
    let access = Arc::new(guard::Access::new(
        &options.allowed_hosts,
        options.token.clone(),
    )?);
    runtime.block_on(async move {
        let addr = format!("{}:{}", options.host, options.port);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&addr)
            .await
            .map_err(|source| ViewerError::Server {
                message: format!("cannot resolve {addr}"),
                source,
            })?
            .collect();
        if !options.allow_remote {
            if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ViewerError::Access(format!(
                    "{addr} ({}) is not a loopback address: the viewer would be reachable from \
                     other machines, and anyone who reaches it reads the projects; allow it \
                     explicitly (`--allow-remote`, in Python `allow_remote=True`; consider a \
                     token), or bind 127.0.0.1",
                    a.ip()
                )));
            }
        }
        let listener = tokio::net::TcpListener::bind(&addrs[..])
            .await
            .map_err(|source| ViewerError::Server {
                message: format!("cannot listen on {addr} (is the port in use?)"),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| ViewerError::Server {
                message: "cannot read the bound address".into(),
                source,
            })?;
        ready(local);
        let app = api::routes(Arc::new(workspace), options.cache_bytes)
            .layer(axum::middleware::from_fn_with_state(access, guard::check))
            .layer(axum::middleware::from_fn(guard::headers));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ViewerError::Server {
                message: "the server stopped".into(),
                source,
            })
    })
}

/// A server answering on a thread of its own, for front ends that keep control of their thread
/// (a notebook, a test). It does not watch Ctrl-C: [`BackgroundServer::stop`] (or dropping it)
/// stops it.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ViewerError>>>,
}

fn thread_died() -> ViewerError {
    ViewerError::Server {
        message: "the server thread".into(),
        source: std::io::Error::other("it stopped unexpectedly (panicked)"),
    }
}

/// Starts serving `workspace` on a background thread; returns once the server listens (port 0
/// picks a free port: see [`BackgroundServer::addr`]).
pub fn spawn(
    workspace: Workspace,
    options: &ServeOptions,
) -> Result<BackgroundServer, ViewerError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let options = options.clone();
    let thread = std::thread::Builder::new()
        .name("prism-viewer".into())
        .spawn(move || {
            serve_until(
                workspace,
                &options,
                |addr| {
                    // The receiver waits for this until the thread ends.
                    let _ = ready_tx.send(addr);
                },
                async {
                    // A dropped sender stops the server as well.
                    let _ = stop_rx.await;
                },
            )
        })
        .map_err(|source| ViewerError::Server {
            message: "cannot start the server thread".into(),
            source,
        })?;
    match ready_rx.recv() {
        Ok(addr) => Ok(BackgroundServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        // The thread ended before it listened: its error.
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) | Err(_) => Err(thread_died()),
        },
    }
}

impl BackgroundServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the server (open requests finish first) and waits for its thread. Stopping a
    /// stopped server does nothing.
    pub fn stop(&mut self) -> Result<(), ViewerError> {
        if let Some(tx) = self.stop.take() {
            // The server may have stopped on its own: nothing listens then.
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| thread_died())?,
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        // An error here has no one to go to; `stop` reports it to callers who ask.
        let _ = self.stop();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
