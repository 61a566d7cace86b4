//! Generated projects for tests, the browser test and the load test: a dataset (HDF5, a
//! directory of PNGs, or a token dataset), a label map, an attribution file and an analysis
//! file, with the project YAML next to them, all written with prism-store's writers.
//!
//! Each class has two "strategies": most samples show an object whose relevance lies on it, a
//! third carry a bright corner mark (a Clever-Hans watermark) whose relevance lies on the mark.
//! Token projects: sentences of `size` token positions (a mask pads every third one), the
//! relevance on the class's word or, for the watermarked third, on a markup token
//! (`<b>&amp;</b>`, there to test escaping).
//! The analysis embeds the two groups as separate blobs and clusters them, so a lasso around one
//! blob selects one strategy. Image projects also get a concepts file (`concepts.h5`, the
//! layout of `prism concepts`; see [`SyntheticProject::concepts`]).

use std::f32::consts::PI;
use std::path::{Path, PathBuf};

use prism_store::concepts::{
    self, ConceptsContents, HeatmapContents, LayerContents, ReferenceTable, NO_SAMPLE,
    SCORE_EPSILON,
};
use prism_store::project::{
    AnalysisSpec, AttributionsSpec, ConceptsSpec, DatasetKind, DatasetSpec, DownSampling,
    UpSampling,
};
use prism_store::{
    AnalysisWriter, AttrValue, AttributionLayout, AttributionWriter, BatchLabels, Category,
    Clustering, DataLayout, DatasetWriter, Embedding, LabelLayout, Project, SampleType,
};

use crate::error::ViewerError;

const NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SyntheticProject {
    /// Project name.
    pub name: String,
    /// Number of classes (categories of the analysis).
    pub classes: usize,
    /// Samples per class.
    pub per_class: usize,
    /// Image side (square images); token projects: token positions per sample (at least 6).
    pub size: usize,
    /// Channels of the images and attributions (1 or 3).
    pub channels: usize,
    /// Store the dataset as uint8 instead of float32 in [0, 1].
    pub u8_data: bool,
    /// Dataset kind (an image directory is written as PNGs; a token dataset has `size` token
    /// positions per sample and ignores `channels` and `u8_data`).
    pub dataset: DatasetKind,
    /// Blobs in the t-SNE embedding (and clusters of `kmeans-blobs`) per class.
    pub blobs: usize,
    /// Write a concepts file (image datasets only; see [`CONCEPT_LAYERS`]): two layers, a
    /// convolution with one concept per class (of four), a "watermark" concept and a background
    /// one, and a dense layer with one concept per class and a watermark one; every 25th sample
    /// (24, 49, …) is left out of the run.
    pub concepts: bool,
}

/// The node names of the generated concepts file's layers.
pub const CONCEPT_LAYERS: [&str; 2] =
    ["/features/features.3/Conv", "/classifier/classifier.0/Gemm"];
/// References per channel in the generated concepts file.
pub const CONCEPT_TOP_N: usize = 8;
/// Conditional heatmaps per sample of the generated convolution layer (the dense layer has none).
pub const CONCEPT_HEATMAPS: usize = 2;
/// References per channel of the dense layer that have a crop box (the convolution: all).
pub const CONCEPT_DENSE_CROPS: usize = 3;

/// Whether a generated concepts run covers dataset sample `i`.
pub fn concept_run_covers(i: usize) -> bool {
    i % 25 != 24
}

impl SyntheticProject {
    /// A small demo: 4 classes × 60 samples of 32×32 RGB.
    pub fn demo() -> Self {
        SyntheticProject {
            name: "Synthetic demo".into(),
            classes: 4,
            per_class: 60,
            size: 32,
            channels: 3,
            u8_data: false,
            dataset: DatasetKind::Hdf5,
            blobs: 2,
            concepts: true,
        }
    }

    /// One class of `n` points (2×2 single-channel samples), for scale tests.
    pub fn large(n: usize) -> Self {
        SyntheticProject {
            name: format!("{n} points"),
            classes: 1,
            per_class: n,
            size: 2,
            channels: 1,
            u8_data: true,
            dataset: DatasetKind::Hdf5,
            blobs: 20,
            concepts: false,
        }
    }

