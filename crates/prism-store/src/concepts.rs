//! Concepts files (`prism concepts`): per layer, each sample's channel ("concept") relevance and
//! activation, each channel's reference samples (RelMax, ActMax) with receptive-field crop
//! boxes, and optional conditional (CRP) heatmaps of each sample's most relevant channels.
//!
//! ```text
//! /                      prism_format "prism-concepts", prism_format_version 1,
//!                        prism_complete 1 (written last), provenance attributes
//! /index                 uint32 [N]          dataset sample number of each row (ascending)
//! /target                uint32 [N]          the class explained in each row
//! /prediction            f32    [N, classes] model outputs
//! /layers/000, /001, …   one group per layer (attributes node, tensor, shape, channels)
//!     relevance          f32 [N, C]          relevance at the layer output, summed over space
//!     activation         f32 [N, C]          activation, summed over space
//!     relmax/, actmax/   sample i64 [K, C], score f32 [K, C], location i64 [K, C],
//!                        box i32 [K, C, 4] (y0, y1, x0, x1; all 0 where not computed);
//!                        attribute crops (i64)
//!     heatmap            f32 [N, M, H, W]    only when M > 0: conditional heatmaps of the
//!     heatmap_channel    i32 [N, M]          row's M most relevant channels
//! ```
//!
//! The full contract is in `docs/formats.md` ("Concepts file"). This module holds the names
//! (for the writer, `prism concepts`, and the reader alike), the reader [`ConceptsFile`], which
//! validates the whole layout when it opens a file and reads rows and reference columns on
//! demand, and [`write_concepts`], which writes a whole file from memory (generated projects and
//! test fixtures; `prism concepts` streams its own).

use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;
use ndarray::s;

use crate::atomic::StagedFile;
use crate::error::{Result, StoreError};
use crate::h5util::{self, AttrValue};

// ---------------------------------------------------------------- names (the contract)

/// Root attribute: the format's name, [`FORMAT_NAME`].
pub const ATTR_FORMAT: &str = "prism_format";
/// Root attribute: the format's version (i64), [`FORMAT_VERSION`].
pub const ATTR_FORMAT_VERSION: &str = "prism_format_version";
/// Root attribute: i64 1 once the file is complete; written last.
pub const ATTR_COMPLETE: &str = "prism_complete";
/// Root attribute: the Prism version that wrote the file.
pub const ATTR_VERSION: &str = "prism_version";
/// Root attribute: the run key (as in attribution files).
pub const ATTR_RUN_KEY: &str = "prism_run_key";
/// Root attribute: the base key (as in attribution files).
pub const ATTR_BASE_KEY: &str = "prism_base_key";
/// Root attribute: the run's settings as JSON.
pub const ATTR_SETTINGS: &str = "prism_settings";
/// Root attribute: the model's file name.
pub const ATTR_MODEL: &str = "prism_model";
/// Root attribute: the dataset's file name.
pub const ATTR_DATASET: &str = "prism_dataset";
/// Root attribute: the explained target as given (`label`, `predicted` or a class number).
pub const ATTR_TARGET: &str = "prism_target";
/// Root attribute (i64): samples of the whole (unsharded) run.
pub const ATTR_TOTAL_SAMPLES: &str = "prism_total_samples";
/// Root attribute (i64), only in a shard's file: the shard's index.
pub const ATTR_SHARD_INDEX: &str = "prism_shard_index";
/// Root attribute (i64), only in a shard's file: the number of shards.
pub const ATTR_SHARD_COUNT: &str = "prism_shard_count";

/// The value of [`ATTR_FORMAT`] in a concepts file.
pub const FORMAT_NAME: &str = "prism-concepts";
/// The version of the layout this module reads and writes ([`ATTR_FORMAT_VERSION`]).
pub const FORMAT_VERSION: i64 = 1;

/// Dataset: uint32 \[N\], the dataset sample number of each row, ascending.
pub const INDEX: &str = "index";
/// Dataset: uint32 \[N\], the class explained in each row.
pub const TARGET: &str = "target";
/// Dataset: f32 \[N, classes\], the model's outputs.
pub const PREDICTION: &str = "prediction";
/// Group of the layers, one sub-group per layer named by [`layer_group_name`].
pub const LAYERS: &str = "layers";

/// Layer attribute (str): the ONNX node name.
pub const LAYER_NODE: &str = "node";
/// Layer attribute (str): the node's output tensor.
pub const LAYER_TENSOR: &str = "tensor";
/// Layer attribute (i64 array): one sample's output shape, `[C, H', W']` or `[C]`.
pub const LAYER_SHAPE: &str = "shape";
/// Layer attribute (i64): C, the number of channels (= `shape[0]`).
pub const LAYER_CHANNELS: &str = "channels";

/// Layer dataset: f32 \[N, C\], the relevance at the layer output summed over space.
pub const RELEVANCE: &str = "relevance";
/// Layer dataset: f32 \[N, C\], the activation summed over space.
pub const ACTIVATION: &str = "activation";
/// Layer group: the reference samples by relevance.
pub const RELMAX: &str = "relmax";
/// Layer group: the reference samples by activation.
pub const ACTMAX: &str = "actmax";
/// Attribute (i64) of a reference group: the number of references per channel whose crop box
/// was computed.
pub const CROPS: &str = "crops";
/// Reference dataset: i64 \[K, C\], sample numbers (best first), [`NO_SAMPLE`] past the run's rows.
pub const SAMPLE: &str = "sample";
/// Reference dataset: f32 \[K, C\], the scores `R_c / (Σ_c' |R_c'| + ε)`; NaN where no sample.
pub const SCORE: &str = "score";
/// Reference dataset: i64 \[K, C\], flat index over H'×W' of the channel map's maximum.
pub const LOCATION: &str = "location";
/// Reference dataset: i32 \[K, C, 4\], the crop `y0, y1, x0, x1` in input pixels, end
/// exclusive; all 0 where not computed.
pub const BOX: &str = "box";
/// Layer dataset: f32 \[N, M, H, W\], the conditional heatmaps (only when M > 0).
pub const HEATMAP: &str = "heatmap";
/// Layer dataset: i32 \[N, M\], the channels of the heatmaps (most relevant first).
pub const HEATMAP_CHANNEL: &str = "heatmap_channel";

/// The entry of [`SAMPLE`] where a run has fewer than K rows.
pub const NO_SAMPLE: i64 = -1;
/// The ε of the scores and shares, `R_c / (Σ_c' |R_c'| + ε)` (zennit-crp's `abs_norm`).
pub const SCORE_EPSILON: f32 = 1e-10;

