//! Datasets: image folders against torchvision, preprocessing numerics, labels, HDF5 and `.npy`
//! streaming reads, the prefetching iterator, fingerprints and errors on bad input.

use std::path::{Path, PathBuf};

use prism_store::dataset::{
    write_dataset, Dataset, DatasetError, DatasetKind, DatasetOptions, Normalize, Preprocess,
    Resize,
};
use prism_store::StoreError;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dataset")
}

fn opts(p: Preprocess) -> DatasetOptions {
    DatasetOptions {
        preprocess: p,
        ..Default::default()
    }
}

fn save_rgba(path: &Path, w: u32, h: u32, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbaImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

fn save_rgb(path: &Path, w: u32, h: u32, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

/// A minimal `.npy` writer (version 1.0, C order).
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    std::fs::write(path, out).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[derive(serde::Deserialize)]
struct Reference {
    pipelines: Vec<Pipeline>,
}

#[derive(serde::Deserialize)]
struct Pipeline {
    name: String,
    options: serde_json::Value,
    classes: Vec<String>,
    samples: Vec<String>,
    targets: Vec<u32>,
    shape: [usize; 4],
    data: Vec<f32>,
}

/// Prism's image folder equals torchvision's `ImageFolder` + `Resize` + `CenterCrop` +
/// `ToTensor` + `Normalize` (and `Grayscale`): exactly on PNGs (float rounding only), within a
/// few 8-bit levels on the JPEG, whose decoders differ (libjpeg-turbo vs zune-jpeg).
#[test]
fn image_folder_matches_torchvision_imagefolder_and_transforms() {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(reference.pipelines.len(), 3);
    for pipe in &reference.pipelines {
        let o = &pipe.options;
        let resize = if let Some(s) = o["resize"].get("shorter") {
            Resize::Shorter(s.as_u64().unwrap() as usize)
        } else {
            let e = &o["resize"]["exact"];
            Resize::Exact([
                e[0].as_u64().unwrap() as usize,
                e[1].as_u64().unwrap() as usize,
            ])
        };
        let crop = [
            o["crop"][0].as_u64().unwrap() as usize,
            o["crop"][1].as_u64().unwrap() as usize,
        ];
        let p = Preprocess {
            resize: Some(resize),
            crop: Some(crop),
            scale: None,
            normalize: o["normalize"]
                .as_str()
                .map(|n| Normalize::by_name(n).unwrap()),
            channels: Some(o["channels"].as_u64().unwrap() as usize),
        };
        let ds = Dataset::open(fixtures().join("folder"), &opts(p)).unwrap();
        assert_eq!(ds.kind(), DatasetKind::ImageFolder);
        assert_eq!(ds.class_names().unwrap(), pipe.classes.as_slice());
        assert_eq!(ds.len(), pipe.samples.len());
        for (i, name) in pipe.samples.iter().enumerate() {
            assert_eq!(ds.sample_name(i), Some(name.as_str()), "{}", pipe.name);
            assert_eq!(ds.label(i), Some(pipe.targets[i]));
        }
        let [n, c, h, w] = pipe.shape;
        assert_eq!(ds.sample_shape(), [c, h, w]);
        let (data, labels) = ds.read_batch(&(0..n).collect::<Vec<_>>()).unwrap();
        assert_eq!(
            labels,
            pipe.targets.iter().map(|&t| Some(t)).collect::<Vec<_>>()
        );
        let len = c * h * w;
        // One 8-bit level after normalisation by the smallest std.
        let level = 1.0 / 255.0 / if o["normalize"].is_null() { 1.0 } else { 0.224 };
        for (i, name) in pipe.samples.iter().enumerate() {
            let got = &data[i * len..(i + 1) * len];
            let want = &pipe.data[i * len..(i + 1) * len];
            let max = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let tolerance = if name.ends_with(".jpg") {
                3.0 * level
            } else {
                1e-6
            };
            if name.ends_with(".jpg") {
                eprintln!(
                    "{}: {name}: {:.2} levels from torchvision",
                    pipe.name,
                    max / level
                );
            }
            assert!(
                max <= tolerance,
                "{}: {name}: max |prism − torchvision| = {max} ({:.2} levels)",
                pipe.name,
                max / level
            );
        }
    }
}

/// A 2×2 image, resized (shorter side 4), centre-cropped to 2×2, scaled and normalised, against
/// values worked out by hand from Pillow's bilinear filter.
#[test]
fn resize_crop_scale_normalise_match_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    // Red channel: [[0, 200], [100, 40]]; green = 255 − red; blue = 7.
    let red = [0u8, 200, 100, 40];
    let px: Vec<u8> = red.iter().flat_map(|&r| [r, 255 - r, 7]).collect();
    save_rgb(&dir.path().join("only/img.png"), 2, 2, &px);
    let p = Preprocess {
        resize: Some(Resize::Shorter(4)),
        crop: Some([2, 2]),
        normalize: Some(Normalize::new(vec![0.5, 0.25, 0.0], vec![0.5, 0.5, 2.0]).unwrap()),
        ..Default::default()
    };
    let ds = Dataset::open(dir.path(), &opts(p)).unwrap();
    assert_eq!(ds.sample_shape(), [3, 2, 2]);
    let (x, y) = ds.read_batch(&[0]).unwrap();
    assert_eq!(y, vec![Some(0)]);
    // 2 → 4 per axis: output positions 1 and 2 (the centre crop of 4 is offset 1) take
    // weights (¾, ¼) and (¼, ¾) of the two inputs; horizontal pass first, rounded to 8 bits.
    let h = |a: f64, b: f64| [(0.75 * a + 0.25 * b).round(), (0.25 * a + 0.75 * b).round()];
    let (top, bottom) = (h(0.0, 200.0), h(100.0, 40.0)); // [50, 150], [85, 55]
    assert_eq!((top, bottom), ([50.0, 150.0], [85.0, 55.0]));
    let mut r = [0f64; 4];
    for x in 0..2 {
        let v = h(top[x], bottom[x]);
        r[x] = v[0];
        r[2 + x] = v[1];
    }
    assert_eq!(r, [59.0, 126.0, 76.0, 79.0]); // e.g. ¾·50 + ¼·85 = 58.75 → 59
    for k in 0..4 {
        let red = r[k] / 255.0;
        let green = (255.0 - r[k]) / 255.0; // the filter is linear and the weights sum to 1
        assert!((x[k] as f64 - (red - 0.5) / 0.5).abs() < 1e-6, "red {k}");
        assert!(
            (x[4 + k] as f64 - (green - 0.25) / 0.5).abs() < 1e-6,
            "green {k}"
        );
        assert!(
            (x[8 + k] as f64 - 7.0 / 255.0 / 2.0).abs() < 1e-6,
            "blue {k}"
        );
    }
}

/// RGBA loses its alpha (no compositing, like Pillow's `convert("RGB")`); grayscale is
/// replicated to RGB; channels = 1 uses ITU-R 601-2 luma (Pillow's `convert("L")`).
#[test]
fn grayscale_and_rgba_images_are_converted_like_pillow() {
    let dir = tempfile::tempdir().unwrap();
    save_rgba(&dir.path().join("c/a.png"), 1, 1, &[10, 200, 30, 0]);
    image::GrayImage::from_raw(1, 1, vec![77])
        .unwrap()
        .save(dir.path().join("c/b.png"))
        .unwrap();
    let rgb = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    assert_eq!(rgb.sample_shape(), [3, 1, 1]);
    let (x, _) = rgb.read_batch(&[0, 1]).unwrap();
    let want: Vec<f32> = [10u8, 200, 30, 77, 77, 77]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect();
    assert_eq!(x, want);
    let gray = Dataset::open(
        dir.path(),
        &opts(Preprocess {
            channels: Some(1),
            scale: Some(false),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(gray.sample_shape(), [1, 1, 1]);
    let (x, _) = gray.read_batch(&[0, 1]).unwrap();
    let luma = ((10 * 19595 + 200 * 38470 + 30 * 7471 + 0x8000) >> 16) as f32;
    assert_eq!(x, vec![luma, 77.0]);
}

#[test]
fn classes_are_sorted_folder_names_and_non_images_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let px = [1u8, 2, 3];
    for rel in [
        "zebra/x.png",
        "Ape/b.PNG",
        "Ape/a.jpeg",
        "ape/sub/c.png",
        "ape/b.png",
    ] {
        let p = dir.path().join(rel);
        if rel.ends_with(".jpeg") {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_raw(1, 1, px.to_vec())
                .unwrap()
                .save_with_format(&p, image::ImageFormat::Jpeg)
                .unwrap();
        } else {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_raw(1, 1, px.to_vec())
                .unwrap()
                .save_with_format(&p, image::ImageFormat::Png)
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("zebra/readme.md"), "x").unwrap();
    std::fs::write(dir.path().join("loose.png"), "not in a class").unwrap();
    let ds = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    // Python's sorted(): byte order, upper case first.
    assert_eq!(ds.class_names().unwrap(), ["Ape", "ape", "zebra"]);
    let names: Vec<_> = (0..ds.len()).map(|i| ds.sample_name(i).unwrap()).collect();
    assert_eq!(
        names,
        [
            "Ape/a.jpeg",
            "Ape/b.PNG",
            "ape/b.png",
            "ape/sub/c.png",
            "zebra/x.png"
        ]
    );
    assert_eq!(
        ds.labels().unwrap(),
        [Some(0), Some(0), Some(1), Some(1), Some(2)]
    );
}

#[test]
fn image_folder_errors_name_the_folder_or_image() {
    let dir = tempfile::tempdir().unwrap();
    // No class folders.
    let err = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap_err();
    assert!(matches!(err, DatasetError::Empty { .. }), "{err}");
    // A class without images.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    save_rgb(&dir.path().join("full/a.png"), 1, 1, &[0, 0, 0]);
    let err = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap_err();
    assert!(err.to_string().contains("`empty`"), "{err}");
    std::fs::remove_dir(dir.path().join("empty")).unwrap();
    // An unsupported format that torchvision would count as a sample.
    std::fs::write(dir.path().join("full/b.bmp"), "BM").unwrap();
    let err = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::UnsupportedImage { path, count: 1 } if path.ends_with("full/b.bmp")),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("full/b.bmp")).unwrap();
    // A corrupt image: the error names it and its index, and surfaces through the iterator.
    std::fs::write(dir.path().join("full/c.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let ds = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    let err = ds.read_batch(&[0, 1]).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Image { path, index: 1, .. } if path.ends_with("full/c.png")),
        "{err}"
    );
    let items: Vec<_> = ds.batches(vec![0, 1, 0], 1, 2).collect();
    assert_eq!(items.len(), 2, "the iterator ends after the error");
    assert!(items[0].is_ok());
    assert!(matches!(
        items[1],
        Err(DatasetError::Image { index: 1, .. })
    ));
    // Different sizes without a crop: the error says to give one.
    std::fs::remove_file(dir.path().join("full/c.png")).unwrap();
    save_rgb(&dir.path().join("full/d.png"), 2, 1, &[0; 6]);
    let ds = Dataset::open(dir.path(), &DatasetOptions::default()).unwrap();
    let err = ds.read_batch(&[1]).unwrap_err();
    assert!(err.to_string().contains("crop"), "{err}");
    // Out of range.
    let err = ds.read_batch(&[5]).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::Index {
                index: 5,
                len: 2,
                ..
            }
        ),
        "{err}"
    );
}

/// HDF5 rows come back as written, in any order and with repeats, read by hyperslab runs.
#[test]
fn hdf5_dataset_reads_back_what_the_writer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.h5");
    let n = 7;
    let data: Vec<f32> = (0..n * 3 * 2 * 2).map(|i| i as f32 * 0.5 - 3.0).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    write_dataset(&path, &[3, 2, 2], &data, &labels).unwrap();
    let ds = Dataset::open(&path, &DatasetOptions::default()).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Hdf5);
    assert_eq!((ds.len(), ds.sample_shape()), (n, [3, 2, 2]));
    assert_eq!(ds.input_shape(), [3, 2, 2]);
    assert_eq!(ds.class_names(), None);
    let idx = [5, 0, 1, 5, 6, 3];
    let (x, y) = ds.read_batch(&idx).unwrap();
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(&x[k * 12..(k + 1) * 12], &data[i * 12..(i + 1) * 12]);
        assert_eq!(y[k], Some(labels[i]));
    }
    // ViRelAy's datasets are stored preprocessed: no scaling unless asked; normalisation applies.
    let norm = Dataset::open(
        &path,
        &opts(Preprocess {
            normalize: Some(Normalize::new(vec![1.0], vec![2.0]).unwrap()),
            ..Default::default()
        }),
    )
    .unwrap();
    let (xn, _) = norm.read_batch(&[2]).unwrap();
    let want: Vec<f32> = data[24..36].iter().map(|v| (v - 1.0) / 2.0).collect();
    assert_eq!(xn, want);
    assert_ne!(norm.fingerprint(), ds.fingerprint());
    // Resizing does not apply to stored arrays.
    let err = Dataset::open(
        &path,
        &opts(Preprocess {
            crop: Some([1, 1]),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(err, DatasetError::Options { .. }), "{err}");
}

#[test]
fn hdf5_uint8_data_is_scaled_only_when_asked_and_label_types_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u8.hdf5");
    {
        let f = hdf5::File::create(&path).unwrap();
        let data: Vec<u8> = (0..4 * 6).map(|i| (i * 10) as u8).collect();
        f.new_dataset_builder()
            .with_data(&ndarray::Array::from_shape_vec((4, 6), data).unwrap())
            .create("data")
            .unwrap();
        // n-hot labels (bool, as h5py writes them): the class is the first set bit.
        let bits = ndarray::arr2(&[
            [false, true, true],
            [false, false, false],
            [true, false, false],
            [false, false, true],
        ]);
        f.new_dataset_builder()
            .with_data(&bits)
            .create("label")
            .unwrap();
    }
    let ds = Dataset::open(&path, &DatasetOptions::default()).unwrap();
    assert_eq!(ds.sample_shape(), [1, 1, 6]);
    assert_eq!(ds.input_shape(), [6]);
    assert_eq!(ds.labels().unwrap(), [Some(1), None, Some(0), Some(2)]);
    let (n_classes, bits) = ds.multi_hot().unwrap();
    assert_eq!((n_classes, bits.len()), (3, 12));
    let (x, _) = ds.read_batch(&[1]).unwrap();
    assert_eq!(x, vec![60.0, 70.0, 80.0, 90.0, 100.0, 110.0]);
    let scaled = Dataset::open(
        &path,
        &opts(Preprocess {
            scale: Some(true),
            ..Default::default()
        }),
    )
    .unwrap();
    let (x, _) = scaled.read_batch(&[1]).unwrap();
    assert!((x[0] - 60.0 / 255.0).abs() < 1e-7);

    // Signed integer labels: negative means unlabelled.
    let path2 = dir.path().join("i64.h5");
    {
        let f = hdf5::File::create(&path2).unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::Array::from_elem((3, 1, 2, 2), 0.25f64))
            .create("data")
            .unwrap();
        f.new_dataset_builder()
            .with_data(&[4i64, -1, 0])
            .create("label")
            .unwrap();
    }
    let ds = Dataset::open(&path2, &DatasetOptions::default()).unwrap();
    assert_eq!(ds.labels().unwrap(), [Some(4), None, Some(0)]);
    assert_eq!(ds.read_batch(&[2]).unwrap().0, vec![0.25; 4]);
}

