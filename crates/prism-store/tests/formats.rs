//! Round trips and error messages of the attribution and analysis files.

use prism_store::{
    AnalysisFile, AnalysisWriter, AttrValue, AttributionFile, AttributionLayout, AttributionWriter,
    BatchLabels, Category, Clustering, Embedding, LabelLayout, Labels, StoreError,
};

fn write_small(path: &std::path::Path, n: usize) -> Vec<f32> {
    let layout = AttributionLayout {
        n_samples: n,
        sample_shape: vec![2, 3, 4],
        n_outputs: 3,
        labels: LabelLayout::Single,
        with_index: true,
        compression: Some(4),
    };
    let mut w = AttributionWriter::create(path, layout).unwrap();
    let data: Vec<f32> = (0..n * 24).map(|v| v as f32 * 0.5).collect();
    let pred: Vec<f32> = (0..n * 3).map(|v| v as f32).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let index: Vec<u32> = (0..n as u32).map(|i| 100 + i).collect();
    // Two batches, second first, to check that rows land where they belong.
    let h = n / 2;
    w.write_batch(
        h,
        &data[h * 24..],
        &pred[h * 3..],
        &BatchLabels::Single(&labels[h..]),
        Some(&index[h..]),
    )
    .unwrap();
    w.write_batch(
        0,
        &data[..h * 24],
        &pred[..h * 3],
        &BatchLabels::Single(&labels[..h]),
        Some(&index[..h]),
    )
    .unwrap();
    w.set_attr("model", &AttrValue::Str("vgg16 ✓".into()))
        .unwrap();
    w.finish().unwrap();
    data
}

#[test]
fn attribution_file_round_trips_rows_labels_index_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attr.h5");
    let data = write_small(&path, 10);
    let f = AttributionFile::open(&path).unwrap();
    assert_eq!(f.n_samples(), 10);
    assert_eq!(f.sample_shape(), [2, 3, 4]);
    assert_eq!(f.prediction_shape(), &[10, 3]);
    assert_eq!(
        f.labels(),
        &Labels::Single((0..10).map(|i| i % 3).collect())
    );
    assert_eq!(f.sample_number(4), 104);
    let rows = [1usize, 2, 3, 7];
    let got = f.read_rows(&rows).unwrap();
    let want: Vec<f32> = rows
        .iter()
        .flat_map(|&r| data[r * 24..(r + 1) * 24].to_vec())
        .collect();
    assert_eq!(got, want);
    assert_eq!(f.labels().class_rows()[&1], vec![1, 4, 7]);
    assert_eq!(
        f.attr("model").unwrap(),
        Some(AttrValue::Str("vgg16 ✓".into()))
    );
}

#[test]
fn unfinished_attribution_writer_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attr.h5");
    let layout = AttributionLayout {
        n_samples: 4,
        sample_shape: vec![5],
        n_outputs: 2,
        labels: LabelLayout::Single,
        with_index: false,
        compression: None,
    };
    let mut w = AttributionWriter::create(&path, layout).unwrap();
    w.write_batch(
        0,
        &[0.0; 10],
        &[0.0; 4],
        &BatchLabels::Single(&[0, 1]),
        None,
    )
    .unwrap();
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains("row 2 was never written"), "{err}");
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary file left behind"
    );
}

#[test]
fn truncated_attribution_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.h5");
    write_small(&path, 40);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = AttributionFile::open(&path).and_then(|f| f.read_rows(&(0..40).collect::<Vec<_>>()));
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("cut.h5"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
}

fn raw_file(path: &std::path::Path, n_attr: usize, n_label: usize, label_values: Option<Vec<f32>>) {
    let f = hdf5::File::create(path).unwrap();
    f.new_dataset::<f32>()
        .shape([n_attr, 1, 2, 2])
        .create("attribution")
        .unwrap();
    f.new_dataset::<f32>()
        .shape([n_attr, 3])
        .create("prediction")
        .unwrap();
    match label_values {
        Some(v) => {
            f.new_dataset_builder()
                .with_data(&v)
                .create("label")
                .unwrap();
        }
        None => {
            f.new_dataset::<u16>()
                .shape([n_label])
                .create("label")
                .unwrap();
        }
    }
}

#[test]
fn label_of_wrong_length_error_names_file_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short-label.h5");
    raw_file(&path, 5, 4, None);
    let err = AttributionFile::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Shape { ref dataset, .. } if dataset == "label"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("short-label.h5") && msg.contains("`label`") && msg.contains("N = 5"),
        "{msg}"
    );
}

#[test]
fn fractional_label_is_rejected_with_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frac.h5");
    raw_file(&path, 3, 3, Some(vec![0.0, 1.5, 2.0]));
    let msg = AttributionFile::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("frac.h5") && msg.contains("`label`") && msg.contains("row 1"),
        "{msg}"
    );
}

#[test]
fn missing_attribution_dataset_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-attr.h5");
    {
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<f32>()
            .shape([3, 2])
            .create("attributions")
            .unwrap();
    }
    let err = AttributionFile::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDataset { ref dataset, .. } if dataset == "attribution")
    );
}