/// The group name of layer `i` under [`LAYERS`]: `000`, `001`, … (node names hold `/`).
pub fn layer_group_name(i: usize) -> String {
    format!("{i:03}")
}

const LAYOUT_HINT: &str = "a concepts file (written by `prism concepts`) has `index`, `target`, \
                           `prediction` and `layers/NNN` groups with `relevance`, `activation`, \
                           `relmax/` and `actmax/` (see docs/formats.md, \"Concepts file\")";

// ---------------------------------------------------------------- types

/// Which reference samples: those of largest relevance or of largest activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// RelMax: the samples whose relevance share of the channel is largest.
    RelMax,
    /// ActMax: the samples whose activation share of the channel is largest.
    ActMax,
}

impl ReferenceKind {
    /// Both kinds.
    pub const ALL: [ReferenceKind; 2] = [ReferenceKind::RelMax, ReferenceKind::ActMax];

    /// The group name (`relmax`, `actmax`), also the name users type.
    pub fn name(self) -> &'static str {
        match self {
            ReferenceKind::RelMax => RELMAX,
            ReferenceKind::ActMax => ACTMAX,
        }
    }

    /// The kind named `relmax` or `actmax`.
    pub fn parse(s: &str) -> Option<ReferenceKind> {
        ReferenceKind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn slot(self) -> usize {
        match self {
            ReferenceKind::RelMax => 0,
            ReferenceKind::ActMax => 1,
        }
    }
}

/// Which per-sample channel sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelQuantity {
    /// [`RELEVANCE`].
    Relevance,
    /// [`ACTIVATION`].
    Activation,
}

impl ChannelQuantity {
    fn name(self) -> &'static str {
        match self {
            ChannelQuantity::Relevance => RELEVANCE,
            ChannelQuantity::Activation => ACTIVATION,
        }
    }
}

/// One layer of a concepts file, as described by its attributes and dataset shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptLayer {
    /// The group's name under `layers/` (`000`, …).
    pub group: String,
    /// The ONNX node name.
    pub node: String,
    /// Its output tensor's name.
    pub tensor: String,
    /// One sample's output shape, e.g. `[C, H', W']` or `[C]`.
    pub shape: Vec<usize>,
    /// C, the channels (concepts).
    pub channels: usize,
    /// K, the references kept per channel (the same for RelMax and ActMax).
    pub top_n: usize,
    /// References per channel with a computed crop box, RelMax then ActMax.
    pub crops: [usize; 2],
    /// M, the conditional heatmaps per row (0: none).
    pub heatmaps: usize,
    /// H×W of the heatmaps (the model input's spatial size), when M > 0.
    pub heatmap_size: Option<(usize, usize)>,
}

impl ConceptLayer {
    /// References per channel with a computed crop box.
    pub fn crops(&self, kind: ReferenceKind) -> usize {
        self.crops[kind.slot()]
    }

    /// Positions of one channel's map (H'·W'; 1 for a `[C]` layer).
    pub fn locations(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// A crop box in input pixels, end exclusive: `y0 ≤ y < y1`, `x0 ≤ x < x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropBox {
    pub y0: u32,
    pub y1: u32,
    pub x0: u32,
    pub x1: u32,
}

impl CropBox {
    /// `[y0, y1, x0, x1]`, the file's order.
    pub fn to_array(self) -> [u32; 4] {
        [self.y0, self.y1, self.x0, self.x1]
    }
}

/// One reference sample of a channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Its place in the channel's column (0 = best).
    pub rank: usize,
    /// The dataset sample number.
    pub sample: u32,
    /// Its score, `R_c / (Σ_c' |R_c'| + ε)` (or the activation's share for ActMax).
    pub score: f32,
    /// Flat index over H'×W' of the channel map's maximum (0 for `[C]` layers).
    pub location: u64,
    /// The receptive-field crop; `None` where it was not computed (beyond `crops`).
    pub crop: Option<CropBox>,
}

/// A whole reference table as stored, row-major: `sample`, `score`, `location` are K×C,
/// `boxes` K×C×4. Written by [`write_concepts`], read by [`ConceptsFile::reference_table`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceTable {
    /// K, references per channel.
    pub top_n: usize,
    /// C.
    pub channels: usize,
    /// References per channel whose box was computed (the group's `crops` attribute).
    pub crops: usize,
    pub sample: Vec<i64>,
    pub score: Vec<f32>,
    pub location: Vec<i64>,
    pub boxes: Vec<i32>,
}

/// The conditional heatmaps of one row of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptHeatmaps {
    /// The M channels, most relevant first.
    pub channels: Vec<u32>,
    pub height: usize,
    pub width: usize,
    /// Row-major M×H×W.
    pub values: Vec<f32>,
}

// ---------------------------------------------------------------- reader

struct LayerHandles {
    relevance: hdf5::Dataset,
    activation: hdf5::Dataset,
    /// sample, score, location, box of RelMax and ActMax.
    references: [[hdf5::Dataset; 4]; 2],
    heatmap: Option<(hdf5::Dataset, hdf5::Dataset)>,
}

/// An open concepts file, validated, reading rows and reference columns on demand.
pub struct ConceptsFile {
    path: PathBuf,
    file: hdf5::File,
    index: Vec<u32>,
    target: Vec<u32>,
    classes: usize,
    prediction: hdf5::Dataset,
    layers: Vec<ConceptLayer>,
    handles: Vec<LayerHandles>,
}

impl std::fmt::Debug for ConceptsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConceptsFile")
            .field("path", &self.path)
            .field("rows", &self.index.len())
            .field("layers", &self.layers)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Integer,
}

