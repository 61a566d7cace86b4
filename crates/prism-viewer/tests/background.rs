//! A background server (the Python package's `serve`): it answers on the port it reports and
//! stops on request, freeing the port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use prism_store::project::DatasetKind;
use prism_viewer::synthetic::SyntheticProject;
use prism_viewer::{ServeOptions, Workspace};

fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn background_server_answers_on_its_port_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let project = SyntheticProject {
        name: "bg".into(),
        classes: 2,
        per_class: 10,
        size: 8,
        dataset: DatasetKind::Hdf5,
        ..SyntheticProject::demo()
    }
    .write(dir.path())
    .unwrap();
    let ws = Workspace::open(&[project]).unwrap();
    let options = ServeOptions {
        port: 0,
        ..ServeOptions::default()
    };
    let mut server = prism_viewer::spawn(ws, &options).unwrap();
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    assert!(server.is_running());
    let reply = get(addr, "/api/projects").unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("bg"), "{reply}");
    server.stop().unwrap();
    assert!(!server.is_running());
    assert!(get(addr, "/api/projects").is_err());
    // Stopping twice is harmless.
    server.stop().unwrap();
}

#[test]
fn background_server_reports_a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let project = SyntheticProject {
        name: "busy".into(),
        classes: 2,
        per_class: 10,
        size: 8,
        dataset: DatasetKind::Hdf5,
        ..SyntheticProject::demo()
    }
    .write(dir.path())
    .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServeOptions {
        port: taken.local_addr().unwrap().port(),
        ..ServeOptions::default()
    };
    let err = prism_viewer::spawn(Workspace::open(&[project]).unwrap(), &options).unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
}