#[test]
fn hdf5_errors_name_file_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated file.
    let good = dir.path().join("good.h5");
    write_dataset(&good, &[1, 8, 8], &vec![1.0; 4 * 64], &[0, 1, 2, 3]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = match Dataset::open(&cut, &DatasetOptions::default()) {
        Err(e) => e,
        Ok(ds) => ds.read_batch(&[0, 1, 2, 3]).unwrap_err(),
    };
    assert!(err.to_string().contains("cut.h5"), "{err}");
    assert!(matches!(
        err,
        DatasetError::Store(StoreError::Open { .. } | StoreError::Read { .. })
    ));
    // Wrong rank, label count mismatch, missing data.
    let bad = dir.path().join("bad.h5");
    let make = |data_shape: &[usize], n_labels: usize| {
        let f = hdf5::File::create(&bad).unwrap();
        f.new_dataset::<f32>()
            .shape(data_shape)
            .create("data")
            .unwrap();
        f.new_dataset::<u16>()
            .shape([n_labels])
            .create("label")
            .unwrap();
    };
    make(&[2], 2);
    let err = Dataset::open(&bad, &DatasetOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Shape { dataset, .. } if dataset == "data"),
        "{err}"
    );
    make(&[3, 2], 2);
    let err = Dataset::open(&bad, &DatasetOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::LabelCount { samples: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad.h5"), "{err}");
    {
        let f = hdf5::File::create(&bad).unwrap();
        f.new_dataset::<u16>().shape([2]).create("label").unwrap();
    }
    let err = Dataset::open(&bad, &DatasetOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        DatasetError::Store(StoreError::MissingDataset { .. })
    ));
}

