//! Writes the seed corpora `fuzz/corpus/<target>/` from the repository's fixtures and from
//! small generated projects (HDF5 files, images, project YAML, token datasets, label maps).
//! `run.sh seeds` runs it (and `run.sh` when `fuzz/corpus` is missing); the result is
//! committed, so CI and anyone fuzzing start from the same seeds.
//!
//! It is built like the fuzz targets (with libFuzzer, whose runtime the coverage
//! instrumentation needs) and does its work in the target's initialisation, then exits: it
//! takes no arguments and writes `fuzz/corpus/` of the checkout it was built from.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};

use prism_attribution::RecordMode;
use prism_store::project::DatasetKind;
use prism_store::{
    AttributionLayout, AttributionWriter, BatchLabels, LabelLayout, RecordLayout, RecordNodeLayout,
    RecordRows,
};
use prism_viewer::synthetic::SyntheticProject;

/// Fixture files larger than this are left out (the corpus stays small to commit).
const MAX_SEED_BYTES: u64 = 24 * 1024;
/// Files taken from one fixture folder at most.
const MAX_PER_FOLDER: usize = 40;

libfuzzer_sys::fuzz_target!(
    init: {
        match make_seeds() {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("make_seeds: {e}");
                std::process::exit(1);
            }
        }
    },
    |_data: &[u8]| {}
);

fn make_seeds() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = root.join("fuzz/corpus");
    let put = |target: &str, name: &str, data: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), data)
    };
    let fixtures = root.join("tests/fixtures");

    // ONNX models and .npy arrays: the small fixtures.
    for folder in ["", "errors", "ops", "linear_bias", "eval"] {
        for (name, bytes) in small_files(&fixtures.join(folder), "onnx")? {
            put("onnx", &name, &bytes)?;
        }
        for (name, bytes) in small_files(&fixtures.join(folder), "npy")? {
            put("npy", &name, &bytes)?;
        }
    }

    // Composite files: the built-ins.
    for (name, bytes) in small_files(&root.join("crates/prism-attribution/composites"), "toml")? {
        put("composite_toml", &name, &bytes)?;
    }

    // CMSL: the built-in colour maps' sources and the documented examples.
    for (i, source) in prism_heatmap::BUILTIN_COLOR_MAPS
        .iter()
        .map(|m| m.source)
        .chain(["70:0d0,70:ddd,90:ddd,90:d0d", "8:a1b,fff", "000,fff"])
        .enumerate()
    {
        put("cmsl", &format!("map{i}"), source.as_bytes())?;
    }

    // Generated projects: one per dataset kind.
    let scratch = tempfile::tempdir()?;
    for (name, kind) in [
        ("hdf5", DatasetKind::Hdf5),
        ("images", DatasetKind::ImageDirectory),
        ("tokens", DatasetKind::Tokens),
    ] {
        let dir = scratch.path().join(name);
        let yaml = SyntheticProject {
            name: name.into(),
            classes: 2,
            per_class: 3,
            size: if kind == DatasetKind::Tokens { 6 } else { 4 },
            blobs: 1,
            dataset: kind,
            ..SyntheticProject::demo()
        }
        .write(&dir)?;
        put("project_yaml", name, &fs::read(&yaml)?)?;
        put("label_map", name, &fs::read(dir.join("label-map.json"))?)?;
        put(
            "hdf5_attribution",
            name,
            &fs::read(dir.join("attribution.h5"))?,
        )?;
        put("hdf5_analysis", name, &fs::read(dir.join("analysis.h5"))?)?;
        if kind != DatasetKind::Tokens {
            put("hdf5_concepts", name, &fs::read(dir.join("concepts.h5"))?)?;
        }
        match kind {
            DatasetKind::Hdf5 => put("hdf5_dataset", name, &fs::read(dir.join("dataset.h5"))?)?,
            DatasetKind::ImageDirectory => {
                let png = first_file(&dir.join("images"), "png")?;
                for mode in [0u8, 1, 2, 4, 7] {
                    put(
                        "image",
                        &format!("png{mode}"),
                        &[&[mode][..], &png].concat(),
                    )?;
                }
            }
            DatasetKind::Tokens => {
                let t = dir.join("tokens");
                let parts = [
                    fs::read(t.join("input_ids.npy"))?,
                    fs::read(t.join("vocab.txt"))?,
                    fs::read(t.join("attention_mask.npy"))?,
                    fs::read(t.join("labels.npy"))?,
                ];
                let joined = parts.join(prism_fuzz::SEPARATOR);
                put("tokens", "dataset", &[&[2u8][..], &joined].concat())?;
            }
        }
    }
    // An attribution file with relevance recorded at hidden nodes (`/record`).
    let recorded = scratch.path().join("record.h5");
    record_seed(&recorded)?;
    put("hdf5_attribution", "record", &fs::read(&recorded)?)?;
    let jpg = root.join("crates/prism-store/tests/fixtures/dataset/folder/a_cat/photo.jpg");
    if let Ok(bytes) = fs::read(&jpg) {
        for mode in [8u8, 9, 10, 12] {
            put(
                "image",
                &format!("jpg{mode}"),
                &[&[mode][..], &bytes].concat(),
            )?;
        }
    }
    if let Ok(bytes) = fs::read(root.join("assets/demo/label-map.json")) {
        put("label_map", "demo", &bytes)?;
    }

    // Token files, both spellings.
    put(
        "tokens",
        "text",
        b"\0[CLS]\nhello\n##lo\n\\s\n[SEP]\n\n[CLS]\nbye\n[SEP]\n",
    )?;
    put(
        "tokens",
        "json",
        b"\x01[[\"[CLS]\", \"\\u0120hi\", \"[SEP]\"], [\"\xe2\x96\x81a\", \"<0x0A>\"]]",
    )?;

    // Viewer requests: every route with its usual parameters.
    let requests = [
        "/api/projects",
        "/api/projects/0",
        "/api/projects/0/dataset/1",
        "/api/projects/0/dataset/1/image",
        "/api/projects/1/dataset/3/image",
        "/api/projects/2/dataset/1/tokens",
        "/api/projects/0/attributions?indices=0,1,3&imageMode=overlay&colorMap=bwr",
        "/api/projects/0/attributions/2",
        "/api/projects/0/attributions/1/heatmap?colorMap=bwr&superimpose=true",
        "/api/projects/1/attributions/4/image?mode=attribution&colorMap=hot&normalization=unaligned",
        "/api/projects/2/attributions/2/tokens?colorMap=coldnhot",
        "/api/projects/0/analyses/spectral_analysis?category=n00000001&clustering=kmeans-02&embedding=tsne",
        "/api/projects/0/analyses/spectral_analysis/category?category=n00000001",
        "/api/projects/0/analyses/spectral_analysis/index.u32?category=n00000001",
        "/api/projects/0/analyses/spectral_analysis/embedding.f32?category=n00000001&embedding=tsne&dims=0,1",
        "/api/projects/0/analyses/spectral_analysis/clustering.i32?category=n00000001&clustering=kmeans-02",
        "/api/color-maps",
        "/api/color-maps/bwr?width=64&height=8",
        "/api/projects/0/dataset/..%2f..%2fproject.yaml/image",
        "/index.html",
        "/api/projects/0/concepts",
        "/api/projects/0/concepts/0/samples/3?count=4",
        "/api/projects/1/concepts/1/selection?samples=0,3,5&count=3",
        "/api/projects/0/concepts/1/cluster?analysis=spectral_analysis&category=n00000001&clustering=kmeans-02&cluster=1",
        "/api/projects/0/concepts/0/channels/5?mode=actmax",
        "/api/projects/1/concepts/0/channels/1/references/0/image?mode=relmax&frame=box",
        "/api/projects/0/concepts/0/samples/3/heatmaps/1/image?colorMap=bwr&mode=overlay",
    ];
    for (i, r) in requests.iter().enumerate() {
        put("viewer_api", &format!("request{i:02}"), r.as_bytes())?;
    }
    Ok(())
}

