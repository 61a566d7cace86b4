//! Relevance recorded at hidden nodes (`prism attribute --record`), stored in the attribution
//! file in a group ViRelAy ignores (it reads only `attribution`, `prediction`, `label` and
//! `index`):
//!
//! ```text
//! /record                 group; attrs format "prism-record", version 1, mode
//!                         "channels" | "maps", top_k (the K asked for)
//! /record/000, 001, …     one group per recorded node, in graph order; attrs node, tensor,
//!                         sample_shape (one sample's tensor shape, e.g. [C, H, W])
//!   relevance             f32 [N, C] (channels: summed over space) or [N, …sample_shape] (maps)
//!   activation            f32, shaped alike
//!   top_channels          i64 [N, k] (k = min(K, C)): the most relevant channels, largest first
//!   top_share             f32 [N, k]: their shares R_c / Σ_c' |R_c'|
//! ```
//!
//! The quantities are those of `prism explain --record` (`prism_attribution::Recorded`,
//! `Recorded::top_channels`); this module only lays them out. Rows follow the file's rows.

use prism_attribution::RecordMode;

use super::{check_numeric, open_dataset, row_selection, AttributionFile, AttributionWriter};
use crate::error::{Result, StoreError};
use crate::h5util::{self, AttrValue};

/// The group holding the recorded nodes.
pub const RECORD: &str = "record";
/// The `format` attribute of [`RECORD`].
pub const RECORD_FORMAT: &str = "prism-record";
/// The `version` attribute of [`RECORD`].
pub const RECORD_VERSION: i64 = 1;

const RELEVANCE: &str = "relevance";
const ACTIVATION: &str = "activation";
const TOP_CHANNELS: &str = "top_channels";
const TOP_SHARE: &str = "top_share";

const RECORD_HINT: &str = "a Prism record group `/record` holds groups 000, 001, … with \
                           datasets `relevance`, `activation`, `top_channels` and `top_share` \
                           (rerun `prism attribute --record`)";

/// What a file records: the mode, the top-k asked for and the nodes, in graph order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLayout {
    /// Per channel (summed over space) or whole.
    pub mode: RecordMode,
    /// Channels per row in the top tables as asked for; a node with fewer channels has all of
    /// them ([`RecordNodeLayout::k`]). At least 1.
    pub top_k: usize,
    pub nodes: Vec<RecordNodeLayout>,
}

/// One recorded node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordNodeLayout {
    /// The node, as the model file names it.
    pub node: String,
    /// The tensor recorded (the node's first output).
    pub tensor: String,
    /// The tensor's shape for one sample (`[C, H, W]`, `[F]`, …).
    pub sample_shape: Vec<usize>,
}

impl RecordNodeLayout {
    /// Channels: the first axis of one sample's tensor (1 for one value per sample).
    pub fn channels(&self) -> usize {
        self.sample_shape.first().copied().unwrap_or(1)
    }

    /// Shape of one row of `relevance` and `activation`: `[C]` (channels) or the sample's
    /// shape (maps).
    pub fn row_shape(&self, mode: RecordMode) -> Vec<usize> {
        match mode {
            RecordMode::Channels => vec![self.channels()],
            RecordMode::Maps => self.sample_shape.clone(),
        }
    }

    /// Values in one row of `relevance` and `activation`.
    pub fn row_len(&self, mode: RecordMode) -> usize {
        self.row_shape(mode).iter().product()
    }

    /// Columns of the top tables: `min(top_k, C)`.
    pub fn k(&self, top_k: usize) -> usize {
        top_k.min(self.channels())
    }
}

/// Rows of one recorded node, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordRows {
    /// `rows × row_len` (see [`RecordNodeLayout::row_shape`]).
    pub relevance: Vec<f32>,
    /// Shaped as `relevance`.
    pub activation: Vec<f32>,
    /// `rows × k`: the most relevant channels, largest first.
    pub top_channels: Vec<i64>,
    /// `rows × k`: their shares of the absolute total.
    pub top_share: Vec<f32>,
}

