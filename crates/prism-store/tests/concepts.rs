//! The concepts-file reader (`prism_store::concepts`): a file written to the spec is read back
//! value for value; damaged files (a dataset missing, a wrong shape or type, no completeness
//! flag, another format or version, bad reference values) are refused with the file and the
//! dataset named.

use std::path::{Path, PathBuf};

use prism_store::concepts::{
    self, write_concepts, ConceptsContents, HeatmapContents, LayerContents, ReferenceTable,
    NO_SAMPLE,
};
use prism_store::{AttrValue, ChannelQuantity, ConceptsFile, CropBox, ReferenceKind, StoreError};

const N: usize = 3;
const K: usize = 4; // more references than rows: the last is NO_SAMPLE

/// A reference table of `c` channels (maps of `locations` positions) whose column `ch` lists
/// the rows by descending `scores`, with boxes for the first `crops`.
fn table(
    c: usize,
    locations: usize,
    crops: usize,
    index: &[u32],
    scores: &[f32],
) -> ReferenceTable {
    let mut t = ReferenceTable {
        top_n: K,
        channels: c,
        crops,
        sample: vec![NO_SAMPLE; K * c],
        score: vec![f32::NAN; K * c],
        location: vec![0; K * c],
        boxes: vec![0; K * c * 4],
    };
    for ch in 0..c {
        let mut rows: Vec<usize> = (0..N).collect();
        rows.sort_by(|&a, &b| {
            scores[b * c + ch]
                .total_cmp(&scores[a * c + ch])
                .then(a.cmp(&b))
        });
        for (k, &r) in rows.iter().enumerate() {
            t.sample[k * c + ch] = i64::from(index[r]);
            t.score[k * c + ch] = scores[r * c + ch];
            t.location[k * c + ch] = ((r + ch) % locations) as i64;
            if k < crops {
                let b = [k as i32, k as i32 + 2, ch as i32, ch as i32 + 3];
                t.boxes[(k * c + ch) * 4..(k * c + ch) * 4 + 4].copy_from_slice(&b);
            }
        }
    }
    t
}

fn contents() -> ConceptsContents {
    let index = vec![2u32, 5, 9];
    // conv: 3 channels of 2×2 maps; dense: 2 channels.
    let conv_rel = vec![0.5f32, -0.25, 0.25, 0.0, 1.0, -1.0, 0.3, 0.3, 0.4];
    let conv_act = vec![1.0f32, 2.0, 3.0, 3.0, 2.0, 1.0, 0.5, 0.5, 0.5];
    let dense_rel = vec![1.0f32, 0.0, 0.0, 2.0, 0.5, 0.5];
    let hm: Vec<f32> = (0..N * 2 * 4 * 4).map(|v| v as f32 * 0.1 - 1.0).collect();
    ConceptsContents {
        attrs: vec![
            (concepts::ATTR_MODEL.into(), AttrValue::Str("m.onnx".into())),
            (concepts::ATTR_TOTAL_SAMPLES.into(), AttrValue::Int(3)),
        ],
        target: vec![1, 0, 1],
        classes: 2,
        prediction: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        layers: vec![
            LayerContents {
                node: "/features/features.0/Conv".into(),
                tensor: "/features/features.0/Conv_output_0".into(),
                shape: vec![3, 2, 2],
                relevance: conv_rel.clone(),
                activation: conv_act.clone(),
                relmax: table(3, 4, 2, &index, &conv_rel),
                actmax: table(3, 4, 1, &index, &conv_act),
                heatmaps: Some(HeatmapContents {
                    per_row: 2,
                    height: 4,
                    width: 4,
                    values: hm,
                    // the two most relevant channels of each row
                    channels: vec![0, 2, 0, 2, 2, 1],
                }),
            },
            LayerContents {
                node: "/fc/Gemm".into(),
                tensor: "/fc/Gemm_output_0".into(),
                shape: vec![2],
                relevance: dense_rel.clone(),
                activation: dense_rel.clone(),
                relmax: table(2, 1, 0, &index, &dense_rel),
                actmax: table(2, 1, 0, &index, &dense_rel),
                heatmaps: None,
            },
        ],
        index,
    }
}

fn written(dir: &Path) -> PathBuf {
    let path = dir.join("concepts.h5");
    write_concepts(&path, &contents()).unwrap();
    path
}

