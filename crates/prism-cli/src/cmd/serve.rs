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
/// On a shared machine: requests must name this server (an IP address, localhost, or an
/// --allowed-host name; a guard against DNS rebinding); --token makes every request present a
/// secret token, which the printed URL carries (for SSH tunnels and shared hosts). Any address
/// but a loopback one needs --allow-remote.
///
/// Examples:
///
///   prism serve project.yaml
///
///   prism serve cifar/project.yaml imagenet/project.yaml --port 9000
///
///   prism serve project.yaml --token          # prints http://127.0.0.1:8080/?token=…
///
///   # reachable from other machines, by address or by the name gpu-box.lab:
///   prism serve project.yaml --host 0.0.0.0 --allow-remote --token --allowed-host gpu-box.lab
///
/// The address is printed once the server listens; `--port 0` picks a free port. The UI opens
/// on a given view with query parameters, e.g.
/// http://127.0.0.1:8080/?category=digit-7&clustering=kmeans-02&cluster=1 (docs/viewer.md).
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// ViRelAy project files (YAML), shown as tabs in this order.
    #[arg(required = true, value_name = "PROJECT.yaml")]
    pub projects: Vec<PathBuf>,
    /// Address to bind; any but a loopback address (e.g. 0.0.0.0) needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one).
    #[arg(long, short, default_value_t = 8080)]
    pub port: u16,
    /// Memory for cached images and arrays, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub cache_mib: usize,
    /// Allow --host to be a non-loopback address (e.g. 0.0.0.0): anyone who can reach this
    /// machine can then read the projects; consider --token.
    #[arg(long)]
    pub allow_remote: bool,
    /// Also answer requests naming this host (e.g. the machine's name on the network, or a
    /// reverse proxy's); IP addresses and localhost are always answered. Repeatable.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Require a token on every request. `--token` alone uses $PRISM_VIEWER_TOKEN if set, else
    /// makes a random one; `--token=VALUE` uses VALUE (16+ characters of A-Z a-z 0-9 - . _ ~;
    /// visible to other users in the process list, unlike the variable). The printed URL
    /// carries it; the browser then keeps it in a cookie.
    #[arg(
        long,
        value_name = "VALUE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub token: Option<String>,
}

impl ServeArgs {
    /// `prism serve PROJECT` with the defaults (127.0.0.1, no token) on `port`.
    pub fn local(project: PathBuf, port: u16) -> Self {
        ServeArgs {
            projects: vec![project],
            host: "127.0.0.1".into(),
            port,
            cache_mib: 256,
            allow_remote: false,
            allowed_hosts: Vec::new(),
            token: None,
        }
    }
}

/// The token to require: none, the given one, $PRISM_VIEWER_TOKEN, or a new random one.
fn token_of(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match args.token.as_deref() {
        None => return Ok(None),
        Some("") => match std::env::var("PRISM_VIEWER_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => prism_viewer::guard::generate_token()?,
        },
        Some(t) => t.to_string(),
    };
    prism_viewer::guard::validate_token(&token).context("--token")?;
    Ok(Some(token))
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    run_on(args, &[])
}

/// Runs the server; the printed URL opens the UI on `view` (query pairs: `category`, …).
pub fn run_on(args: &ServeArgs, view: &[(&str, &str)]) -> anyhow::Result<()> {
    let token = token_of(args)?;
    // An address is checked before the projects load (the server checks names it resolves).
    if let Ok(ip) = args.host.parse::<std::net::IpAddr>() {
        if !ip.is_loopback() && !args.allow_remote {
            anyhow::bail!(
                "--host {ip} is not a loopback address: the viewer would be reachable from other \
                 machines, and anyone who reaches it reads the projects; add --allow-remote \
                 (and consider --token), or leave --host at 127.0.0.1"
            );
        }
    }
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
        allow_remote: args.allow_remote,
        allowed_hosts: args.allowed_hosts.clone(),
        token: token.clone(),
    };
    prism_viewer::serve(workspace, &options, |addr| {
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: the viewer listens on {addr}: every machine that can reach this one \
                 can read these projects{} (other machines open it at this machine's address)",
                if token.is_some() {
                    " with the token"
                } else {
                    "; consider --token"
                }
            );
        }
        let mut query: Vec<(&str, &str)> = view.to_vec();
        if let Some(t) = &token {
            query.push(("token", t));
        }
        let url = prism_viewer::browser_url(addr, &query);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Prism viewer on {url}  (Ctrl-C stops it)");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(out, "  project {i}: {n}");
        }
        let _ = out.flush();
    })
    .context("the viewer failed")
}