    /// Writes the project into `dir` (created if needed); returns the YAML's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ViewerError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ViewerError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let classes = self.classes.clamp(1, NAMES.len());
        let n = classes * self.per_class.max(1);
        // token sentences need room for [CLS], [SEP], a word, a mark and two padding positions
        let least = if self.dataset == DatasetKind::Tokens {
            6
        } else {
            2
        };
        let (c, s) = (self.channels.clamp(1, 3), self.size.max(least));
        let plane = s * s;
        let label_of = |i: usize| (i % classes) as u32;
        // Which strategy (0 = object, 1 = watermark) and blob each sample belongs to.
        let blobs = self.blobs.max(2);
        let blob_of = |i: usize| {
            let k = i / classes;
            if k % 3 == 0 {
                blobs - 1
            } else {
                k % (blobs - 1)
            }
        };

        // Label map.
        let entries: Vec<String> = (0..classes)
            .map(|k| {
                format!(
                    "{{\"index\": {k}, \"word_net_id\": \"n{:08}\", \"name\": \"{}\"}}",
                    k + 1,
                    NAMES[k]
                )
            })
            .collect();
        let lm = dir.join("label-map.json");
        std::fs::write(&lm, format!("[\n  {}\n]\n", entries.join(",\n  "))).map_err(io(&lm))?;

        // Pixels and relevance of one sample.
        // Pixels, relevance and the object's centre of one sample.
        let sample = |i: usize| -> (Vec<f32>, Vec<f32>, (f32, f32)) {
            let mut rng = Rng(i as u64 * 7919 + 17);
            let class = label_of(i) as usize;
            let watermark = blob_of(i) == blobs - 1;
            let hue = class as f32 / classes as f32;
            let color = [
                0.5 + 0.5 * (2.0 * PI * hue).cos(),
                0.5 + 0.5 * (2.0 * PI * (hue + 0.33)).cos(),
                0.5 + 0.5 * (2.0 * PI * (hue + 0.67)).cos(),
            ];
            let (cx, cy) = (
                s as f32 * (0.35 + 0.3 * rng.uniform()),
                s as f32 * (0.35 + 0.3 * rng.uniform()),
            );
            let r = s as f32 * 0.2;
            let mark = (s / 5).max(1);
            let mut img = vec![0f32; c * plane];
            let mut rel = vec![0f32; c * plane];
            for y in 0..s {
                for x in 0..s {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                    let inside = d < r;
                    let in_mark = watermark && x < mark && y < mark;
                    for ch in 0..c {
                        let base = 0.15 + 0.1 * rng.uniform();
                        img[ch * plane + y * s + x] = if in_mark {
                            1.0
                        } else if inside {
                            color[ch] * 0.9
                        } else {
                            base
                        };
                    }
                    let on_object = (-(d / r).powi(2)).exp();
                    let on_mark = if watermark {
                        let dm = ((x as f32).powi(2) + (y as f32).powi(2)).sqrt();
                        (-(dm / mark as f32).powi(2)).exp()
                    } else {
                        0.0
                    };
                    let v = if watermark {
                        on_mark - 0.2 * on_object
                    } else {
                        on_object - 0.15 * ((x as f32 / s as f32) - 0.5).abs()
                    };
                    for ch in 0..c {
                        rel[ch * plane + y * s + x] = v / c as f32 + 0.01 * rng.normal();
                    }
                }
            }
            (img, rel, (cx, cy))
        };

