//! The viewer's HTTP API (prism-viewer `api`): path parameters and query strings of every
//! route, sent through the axum router (no socket) over a small generated workspace of three
//! projects (HDF5 images, an image folder, tokens).
//!
//! The input is the request target (`/api/projects/…?…`); one that does not start with `/`
//! gets `/api/projects/` in front.
use axum::body::Body;
use axum::http::Request;
use prism_store::project::DatasetKind;
use prism_viewer::synthetic::SyntheticProject;
use prism_viewer::Workspace;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

struct Setup {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = crate::fresh_dir("workspace");
        let project = |name: &str, kind: DatasetKind, size: usize| {
            SyntheticProject {
                name: name.into(),
                classes: 3,
                per_class: 6,
                size,
                dataset: kind,
                ..SyntheticProject::demo()
            }
            .write(&dir.join(name))
            .expect("writing a synthetic project")
        };
        let paths = [
            project("first", DatasetKind::Hdf5, 8),
            project("images", DatasetKind::ImageDirectory, 8),
            project("tokens", DatasetKind::Tokens, 8),
        ];
        let ws = Workspace::open(&paths).expect("opening the synthetic workspace");
        Setup {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            router: prism_viewer::router(Arc::new(ws), 1 << 20),
        }
    })
}

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let target = if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/api/projects/{text}")
    };
    let Ok(request) = Request::get(target.as_str())
        .header("host", "127.0.0.1")
        .body(Body::empty())
    else {
        return;
    };
    let s = setup();
    let response = s.runtime.block_on(s.router.clone().oneshot(request));
    let Ok(response) = response;
    assert!(
        !response.status().is_server_error(),
        "{target} answered {}",
        response.status()
    );
    let _ = s
        .runtime
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 26));
}