/// The `/record` group of a file being written.
pub(super) struct RecordWriter {
    layout: RecordLayout,
    nodes: Vec<NodeWriter>,
    _group: hdf5::Group,
}

struct NodeWriter {
    relevance: hdf5::Dataset,
    activation: hdf5::Dataset,
    top_channels: hdf5::Dataset,
    top_share: hdf5::Dataset,
    written: Vec<bool>,
    _group: hdf5::Group,
}

impl RecordWriter {
    /// The first row of any node that was never written.
    pub(super) fn unwritten(&self) -> Option<(usize, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .find_map(|(i, n)| n.written.iter().position(|w| !w).map(|row| (i, row)))
    }
}

fn group_name(i: usize) -> String {
    format!("{i:03}")
}

impl AttributionWriter {
    /// Adds the `/record` group, sized for every row of the file: call once, then write each
    /// node's rows with [`write_record_rows`](Self::write_record_rows) (every row of every
    /// node must be written before [`finish`](Self::finish)). `relevance` and `activation`
    /// are chunked by whole rows and compressed as `attribution` is.
    pub fn add_record(&mut self, layout: RecordLayout) -> Result<()> {
        let path = self.target.final_path().to_path_buf();
        let usage = |message: String| StoreError::Usage {
            path: path.clone(),
            message,
        };
        if self.record.is_some() {
            return Err(usage("the record group was added already".into()));
        }
        if layout.top_k == 0 {
            return Err(usage("a record's top_k must be at least 1".into()));
        }
        if layout.nodes.is_empty() {
            return Err(usage("a record needs at least one node".into()));
        }
        let werr = |name: String| {
            let path = path.clone();
            move |source| StoreError::Write {
                path,
                dataset: name,
                source,
            }
        };
        let n = self.layout.n_samples;
        let group = self
            .file
            .create_group(RECORD)
            .map_err(werr(RECORD.into()))?;
        for (name, value) in [
            ("format", AttrValue::Str(RECORD_FORMAT.into())),
            ("version", AttrValue::Int(RECORD_VERSION)),
            ("mode", AttrValue::Str(layout.mode.name().into())),
            ("top_k", AttrValue::Int(count_attr(layout.top_k, &path)?)),
        ] {
            h5util::write_attr(&group, &path, RECORD, name, &value)?;
        }
        let mut nodes = Vec::with_capacity(layout.nodes.len());
        for (i, node) in layout.nodes.iter().enumerate() {
            let gname = format!("{RECORD}/{}", group_name(i));
            let row_shape = node.row_shape(layout.mode);
            if node.sample_shape.contains(&0) {
                return Err(usage(format!(
                    "recorded node '{}' has an empty sample shape {:?}",
                    node.node, node.sample_shape
                )));
            }
            let g = group
                .create_group(&group_name(i))
                .map_err(werr(gname.clone()))?;
            let sample_shape = node
                .sample_shape
                .iter()
                .map(|&d| count_attr(d, &path))
                .collect::<Result<Vec<i64>>>()?;
            for (name, value) in [
                ("node", AttrValue::Str(node.node.clone())),
                ("tensor", AttrValue::Str(node.tensor.clone())),
                ("sample_shape", AttrValue::IntArray(sample_shape)),
            ] {
                h5util::write_attr(&g, &path, &gname, name, &value)?;
            }
            let mut shape = vec![n];
            shape.extend_from_slice(&row_shape);
            // Chunks of whole rows, about 1 MiB (as `attribution`).
            let row_len = node.row_len(layout.mode);
            let rows_per_chunk = (262_144 / row_len.max(1)).clamp(1, n);
            let mut chunk = vec![rows_per_chunk];
            chunk.extend_from_slice(&row_shape);
            let values = |name: &str| {
                let mut b = g
                    .new_dataset::<f32>()
                    .shape(shape.clone())
                    .chunk(chunk.clone());
                if let Some(level) = self.layout.compression {
                    b = b.deflate(level.min(9));
                }
                b.create(name).map_err(werr(format!("{gname}/{name}")))
            };
            let relevance = values(RELEVANCE)?;
            let activation = values(ACTIVATION)?;
            let k = node.k(layout.top_k);
            let top_channels = g
                .new_dataset::<i64>()
                .shape([n, k])
                .create(TOP_CHANNELS)
                .map_err(werr(format!("{gname}/{TOP_CHANNELS}")))?;
            let top_share = g
                .new_dataset::<f32>()
                .shape([n, k])
                .create(TOP_SHARE)
                .map_err(werr(format!("{gname}/{TOP_SHARE}")))?;
            nodes.push(NodeWriter {
                relevance,
                activation,
                top_channels,
                top_share,
                written: vec![false; n],
                _group: g,
            });
        }
        self.record = Some(RecordWriter {
            layout,
            nodes,
            _group: group,
        });
        Ok(())
    }