#[test]
fn npy_dataset_streams_rows_and_finds_sibling_or_explicit_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let data: Vec<f32> = (0..5 * 2 * 3).map(|i| i as f32).collect();
    write_npy(&path, "<f4", &[5, 2, 3], &f32_bytes(&data));
    // No labels.
    let ds = Dataset::open(&path, &DatasetOptions::default()).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Npy);
    assert_eq!(ds.sample_shape(), [1, 2, 3]);
    assert_eq!(ds.labels(), None);
    let (x, y) = ds.read_batch(&[4, 1]).unwrap();
    assert_eq!(&x[..6], &data[24..30]);
    assert_eq!(&x[6..], &data[6..12]);
    assert_eq!(y, vec![None, None]);
    // Sibling labels (int64, as numpy saves them by default).
    let labels: Vec<u8> = [3i64, 1, 4, 1, 5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_npy(&dir.path().join("x.labels.npy"), "<i8", &[5], &labels);
    let ds2 = Dataset::open(&path, &DatasetOptions::default()).unwrap();
    assert_eq!(ds2.label(2), Some(4));
    assert_ne!(ds.fingerprint(), ds2.fingerprint());
    // Explicit labels override; a count mismatch is an error naming both files.
    let other = dir.path().join("other.npy");
    write_npy(&other, "<u2", &[4], &[0u8; 8]);
    let err = Dataset::open(
        &path,
        &DatasetOptions {
            labels: Some(other.clone()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, DatasetError::LabelCount { samples: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("other.npy"), "{err}");
    // Big-endian float64 data is converted.
    let be = dir.path().join("be.npy");
    let vals = [1.5f64, -2.0, 3.25, 0.0];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    write_npy(&be, ">f8", &[2, 2], &bytes);
    let ds = Dataset::open(&be, &DatasetOptions::default()).unwrap();
    assert_eq!(
        ds.read_batch(&[1, 0]).unwrap().0,
        vec![3.25, 0.0, 1.5, -2.0]
    );
    // Truncated data.
    let cut = dir.path().join("cut.npy");
    write_npy(&cut, "<f4", &[5, 2, 3], &f32_bytes(&data[..20]));
    let err = Dataset::open(&cut, &DatasetOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Npy { path, message } if path.ends_with("cut.npy") && message.contains("truncated")),
        "{err}"
    );
}

/// Batches come in the order of the indices; at most `prefetch` are decoded ahead; an error
/// ends the iteration; prefetch 0 reads in the caller's thread with the same result.
#[test]
fn prefetching_batches_keep_order_and_propagate_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.h5");
    let n = 23;
    let data: Vec<f32> = (0..n * 4).map(|i| i as f32).collect();
    let labels: Vec<u32> = (0..n as u32).collect();
    write_dataset(&path, &[1, 2, 2], &data, &labels).unwrap();
    let ds = Dataset::open(&path, &DatasetOptions::default()).unwrap();
    let order: Vec<usize> = (0..n).rev().step_by(2).chain(0..5).collect();
    for prefetch in [0, 1, 3] {
        let batches: Vec<_> = ds
            .batches(order.clone(), 4, prefetch)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(batches.len(), order.len().div_ceil(4));
        let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(seen, order);
        for b in &batches {
            assert_eq!(b.shape, [b.indices.len(), 1, 2, 2]);
            let (x, y) = ds.read_batch(&b.indices).unwrap();
            assert_eq!((&b.data, &b.labels), (&x, &y));
        }
    }
    // An index out of range in the third batch: two batches, then the error, then the end.
    let mut it = ds.batches(vec![0, 1, 2, 3, 99, 4], 2, 2);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(
        it.next(),
        Some(Err(DatasetError::Index { index: 99, .. }))
    ));
    assert!(it.next().is_none());
    // Dropping a half-consumed iterator stops its thread.
    let mut it = ds.batches((0..n).collect(), 1, 2);
    assert!(it.next().unwrap().is_ok());
    drop(it);
}