        // Dataset and attribution file, in batches.
        let data_path = match self.dataset {
            DatasetKind::Hdf5 => dir.join("dataset.h5"),
            DatasetKind::ImageDirectory => dir.join("images"),
            DatasetKind::Tokens => dir.join("tokens"),
        };
        let attr_path = dir.join("attribution.h5");
        if self.dataset == DatasetKind::Tokens {
            write_tokens(&data_path, &attr_path, n, classes, s, &label_of, &|i| {
                blob_of(i) == blobs - 1
            })?;
        } else {
            let mut aw = AttributionWriter::create(
                &attr_path,
                AttributionLayout {
                    n_samples: n,
                    sample_shape: vec![c, s, s],
                    n_outputs: classes,
                    labels: LabelLayout::Single,
                    with_index: true,
                    compression: None,
                },
            )?;
            let mut data_writer = if self.dataset == DatasetKind::Hdf5 {
                let layout = DataLayout {
                    sample_type: if self.u8_data {
                        SampleType::U8
                    } else {
                        SampleType::F32
                    },
                    chunk_values: 65536,
                    deflate: None,
                };
                Some(DatasetWriter::with_layout(
                    &data_path,
                    n,
                    &[c, s, s],
                    layout,
                )?)
            } else {
                None
            };
            let batch = 4096.min(n);
            let mut start = 0;
            while start < n {
                let end = (start + batch).min(n);
                let mut imgs = Vec::with_capacity((end - start) * c * plane);
                let mut rels = Vec::with_capacity((end - start) * c * plane);
                let mut preds = Vec::with_capacity((end - start) * classes);
                let mut labels = Vec::with_capacity(end - start);
                for i in start..end {
                    let (img, rel, _) = sample(i);
                    let class = label_of(i) as usize;
                    if self.dataset == DatasetKind::ImageDirectory {
                        write_png(&data_path, class, i, &img, c, s)?;
                    }
                    imgs.extend(img);
                    rels.extend(rel);
                    let mut rng = Rng(i as u64 + 99);
                    // Mostly right; every 7th sample is mistaken for the next class.
                    let predicted = if i % 7 == 3 {
                        (class + 1) % classes
                    } else {
                        class
                    };
                    preds.extend(
                        (0..classes).map(|k| if k == predicted { 4.0 } else { 0.0 } + rng.normal()),
                    );
                    labels.push(class as u32);
                }
                let index: Vec<u32> = (start as u32..end as u32).collect();
                aw.write_batch(
                    start,
                    &rels,
                    &preds,
                    &BatchLabels::Single(&labels),
                    Some(&index),
                )?;
                if let Some(w) = &mut data_writer {
                    if self.u8_data {
                        let v: Vec<u8> = imgs
                            .iter()
                            .map(|&x| (x * 255.0).round().clamp(0.0, 255.0) as u8)
                            .collect();
                        w.write_u8(&v, &labels)?;
                    } else {
                        w.write(&imgs, &labels)?;
                    }
                }
                start = end;
            }
            if self.dataset == DatasetKind::ImageDirectory {
                // Sorted paths would put class 0 first; list the images in sample order instead.
                let list: String = (0..n)
                    .map(|i| format!("images/{}/{i:06}.png\n", label_of(i)))
                    .collect();
                let path = dir.join("images_paths.txt");
                std::fs::write(&path, list).map_err(io(&path))?;
            }
            prism_store::provenance::write_source(&mut aw, "synthetic")?;
            aw.finish()?;
            if let Some(w) = data_writer {
                w.finish()?;
            }
        }

        // Analysis: per class, a 2-D t-SNE-like embedding with one blob per strategy, a 4-D
        // spectral embedding with eigenvalues, and clusterings.
        let an_path = dir.join("analysis.h5");
        let mut w = AnalysisWriter::create(&an_path)?;
        for k in 0..classes {
            let members: Vec<usize> = (0..n).filter(|&i| label_of(i) as usize == k).collect();
            let mut rng = Rng(1000 + k as u64);
            let mut tsne = Vec::with_capacity(members.len() * 2);
            let mut spectral = Vec::with_capacity(members.len() * 4);
            let mut by_blob = Vec::with_capacity(members.len());
            for &i in &members {
                let b = blob_of(i);
                let (bx, by) = blob_centre(b, blobs);
                tsne.push(bx + 0.6 * rng.normal());
                tsne.push(by + 0.6 * rng.normal());
                let g = if b == blobs - 1 { 1.0 } else { -1.0 };
                spectral.extend([
                    0.1 * rng.normal(),
                    0.1 * rng.normal(),
                    g * 0.5 + 0.05 * rng.normal(),
                    0.3,
                ]);
                by_blob.push(b as i32);
            }
            let strategy: Vec<i32> = by_blob
                .iter()
                .map(|&b| i32::from(b == blobs as i32 - 1))
                .collect();
            let dbscan: Vec<i32> = strategy
                .iter()
                .enumerate()
                .map(|(j, &g)| if j % 17 == 5 { -1 } else { g })
                .collect();
            let cat = Category {
                name: format!("n{:08}", k + 1),
                index: members.iter().map(|&i| i as u32).collect(),
                embeddings: vec![
                    Embedding {
                        name: "spectral".into(),
                        dim: 4,
                        values: spectral,
                        eigenvalue: Some(vec![1.1, 0.9, 0.04, 0.0]),
                        attrs: vec![],
                    },
                    Embedding {
                        name: "tsne".into(),
                        dim: 2,
                        values: tsne,
                        eigenvalue: None,
                        attrs: vec![("embedding".into(), AttrValue::Str("spectral".into()))],
                    },
                ],
                clusterings: vec![
                    Clustering {
                        name: "kmeans-02".into(),
                        labels: renumber(&strategy),
                        attrs: vec![],
                    },
                    Clustering {
                        // With two blobs: the objects split in two, three clusters in all.
                        name: format!("agglomerative-{:02}", blobs.max(3)),
                        labels: renumber(
                            &by_blob
                                .iter()
                                .enumerate()
                                .map(|(j, &b)| {
                                    if blobs == 2 && b == 0 {
                                        2 + (j % 2) as i32
                                    } else {
                                        b
                                    }
                                })
                                .collect::<Vec<_>>(),
                        ),
                        attrs: vec![],
                    },
                    Clustering {
                        name: "dbscan-eps=0.5".into(),
                        labels: dbscan,
                        attrs: vec![],
                    },
                ],
                attrs: vec![
                    ("class".into(), AttrValue::Int(k as i64)),
                    ("eigengap_suggested_k".into(), AttrValue::Int(2)),
                ],
            };
            w.write_category(&cat)?;
        }
        w.finish()?;