    /// Writes rows `start .. start + rows` of recorded node `node` (its place in
    /// [`RecordLayout::nodes`]); the number of rows is read off `rows.top_channels`.
    pub fn write_record_rows(
        &mut self,
        node: usize,
        start: usize,
        rows: &RecordRows,
    ) -> Result<()> {
        let path = self.target.final_path().to_path_buf();
        let usage = |message: String| StoreError::Usage {
            path: path.clone(),
            message,
        };
        let n_samples = self.layout.n_samples;
        let Some(rec) = self.record.as_mut() else {
            return Err(usage(
                "record rows need the record group first (add_record)".into(),
            ));
        };
        let (Some(layout), Some(w)) = (rec.layout.nodes.get(node), rec.nodes.get_mut(node)) else {
            return Err(usage(format!(
                "recorded node {node} does not exist ({} nodes)",
                rec.layout.nodes.len()
            )));
        };
        let mode = rec.layout.mode;
        let k = layout.k(rec.layout.top_k);
        let row_len = layout.row_len(mode);
        let n = rows.top_channels.len() / k.max(1);
        let what = format!("{RECORD}/{}", group_name(node));
        if n == 0
            || rows.top_channels.len() != n * k
            || rows.top_share.len() != n * k
            || rows.relevance.len() != n * row_len
            || rows.activation.len() != n * row_len
        {
            return Err(usage(format!(
                "{what} ('{}'): rows of {} relevance, {} activation, {} top_channels and {} \
                 top_share values do not make whole rows of {row_len} values and {k} top \
                 channels",
                layout.node,
                rows.relevance.len(),
                rows.activation.len(),
                rows.top_channels.len(),
                rows.top_share.len()
            )));
        }
        let end = start + n;
        if end > n_samples {
            return Err(usage(format!(
                "{what}: rows {start}..{end} are past the end ({n_samples} rows)"
            )));
        }
        let werr = |name: &str| {
            let path = path.clone();
            let dataset = format!("{what}/{name}");
            move |source| StoreError::Write {
                path,
                dataset,
                source,
            }
        };
        let mut shape = vec![n];
        shape.extend_from_slice(&layout.row_shape(mode));
        let sel = || row_selection(start, end, shape.len());
        for (ds, data, name) in [
            (&w.relevance, &rows.relevance, RELEVANCE),
            (&w.activation, &rows.activation, ACTIVATION),
        ] {
            let arr = ndarray::ArrayViewD::from_shape(shape.clone(), data)
                .map_err(|e| usage(format!("{what}/{name}: {e}")))?;
            ds.write_slice(&arr, sel()).map_err(werr(name))?;
        }
        let top = ndarray::ArrayView2::from_shape((n, k), &rows.top_channels)
            .map_err(|e| usage(format!("{what}/{TOP_CHANNELS}: {e}")))?;
        w.top_channels
            .write_slice(&top, ndarray::s![start..end, ..])
            .map_err(werr(TOP_CHANNELS))?;
        let share = ndarray::ArrayView2::from_shape((n, k), &rows.top_share)
            .map_err(|e| usage(format!("{what}/{TOP_SHARE}: {e}")))?;
        w.top_share
            .write_slice(&share, ndarray::s![start..end, ..])
            .map_err(werr(TOP_SHARE))?;
        w.written[start..end].iter_mut().for_each(|x| *x = true);
        Ok(())
    }
}

