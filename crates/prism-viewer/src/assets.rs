//! The web UI's files, embedded at compile time from `ui/` (plain JavaScript: no build step,
//! so `cargo build` needs neither node nor the network).

/// (URL path, content type, contents).
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "/scatter.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/scatter.js"),
    ),
    (
        "/plots.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/plots.js"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
];

/// The embedded file at `path`.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, t, c)| (t, c))
}