#[test]
fn fingerprint_is_stable_and_tracks_files_and_options() {
    let dir = tempfile::tempdir().unwrap();
    save_rgb(&dir.path().join("a/1.png"), 2, 2, &[9; 12]);
    save_rgb(&dir.path().join("b/2.png"), 2, 2, &[7; 12]);
    let open = |p: Preprocess| Dataset::open(dir.path(), &opts(p)).unwrap();
    let f0 = open(Preprocess::default()).fingerprint().to_string();
    assert_eq!(f0.len(), 64);
    assert_eq!(open(Preprocess::default()).fingerprint(), f0);
    let with_norm = Preprocess {
        normalize: Some(Normalize::imagenet()),
        ..Default::default()
    };
    assert_ne!(open(with_norm).fingerprint(), f0);
    save_rgb(&dir.path().join("b/3.png"), 2, 2, &[5; 12]);
    assert_ne!(open(Preprocess::default()).fingerprint(), f0);
}

#[test]
fn kind_is_detected_or_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data.bin");
    std::fs::write(&p, "x").unwrap();
    let err = Dataset::open(&p, &DatasetOptions::default()).unwrap_err();
    assert!(matches!(err, DatasetError::Kind { .. }), "{err}");
    let err = Dataset::open(dir.path().join("missing.h5"), &DatasetOptions::default()).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }), "{err}");
    assert_eq!(
        DatasetKind::by_name("image-folder").unwrap(),
        DatasetKind::ImageFolder
    );
    assert!(Normalize::by_name("cifar").is_err());
    assert!(Normalize::new(vec![0.0, 0.0], vec![1.0]).is_err());
    // Normalisation lists must match the channels.
    save_rgb(&dir.path().join("imgs/c/1.png"), 1, 1, &[0, 0, 0]);
    let err = Dataset::open(
        dir.path().join("imgs"),
        &opts(Preprocess {
            normalize: Some(Normalize::new(vec![0.0, 0.0], vec![1.0, 1.0]).unwrap()),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(err, DatasetError::Options { .. }), "{err}");
}

/// Found by fuzzing (`fuzz/run.sh image`): a PNG whose header declares 4294967295 × 4294967295
/// pixels set the sample size, and reading a batch aborted on a failed allocation of
/// ~2⁶⁰ bytes before the decoder (which has its own limits) was asked. The size from the header
/// is now checked when the folder is opened.
#[test]
fn an_image_header_declaring_a_huge_size_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("class");
    std::fs::create_dir(&class).unwrap();
    std::fs::copy(fixtures().join("huge_dimensions.png"), class.join("a.png")).unwrap();
    let e = Dataset::open(dir.path(), &opts(Preprocess::default()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the 134217728"), "{e}");
    assert!(e.contains("a.png"), "{e}");
}

/// Found by fuzzing (`fuzz/run.sh image`, after 326 605 executions): a 754-byte JPEG whose
/// header declares 16655 × 10496 pixels (a decompression bomb) took 23 s to decode into filler
/// pixels. Images are now limited to Pillow's decompression-bomb threshold, and to the pixels
/// a file of their length can hold.
#[test]
fn decompression_bombs_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("class");
    std::fs::create_dir(&class).unwrap();
    let bomb = std::fs::read(fixtures().join("fuzz_jpeg_bomb.jpg")).unwrap();
    std::fs::write(class.join("a.jpg"), &bomb).unwrap();
    let resize = Preprocess {
        resize: Some(Resize::Shorter(8)),
        ..Default::default()
    };
    let ds = Dataset::open(dir.path(), &opts(resize.clone())).unwrap();
    let t0 = std::time::Instant::now();
    let e = ds.read(&[0]).unwrap_err().to_string();
    assert!(e.contains("16655×10496"), "{e}");
    assert!(e.contains("more than the 89478485"), "{e}");
    assert!(e.contains("a.jpg"), "{e}");
    assert!(t0.elapsed().as_secs() < 2, "{:?}", t0.elapsed());

    // The same header declaring 4000 × 4000 pixels (under the threshold) in 754 bytes: more
    // than a JPEG of that length can hold.
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG frame header");
    let mut small = bomb.clone();
    small[sof + 5..sof + 9].copy_from_slice(&[0x0F, 0xA0, 0x0F, 0xA0]);
    std::fs::write(class.join("a.jpg"), &small).unwrap();
    let ds = Dataset::open(dir.path(), &opts(resize)).unwrap();
    let e = ds.read(&[0]).unwrap_err().to_string();
    assert!(
        e.contains("declares 4000×4000 pixels, but the file has only 754 bytes"),
        "{e}"
    );
    assert!(e.contains("truncated or corrupt"), "{e}");
}
