//! `prism serve`: the web viewer over one or more ViRelAy projects.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

/// Serve ViRelAy projects in the browser: the embedding of each class's explanations (WebGL
/// scatter, pan/zoom, rectangle and lasso selection), clusters and eigenvalues, and every
/// selected sample as input, heatmap or overlay.
///
/// Each PROJECT.yaml is a ViRelAy project file (`prism project` writes one). Every file it names
/// must lie in its directory. The server is read-only and binds 127.0.0.1 unless --host says
/// otherwise; the UI is built into the binary. Stop it with Ctrl-C.
///
/// Examples:
///
///   prism serve project.yaml
///
///   prism serve cifar/project.yaml imagenet/project.yaml --port 9000
///
///   prism serve project.yaml --host 0.0.0.0 --port 8080   # reachable from other machines
///
/// The address is printed once the server listens; `--port 0` picks a free port.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// ViRelAy project files (YAML), shown as tabs in this order.
    #[arg(required = true, value_name = "PROJECT.yaml")]
    pub projects: Vec<PathBuf>,
    /// Address to bind; 0.0.0.0 exposes the viewer to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one).
    #[arg(long, short, default_value_t = 8080)]
    pub port: u16,
    /// Memory for cached images and arrays, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub cache_mib: usize,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let workspace = prism_viewer::Workspace::open(&args.projects).with_context(|| {
        format!(
            "cannot load the project{} {}",
            if args.projects.len() > 1 { "s" } else { "" },
            args.projects
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let names: Vec<String> = workspace
        .projects
        .iter()
        .map(|p| p.project.name.clone())
        .collect();
    let options = prism_viewer::ServeOptions {
        host: args.host.clone(),
        port: args.port,
        cache_bytes: args.cache_mib.max(1) << 20,
    };
    prism_viewer::serve(workspace, &options, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Prism viewer on http://{addr}/  (Ctrl-C stops it)");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(out, "  project {i}: {n}");
        }
        let _ = out.flush();
    })
    .context("the viewer failed")
}