#[test]
fn a_file_written_to_the_spec_reads_back_value_for_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = written(dir.path());
    let f = ConceptsFile::open(&path).unwrap();
    assert_eq!(f.n_rows(), 3);
    assert_eq!(f.index(), &[2, 5, 9]);
    assert_eq!(f.target(), &[1, 0, 1]);
    assert_eq!(f.classes(), 2);
    assert_eq!(f.row_of(5), Some(1));
    assert_eq!(f.row_of(4), None);
    assert_eq!(f.prediction(2).unwrap(), vec![4.0, 5.0]);
    assert_eq!(
        f.attr(concepts::ATTR_MODEL).unwrap(),
        Some(AttrValue::Str("m.onnx".into()))
    );
    let layers = f.layers();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].group, "000");
    assert_eq!(layers[0].node, "/features/features.0/Conv");
    assert_eq!(layers[0].tensor, "/features/features.0/Conv_output_0");
    assert_eq!(layers[0].shape, vec![3, 2, 2]);
    assert_eq!(layers[0].channels, 3);
    assert_eq!(layers[0].top_n, K);
    assert_eq!(layers[0].crops(ReferenceKind::RelMax), 2);
    assert_eq!(layers[0].crops(ReferenceKind::ActMax), 1);
    assert_eq!(layers[0].heatmaps, 2);
    assert_eq!(layers[0].heatmap_size, Some((4, 4)));
    assert_eq!(layers[1].shape, vec![2]);
    assert_eq!(layers[1].heatmaps, 0);
    assert_eq!(layers[1].heatmap_size, None);

    // rows of relevance and activation
    assert_eq!(f.relevance(0, 1).unwrap(), vec![0.0, 1.0, -1.0]);
    assert_eq!(f.activation(0, 2).unwrap(), vec![0.5, 0.5, 0.5]);
    assert_eq!(
        f.channel_rows(1, ChannelQuantity::Relevance, &[0, 2])
            .unwrap(),
        vec![1.0, 0.0, 0.5, 0.5]
    );
    assert!(f
        .channel_rows(0, ChannelQuantity::Relevance, &[2, 1])
        .is_err());
    assert!(f.relevance(0, 3).is_err());
    assert!(f.relevance(2, 0).is_err());

    // channel 1 of the conv layer by relevance: rows 1 (1.0), 2 (0.3), 0 (-0.25); no 4th
    let refs = f.references(0, ReferenceKind::RelMax, 1).unwrap();
    assert_eq!(
        refs.iter()
            .map(|r| (r.rank, r.sample, r.score))
            .collect::<Vec<_>>(),
        vec![(0, 5, 1.0), (1, 9, 0.3), (2, 2, -0.25)]
    );
    assert_eq!(
        refs[0].crop,
        Some(CropBox {
            y0: 0,
            y1: 2,
            x0: 1,
            x1: 4
        })
    );
    assert_eq!(refs[1].crop.map(CropBox::to_array), Some([1, 3, 1, 4]));
    assert_eq!(refs[2].crop, None, "beyond `crops`: no box");
    assert_eq!(refs[0].location, 2); // (row 1 + channel 1) % 4
                                     // ActMax keeps one box
    let act = f.references(0, ReferenceKind::ActMax, 0).unwrap();
    assert_eq!(
        act.iter().map(|r| r.sample).collect::<Vec<_>>(),
        vec![5, 2, 9]
    );
    assert!(act[0].crop.is_some() && act[1].crop.is_none());
    assert!(f.references(0, ReferenceKind::RelMax, 3).is_err());

    // the whole table is the one written
    assert_eq!(
        f.reference_table(0, ReferenceKind::RelMax).unwrap().sample,
        contents().layers[0].relmax.sample
    );
    let t = f.reference_table(1, ReferenceKind::ActMax).unwrap();
    let want = &contents().layers[1].actmax;
    assert_eq!((t.top_n, t.channels, t.crops), (K, 2, 0));
    assert_eq!(t.boxes, want.boxes);
    assert_eq!(t.location, want.location);

    // heatmaps
    let h = f.heatmaps(0, 2).unwrap().unwrap();
    assert_eq!(h.channels, vec![2, 1]);
    assert_eq!((h.height, h.width, h.values.len()), (4, 4, 32));
    assert_eq!(h.values[0], (2 * 32) as f32 * 0.1 - 1.0);
    assert_eq!(f.heatmap_channels_of(0, 1).unwrap(), vec![0, 2]);
    let one = f.heatmap(0, 2, 1).unwrap().unwrap();
    assert_eq!(one, h.values[16..].to_vec());
    assert_eq!(
        f.heatmap(0, 2, 0).unwrap(),
        None,
        "channel 0 has no heatmap in row 2"
    );
    assert_eq!(f.heatmaps(1, 0).unwrap(), None);
    assert!(f.heatmap_channels_of(1, 0).unwrap().is_empty());
}

/// Writes the good file into `dir`, changes it with `damage` (raw HDF5), and opens it.
fn open_damaged(dir: &Path, damage: impl FnOnce(&hdf5::File)) -> (PathBuf, StoreError) {
    let path = written(dir);
    {
        let f = hdf5::File::open_rw(&path).unwrap();
        damage(&f);
        f.close().unwrap();
    }
    let e = ConceptsFile::open(&path).unwrap_err();
    (path, e)
}

fn assert_names(path: &Path, e: &StoreError, words: &[&str]) {
    let msg = prism_store::error::chain(e);
    assert!(
        msg.contains(&path.display().to_string()),
        "no file in: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "`{w}` not in: {msg}");
    }
}