impl ConceptsFile {
    /// Opens a concepts file and checks its whole layout: the format name, version and
    /// completeness flag, every dataset's presence, type and shape, and their agreement (N rows
    /// everywhere, C channels per layer, K references in both tables). `index` and `target`
    /// are read now (small); everything else on demand.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = h5util::open_file(&path)?;
        let root = |name: &str| h5util::read_attr(&file, &path, "/", name);
        let invalid = |dataset: &str, message: String| StoreError::Invalid {
            path: path.clone(),
            dataset: dataset.to_string(),
            message,
        };
        let format_at = format!("/@{ATTR_FORMAT}");
        match root(ATTR_FORMAT)? {
            Some(AttrValue::Str(s)) if s == FORMAT_NAME => {}
            Some(other) => {
                return Err(invalid(
                    &format_at,
                    format!(
                        "the file's format is {other:?}, not `{FORMAT_NAME}`: it is not a concepts \
                         file (`prism concepts` writes those)"
                    ),
                ))
            }
            None => {
                return Err(invalid(
                    &format_at,
                    format!(
                        "the root attribute is missing: this is not a concepts file (`prism \
                         concepts` writes those, with `{ATTR_FORMAT} = \"{FORMAT_NAME}\"`)"
                    ),
                ))
            }
        }
        match root(ATTR_FORMAT_VERSION)? {
            Some(AttrValue::Int(FORMAT_VERSION)) => {}
            other => {
                return Err(invalid(
                    &format!("/@{ATTR_FORMAT_VERSION}"),
                    format!(
                        "the file has format version {}, but this Prism reads version \
                         {FORMAT_VERSION} (written by another Prism? use that version, or rerun \
                         `prism concepts` with this one)",
                        match other {
                            Some(AttrValue::Int(v)) => v.to_string(),
                            Some(v) => format!("{v:?}"),
                            None => "(none)".into(),
                        }
                    ),
                ))
            }
        }
        if root(ATTR_COMPLETE)? != Some(AttrValue::Int(1)) {
            return Err(invalid(
                &format!("/@{ATTR_COMPLETE}"),
                "the file is not complete (its completeness flag is not set): the `prism \
                 concepts` run that writes it was interrupted or is still running; rerun it to \
                 finish the file"
                    .into(),
            ));
        }

        let v = Validator { path: &path };
        let index_ds = v.dataset(&file, INDEX)?;
        let n = match index_ds.shape()[..] {
            [n] => n,
            _ => {
                return Err(v.shape_error(
                    INDEX,
                    &index_ds,
                    "it must be 1-D: one sample number per row".into(),
                ))
            }
        };
        let index = v.read_u32(&index_ds, INDEX, Kind::Integer)?;
        if let Some(row) = (1..n).find(|&r| index[r] <= index[r - 1]) {
            return Err(invalid(
                INDEX,
                format!(
                    "rows {} and {row} hold samples {} and {}, but sample numbers must be \
                     ascending and distinct",
                    row - 1,
                    index[row - 1],
                    index[row]
                ),
            ));
        }
        let target_ds = v.dataset(&file, TARGET)?;
        v.expect_shape(TARGET, &target_ds, &[n], "one class per row, like `index`")?;
        let target = v.read_u32(&target_ds, TARGET, Kind::Integer)?;
        let prediction = v.dataset(&file, PREDICTION)?;
        let classes = match prediction.shape()[..] {
            [rows, classes] if rows == n && classes > 0 => classes,
            _ => {
                return Err(v.shape_error(
                    PREDICTION,
                    &prediction,
                    format!("it must be {n}×classes (one row per row of `index`)"),
                ))
            }
        };
        v.check_kind(&prediction, PREDICTION, Kind::Float)?;
        h5util::check_declared(&prediction, &path, PREDICTION, false)?;