/// A count as an `i64` attribute.
fn count_attr(v: usize, path: &std::path::Path) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Usage {
        path: path.to_path_buf(),
        message: format!("{v} does not fit an int64 attribute"),
    })
}

impl AttributionFile {
    /// What the file records at hidden nodes (`/record`, written by `prism attribute
    /// --record`), checked against the file's rows; `None` when it records nothing.
    pub fn record(&self) -> Result<Option<RecordLayout>> {
        let file = &self._file;
        if !file.link_exists(RECORD) {
            return Ok(None);
        }
        let path = &self.path;
        let invalid = |dataset: String, message: String| StoreError::Invalid {
            path: path.clone(),
            dataset,
            message,
        };
        let group = file.group(RECORD).map_err(|source| StoreError::Read {
            path: path.clone(),
            dataset: RECORD.into(),
            source,
        })?;
        let attr =
            |loc: &hdf5::Group, owner: &str, name: &str| h5util::read_attr(loc, path, owner, name);
        match attr(&group, RECORD, "format")? {
            Some(AttrValue::Str(s)) if s == RECORD_FORMAT => {}
            other => {
                return Err(invalid(
                    format!("{RECORD}@format"),
                    format!("is {other:?}, expected \"{RECORD_FORMAT}\"; {RECORD_HINT}"),
                ))
            }
        }
        match attr(&group, RECORD, "version")? {
            Some(AttrValue::Int(RECORD_VERSION)) => {}
            other => {
                return Err(invalid(
                    format!("{RECORD}@version"),
                    format!(
                        "is {other:?}; this Prism reads record version {RECORD_VERSION} \
                         (a newer Prism wrote the file?)"
                    ),
                ))
            }
        }
        let mode = match attr(&group, RECORD, "mode")? {
            Some(AttrValue::Str(s)) => RecordMode::parse(&s).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            invalid(
                format!("{RECORD}@mode"),
                "must be \"channels\" or \"maps\"".into(),
            )
        })?;
        let top_k = match attr(&group, RECORD, "top_k")? {
            Some(AttrValue::Int(k)) if k >= 1 => usize::try_from(k).ok(),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("{RECORD}@top_k"), "must be an integer ≥ 1".into()))?;
        let names = group.member_names().map_err(|source| StoreError::Read {
            path: path.clone(),
            dataset: RECORD.into(),
            source,
        })?;
        if names.is_empty() {
            return Err(invalid(
                RECORD.into(),
                format!("records no node; {RECORD_HINT}"),
            ));
        }
        let mut nodes = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            let gname = format!("{RECORD}/{}", group_name(i));
            if !file.link_exists(&gname) {
                return Err(StoreError::MissingDataset {
                    path: path.clone(),
                    dataset: gname,
                    hint: format!(
                        "the record group holds {} members ({}); {RECORD_HINT}",
                        names.len(),
                        names.join(", ")
                    ),
                });
            }
            let g = file.group(&gname).map_err(|source| StoreError::Read {
                path: path.clone(),
                dataset: gname.clone(),
                source,
            })?;
            let string = |name: &str| match attr(&g, &gname, name)? {
                Some(AttrValue::Str(s)) => Ok(s),
                _ => Err(invalid(
                    format!("{gname}@{name}"),
                    "must be a string".into(),
                )),
            };
            let (node, tensor) = (string("node")?, string("tensor")?);
            let sample_shape = match attr(&g, &gname, "sample_shape")? {
                Some(AttrValue::IntArray(v)) => v
                    .iter()
                    .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
                    .collect::<Option<Vec<usize>>>(),
                Some(AttrValue::Int(d)) => {
                    usize::try_from(d).ok().filter(|&d| d > 0).map(|d| vec![d])
                }
                _ => None,
            }
            .ok_or_else(|| {
                invalid(
                    format!("{gname}@sample_shape"),
                    "must be an array of positive integers".into(),
                )
            })?;
            let layout = RecordNodeLayout {
                node,
                tensor,
                sample_shape,
            };
            let mut rows_shape = vec![self.n_samples];
            rows_shape.extend(layout.row_shape(mode));
            let k = layout.k(top_k);
            for (name, shape, integer) in [
                (RELEVANCE, rows_shape.clone(), false),
                (ACTIVATION, rows_shape.clone(), false),
                (TOP_CHANNELS, vec![self.n_samples, k], true),
                (TOP_SHARE, vec![self.n_samples, k], false),
            ] {
                let dname = format!("{gname}/{name}");
                let ds = open_record_dataset(file, path, &dname)?;
                if ds.shape() != shape {
                    return Err(StoreError::Shape {
                        path: path.clone(),
                        dataset: dname,
                        found: ds.shape(),
                        expected: format!(
                            "node '{}' ({:?} per sample, mode {}, top_k {top_k}) and the \
                             file's {} rows make it {shape:?}",
                            layout.node,
                            layout.sample_shape,
                            mode.name(),
                            self.n_samples
                        ),
                    });
                }
                check_numeric(&ds, path, &dname, integer)?;
                h5util::check_declared(&ds, path, &dname, false)?;
            }
            nodes.push(layout);
        }
        Ok(Some(RecordLayout { mode, top_k, nodes }))
    }

    /// Reads rows `a..b` of recorded node `node` (its place in [`RecordLayout::nodes`]).
    pub fn read_record_rows(&self, node: usize, a: usize, b: usize) -> Result<RecordRows> {
        let usage = |message: String| StoreError::Usage {
            path: self.path.clone(),
            message,
        };
        let Some(layout) = self.record()? else {
            return Err(usage(
                "the file records no hidden nodes (no `/record`)".into(),
            ));
        };
        if node >= layout.nodes.len() {
            return Err(usage(format!(
                "recorded node {node} does not exist ({} nodes)",
                layout.nodes.len()
            )));
        }
        if a > b || b > self.n_samples {
            return Err(usage(format!(
                "rows {a}..{b} are out of range ({} rows)",
                self.n_samples
            )));
        }
        let gname = format!("{RECORD}/{}", group_name(node));
        let read = |name: &str| -> Result<hdf5::Dataset> {
            open_record_dataset(&self._file, &self.path, &format!("{gname}/{name}"))
        };
        let rerr = |name: &str| {
            let dataset = format!("{gname}/{name}[{a}..{b}]");
            let path = self.path.clone();
            move |source| StoreError::Read {
                path,
                dataset,
                source,
            }
        };
        fn rows<T: hdf5::H5Type + Clone>(
            ds: &hdf5::Dataset,
            a: usize,
            b: usize,
        ) -> hdf5::Result<Vec<T>> {
            let arr: ndarray::ArrayD<T> = ds.read_slice(row_selection(a, b, ds.ndim()))?;
            Ok(h5util::into_vec(arr))
        }
        Ok(RecordRows {
            relevance: rows(&read(RELEVANCE)?, a, b).map_err(rerr(RELEVANCE))?,
            activation: rows(&read(ACTIVATION)?, a, b).map_err(rerr(ACTIVATION))?,
            top_channels: rows(&read(TOP_CHANNELS)?, a, b).map_err(rerr(TOP_CHANNELS))?,
            top_share: rows(&read(TOP_SHARE)?, a, b).map_err(rerr(TOP_SHARE))?,
        })
    }
}

fn open_record_dataset(
    file: &hdf5::File,
    path: &std::path::Path,
    name: &str,
) -> Result<hdf5::Dataset> {
    if !file.link_exists(name) {
        return Err(StoreError::MissingDataset {
            path: path.to_path_buf(),
            dataset: name.into(),
            hint: RECORD_HINT.into(),
        });
    }
    open_dataset(file, path, name)
}