#[test]
fn a_missing_dataset_is_named() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("layers/000/relmax/score").unwrap()
    });
    assert!(matches!(e, StoreError::MissingDataset { .. }), "{e:?}");
    assert_names(&path, &e, &["layers/000/relmax/score", "missing"]);
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("layers/000/heatmap_channel").unwrap()
    });
    assert_names(&path, &e, &["layers/000/heatmap_channel", "missing"]);
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("target").unwrap()
    });
    assert_names(&path, &e, &["`target`", "missing"]);
}

#[test]
fn a_wrong_shape_is_named_with_the_expected_one() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("layers/001/activation").unwrap();
        f.new_dataset::<f32>()
            .shape([N, 3])
            .create("layers/001/activation")
            .unwrap();
    });
    assert!(matches!(e, StoreError::Shape { .. }), "{e:?}");
    assert_names(&path, &e, &["layers/001/activation", "[3, 3]", "[3, 2]"]);
    // K differs between the datasets of one table
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("layers/000/actmax/location").unwrap();
        f.new_dataset::<i64>()
            .shape([K + 1, 3])
            .create("layers/000/actmax/location")
            .unwrap();
    });
    assert_names(&path, &e, &["layers/000/actmax/location", "K = 4"]);
    // a layer whose `channels` disagrees with its shape
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        let g = f.group("layers/001").unwrap();
        g.delete_attr("channels").unwrap();
        g.new_attr::<i64>()
            .create("channels")
            .unwrap()
            .write_scalar(&5i64)
            .unwrap();
    });
    assert_names(&path, &e, &["layers/001@channels", "5 channels"]);
}

#[test]
fn a_wrong_type_is_named() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("layers/000/relevance").unwrap();
        f.new_dataset::<i32>()
            .shape([N, 3])
            .create("layers/000/relevance")
            .unwrap();
    });
    assert!(matches!(e, StoreError::Dtype { .. }), "{e:?}");
    assert_names(&path, &e, &["layers/000/relevance", "floating-point"]);
}

#[test]
fn an_incomplete_file_is_refused_as_such() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.delete_attr(concepts::ATTR_COMPLETE).unwrap()
    });
    assert_names(&path, &e, &["prism_complete", "not complete", "rerun"]);
}

#[test]
fn another_format_or_version_is_refused() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.delete_attr(concepts::ATTR_FORMAT).unwrap();
    });
    assert_names(&path, &e, &["not a concepts file"]);
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.delete_attr(concepts::ATTR_FORMAT_VERSION).unwrap();
        f.new_attr::<i64>()
            .create(concepts::ATTR_FORMAT_VERSION)
            .unwrap()
            .write_scalar(&2i64)
            .unwrap();
    });
    assert_names(&path, &e, &["format version 2", "reads version 1"]);
    // an attribution file is not a concepts file
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.h5");
    hdf5::File::create(&other).unwrap();
    let e = ConceptsFile::open(&other).unwrap_err();
    assert_names(&other, &e, &["not a concepts file"]);
}

#[test]
fn unordered_index_and_gapped_layers_are_refused() {
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.unlink("index").unwrap();
        f.new_dataset_builder()
            .with_data(&[2u32, 9, 5])
            .create("index")
            .unwrap();
    });
    assert_names(&path, &e, &["`index`", "ascending"]);
    let (path, e) = open_damaged(tempfile::tempdir().unwrap().path(), |f| {
        f.relink("layers/001", "layers/003").unwrap();
    });
    assert_names(&path, &e, &["`layers`", "003", "001"]);
}

#[test]
fn bad_reference_values_are_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.h5");
    let mut c = contents();
    // a sample after the column's end marker
    let t = &mut c.layers[1].relmax;
    t.sample[2 * 2] = NO_SAMPLE;
    t.score[2 * 2] = f32::NAN;
    t.sample[3 * 2] = 7;
    t.score[3 * 2] = 0.1;
    // a box with y1 < y0 in channel 0 of the conv layer
    c.layers[0].actmax.boxes[0..4].copy_from_slice(&[3, 1, 0, 2]);
    write_concepts(&path, &c).unwrap();
    let f = ConceptsFile::open(&path).unwrap();
    let e = f.references(1, ReferenceKind::RelMax, 0).unwrap_err();
    assert_names(
        &path,
        &e,
        &["layers/001/relmax/sample", "channel 0, reference 3"],
    );
    assert!(f.references(1, ReferenceKind::RelMax, 1).is_ok());
    let e = f.reference_table(1, ReferenceKind::RelMax).unwrap_err();
    assert_names(&path, &e, &["layers/001/relmax/sample"]);
    let e = f.references(0, ReferenceKind::ActMax, 0).unwrap_err();
    assert_names(&path, &e, &["layers/000/actmax/box", "y0 < y1"]);
}