        let layers_group = v.group(&file, LAYERS)?;
        let names = layers_group
            .member_names()
            .map_err(|source| StoreError::Read {
                path: path.clone(),
                dataset: LAYERS.into(),
                source,
            })?;
        if names.is_empty() {
            return Err(invalid(
                LAYERS,
                "the group holds no layer (a concepts run records at least one)".into(),
            ));
        }
        let mut sorted = names;
        sorted.sort_by_key(|s| (s.len(), s.clone()));
        let mut layers = Vec::with_capacity(sorted.len());
        let mut handles = Vec::with_capacity(sorted.len());
        let mut heatmap_size: Option<((usize, usize), String)> = None;
        for (i, name) in sorted.iter().enumerate() {
            if *name != layer_group_name(i) {
                return Err(invalid(
                    LAYERS,
                    format!(
                        "it holds `{name}` where layer `{}` belongs: layers are numbered 000, \
                         001, … without gaps",
                        layer_group_name(i)
                    ),
                ));
            }
            let (layer, h) = v.layer(&layers_group, name, n)?;
            if let Some(size) = layer.heatmap_size {
                match &heatmap_size {
                    Some((first, at)) if *first != size => {
                        return Err(invalid(
                            &format!("{LAYERS}/{name}/{HEATMAP}"),
                            format!(
                                "its heatmaps are {}×{}, but those of `{at}` are {}×{} (every \
                                 heatmap has the model input's size)",
                                size.0, size.1, first.0, first.1
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => heatmap_size = Some((size, format!("{LAYERS}/{name}/{HEATMAP}"))),
                }
            }
            layers.push(layer);
            handles.push(h);
        }
        drop(layers_group);
        Ok(ConceptsFile {
            path,
            file,
            index,
            target,
            classes,
            prediction,
            layers,
            handles,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// N, the rows (samples of the run).
    pub fn n_rows(&self) -> usize {
        self.index.len()
    }

    /// The dataset sample number of each row, ascending.
    pub fn index(&self) -> &[u32] {
        &self.index
    }

    /// The class explained in each row.
    pub fn target(&self) -> &[u32] {
        &self.target
    }

    /// The row of dataset sample `sample`, if the run covered it.
    pub fn row_of(&self, sample: u32) -> Option<usize> {
        self.index.binary_search(&sample).ok()
    }

    /// Number of model outputs (`prediction` is N × classes).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The layers, in the file's (graph) order.
    pub fn layers(&self) -> &[ConceptLayer] {
        &self.layers
    }

    /// Reads a root attribute (provenance: model, dataset, target, settings), type-tolerantly.
    pub fn attr(&self, name: &str) -> Result<Option<AttrValue>> {
        h5util::read_attr(&self.file, &self.path, "/", name)
    }

    fn layer_at(&self, layer: usize) -> Result<(&ConceptLayer, &LayerHandles)> {
        match (self.layers.get(layer), self.handles.get(layer)) {
            (Some(l), Some(h)) => Ok((l, h)),
            _ => Err(self.usage(format!(
                "there is no layer {layer} (the file has {})",
                self.layers.len()
            ))),
        }
    }

    fn usage(&self, message: String) -> StoreError {
        StoreError::Usage {
            path: self.path.clone(),
            message,
        }
    }

    fn check_row(&self, row: usize) -> Result<()> {
        if row >= self.n_rows() {
            return Err(self.usage(format!(
                "row {row} is past the end ({} rows)",
                self.n_rows()
            )));
        }
        Ok(())
    }

    /// The model's outputs of `row`.
    pub fn prediction(&self, row: usize) -> Result<Vec<f32>> {
        self.check_row(row)?;
        h5util::read_rows_f32(&self.prediction, row, row + 1).map_err(|source| StoreError::Read {
            path: self.path.clone(),
            dataset: format!("{PREDICTION}[{row}]"),
            source,
        })
    }

    /// The relevance (or activation) of `rows` (ascending, distinct, each < N) at `layer`,
    /// summed over space: row-major `rows.len() × C`. Consecutive rows are read in one call.
    pub fn channel_rows(
        &self,
        layer: usize,
        quantity: ChannelQuantity,
        rows: &[usize],
    ) -> Result<Vec<f32>> {
        let (l, h) = self.layer_at(layer)?;
        if let Some(w) = rows.windows(2).find(|w| w[0] >= w[1]) {
            return Err(self.usage(format!(
                "rows must be ascending and distinct ({} then {})",
                w[0], w[1]
            )));
        }
        if let Some(&last) = rows.last() {
            self.check_row(last)?;
        }
        let ds = match quantity {
            ChannelQuantity::Relevance => &h.relevance,
            ChannelQuantity::Activation => &h.activation,
        };
        let mut out = Vec::with_capacity(rows.len() * l.channels);
        for (a, b) in h5util::row_runs(rows) {
            let name = format!("{LAYERS}/{}/{}", l.group, quantity.name());
            let block = h5util::read_rows_f32(ds, a, b).map_err(|source| StoreError::Read {
                path: self.path.clone(),
                dataset: format!("{name}[{a}..{b}]"),
                source,
            })?;
            if block.len() != (b - a) * l.channels {
                return Err(StoreError::Invalid {
                    path: self.path.clone(),
                    dataset: name,
                    message: format!("rows {a}..{b} read back with a wrong length"),
                });
            }
            out.extend_from_slice(&block);
        }
        Ok(out)
    }

    /// The relevance of one row at `layer`, one value per channel.
    pub fn relevance(&self, layer: usize, row: usize) -> Result<Vec<f32>> {
        self.channel_rows(layer, ChannelQuantity::Relevance, &[row])
    }

    /// The activation of one row at `layer`, one value per channel.
    pub fn activation(&self, layer: usize, row: usize) -> Result<Vec<f32>> {
        self.channel_rows(layer, ChannelQuantity::Activation, &[row])
    }

    /// The references of one channel, best first; entries without a sample (a run of fewer
    /// than K rows) are left out. Values are checked (sample numbers, finite scores, locations
    /// inside the map, well-formed boxes).
    pub fn references(
        &self,
        layer: usize,
        kind: ReferenceKind,
        channel: usize,
    ) -> Result<Vec<Reference>> {
        let (l, h) = self.layer_at(layer)?;
        if channel >= l.channels {
            return Err(self.usage(format!(
                "layer {layer} has channels 0..{}, not {channel}",
                l.channels
            )));
        }
        let [sample_ds, score_ds, location_ds, box_ds] = &h.references[kind.slot()];
        let name = |d: &str| format!("{LAYERS}/{}/{}/{d}", l.group, kind.name());
        let rerr = |d: &str| {
            let dataset = format!("{}[:, {channel}]", name(d));
            let path = self.path.clone();
            move |source| StoreError::Read {
                path,
                dataset,
                source,
            }
        };
        let sample: ndarray::Array1<i64> = sample_ds
            .read_slice(s![.., channel])
            .map_err(rerr(SAMPLE))?;
        let score: ndarray::Array1<f32> =
            score_ds.read_slice(s![.., channel]).map_err(rerr(SCORE))?;
        let location: ndarray::Array1<i64> = location_ds
            .read_slice(s![.., channel])
            .map_err(rerr(LOCATION))?;
        let boxes: ndarray::Array2<i64> =
            box_ds.read_slice(s![.., channel, ..]).map_err(rerr(BOX))?;
        let (sample, score, location, boxes) = (
            h5util::into_vec(sample),
            h5util::into_vec(score),
            h5util::into_vec(location),
            h5util::into_vec(boxes),
        );
        let column = Column {
            sample: &sample,
            score: &score,
            location: &location,
            boxes: &boxes,
        };
        if column.sample.len() != l.top_n
            || column.score.len() != l.top_n
            || column.location.len() != l.top_n
            || column.boxes.len() != 4 * l.top_n
        {
            return Err(StoreError::Invalid {
                path: self.path.clone(),
                dataset: name(SAMPLE),
                message: format!("column {channel} read back with a wrong length"),
            });
        }
        column.references(&self.path, &name(""), l, channel)
    }

    /// A whole reference table (every channel), as stored; see [`ReferenceTable`].
    pub fn reference_table(&self, layer: usize, kind: ReferenceKind) -> Result<ReferenceTable> {
        let (l, h) = self.layer_at(layer)?;
        let [sample_ds, score_ds, location_ds, box_ds] = &h.references[kind.slot()];
        let name = |d: &str| format!("{LAYERS}/{}/{}/{d}", l.group, kind.name());
        for (ds, d) in [
            (sample_ds, SAMPLE),
            (score_ds, SCORE),
            (location_ds, LOCATION),
            (box_ds, BOX),
        ] {
            h5util::check_declared(ds, &self.path, &name(d), true)?;
        }
        let rerr = |d: &str| {
            let dataset = name(d);
            let path = self.path.clone();
            move |source| StoreError::Read {
                path,
                dataset,
                source,
            }
        };
        let (k, cs) = (l.top_n, l.channels);
        let sample = sample_ds.read_raw::<i64>().map_err(rerr(SAMPLE))?;
        let score = score_ds.read_raw::<f32>().map_err(rerr(SCORE))?;
        let location = location_ds.read_raw::<i64>().map_err(rerr(LOCATION))?;
        let boxes = box_ds.read_raw::<i64>().map_err(rerr(BOX))?;
        if sample.len() != k * cs
            || score.len() != k * cs
            || location.len() != k * cs
            || boxes.len() != 4 * k * cs
        {
            return Err(StoreError::Invalid {
                path: self.path.clone(),
                dataset: name(SAMPLE),
                message: "the table read back with a wrong length".into(),
            });
        }
        // Every column is checked as `references` checks one (boxes then fit i32).
        for c in 0..cs {
            let pick = |v: &[i64]| (0..k).map(|r| v[r * cs + c]).collect::<Vec<_>>();
            let column_boxes: Vec<i64> = (0..k)
                .flat_map(|r| {
                    boxes[(r * cs + c) * 4..(r * cs + c) * 4 + 4]
                        .iter()
                        .copied()
                })
                .collect();
            Column {
                sample: &pick(&sample),
                score: &(0..k).map(|r| score[r * cs + c]).collect::<Vec<_>>(),
                location: &pick(&location),
                boxes: &column_boxes,
            }
            .references(&self.path, &name(""), l, c)?;
        }
        Ok(ReferenceTable {
            top_n: k,
            channels: cs,
            crops: l.crops(kind),
            sample,
            score,
            location,
            boxes: boxes.into_iter().map(|b| b as i32).collect(),
        })
    }

    /// The conditional heatmaps of `row` at `layer`; `None` when the layer has none (M = 0).
    pub fn heatmaps(&self, layer: usize, row: usize) -> Result<Option<ConceptHeatmaps>> {
        let (l, h) = self.layer_at(layer)?;
        self.check_row(row)?;
        let (Some((heatmap, channel_ds)), Some((height, width))) = (&h.heatmap, l.heatmap_size)
        else {
            return Ok(None);
        };
        let channels = self.heatmap_channels(l, channel_ds, row)?;
        let values =
            h5util::read_rows_f32(heatmap, row, row + 1).map_err(|source| StoreError::Read {
                path: self.path.clone(),
                dataset: format!("{LAYERS}/{}/{HEATMAP}[{row}]", l.group),
                source,
            })?;
        Ok(Some(ConceptHeatmaps {
            channels,
            height,
            width,
            values,
        }))
    }

    /// The channels that have a conditional heatmap in `row` (most relevant first); empty when
    /// the layer has none.
    pub fn heatmap_channels_of(&self, layer: usize, row: usize) -> Result<Vec<u32>> {
        let (l, h) = self.layer_at(layer)?;
        self.check_row(row)?;
        match &h.heatmap {
            Some((_, channel_ds)) => self.heatmap_channels(l, channel_ds, row),
            None => Ok(Vec::new()),
        }
    }

    /// The conditional heatmap of channel `channel` in `row` (H×W, row-major); `None` when that
    /// channel is not among the row's heatmaps.
    pub fn heatmap(&self, layer: usize, row: usize, channel: u32) -> Result<Option<Vec<f32>>> {
        let (l, h) = self.layer_at(layer)?;
        self.check_row(row)?;
        let Some((heatmap, channel_ds)) = &h.heatmap else {
            return Ok(None);
        };
        let channels = self.heatmap_channels(l, channel_ds, row)?;
        let Some(m) = channels.iter().position(|&c| c == channel) else {
            return Ok(None);
        };
        let arr: ndarray::Array2<f32> =
            heatmap
                .read_slice(s![row, m, .., ..])
                .map_err(|source| StoreError::Read {
                    path: self.path.clone(),
                    dataset: format!("{LAYERS}/{}/{HEATMAP}[{row}, {m}]", l.group),
                    source,
                })?;
        Ok(Some(h5util::into_vec(arr)))
    }

    fn heatmap_channels(
        &self,
        l: &ConceptLayer,
        ds: &hdf5::Dataset,
        row: usize,
    ) -> Result<Vec<u32>> {
        let name = format!("{LAYERS}/{}/{HEATMAP_CHANNEL}", l.group);
        let arr: ndarray::Array1<i64> =
            ds.read_slice(s![row, ..])
                .map_err(|source| StoreError::Read {
                    path: self.path.clone(),
                    dataset: format!("{name}[{row}]"),
                    source,
                })?;
        let mut out = Vec::with_capacity(arr.len());
        for (m, &c) in arr.iter().enumerate() {
            match u32::try_from(c) {
                Ok(c) if (c as usize) < l.channels && !out.contains(&c) => out.push(c),
                _ => {
                    return Err(StoreError::Invalid {
                        path: self.path.clone(),
                        dataset: name,
                        message: format!(
                            "row {row}, heatmap {m} names channel {c}, but the layer's channels \
                             are 0..{} and each appears once per row",
                            l.channels
                        ),
                    })
                }
            }
        }
        Ok(out)
    }
}

/// One column of a reference table, checked into [`Reference`]s.
struct Column<'a> {
    sample: &'a [i64],
    score: &'a [f32],
    location: &'a [i64],
    boxes: &'a [i64],
}

impl Column<'_> {
    fn references(
        &self,
        path: &Path,
        group: &str,
        l: &ConceptLayer,
        channel: usize,
    ) -> Result<Vec<Reference>> {
        let invalid = |d: &str, message: String| StoreError::Invalid {
            path: path.to_path_buf(),
            dataset: format!("{group}{d}"),
            message,
        };
        let locations = l.locations() as u64;
        let mut out = Vec::new();
        let mut ended = false;
        for k in 0..self.sample.len() {
            let s = self.sample[k];
            if s == NO_SAMPLE {
                if self.boxes[4 * k..4 * k + 4].iter().any(|&v| v != 0) {
                    return Err(invalid(
                        BOX,
                        format!(
                            "channel {channel}, reference {k} has no sample but the box {:?} \
                             (all 0 where there is no sample)",
                            &self.boxes[4 * k..4 * k + 4]
                        ),
                    ));
                }
                ended = true;
                continue;
            }
            let sample = match u32::try_from(s) {
                Ok(v) if !ended => v,
                _ => {
                    return Err(invalid(
                        SAMPLE,
                        format!(
                            "channel {channel}, reference {k} holds {s}: sample numbers are in \
                             0..2³², and {NO_SAMPLE} (no sample) only after the last reference"
                        ),
                    ))
                }
            };
            let score = self.score[k];
            if !score.is_finite() {
                return Err(invalid(
                    SCORE,
                    format!("channel {channel}, reference {k} (sample {sample}) scores {score}"),
                ));
            }
            let location = match u64::try_from(self.location[k]) {
                Ok(v) if v < locations.max(1) => v,
                _ => {
                    return Err(invalid(
                        LOCATION,
                        format!(
                            "channel {channel}, reference {k} holds {}, but the channel map has \
                             {locations} positions",
                            self.location[k]
                        ),
                    ))
                }
            };
            let b = &self.boxes[4 * k..4 * k + 4];
            let crop = if b.iter().all(|&v| v == 0) {
                None
            } else {
                let ok = b.iter().all(|&v| (0..=i64::from(i32::MAX)).contains(&v))
                    && b[0] < b[1]
                    && b[2] < b[3];
                if !ok {
                    return Err(invalid(
                        BOX,
                        format!(
                            "channel {channel}, reference {k} holds {b:?}, but a box is y0, y1, \
                             x0, x1 with 0 ≤ y0 < y1 and 0 ≤ x0 < x1 (or all 0: not computed)"
                        ),
                    ));
                }
                Some(CropBox {
                    y0: b[0] as u32,
                    y1: b[1] as u32,
                    x0: b[2] as u32,
                    x1: b[3] as u32,
                })
            };
            out.push(Reference {
                rank: k,
                sample,
                score,
                location,
                crop,
            });
        }
        Ok(out)
    }
}

/// Checks of the reader, naming the file.
struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn missing(&self, name: &str) -> StoreError {
        StoreError::MissingDataset {
            path: self.path.to_path_buf(),
            dataset: name.to_string(),
            hint: LAYOUT_HINT.into(),
        }
    }

    fn read_error(&self, name: &str) -> impl FnOnce(hdf5::Error) -> StoreError {
        let path = self.path.to_path_buf();
        let dataset = name.to_string();
        move |source| StoreError::Read {
            path,
            dataset,
            source,
        }
    }

    /// The dataset `name` of `group` (`full` names it in errors).
    fn dataset_in(&self, group: &hdf5::Group, name: &str, full: &str) -> Result<hdf5::Dataset> {
        if !group.link_exists(name) {
            return Err(self.missing(full));
        }
        group.dataset(name).map_err(|source| {
            if group.group(name).is_ok() {
                StoreError::Dtype {
                    path: self.path.to_path_buf(),
                    dataset: full.to_string(),
                    found: "a group".into(),
                    expected: "it must be a dataset".into(),
                }
            } else {
                self.read_error(full)(source)
            }
        })
    }

    fn dataset(&self, file: &hdf5::File, name: &str) -> Result<hdf5::Dataset> {
        self.dataset_in(file, name, name)
    }

    fn group_in(&self, parent: &hdf5::Group, name: &str, full: &str) -> Result<hdf5::Group> {
        if !parent.link_exists(name) {
            return Err(self.missing(full));
        }
        parent.group(name).map_err(|_| StoreError::Dtype {
            path: self.path.to_path_buf(),
            dataset: full.to_string(),
            found: "a dataset".into(),
            expected: "it must be a group".into(),
        })
    }

    fn group(&self, file: &hdf5::File, name: &str) -> Result<hdf5::Group> {
        self.group_in(file, name, name)
    }

    fn shape_error(&self, name: &str, ds: &hdf5::Dataset, expected: String) -> StoreError {
        StoreError::Shape {
            path: self.path.to_path_buf(),
            dataset: name.to_string(),
            found: ds.shape(),
            expected,
        }
    }

    fn expect_shape(
        &self,
        name: &str,
        ds: &hdf5::Dataset,
        want: &[usize],
        why: &str,
    ) -> Result<()> {
        if ds.shape() != want {
            return Err(self.shape_error(name, ds, format!("it must be {want:?} ({why})")));
        }
        Ok(())
    }

    fn check_kind(&self, ds: &hdf5::Dataset, name: &str, kind: Kind) -> Result<()> {
        let desc = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(self.read_error(name))?;
        let ok = match desc {
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => kind == Kind::Integer,
            TypeDescriptor::Float(_) => kind == Kind::Float,
            _ => false,
        };
        if !ok {
            return Err(StoreError::Dtype {
                path: self.path.to_path_buf(),
                dataset: name.to_string(),
                found: h5util::describe(&desc),
                expected: match kind {
                    Kind::Integer => "it must hold integers".into(),
                    Kind::Float => "it must hold floating-point numbers (float32)".into(),
                },
            });
        }
        Ok(())
    }

    /// A small 1-D integer dataset read whole, each value in 0..2³².
    fn read_u32(&self, ds: &hdf5::Dataset, name: &str, kind: Kind) -> Result<Vec<u32>> {
        self.check_kind(ds, name, kind)?;
        h5util::check_declared(ds, self.path, name, true)?;
        let raw = ds.read_raw::<i64>().map_err(self.read_error(name))?;
        raw.into_iter()
            .enumerate()
            .map(|(row, x)| {
                u32::try_from(x).map_err(|_| StoreError::Invalid {
                    path: self.path.to_path_buf(),
                    dataset: name.to_string(),
                    message: format!("row {row} holds {x}, but values must be in 0..2³²"),
                })
            })
            .collect()
    }

    fn string_attr(&self, loc: &hdf5::Location, owner: &str, name: &str) -> Result<String> {
        match h5util::read_attr(loc, self.path, owner, name)? {
            Some(AttrValue::Str(s)) => Ok(s),
            other => Err(self.bad_attr(owner, name, other, "a string")),
        }
    }

    fn bad_attr(
        &self,
        owner: &str,
        name: &str,
        found: Option<AttrValue>,
        want: &str,
    ) -> StoreError {
        StoreError::Invalid {
            path: self.path.to_path_buf(),
            dataset: format!("{owner}@{name}"),
            message: match found {
                None => format!("the attribute is missing; it must be {want}"),
                Some(v) => format!("the attribute holds {v:?}; it must be {want}"),
            },
        }
    }

    fn count_attr(&self, loc: &hdf5::Location, owner: &str, name: &str) -> Result<usize> {
        match h5util::read_attr(loc, self.path, owner, name)? {
            Some(AttrValue::Int(v)) if v >= 0 => Ok(v as usize),
            other => Err(self.bad_attr(owner, name, other, "a non-negative integer")),
        }
    }

    /// One layer group: attributes, datasets, shapes, types.
    fn layer(
        &self,
        parent: &hdf5::Group,
        name: &str,
        n: usize,
    ) -> Result<(ConceptLayer, LayerHandles)> {
        let owner = format!("{LAYERS}/{name}");
        let g = self.group_in(parent, name, &owner)?;
        let node = self.string_attr(&g, &owner, LAYER_NODE)?;
        let tensor = self.string_attr(&g, &owner, LAYER_TENSOR)?;
        let shape_attr = h5util::read_attr(&g, self.path, &owner, LAYER_SHAPE)?;
        let shape: Vec<usize> = match &shape_attr {
            Some(AttrValue::IntArray(v)) if !v.is_empty() && v.iter().all(|&d| d > 0) => {
                v.iter().map(|&d| d as usize).collect()
            }
            Some(AttrValue::Int(d)) if *d > 0 => vec![*d as usize],
            _ => {
                return Err(self.bad_attr(
                    &owner,
                    LAYER_SHAPE,
                    shape_attr,
                    "one sample's output shape, positive integers ([C, H', W'] or [C])",
                ))
            }
        };
        let channels = self.count_attr(&g, &owner, LAYER_CHANNELS)?;
        if channels != shape[0] {
            return Err(StoreError::Invalid {
                path: self.path.to_path_buf(),
                dataset: format!("{owner}@{LAYER_CHANNELS}"),
                message: format!(
                    "the layer has {channels} channels, but its shape is {shape:?} (channels = \
                     shape[0])"
                ),
            });
        }
        let mut channel_sums = Vec::with_capacity(2);
        for d in [RELEVANCE, ACTIVATION] {
            let full = format!("{owner}/{d}");
            let ds = self.dataset_in(&g, d, &full)?;
            self.expect_shape(&full, &ds, &[n, channels], "rows × channels")?;
            self.check_kind(&ds, &full, Kind::Float)?;
            h5util::check_declared(&ds, self.path, &full, false)?;
            channel_sums.push(ds);
        }
        let mut top_n: Option<(usize, String)> = None;
        let mut crops = [0usize; 2];
        let mut references = Vec::with_capacity(2);
        for kind in ReferenceKind::ALL {
            let gname = format!("{owner}/{}", kind.name());
            let rg = self.group_in(&g, kind.name(), &gname)?;
            let mut four = Vec::with_capacity(4);
            for (d, k) in [
                (SAMPLE, Kind::Integer),
                (SCORE, Kind::Float),
                (LOCATION, Kind::Integer),
                (BOX, Kind::Integer),
            ] {
                let full = format!("{gname}/{d}");
                let ds = self.dataset_in(&rg, d, &full)?;
                let shape = ds.shape();
                let k_here = match (d, &shape[..]) {
                    (BOX, [k, c, 4]) if *c == channels => *k,
                    (BOX, _) => {
                        return Err(self.shape_error(
                            &full,
                            &ds,
                            format!("it must be K×{channels}×4 (y0, y1, x0, x1 per reference)"),
                        ))
                    }
                    (_, [k, c]) if *c == channels => *k,
                    _ => {
                        return Err(self.shape_error(
                            &full,
                            &ds,
                            format!("it must be K×{channels} (references × channels)"),
                        ))
                    }
                };
                match &top_n {
                    Some((k, at)) if *k != k_here => {
                        return Err(self.shape_error(
                            &full,
                            &ds,
                            format!("it must have K = {k} rows, like `{at}`"),
                        ))
                    }
                    Some(_) => {}
                    None => top_n = Some((k_here, full.clone())),
                }
                self.check_kind(&ds, &full, k)?;
                h5util::check_declared(&ds, self.path, &full, true)?;
                four.push(ds);
            }
            let c = self.count_attr(&rg, &gname, CROPS)?;
            let k = top_n.as_ref().map_or(0, |t| t.0);
            if c > k {
                return Err(StoreError::Invalid {
                    path: self.path.to_path_buf(),
                    dataset: format!("{gname}@{CROPS}"),
                    message: format!("{c} crops computed, but only K = {k} references are kept"),
                });
            }
            crops[kind.slot()] = c;
            let [a, b, c, d]: [hdf5::Dataset; 4] =
                four.try_into().map_err(|_| self.missing(&gname))?;
            references.push([a, b, c, d]);
        }
        let (heatmaps, heatmap_size, heatmap) =
            match (g.link_exists(HEATMAP), g.link_exists(HEATMAP_CHANNEL)) {
                (false, false) => (0, None, None),
                (true, false) => return Err(self.missing(&format!("{owner}/{HEATMAP_CHANNEL}"))),
                (false, true) => return Err(self.missing(&format!("{owner}/{HEATMAP}"))),
                (true, true) => {
                    let full = format!("{owner}/{HEATMAP}");
                    let hm = self.dataset_in(&g, HEATMAP, &full)?;
                    let (m, h, w) = match hm.shape()[..] {
                        [rows, m, h, w] if rows == n && h > 0 && w > 0 => (m, h, w),
                        _ => {
                            return Err(self.shape_error(
                                &full,
                                &hm,
                                format!("it must be {n}×M×H×W (rows × heatmaps × input size)"),
                            ))
                        }
                    };
                    self.check_kind(&hm, &full, Kind::Float)?;
                    h5util::check_declared(&hm, self.path, &full, false)?;
                    let cfull = format!("{owner}/{HEATMAP_CHANNEL}");
                    let ch = self.dataset_in(&g, HEATMAP_CHANNEL, &cfull)?;
                    self.expect_shape(&cfull, &ch, &[n, m], "rows × heatmaps, like `heatmap`")?;
                    self.check_kind(&ch, &cfull, Kind::Integer)?;
                    h5util::check_declared(&ch, self.path, &cfull, false)?;
                    if m > channels {
                        return Err(self.shape_error(
                            &full,
                            &hm,
                            format!("it holds more heatmaps per row than the {channels} channels"),
                        ));
                    }
                    (m, (m > 0).then_some((h, w)), (m > 0).then_some((hm, ch)))
                }
            };
        let [relevance, activation]: [hdf5::Dataset; 2] =
            channel_sums.try_into().map_err(|_| self.missing(&owner))?;
        let [relmax, actmax]: [[hdf5::Dataset; 4]; 2] =
            references.try_into().map_err(|_| self.missing(&owner))?;
        Ok((
            ConceptLayer {
                group: name.to_string(),
                node,
                tensor,
                shape,
                channels,
                top_n: top_n.map_or(0, |t| t.0),
                crops,
                heatmaps,
                heatmap_size,
            },
            LayerHandles {
                relevance,
                activation,
                references: [relmax, actmax],
                heatmap,
            },
        ))
    }
}

// ---------------------------------------------------------------- whole-file writer

/// Everything of one layer, for [`write_concepts`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerContents {
    pub node: String,
    pub tensor: String,
    /// One sample's output shape; `shape[0]` is C.
    pub shape: Vec<usize>,
    /// Row-major N×C.
    pub relevance: Vec<f32>,
    /// Row-major N×C.
    pub activation: Vec<f32>,
    pub relmax: ReferenceTable,
    pub actmax: ReferenceTable,
    /// The conditional heatmaps, if any (M > 0).
    pub heatmaps: Option<HeatmapContents>,
}

/// The heatmaps of a layer, for [`write_concepts`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapContents {
    /// M, heatmaps per row.
    pub per_row: usize,
    pub height: usize,
    pub width: usize,
    /// Row-major N×M×H×W.
    pub values: Vec<f32>,
    /// Row-major N×M: the channel of each heatmap.
    pub channels: Vec<i32>,
}

/// A whole concepts file, for [`write_concepts`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptsContents {
    /// Root attributes besides the format, version and completeness flag (provenance:
    /// [`ATTR_VERSION`], [`ATTR_MODEL`], …), written in this order.
    pub attrs: Vec<(String, AttrValue)>,
    /// The dataset sample number of each row, ascending.
    pub index: Vec<u32>,
    pub target: Vec<u32>,
    /// Model outputs per row.
    pub classes: usize,
    /// Row-major N×classes.
    pub prediction: Vec<f32>,
    pub layers: Vec<LayerContents>,
}

