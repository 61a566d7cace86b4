//! The viewer on a shared machine: the Host check (DNS rebinding), the token, the security
//! headers on every kind of answer, no CORS, and non-loopback addresses refused without
//! `allow_remote`. In-process servers over one generated project.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;

use prism_store::project::DatasetKind;
use prism_viewer::synthetic::SyntheticProject;
use prism_viewer::{BackgroundServer, ServeOptions, Workspace};

const TOKEN: &str = "s3cret-token_0123456789";

struct Servers {
    open: BackgroundServer,
    guarded: BackgroundServer,
    _dir: tempfile::TempDir,
}

fn project(dir: &std::path::Path) -> std::path::PathBuf {
    SyntheticProject {
        name: "sec".into(),
        classes: 2,
        per_class: 10,
        size: 8,
        dataset: DatasetKind::Hdf5,
        ..SyntheticProject::demo()
    }
    .write(dir)
    .unwrap()
}

/// A server without a token (one allowed host name), and one with [`TOKEN`].
fn servers() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let yaml = project(dir.path());
        let open = prism_viewer::spawn(
            Workspace::open(std::slice::from_ref(&yaml)).unwrap(),
            &ServeOptions {
                port: 0,
                allowed_hosts: vec!["Viewer.Lab.Example".into()],
                ..ServeOptions::default()
            },
        )
        .unwrap();
        let guarded = prism_viewer::spawn(
            Workspace::open(&[yaml]).unwrap(),
            &ServeOptions {
                port: 0,
                token: Some(TOKEN.into()),
                ..ServeOptions::default()
            },
        )
        .unwrap();
        Servers {
            open,
            guarded,
            _dir: dir,
        }
    })
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `target` with a `Host` header (none if `host` is `None`) and `extra` header lines.
fn get(addr: SocketAddr, target: &str, host: Option<&str>, extra: &[&str]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    for e in extra {
        req.push_str(e);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

fn local(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

const PNG: &str = "/api/projects/0/attributions/3/image?mode=overlay";
const JSON: &str = "/api/projects/0";

#[test]
fn requests_for_other_hosts_are_refused() {
    let addr = servers().open.addr();
    let port = addr.port();
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "viewer.lab.example.evil".into(),
        "a b".into(),
    ] {
        for target in ["/", JSON, PNG] {
            let r = get(addr, target, Some(&host), &[]);
            assert_eq!(r.status, 421, "{host} {target}: {}", r.text());
            assert!(
                r.text().contains("DNS rebinding"),
                "{host}: the answer says why: {}",
                r.text()
            );
            assert!(!r.text().contains("sec"), "nothing of the project");
            assert_eq!(
                r.header("x-content-type-options").as_deref(),
                Some("nosniff")
            );
        }
    }
    let r = get(addr, JSON, None, &[]);
    assert_eq!(r.status, 421, "no Host: {}", r.text());
}

#[test]
fn requests_naming_the_server_are_answered() {
    let addr = servers().open.addr();
    let port = addr.port();
    for host in [
        local(addr),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("[::1]:{port}"),
        // An SSH tunnel forwards another local port: the port is not compared.
        "localhost:9999".into(),
        format!("viewer.lab.example:{port}"),
        format!("VIEWER.lab.example:{port}"),
    ] {
        let r = get(addr, JSON, Some(&host), &[]);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert!(r.text().contains("\"sec\""), "{host}");
    }
}

#[test]
fn every_answer_carries_the_security_headers_and_no_cors() {
    let addr = servers().open.addr();
    let host = local(addr);
    let cases = [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        (JSON, "application/json"),
        (PNG, "image/png"),
        (
            "/api/projects/0/analyses/spectral_analysis/index.u32?category=n00000001",
            "application/octet-stream",
        ),
        ("/api/projects/9", "application/json"),
        ("/nothing", "application/json"),
    ];
    for (target, kind) in cases {
        let r = get(
            addr,
            target,
            Some(&host),
            &[
                "Origin: http://evil.example",
                "Referer: http://evil.example/",
            ],
        );
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with(kind),
            "{target}: {}",
            r.head
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{target}"
        );
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{target}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{target}: {csp}");
        assert!(!csp.contains("unsafe"), "{target}: {csp}");
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(
            r.header("cross-origin-resource-policy").as_deref(),
            Some("same-origin")
        );
        assert!(
            !r.head.to_ascii_lowercase().contains("access-control-"),
            "{target}: no CORS header for another origin: {}",
            r.head
        );
    }
    // The UI's policy allows what the UI uses: its own scripts, styles, images, frames, API.
    let csp = get(addr, "/", Some(&host), &[])
        .header("content-security-policy")
        .unwrap();
    for d in [
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
    ] {
        assert!(csp.contains(d), "{csp}");
    }
    // A preflight gets no CORS answer either.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "OPTIONS {JSON} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
         Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(!raw.starts_with("HTTP/1.1 2"), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("access-control-"),
        "{raw}"
    );
}

#[test]
fn a_token_is_required_on_every_request() {
    let addr = servers().guarded.addr();
    let host = local(addr);
    for target in ["/", JSON, PNG, "/app.js"] {
        let r = get(addr, target, Some(&host), &[]);
        assert_eq!(r.status, 401, "{target} without the token: {}", r.text());
        assert!(r.text().contains("token"), "{}", r.text());
        assert!(!r.text().contains("\"sec\""));
        assert!(r.header("www-authenticate").is_some());
        assert!(r.header("content-security-policy").is_some());
        assert!(r.header("set-cookie").is_none());
    }
    for wrong in [
        "?token=wrong",
        "?token=s3cret-token_012345678",
        "?token=s3cret-token_01234567890",
        "?token=S3cret-token_0123456789",
        "?token=",
    ] {
        let r = get(addr, &format!("/{wrong}"), Some(&host), &[]);
        assert_eq!(r.status, 401, "{wrong}");
    }
    let wrong_cookie = get(
        addr,
        JSON,
        Some(&host),
        &["Cookie: prism-token-00000000=nope"],
    );
    assert_eq!(wrong_cookie.status, 401);

    // The printed URL: the page, and a cookie for the UI's own requests.
    let first = get(
        addr,
        &format!("/?category=x&token={TOKEN}"),
        Some(&host),
        &[],
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("app.js"));
    let cookie = first.headers("set-cookie");
    assert_eq!(cookie.len(), 1, "{}", first.head);
    let cookie = &cookie[0];
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(
        pair.starts_with("prism-token-") && pair.ends_with(TOKEN),
        "{pair}"
    );

    // With the cookie (as the browser sends it, among others): every route answers.
    for target in ["/", JSON, PNG, "/app.js"] {
        let r = get(
            addr,
            target,
            Some(&host),
            &[&format!("Cookie: theme=dark; {pair}")],
        );
        assert_eq!(r.status, 200, "{target} with the cookie: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "set once");
    }
    // Scripts: a bearer token.
    let r = get(
        addr,
        JSON,
        Some(&host),
        &[&format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(addr, JSON, Some(&host), &["Authorization: Bearer nope"]);
    assert_eq!(r.status, 401);
    // The Host check comes first, token or not.
    let r = get(
        addr,
        &format!("{JSON}?token={TOKEN}"),
        Some("evil.example"),
        &[],
    );
    assert_eq!(r.status, 421);
}

#[test]
fn non_loopback_addresses_need_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = project(dir.path());
    let options = ServeOptions {
        host: "0.0.0.0".into(),
        port: 0,
        ..ServeOptions::default()
    };
    let err = prism_viewer::spawn(
        Workspace::open(std::slice::from_ref(&yaml)).unwrap(),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("allow-remote"), "{err}");
    let allowed = ServeOptions {
        allow_remote: true,
        ..options
    };
    let server = prism_viewer::spawn(Workspace::open(&[yaml]).unwrap(), &allowed).unwrap();
    assert!(server.addr().ip().is_unspecified());
    let r = get(
        SocketAddr::from(([127, 0, 0, 1], server.addr().port())),
        JSON,
        Some("192.0.2.7:80"),
        &[],
    );
    assert_eq!(r.status, 200, "an address as Host: {}", r.text());
}

#[test]
fn short_tokens_and_malformed_host_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = project(dir.path());
    for options in [
        ServeOptions {
            port: 0,
            token: Some("short".into()),
            ..ServeOptions::default()
        },
        ServeOptions {
            port: 0,
            token: Some("has spaces and is long enough".into()),
            ..ServeOptions::default()
        },
        ServeOptions {
            port: 0,
            allowed_hosts: vec!["http://x.example:80".into()],
            ..ServeOptions::default()
        },
    ] {
        let err = prism_viewer::spawn(
            Workspace::open(std::slice::from_ref(&yaml)).unwrap(),
            &options,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("token") || err.contains("host name"), "{err}");
    }
}

#[test]
fn browser_urls_carry_the_query_encoded() {
    let url = prism_viewer::browser_url(
        "0.0.0.0:8080".parse().unwrap(),
        &[("category", "digit 7&x"), ("token", TOKEN)],
    );
    assert_eq!(
        url,
        format!("http://127.0.0.1:8080/?category=digit%207%26x&token={TOKEN}")
    );
    assert_eq!(
        prism_viewer::browser_url("[::1]:80".parse().unwrap(), &[]),
        "http://[::1]:80/"
    );
}