        let with_concepts = self.concepts && self.dataset != DatasetKind::Tokens;
        if with_concepts {
            let mut prediction = Vec::with_capacity(n * classes);
            for i in 0..n {
                let class = label_of(i) as usize;
                let mut rng = Rng(i as u64 + 99);
                let predicted = if i % 7 == 3 {
                    (class + 1) % classes
                } else {
                    class
                };
                prediction.extend(
                    (0..classes).map(|k| if k == predicted { 4.0 } else { 0.0 } + rng.normal()),
                );
            }
            let spec = ConceptSpec {
                n,
                classes,
                size: s,
                label_of: &label_of,
                watermarked: &|i| blob_of(i) == blobs - 1,
                centre: &|i| sample(i).2,
                prediction,
            };
            concepts::write_concepts(dir.join("concepts.h5"), &spec.contents())?;
        }

        let project = Project {
            name: self.name.clone(),
            model: "synthetic".into(),
            label_map: "label-map.json".into(),
            dataset: DatasetSpec {
                name: format!("synthetic {n}"),
                kind: self.dataset,
                path: match self.dataset {
                    DatasetKind::Hdf5 => "dataset.h5".into(),
                    DatasetKind::ImageDirectory => "images".into(),
                    DatasetKind::Tokens => "tokens".into(),
                },
                input_width: s as u32,
                input_height: if self.dataset == DatasetKind::Tokens {
                    1
                } else {
                    s as u32
                },
                up_sampling: UpSampling::None,
                down_sampling: DownSampling::None,
                label_index_regex: (self.dataset == DatasetKind::ImageDirectory)
                    .then(|| ".*/([0-9]+)/[^/]+$".to_string()),
                label_word_net_id_regex: None,
            },
            attributions: AttributionsSpec {
                method: "epsilon-plus-flat".into(),
                strategy: "true_label".into(),
                sources: vec!["attribution.h5".into()],
            },
            analyses: vec![AnalysisSpec {
                method: "spectral_analysis".into(),
                sources: vec!["analysis.h5".into()],
            }],
            concepts: with_concepts.then(|| ConceptsSpec {
                sources: vec!["concepts.h5".into()],
            }),
        };
        let yaml = dir.join("project.yaml");
        project.write(&yaml)?;
        Ok(yaml)
    }
}