/// Writes a whole concepts file from memory, under a temporary name that is renamed into place
/// once complete; the completeness flag is written last. For generated projects and test
/// fixtures (`prism concepts` streams its rows with its own writer); the sizes are checked, the
/// values are written as given.
pub fn write_concepts(path: impl AsRef<Path>, contents: &ConceptsContents) -> Result<()> {
    let target = StagedFile::new(path.as_ref());
    let fpath = target.final_path().to_path_buf();
    let usage = |message: String| StoreError::Usage {
        path: fpath.clone(),
        message,
    };
    let n = contents.index.len();
    if contents.target.len() != n || contents.prediction.len() != n * contents.classes {
        return Err(usage(format!(
            "{n} rows, but {} targets and {} predictions of {} classes",
            contents.target.len(),
            contents.prediction.len(),
            contents.classes
        )));
    }
    let file = hdf5::File::create(target.temp_path()).map_err(|source| StoreError::Create {
        path: fpath.clone(),
        source,
    })?;
    let werr = |name: &str| {
        let path = fpath.clone();
        let dataset = name.to_string();
        move |source| StoreError::Write {
            path,
            dataset,
            source,
        }
    };
    let attr = |loc: &hdf5::Location, owner: &str, name: &str, v: AttrValue| {
        h5util::write_attr(loc, &fpath, owner, name, &v)
    };
    attr(&file, "/", ATTR_FORMAT, AttrValue::Str(FORMAT_NAME.into()))?;
    attr(
        &file,
        "/",
        ATTR_FORMAT_VERSION,
        AttrValue::Int(FORMAT_VERSION),
    )?;
    for (k, v) in &contents.attrs {
        attr(&file, "/", k, v.clone())?;
    }
    file.new_dataset_builder()
        .with_data(contents.index.as_slice())
        .create(INDEX)
        .map_err(werr(INDEX))?;
    file.new_dataset_builder()
        .with_data(contents.target.as_slice())
        .create(TARGET)
        .map_err(werr(TARGET))?;
    let pred = ndarray::ArrayView2::from_shape((n, contents.classes), &contents.prediction)
        .map_err(|e| usage(format!("{PREDICTION}: {e}")))?;
    file.new_dataset_builder()
        .with_data(&pred)
        .create(PREDICTION)
        .map_err(werr(PREDICTION))?;
    let layers = file.create_group(LAYERS).map_err(werr(LAYERS))?;
    for (i, l) in contents.layers.iter().enumerate() {
        let gname = layer_group_name(i);
        let owner = format!("{LAYERS}/{gname}");
        let c = match l.shape.first() {
            Some(&c) if l.shape.iter().all(|&d| d > 0) => c,
            _ => {
                return Err(usage(format!(
                    "{owner}: a layer's shape must be [C, …] of positive sizes, not {:?}",
                    l.shape
                )))
            }
        };
        let g = layers.create_group(&gname).map_err(werr(&owner))?;
        attr(&g, &owner, LAYER_NODE, AttrValue::Str(l.node.clone()))?;
        attr(&g, &owner, LAYER_TENSOR, AttrValue::Str(l.tensor.clone()))?;
        attr(
            &g,
            &owner,
            LAYER_SHAPE,
            AttrValue::IntArray(l.shape.iter().map(|&d| d as i64).collect()),
        )?;
        attr(&g, &owner, LAYER_CHANNELS, AttrValue::Int(c as i64))?;
        for (name, values) in [(RELEVANCE, &l.relevance), (ACTIVATION, &l.activation)] {
            let full = format!("{owner}/{name}");
            let arr = ndarray::ArrayView2::from_shape((n, c), values)
                .map_err(|e| usage(format!("{full}: {e}")))?;
            g.new_dataset_builder()
                .with_data(&arr)
                .create(name)
                .map_err(werr(&full))?;
        }
        for (kind, t) in [
            (ReferenceKind::RelMax, &l.relmax),
            (ReferenceKind::ActMax, &l.actmax),
        ] {
            let rname = format!("{owner}/{}", kind.name());
            let k = t.top_n;
            let bad = |e: ndarray::ShapeError| usage(format!("{rname}: {e}"));
            let rg = g.create_group(kind.name()).map_err(werr(&rname))?;
            attr(&rg, &rname, CROPS, AttrValue::Int(t.crops as i64))?;
            let sample = ndarray::ArrayView2::from_shape((k, c), &t.sample).map_err(bad)?;
            rg.new_dataset_builder()
                .with_data(&sample)
                .create(SAMPLE)
                .map_err(werr(&format!("{rname}/{SAMPLE}")))?;
            let score = ndarray::ArrayView2::from_shape((k, c), &t.score).map_err(bad)?;
            rg.new_dataset_builder()
                .with_data(&score)
                .create(SCORE)
                .map_err(werr(&format!("{rname}/{SCORE}")))?;
            let location = ndarray::ArrayView2::from_shape((k, c), &t.location).map_err(bad)?;
            rg.new_dataset_builder()
                .with_data(&location)
                .create(LOCATION)
                .map_err(werr(&format!("{rname}/{LOCATION}")))?;
            let boxes = ndarray::ArrayView3::from_shape((k, c, 4), &t.boxes).map_err(bad)?;
            rg.new_dataset_builder()
                .with_data(&boxes)
                .create(BOX)
                .map_err(werr(&format!("{rname}/{BOX}")))?;
        }
        if let Some(h) = &l.heatmaps {
            let full = format!("{owner}/{HEATMAP}");
            let arr = ndarray::ArrayView4::from_shape((n, h.per_row, h.height, h.width), &h.values)
                .map_err(|e| usage(format!("{full}: {e}")))?;
            g.new_dataset_builder()
                .with_data(&arr)
                .create(HEATMAP)
                .map_err(werr(&full))?;
            let cfull = format!("{owner}/{HEATMAP_CHANNEL}");
            let arr = ndarray::ArrayView2::from_shape((n, h.per_row), &h.channels)
                .map_err(|e| usage(format!("{cfull}: {e}")))?;
            g.new_dataset_builder()
                .with_data(&arr)
                .create(HEATMAP_CHANNEL)
                .map_err(werr(&cfull))?;
        }
    }
    drop(layers);
    attr(&file, "/", ATTR_COMPLETE, AttrValue::Int(1))?;
    file.close().map_err(werr("/"))?;
    target.commit()?;
    Ok(())
}
