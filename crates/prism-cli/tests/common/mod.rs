//! Helpers shared by the `prism` binary's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use assert_cmd::Command;

/// The `prism` binary under test.
pub fn prism() -> Command {
    Command::cargo_bin("prism").expect("binary")
}

/// Runs prism expecting failure; returns stderr, checking it is one `error:` line and no panic.
pub fn fails(args: &[&str]) -> String {
    let out = prism().args(args).output().expect("run");
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}
