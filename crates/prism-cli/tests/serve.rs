//! `prism serve`: starts on a generated project, answers the API, and refuses bad projects
//! with a one-line error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use prism_viewer::synthetic::SyntheticProject;

mod common;
use common::fails;

/// libhdf5 opens files without close-on-exec: a server spawned while another test thread has an
/// HDF5 file open for writing inherits that descriptor and its lock, and the other test's own
/// server then cannot open the file ("unable to lock file, errno = 11"). The tests of this file
/// run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_prism")
}

fn small() -> SyntheticProject {
    SyntheticProject {
        classes: 2,
        per_class: 10,
        size: 6,
        ..SyntheticProject::demo()
    }
}

/// Kills the server when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn serve_answers_the_api_of_its_projects() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = small().write(&dir.path().join("a")).unwrap();
    let b = SyntheticProject {
        name: "second".into(),
        ..small()
    }
    .write(&dir.path().join("b"))
    .unwrap();
    let child = Command::new(bin())
        .args(["serve", "--port", "0"])
        .arg(&a)
        .arg(&b)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading (and so the pipe open) for the rest of the server's output.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "binds loopback: {addr}");
    let (status, body) = get(&addr, "/api/projects");
    assert_eq!(status, 200);
    assert!(body.contains("\"second\""), "{body}");
    let (status, _) = get(&addr, "/api/projects/1/attributions/3/image?mode=overlay");
    assert_eq!(status, 200);
    let (status, body) = get(&addr, "/api/projects/2");
    assert_eq!(status, 404);
    assert!(body.contains("errorMessage"), "{body}");
    let (status, body) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(body.contains("<script"), "{body}");
}

#[test]
fn serve_refuses_missing_and_escaping_projects() {
    let _serial = serial();
    let e = fails(&["serve", "/nonexistent/project.yaml", "--port", "0"]);
    assert!(e.contains("/nonexistent/project.yaml"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let yaml = small().write(&dir.path().join("p")).unwrap();
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "label_map: label-map.json",
        "label_map: ../../../etc/passwd",
    );
    std::fs::write(&yaml, text).unwrap();
    let e = fails(&["serve", yaml.to_str().unwrap(), "--port", "0"]);
    assert!(e.contains("outside"), "{e}");

    std::fs::write(&yaml, "project: [not, a, project]").unwrap();
    let e = fails(&["serve", yaml.to_str().unwrap(), "--port", "0"]);
    assert!(e.contains("not a ViRelAy project file"), "{e}");
}

#[test]
fn project_names_checked_concepts_files_and_serve_shows_them() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    small().write(&p).unwrap();
    let arg = |name: &str| p.join(name).to_str().unwrap().to_string();
    let out = p.join("with-concepts.yaml");
    let project = |concepts: &str, output: &std::path::Path| {
        vec![
            "project".to_string(),
            "--dataset".into(),
            arg("dataset.h5"),
            "--attribution".into(),
            arg("attribution.h5"),
            "--analysis".into(),
            arg("analysis.h5"),
            "--label-map".into(),
            arg("label-map.json"),
            "--concepts".into(),
            concepts.to_string(),
            "--output".into(),
            output.to_str().unwrap().to_string(),
        ]
    };
    let res = Command::new(bin())
        .args(project(&arg("concepts.h5"), &out))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let written = prism_store::Project::read(&out).unwrap();
    assert_eq!(
        written.concepts.map(|c| c.sources),
        Some(vec![std::path::PathBuf::from("concepts.h5")])
    );

    // Not a concepts file; a concepts file of another (larger) dataset.
    let args = project(&arg("analysis.h5"), &p.join("bad.yaml"));
    let e = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("analysis.h5") && e.contains("not a concepts file"),
        "{e}"
    );
    let big = SyntheticProject {
        per_class: 20,
        ..small()
    }
    .write(&p.join("big"))
    .unwrap();
    let other = big.with_file_name("concepts.h5");
    let args = project(other.to_str().unwrap(), &p.join("bad.yaml"));
    let e = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("explains dataset sample 39") && e.contains("20 samples"),
        "{e}"
    );
    assert!(!p.join("bad.yaml").exists());

    // `prism serve` shows the written project's concepts.
    let child = Command::new(bin())
        .args(["serve", "--port", "0"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let (status, body) = get(&addr, "/api/projects/0/concepts");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2, "{body}");
    let (status, body) = get(&addr, "/api/projects/0/concepts/1/samples/3");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn serve_help_has_an_example() {
    let _serial = serial();
    let out = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prism serve project.yaml"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[test]
fn serve_refuses_a_network_address_without_allow_remote() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let yaml = small().write(&dir.path().join("p")).unwrap();
    let y = yaml.to_str().unwrap();
    for host in ["0.0.0.0", "::", "192.0.2.1"] {
        let e = fails(&["serve", y, "--port", "0", "--host", host]);
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(e.contains("--allow-remote"), "{e}");
    }
    let e = fails(&["serve", y, "--port", "0", "--token=short"]);
    assert!(e.contains("--token") && e.contains("16"), "{e}");
}

/// Starts `prism serve` with `args`; returns the server, its first line of output and its first
/// line on stderr (a warning).
fn start(args: &[&str]) -> (Server, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    // The warning comes before the address.
    let mut warning = String::new();
    err.read_line(&mut warning).unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (server, line, warning)
}

#[test]
fn serve_on_all_interfaces_warns_and_answers_with_its_token() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let yaml = small().write(&dir.path().join("p")).unwrap();
    let (_server, line, warning) = start(&[
        "serve",
        yaml.to_str().unwrap(),
        "--port",
        "0",
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--token",
    ]);
    assert!(warning.starts_with("warning:"), "{warning}");
    assert!(warning.contains("0.0.0.0"), "{warning}");
    // The printed URL opens on loopback and carries a generated token.
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let (addr, token) = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once("/?token="))
        .unwrap_or_else(|| panic!("no token in {url}"));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(get(addr, "/api/projects").0, 401);
    assert_eq!(get(addr, &format!("/api/projects?token={token}")).0, 200);
}