/// The vocabulary of generated token datasets: specials, filler words, one word per class, and
/// the watermark, a token full of markup.
const VOCAB: [&str; 24] = [
    "[PAD]",
    "[CLS]",
    "[SEP]",
    "the",
    "film",
    "was",
    "quite",
    "and",
    "plot",
    "act",
    "##ing",
    "really",
    "very",
    "<b>&amp;</b>",
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Where the class words start in [`VOCAB`].
const CLASS_WORDS: usize = 14;
/// The watermark token's id.
const WATERMARK: i64 = 13;

/// A token dataset (`input_ids`, `attention_mask`, `labels`, `vocab.txt`) of `n` sentences of
/// `t` positions and its attribution file ([N, t] relevance).
fn write_tokens(
    dir: &Path,
    attr_path: &Path,
    n: usize,
    classes: usize,
    t: usize,
    label_of: &dyn Fn(usize) -> u32,
    watermarked: &dyn Fn(usize) -> bool,
) -> Result<(), ViewerError> {
    std::fs::create_dir_all(dir).map_err(|source| ViewerError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ids = Vec::with_capacity(n * t);
    let mut mask = Vec::with_capacity(n * t);
    let mut rels = Vec::with_capacity(n * t);
    let mut preds = Vec::with_capacity(n * classes);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = Rng(i as u64 * 7919 + 17);
        let class = label_of(i) as usize;
        // every third sentence is two tokens shorter, padded
        let real = if i % 3 == 1 { t - 2 } else { t };
        // the inner positions 1..=m (between [CLS] and [SEP]); the mark never on the word
        let m = real - 2;
        let word_at = 1 + (rng.next() as usize) % m;
        let mark_at = 1 + (word_at - 1 + 1 + (rng.next() as usize) % (m - 1)) % m;
        for p in 0..t {
            let id = if p >= real {
                0
            } else if p == 0 {
                1
            } else if p == real - 1 {
                2
            } else if p == word_at {
                (CLASS_WORDS + class) as i64
            } else if p == mark_at && watermarked(i) {
                WATERMARK
            } else {
                3 + (rng.next() % 10) as i64
            };
            ids.push(id);
            mask.push(i64::from(p < real));
            let v = if p >= real {
                0.0
            } else if watermarked(i) {
                if p == mark_at {
                    1.0
                } else if p == word_at {
                    -0.2
                } else {
                    0.02 * rng.normal()
                }
            } else if p == word_at {
                1.0
            } else {
                0.05 * rng.normal()
            };
            rels.push(v);
        }
        let mut rng = Rng(i as u64 + 99);
        let predicted = if i % 7 == 3 {
            (class + 1) % classes
        } else {
            class
        };
        preds.extend((0..classes).map(|k| if k == predicted { 4.0 } else { 0.0 } + rng.normal()));
        labels.push(class as u32);
    }
    use prism_store::npy::write_i64_array;
    write_i64_array(&dir.join("input_ids.npy"), &[n, t], &ids)?;
    write_i64_array(&dir.join("attention_mask.npy"), &[n, t], &mask)?;
    let l: Vec<i64> = labels.iter().map(|&c| i64::from(c)).collect();
    write_i64_array(&dir.join("labels.npy"), &[n], &l)?;
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, VOCAB.join("\n") + "\n").map_err(|source| ViewerError::Io {
        path: vocab.clone(),
        source,
    })?;
    let mut aw = AttributionWriter::create(
        attr_path,
        AttributionLayout {
            n_samples: n,
            sample_shape: vec![t],
            n_outputs: classes,
            labels: LabelLayout::Single,
            with_index: true,
            compression: None,
        },
    )?;
    let index: Vec<u32> = (0..n as u32).collect();
    aw.write_batch(
        0,
        &rels,
        &preds,
        &BatchLabels::Single(&labels),
        Some(&index),
    )?;
    prism_store::provenance::write_source(&mut aw, "synthetic")?;
    aw.finish()?;
    Ok(())
}

/// What the generated concepts file is made of.
struct ConceptSpec<'a> {
    n: usize,
    classes: usize,
    /// Image side.
    size: usize,
    label_of: &'a dyn Fn(usize) -> u32,
    watermarked: &'a dyn Fn(usize) -> bool,
    /// The object's centre (x, y) in pixels.
    centre: &'a dyn Fn(usize) -> (f32, f32),
    /// Row-major N × classes, as in the attribution file.
    prediction: Vec<f32>,
}

