//! Replays the committed corpus of every fuzz target (`fuzz/corpus/TARGET/`: seeds and the
//! inputs of past crashes, kept as regression inputs) through the target with the ordinary
//! build: a stable, uninstrumented check that CI runs in seconds. The coverage-guided runs
//! themselves are `fuzz/run.sh`.

use std::path::Path;

#[test]
fn every_target_survives_its_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, run) in prism_fuzz::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus of `{name}` ({}): {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of `{name}` is empty");
        for f in &files {
            run(&std::fs::read(f).unwrap());
        }
        total += files.len();
    }
    eprintln!("replayed {total} corpus inputs");
}

/// The corpus must reach past the parsers' first checks: each target has at least one seed
/// that its parser accepts (else the replay above would test only the error paths).
#[test]
fn seeds_are_accepted_by_their_parsers() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let accepted = |name: &str, check: &dyn Fn(&[u8]) -> bool| {
        let dir = corpus.join(name);
        let ok = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .any(|b| check(&b));
        assert!(ok, "no seed of `{name}` is accepted by its parser");
    };
    accepted("onnx", &|b| {
        prism_model::onnx::from_bytes(b, Path::new("seed.onnx"), Path::new("/nonexistent")).is_ok()
    });
    accepted("npy", &|b| {
        let p = prism_fuzz::file("seed.npy", b);
        prism_store::NpyArray::open(&p).is_ok()
    });
    accepted("hdf5_attribution", &|b| {
        prism_store::AttributionFile::open(prism_fuzz::file("seed.h5", b)).is_ok()
    });
    // one seed records hidden nodes (`/record`), readable to the end
    accepted("hdf5_attribution", &|b| {
        let Ok(f) = prism_store::AttributionFile::open(prism_fuzz::file("seed.h5", b)) else {
            return false;
        };
        matches!(f.record(), Ok(Some(r)) if (0..r.nodes.len())
            .all(|i| f.read_record_rows(i, 0, f.n_samples()).is_ok()))
    });
    accepted("hdf5_analysis", &|b| {
        prism_store::AnalysisFile::open(prism_fuzz::file("seed.h5", b))
            .and_then(|f| f.categories())
            .is_ok_and(|c| !c.is_empty())
    });
    accepted("hdf5_concepts", &|b| {
        prism_store::ConceptsFile::open(prism_fuzz::file("seed.h5", b))
            .is_ok_and(|f| !f.layers().is_empty())
    });
    accepted("hdf5_dataset", &|b| {
        let p = prism_fuzz::file("seed.h5", b);
        prism_store::Dataset::open(&p, &Default::default()).is_ok()
    });
    accepted("project_yaml", &|b| {
        std::str::from_utf8(b)
            .is_ok_and(|t| prism_store::Project::from_yaml(t, Path::new("seed.yaml")).is_ok())
    });
    accepted("composite_toml", &|b| {
        std::str::from_utf8(b)
            .is_ok_and(|t| prism_attribution::composite::Composite::from_toml(t).is_ok())
    });
    accepted("cmsl", &|b| {
        std::str::from_utf8(b).is_ok_and(|t| prism_heatmap::ColorMap::parse(t).is_ok())
    });
    accepted("label_map", &|b| {
        prism_store::read_label_map(prism_fuzz::file("seed.json", b)).is_ok()
    });
}