/// `(name, bytes)` of the files of `dir` ending in `.ext` under [`MAX_SEED_BYTES`], sorted by
/// name, at most [`MAX_PER_FOLDER`].
fn small_files(dir: &Path, ext: &str) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    for p in paths {
        if out.len() >= MAX_PER_FOLDER {
            break;
        }
        if fs::metadata(&p)?.len() <= MAX_SEED_BYTES {
            let prefix = dir
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default();
            let name = format!(
                "{prefix}-{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            out.push((name, fs::read(&p)?));
        }
    }
    Ok(out)
}

/// The first file ending in `.ext` under `dir` (depth-first, sorted).
fn first_file(dir: &Path, ext: &str) -> std::io::Result<Vec<u8>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if let Ok(b) = first_file(&p, ext) {
                return Ok(b);
            }
        } else if p.extension().is_some_and(|e| e == ext) {
            return fs::read(&p);
        }
    }
    Err(std::io::Error::other(format!(
        "no .{ext} file under {}",
        dir.display()
    )))
}

/// A small attribution file (4 samples of 2×3×3) recording two nodes whole: a map of 3×2×2 and
/// a dense layer of 2 features.
fn record_seed(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let n = 4;
    let mut w = AttributionWriter::create(
        path,
        AttributionLayout {
            n_samples: n,
            sample_shape: vec![2, 3, 3],
            n_outputs: 2,
            labels: LabelLayout::Single,
            with_index: true,
            compression: None,
        },
    )?;
    let values = |len: usize| {
        (0..len)
            .map(|i| (i as f32 * 0.37).sin())
            .collect::<Vec<_>>()
    };
    w.write_batch(
        0,
        &values(n * 18),
        &values(n * 2),
        &BatchLabels::Single(&[0, 1, 1, 0]),
        Some(&[0, 1, 2, 3]),
    )?;
    let layout = RecordLayout {
        mode: RecordMode::Maps,
        top_k: 2,
        nodes: vec![
            RecordNodeLayout {
                node: "/conv/Conv".into(),
                tensor: "conv".into(),
                sample_shape: vec![3, 2, 2],
            },
            RecordNodeLayout {
                node: "/fc/Gemm".into(),
                tensor: "logits".into(),
                sample_shape: vec![2],
            },
        ],
    };
    w.add_record(layout.clone())?;
    for (i, node) in layout.nodes.iter().enumerate() {
        let len = n * node.row_len(layout.mode);
        w.write_record_rows(
            i,
            0,
            &RecordRows {
                relevance: values(len),
                activation: values(len).iter().map(|v| v.abs()).collect(),
                top_channels: (0..n * 2).map(|j| (j % 2) as i64).collect(),
                top_share: (0..n * 2).map(|j| 0.5 - 0.1 * (j % 2) as f32).collect(),
            },
        )?;
    }
    w.finish()?;
    Ok(())
}