impl ConceptSpec<'_> {
    /// The concepts file: rows of the samples the run covers, two layers.
    fn contents(&self) -> ConceptsContents {
        let rows: Vec<usize> = (0..self.n).filter(|&i| concept_run_covers(i)).collect();
        let s = self.size;
        let side = (s / 4).max(1);
        // Layer 0: channel 1 + class % 4 per class, 5 the watermark, 0 the background.
        let conv = self.layer(&rows, 0, vec![6, side, side], |i| {
            let mut v = vec![-0.2f32, 0.0, 0.0, 0.0, 0.0, 0.0];
            let own = 1 + (self.label_of)(i) as usize % 4;
            if (self.watermarked)(i) {
                v[5] += 1.2;
                v[own] += 0.3;
            } else {
                v[own] += 1.0;
            }
            v
        });
        // Layer 1: one channel per class, the last the watermark.
        let classes = self.classes;
        let dense = self.layer(&rows, 1, vec![classes + 1], |i| {
            let mut v = vec![0f32; classes + 1];
            let own = (self.label_of)(i) as usize;
            if (self.watermarked)(i) {
                v[classes] += 1.5;
                v[own] += 0.4;
            } else {
                v[own] += 1.2;
            }
            v
        });
        ConceptsContents {
            attrs: vec![
                (
                    concepts::ATTR_VERSION.into(),
                    AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
                ),
                (
                    concepts::ATTR_RUN_KEY.into(),
                    AttrValue::Str("synthetic".into()),
                ),
                (
                    concepts::ATTR_BASE_KEY.into(),
                    AttrValue::Str("synthetic".into()),
                ),
                (
                    concepts::ATTR_SETTINGS.into(),
                    AttrValue::Str(format!(
                        "{{\"top_n\": {CONCEPT_TOP_N}, \"sample_heatmaps\": {CONCEPT_HEATMAPS}}}"
                    )),
                ),
                (
                    concepts::ATTR_MODEL.into(),
                    AttrValue::Str("synthetic.onnx".into()),
                ),
                (
                    concepts::ATTR_DATASET.into(),
                    AttrValue::Str("dataset.h5".into()),
                ),
                (concepts::ATTR_TARGET.into(), AttrValue::Str("label".into())),
                (
                    concepts::ATTR_TOTAL_SAMPLES.into(),
                    AttrValue::Int(rows.len() as i64),
                ),
            ],
            index: rows.iter().map(|&i| i as u32).collect(),
            target: rows.iter().map(|&i| (self.label_of)(i)).collect(),
            classes: self.classes,
            prediction: rows
                .iter()
                .flat_map(|&i| {
                    self.prediction[i * self.classes..(i + 1) * self.classes]
                        .iter()
                        .copied()
                })
                .collect(),
            layers: vec![conv, dense],
        }
    }

    /// One layer: relevance `base(i)` plus noise per row, activations, both reference tables
    /// and (for the convolution) the heatmaps of each row's two most relevant channels.
    fn layer(
        &self,
        rows: &[usize],
        number: usize,
        shape: Vec<usize>,
        base: impl Fn(usize) -> Vec<f32>,
    ) -> LayerContents {
        let c = shape[0];
        let s = self.size;
        let mut relevance = Vec::with_capacity(rows.len() * c);
        let mut activation = Vec::with_capacity(rows.len() * c);
        for &i in rows {
            let mut rng = Rng(i as u64 * 31 + 7 + number as u64);
            for v in base(i) {
                let r = v + 0.05 * rng.normal();
                relevance.push(r);
                activation.push(r.abs() * 2.0 + 0.3 * rng.uniform());
            }
        }
        let conv = shape.len() == 3;
        // Where channel `ch` looks in sample `i`: the watermark corner, the object, the centre.
        let focus = |i: usize, ch: usize| -> (f32, f32) {
            let watermark_channel = if conv { 5 } else { c - 1 };
            if ch == watermark_channel {
                (0.5, 0.5)
            } else if conv && ch == 0 {
                (s as f32 / 2.0, s as f32 / 2.0)
            } else {
                (self.centre)(i)
            }
        };
        let table = |values: &[f32]| -> ReferenceTable {
            let k = CONCEPT_TOP_N;
            let crops = if conv { k } else { CONCEPT_DENSE_CROPS };
            let mut t = ReferenceTable {
                top_n: k,
                channels: c,
                crops,
                sample: vec![NO_SAMPLE; k * c],
                score: vec![f32::NAN; k * c],
                location: vec![0; k * c],
                boxes: vec![0; k * c * 4],
            };
            let scores: Vec<f32> = values
                .chunks(c)
                .flat_map(|row| {
                    let total: f32 = row.iter().map(|v| v.abs()).sum();
                    row.iter().map(move |v| v / (total + SCORE_EPSILON))
                })
                .collect();
            for ch in 0..c {
                let mut order: Vec<usize> = (0..rows.len()).collect();
                // Best first; ties by ascending sample number (= ascending row).
                order.sort_by(|&a, &b| {
                    scores[b * c + ch]
                        .total_cmp(&scores[a * c + ch])
                        .then(a.cmp(&b))
                });
                for (rank, &r) in order.iter().take(k).enumerate() {
                    let i = rows[r];
                    let at = rank * c + ch;
                    t.sample[at] = i as i64;
                    t.score[at] = scores[r * c + ch];
                    let (fx, fy) = focus(i, ch);
                    if conv {
                        let side = shape[1];
                        let (ly, lx) = (
                            ((fy / s as f32 * side as f32) as usize).min(side - 1),
                            ((fx / s as f32 * side as f32) as usize).min(side - 1),
                        );
                        t.location[at] = (ly * side + lx) as i64;
                    }
                    if rank < crops {
                        let b = if conv {
                            let half = (s as f32 * 0.25).max(1.0);
                            let lo =
                                |v: f32| ((v - half).floor().max(0.0) as i32).min(s as i32 - 1);
                            let hi =
                                |v: f32, l: i32| ((v + half).ceil() as i32).clamp(l + 1, s as i32);
                            let (y0, x0) = (lo(fy), lo(fx));
                            [y0, hi(fy, y0), x0, hi(fx, x0)]
                        } else {
                            [0, s as i32, 0, s as i32]
                        };
                        t.boxes[at * 4..at * 4 + 4].copy_from_slice(&b);
                    }
                }
            }
            t
        };
        let relmax = table(&relevance);
        let actmax = table(&activation);
        let heatmaps = conv.then(|| {
            let m = CONCEPT_HEATMAPS.min(c);
            let mut values = Vec::with_capacity(rows.len() * m * s * s);
            let mut channels = Vec::with_capacity(rows.len() * m);
            let sigma = (s as f32 * 0.2).max(1.0);
            for (r, &i) in rows.iter().enumerate() {
                let row = &relevance[r * c..(r + 1) * c];
                let mut order: Vec<usize> = (0..c).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                for &ch in order.iter().take(m) {
                    channels.push(ch as i32);
                    let (fx, fy) = focus(i, ch);
                    for y in 0..s {
                        for x in 0..s {
                            let d2 = (x as f32 + 0.5 - fx).powi(2) + (y as f32 + 0.5 - fy).powi(2);
                            values.push(row[ch] * (-d2 / (sigma * sigma)).exp());
                        }
                    }
                }
            }
            HeatmapContents {
                per_row: m,
                height: s,
                width: s,
                values,
                channels,
            }
        });
        LayerContents {
            node: CONCEPT_LAYERS[number].into(),
            tensor: format!("{}_output_0", CONCEPT_LAYERS[number]),
            shape,
            relevance,
            activation,
            relmax,
            actmax,
            heatmaps,
        }
    }
}