#[test]
fn n_hot_bool_labels_put_a_sample_in_every_marked_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nhot.h5");
    {
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<f32>()
            .shape([3, 4])
            .create("attribution")
            .unwrap();
        f.new_dataset::<f32>()
            .shape([3, 2])
            .create("prediction")
            .unwrap();
        let bits = ndarray::arr2(&[[true, false], [true, true], [false, true]]);
        f.new_dataset_builder()
            .with_data(&bits)
            .create("label")
            .unwrap();
    }
    let af = AttributionFile::open(&path).unwrap();
    let rows = af.labels().class_rows();
    assert_eq!(rows[&0], vec![0, 1]);
    assert_eq!(rows[&1], vec![1, 2]);
    assert_eq!(af.sample_shape(), [1, 1, 4]);
}

#[test]
fn analysis_file_round_trips_the_virelay_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analysis.h5");
    let cat = Category {
        name: "n01440764".into(),
        index: vec![3, 5, 9],
        embeddings: vec![Embedding {
            name: "spectral".into(),
            dim: 2,
            values: vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            eigenvalue: Some(vec![0.3, 0.0]),
            attrs: vec![("solver".into(), AttrValue::Str("dense".into()))],
        }],
        clusterings: vec![Clustering {
            name: "kmeans-02".into(),
            labels: vec![0, 1, -1],
            attrs: vec![("k".into(), AttrValue::Int(2))],
        }],
        attrs: vec![("eigengap_suggested_k".into(), AttrValue::Int(2))],
    };
    let mut w = AnalysisWriter::create(&path).unwrap();
    w.write_category(&cat).unwrap();
    assert!(!path.exists(), "the final name must appear only at finish");
    w.finish().unwrap();
    let f = AnalysisFile::open(&path).unwrap();
    assert_eq!(f.categories().unwrap(), vec!["n01440764".to_string()]);
    assert_eq!(f.category("n01440764").unwrap(), cat);
}

/// Creates chunked datasets of the given shapes and no stored data: an HDF5 header may declare
/// any size without the file holding it.
fn declare(path: &std::path::Path, datasets: &[(&str, &[usize])]) {
    let f = hdf5::File::create(path).unwrap();
    for (name, shape) in datasets {
        if let Some((group, _)) = name.rsplit_once('/') {
            if !f.link_exists(group) {
                let mut g = f.group("/").unwrap();
                for part in group.split('/') {
                    g = g.group(part).or_else(|_| g.create_group(part)).unwrap();
                }
            }
        }
        let chunk: Vec<usize> = shape.iter().map(|_| 1).collect();
        f.new_dataset::<f32>()
            .chunk(chunk)
            .shape(shape.to_vec())
            .create(*name)
            .unwrap();
    }
}

/// A header declaring 2³⁰ values per row, or 2²⁹ labels, is refused when the file is opened,
/// before anything is allocated (reading it would abort the process on a failed allocation).
#[test]
fn declared_sizes_past_the_read_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limit = prism_store::MAX_READ_ELEMENTS.to_string();

    let p = dir.path().join("row.h5");
    declare(
        &p,
        &[
            ("attribution", &[2, 1 << 15, 1 << 15]),
            ("prediction", &[2, 3]),
            ("label", &[2]),
        ],
    );
    let e = AttributionFile::open(&p).unwrap_err().to_string();
    assert!(
        e.contains("dataset `attribution` has shape [2, 32768, 32768]"),
        "{e}"
    );
    assert!(
        e.contains(&format!("each row declares more than the {limit} values")),
        "{e}"
    );

    let p = dir.path().join("labels.h5");
    let n = 1 << 29;
    declare(
        &p,
        &[
            ("attribution", &[n, 4]),
            ("prediction", &[n, 2]),
            ("label", &[n]),
        ],
    );
    let e = AttributionFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("dataset `label` has shape [536870912]"), "{e}");
    assert!(
        e.contains(&format!("it declares more than the {limit} values")),
        "{e}"
    );

    let p = dir.path().join("data.h5");
    declare(&p, &[("data", &[2, 1 << 30])]);
    let e = prism_store::Dataset::open(&p, &prism_store::DatasetOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset `data` has shape [2, 1073741824]"),
        "{e}"
    );

    let p = dir.path().join("analysis.h5");
    declare(
        &p,
        &[
            ("cat/index", &[n]),
            ("cat/embedding/spectral", &[n, 2]),
            ("cat/cluster/kmeans-02", &[n]),
        ],
    );
    let file = AnalysisFile::open(&p).unwrap();
    let e = file.category("cat").unwrap_err().to_string();
    assert!(
        e.contains("dataset `cat/index` has shape [536870912]"),
        "{e}"
    );
    let reader = file.category_reader("cat").unwrap();
    for e in [
        reader.index().unwrap_err(),
        reader.embedding("spectral").unwrap_err(),
        reader.clustering("kmeans-02").unwrap_err(),
        reader.embedding_columns("spectral", (0, 1)).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(e.contains("more than the"), "{e}");
        assert!(e.contains("is the file corrupt?"), "{e}");
    }
}
