//! `prism demo` on the bundled data: the planted shortcut is found. The marked sevens (the
//! `artifact` dataset of `assets/demo/mnist.h5`, written by `scripts/make_demo.py`) must fall
//! into one cluster with purity ≥ 0.9 at the eigengap-suggested k, and the demo must say so.

use std::path::Path;
use std::process::Command;

use prism_store::{AnalysisFile, AttrValue, Project};

#[test]
fn demo_finds_the_planted_shortcut() {
    // Kept under the target directory, fresh each run: scripts/ci-browser.sh then shows this
    // output in the browser (`prism demo --serve` reuses its finished steps) instead of running
    // the demo again.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo");
    match std::fs::remove_dir_all(&out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot clear {}: {e}", out.display()),
    }
    let res = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["demo", "--output"])
        .arg(&out)
        .output()
        .expect("prism runs");
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "demo failed: {stderr}");

    // Ground truth: which samples carry the mark.
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo/mnist.h5");
    let file = hdf5::File::open(&assets).expect("demo dataset");
    let artifact: Vec<bool> = file
        .dataset("artifact")
        .and_then(|d| d.read_raw::<bool>())
        .expect("artifact dataset");
    let marked: usize = artifact.iter().filter(|&&a| a).count();
    assert!(
        marked > 100,
        "the demo data should mark a few hundred sevens"
    );

    let analysis = AnalysisFile::open(out.join("analysis.h5")).expect("analysis file");
    let cat = analysis
        .category("digit-7")
        .expect("category of the sevens");
    let k = cat
        .attrs
        .iter()
        .find_map(|(n, v)| match (n.as_str(), v) {
            ("eigengap_suggested_k", AttrValue::Int(k)) => Some(*k),
            _ => None,
        })
        .expect("suggested k");
    let clustering = cat
        .clusterings
        .iter()
        .find(|c| c.name == format!("kmeans-{k:02}"))
        .expect("k-means at the suggested k");
    // The cluster holding most marked samples: purity and recall.
    let mut per_cluster = std::collections::BTreeMap::<i32, (usize, usize)>::new();
    for (&s, &c) in cat.index.iter().zip(&clustering.labels) {
        let e = per_cluster.entry(c).or_default();
        e.0 += 1;
        if artifact[s as usize] {
            e.1 += 1;
        }
    }
    let (&best, &(size, hits)) = per_cluster
        .iter()
        .max_by_key(|(_, &(_, hits))| hits)
        .expect("clusters");
    let purity = hits as f64 / size as f64;
    let recall = hits as f64 / marked as f64;
    assert!(
        purity >= 0.9 && recall >= 0.9,
        "cluster {best} at k = {k}: {hits} of {size} marked (purity {purity:.3}), \
         {hits} of {marked} marked samples (recall {recall:.3})"
    );

    // The demo says so, and the project opens.
    assert!(
        stdout.contains("digit-7") && stdout.contains("top-left corner"),
        "the demo's report should name the shortcut:\n{stdout}"
    );
    // The concept step names a channel whose most activating references are marked sevens,
    // their crops in the corner.
    assert!(
        stdout.contains("The concept behind it")
            && stdout.contains("it responds to what sits there, the mark"),
        "the demo's report should name the concept:\n{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("The concept behind it"))
        .expect("concept line");
    let channel: usize = line
        .split("channel ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .expect("channel number");
    let layer = line
        .split(" of ")
        .nth(1)
        .and_then(|t| t.split('.').next())
        .expect("layer");
    let concepts = hdf5::File::open(out.join("concepts.h5")).expect("concepts file");
    let layers = concepts.group("layers").expect("layers");
    let group = layers
        .member_names()
        .expect("layer groups")
        .into_iter()
        .map(|n| layers.group(&n).expect("layer group"))
        .find(|g| {
            g.attr("node")
                .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>())
                .map(|v| v.as_str() == layer)
                .unwrap_or(false)
        })
        .expect("the named layer");
    let samples: Vec<i64> = group
        .dataset("actmax/sample")
        .and_then(|d| d.read_raw::<i64>())
        .expect("actmax samples");
    let channels = group.dataset("relevance").expect("relevance").shape()[1];
    let refs: Vec<usize> = (0..8)
        .map(|k| samples[k * channels + channel] as usize)
        .collect();
    let marked_refs = refs.iter().filter(|&&s| artifact[s]).count();
    assert!(
        marked_refs >= 6,
        "channel {channel} of {layer}: {marked_refs} of its 8 most activating references are \
         marked ({refs:?})"
    );
    let project = Project::read(out.join("project.yaml")).expect("project");
    assert_eq!(project.analyses.len(), 1);
}