/// Blob centres on a spiral; the last blob (watermarks) sits apart.
fn blob_centre(b: usize, blobs: usize) -> (f32, f32) {
    if b == blobs - 1 {
        return (8.0, 0.0);
    }
    let t = b as f32 / (blobs - 1).max(1) as f32;
    let a = 1.0 + 5.0 * PI * t;
    let r = if blobs <= 2 { 0.0 } else { 1.5 + 6.0 * t };
    (-4.0 + r * a.cos(), r * a.sin())
}

/// Cluster labels renumbered by first appearance (as Prism writes them).
fn renumber(labels: &[i32]) -> Vec<i32> {
    let mut seen: Vec<i32> = Vec::new();
    labels
        .iter()
        .map(|&l| match seen.iter().position(|&s| s == l) {
            Some(p) => p as i32,
            None => {
                seen.push(l);
                seen.len() as i32 - 1
            }
        })
        .collect()
}

fn write_png(
    root: &Path,
    class: usize,
    i: usize,
    img: &[f32],
    c: usize,
    s: usize,
) -> Result<(), ViewerError> {
    let dir = root.join(class.to_string());
    std::fs::create_dir_all(&dir).map_err(|source| ViewerError::Io {
        path: dir.clone(),
        source,
    })?;
    let plane = s * s;
    let mut px = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        for ch in 0..3 {
            let v = img[ch.min(c - 1) * plane + p];
            px.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    let path = dir.join(format!("{i:06}.png"));
    image::RgbImage::from_raw(s as u32, s as u32, px)
        .ok_or_else(|| ViewerError::Image {
            path: path.clone(),
            message: "cannot make the image: its pixel buffer has the wrong size".into(),
        })?
        .save(&path)
        .map_err(|e| ViewerError::Image {
            path: path.clone(),
            message: format!("writing the image failed: {e}"),
        })
}

/// A small deterministic generator (xorshift64*), so generated projects are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0 ^ 0x9E37_79B9_7F4A_7C15;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let u = self.uniform().max(1e-7);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}
