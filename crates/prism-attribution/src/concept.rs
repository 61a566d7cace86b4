//! Concept-level relevance: the relevance (and activation) of any tensor, recorded during the
//! backward sweep, and Concept Relevance Propagation (CRP; Achtibat et al., *Nature Machine
//! Intelligence* 2023), the sweep conditioned on channels ("concepts") of hidden layers.
//!
//! **Recording** ([`Record`]): the relevance reaching a node's output is complete once every
//! reader of that output has passed its share back (the sweep runs in reverse topological
//! order), and is copied then, before the node's rule spreads it further. Kept per channel
//! (summed over every axis after the second: `[rows, C]`) or whole (`[rows, C, …]`), with the
//! node's activation from the forward pass, shaped alike.
//!
//! **Conditions** ([`Condition`]): `{layer: channels, …}` for one row of the batch. When the
//! relevance at a conditioned layer's output is complete, the channels not named are set to
//! zero, and the sweep goes on. As in zennit-crp (`CondAttribution`, `ChannelConcept.mask`),
//! the channel axis is axis 1, and the relevance is seeded with the target's logit value
//! (`relevance_init`). What happens to relevance that reaches the layer's inputs *around* the
//! layer (a residual connection's skip path, any branch parallel to it) is [`Parallel`]'s
//! choice:
//!
//! - [`Parallel::Include`] (the default): it flows on unconditioned. A condition on a
//!   convolution inside a residual block masks what passes through that convolution, while the
//!   skip path carries its share (often about half of the block's relevance) to the input
//!   unmasked. This is zennit-crp's `exclude_parallel=False`, what its `FeatureVisualization`
//!   uses.
//! - [`Parallel::Exclude`]: only the masked relevance at the layer's output goes on; everything
//!   else reaching the layer's inputs is dropped, so the heatmap holds the concept's sole
//!   contribution. This is zennit-crp's `CondAttribution.__call__` default
//!   (`exclude_parallel=True`), done as zennit-crp does it: the sweep stops at the last
//!   conditioned layer, masks, and starts again from there (and so on for earlier layers of
//!   the same condition). All conditions of one batch must then name the same layers
//!   (zennit-crp splits a list of conditions into such groups; [`Explainer`](crate::Explainer)
//!   runs each group on its own rows).
//!
//! Several conditions are batched like zennit-crp's `broadcast`: N samples and K conditions
//! give N·K rows, row `n·K + k` being sample `n` under condition `k`.

use std::collections::HashSet;

use globset::Glob;
use prism_model::{Float, Graph, Tensor, ValueId};

use crate::error::{AttributionError, Result};

/// Channels of one or more layers that one row's relevance is restricted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `(layer, channels)`: a node name (as `prism inspect --shapes` prints it) or a tensor
    /// name, and the channels (axis 1 of its output) kept there.
    pub layers: Vec<(String, Vec<usize>)>,
}

impl Condition {
    /// Reads a condition as the command line spells it: `LAYER:ch,ch` (channels separated by
    /// commas, `a-b` for a range), several layers separated by `;`
    /// (`/features.28/Conv:3,7;/features.26/Conv:0-15`). The channel list follows the last
    /// `:` of each part, so layer names may contain `:`.
    pub fn parse(spec: &str) -> Result<Condition> {
        let bad = |why: String| {
            AttributionError::Invalid(format!(
                "condition '{spec}': {why} (expected LAYER:ch,ch with channel numbers or \
                 ranges a-b, several layers separated by ';')"
            ))
        };
        let mut layers = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (layer, list) = part
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("'{part}' has no ':' before its channels")))?;
            let layer = layer.trim();
            if layer.is_empty() {
                return Err(bad(format!("'{part}' names no layer")));
            }
            let mut channels = Vec::new();
            for item in list.split(',').map(str::trim) {
                let num = |s: &str| {
                    s.trim()
                        .parse::<usize>()
                        .map_err(|_| bad(format!("'{item}' is not a channel number or range")))
                };
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (num(a)?, num(b)?);
                        if a > b {
                            return Err(bad(format!("range '{item}' is empty")));
                        }
                        channels.extend(a..=b);
                    }
                    None => channels.push(num(item)?),
                }
            }
            channels.sort_unstable();
            channels.dedup();
            if layers
                .iter()
                .any(|(l, _): &(String, Vec<usize>)| l == layer)
            {
                return Err(bad(format!("layer '{layer}' is named twice")));
            }
            layers.push((layer.to_string(), channels));
        }
        if layers.is_empty() {
            return Err(bad("it names no layer".into()));
        }
        Ok(Condition { layers })
    }

    /// The layer names, sorted (conditions naming the same set form one group).
    fn layer_set(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.layers.iter().map(|(l, _)| l.as_str()).collect();
        v.sort_unstable();
        v
    }
}

/// What happens to relevance that reaches a conditioned layer's inputs around the layer (see
/// the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Parallel {
    /// Parallel paths (skip connections) carry their relevance on unconditioned
    /// (zennit-crp's `exclude_parallel=False`).
    #[default]
    Include,
    /// Only the conditioned relevance goes on (zennit-crp's `exclude_parallel=True`).
    Exclude,
}

/// How recorded tensors are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecordMode {
    /// Summed over every axis after the channel axis: `[rows, C]`.
    #[default]
    Channels,
    /// Whole: the tensor's shape.
    Maps,
}

impl RecordMode {
    /// The command line's spelling: `channels` or `maps`.
    pub fn parse(s: &str) -> Result<RecordMode> {
        match s {
            "channels" => Ok(RecordMode::Channels),
            "maps" => Ok(RecordMode::Maps),
            other => Err(AttributionError::Invalid(format!(
                "record mode '{other}' is not one of: channels, maps"
            ))),
        }
    }

    /// The command line's spelling.
    pub fn name(self) -> &'static str {
        match self {
            RecordMode::Channels => "channels",
            RecordMode::Maps => "maps",
        }
    }
}

/// Which tensors to record: node names matching any of the globs (`*` matches any run of
/// characters, `/` included: `*/Conv`, `/features/*`), or exact tensor names.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    pub patterns: Vec<String>,
    pub mode: RecordMode,
}

/// What an [`Explainer`](crate::Explainer) does besides attributing: conditions (CRP) and
/// recording, see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Concepts {
    /// One condition per row of each sample (none: plain relevance, one row per sample).
    pub conditions: Vec<Condition>,
    /// What parallel paths around conditioned layers carry.
    pub parallel: Parallel,
    /// The nodes whose relevance and activation to keep.
    pub record: Option<Record>,
}

impl Concepts {
    /// Whether there is anything to condition or record.
    pub fn is_active(&self) -> bool {
        !self.conditions.is_empty() || self.record.is_some()
    }
}

/// The relevance and activation recorded at one node's output.
#[derive(Clone, Debug)]
pub struct Recorded<T> {
    /// The node, as the model file names it.
    pub node: String,
    /// The tensor (the node's first output).
    pub tensor: String,
    /// The tensor's shape for one row (`[C, H, W]`, `[F]`, …).
    pub sample_shape: Vec<usize>,
    /// The relevance: `[rows, C]` or the tensor's shape (see [`RecordMode`]).
    pub relevance: Tensor<T>,
    /// The activation (the forward pass's value), shaped as `relevance`.
    pub activation: Tensor<T>,
}

impl<T: Float> Recorded<T> {
    /// Per row, the `k` channels with the largest relevance (descending; ties: the lower
    /// channel first) and their shares `R_c / Σ_c' |R_c'|` (zennit-crp's
    /// `ChannelConcept.attribute` with `abs_norm`; 0 where a row has no relevance). Per-channel
    /// relevance is the sum over space (maps are summed first).
    pub fn top_channels(&self, k: usize) -> (Vec<u32>, Vec<T>) {
        let (rows, c, sums) = sums_per_channel(&self.relevance);
        let k = k.min(c);
        let mut idx = Vec::with_capacity(rows * k);
        let mut share = Vec::with_capacity(rows * k);
        for row in sums.chunks(c.max(1)) {
            let total: f64 = row.iter().map(|v| v.f64().abs()).sum();
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| {
                row[b]
                    .f64()
                    .partial_cmp(&row[a].f64())
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.cmp(&b))
            });
            for &ch in order.iter().take(k) {
                idx.push(ch as u32);
                let s = if total > 0.0 {
                    row[ch].f64() / total
                } else {
                    0.0
                };
                share.push(T::of(s));
            }
        }
        (idx, share)
    }
}

/// Sums a `[rows, C, …]` tensor over every axis after the second (`[rows, C]`); a
/// `[rows, C]` tensor is returned as it is.
pub fn channel_sums<T: Float>(t: &Tensor<T>) -> Result<Tensor<T>> {
    let (rows, c, data) = sums_per_channel(t);
    Ok(Tensor::new(vec![rows, c], data)?)
}

/// `(rows, C, sums)` of a `[rows, C, …]` tensor (a `[rows]` tensor is one channel).
fn sums_per_channel<T: Float>(t: &Tensor<T>) -> (usize, usize, Vec<T>) {
    let shape = t.shape();
    let rows = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    let inner: usize = shape.iter().skip(2).product();
    if inner == 1 {
        return (rows, c, t.data().to_vec());
    }
    let data = t
        .data()
        .chunks(inner.max(1))
        .map(|block| T::of(block.iter().map(|v| v.f64()).sum()))
        .collect();
    (rows, c, data)
}

/// The value a layer name means in the prepared graph `g` (specialised and canonized from
/// `original`): a node of `g` by that name (its first output), else a node of `original` whose
/// output survived under its name (a BatchNormalization or bias `Add` merged into the layer
/// before it: the merged layer produces that output), else a tensor by that name.
pub(crate) fn resolve_layer(original: &Graph, g: &Graph, name: &str) -> Result<ValueId> {
    let v = g
        .find_node(name)
        .map(|n| g.node(n).outputs[0])
        .or_else(|| {
            original
                .find_node(name)
                .and_then(|n| g.find_value(&original.value(original.node(n).outputs[0]).name))
        })
        .or_else(|| g.find_value(name))
        .ok_or_else(|| {
            let near: Vec<&str> = g
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .filter(|n| {
                    let last = name.rsplit('/').next().unwrap_or(name);
                    !last.is_empty() && n.contains(last)
                })
                .take(5)
                .collect();
            AttributionError::Invalid(format!(
                "no node or tensor named '{name}' in the model{}; `prism inspect --shapes` \
                 lists the node names",
                if near.is_empty() {
                    String::new()
                } else {
                    format!(" (similar: {})", near.join(", "))
                }
            ))
        })?;
    if g.constant(v).is_some() {
        return Err(AttributionError::Invalid(format!(
            "'{name}' is a constant (it does not depend on the inputs): it has no relevance"
        )));
    }
    if g.producer(v).is_none() {
        return Err(AttributionError::Invalid(format!(
            "'{name}' is a model input, not a node's output: its relevance is the explanation \
             itself; name a node (`prism inspect --shapes` lists them)"
        )));
    }
    Ok(v)
}

/// The nodes of `original` whose names match the record patterns, resolved in `g`, in graph
/// order: `(node name, value)`. Nodes whose outputs were folded into constants or removed
/// (shape arithmetic) are left out; a pattern that matches nothing is an error.
pub(crate) fn resolve_record(
    original: &Graph,
    g: &Graph,
    record: &Record,
) -> Result<Vec<(String, ValueId)>> {
    let mut out: Vec<(String, ValueId)> = Vec::new();
    let mut seen: HashSet<ValueId> = HashSet::new();
    for pattern in &record.patterns {
        let glob = Glob::new(pattern)
            .map_err(|e| {
                AttributionError::Invalid(format!("record pattern '{pattern}' is not a glob: {e}"))
            })?
            .compile_matcher();
        let mut any = false;
        for node in &original.nodes {
            if !glob.is_match(&node.name) {
                continue;
            }
            let Ok(v) = resolve_layer(original, g, &node.name) else {
                continue;
            };
            any = true;
            if seen.insert(v) {
                out.push((node.name.clone(), v));
            }
        }
        if !any {
            if let Ok(v) = resolve_layer(original, g, pattern) {
                any = true;
                if seen.insert(v) {
                    out.push((pattern.clone(), v));
                }
            }
        }
        if !any {
            return Err(AttributionError::Invalid(format!(
                "record pattern '{pattern}' matches no node with a computed output; `prism \
                 inspect --shapes` lists the node names (globs: `*` matches any characters, \
                 `/` included)"
            )));
        }
    }
    out.sort_by_key(|(_, v)| g.producer(*v).map_or(0, |n| n.0 + 1));
    Ok(out)
}

/// One conditioned layer of a batch: its value and, per row, the channels kept (`None`: the
/// row's condition does not name this layer, so it is not masked there).
#[derive(Clone, Debug)]
pub(crate) struct LayerMask {
    pub value: ValueId,
    pub rows: Vec<Option<Vec<usize>>>,
}

/// The conditions of a batch of `samples` samples resolved in `g`: one [`LayerMask`] per layer
/// named, rows `n·K + k`. Channels are checked against the layer's output.
pub(crate) fn layer_masks(
    original: &Graph,
    g: &Graph,
    conditions: &[Condition],
    samples: usize,
) -> Result<Vec<LayerMask>> {
    let k = conditions.len();
    let mut masks: Vec<LayerMask> = Vec::new();
    for (ci, cond) in conditions.iter().enumerate() {
        for (layer, channels) in &cond.layers {
            let v = resolve_layer(original, g, layer)?;
            let shape = g.shape(v).unwrap_or(&[]);
            let Some(&c) = shape.get(1) else {
                return Err(AttributionError::Invalid(format!(
                    "layer '{layer}' has output shape {shape:?}: a condition needs a channel \
                     axis (axis 1)"
                )));
            };
            if let Some(&bad) = channels.iter().find(|&&ch| ch >= c) {
                return Err(AttributionError::Invalid(format!(
                    "condition on layer '{layer}': channel {bad} does not exist; its output \
                     (per sample {:?}) has {c} channels (0-{})",
                    &shape[1..],
                    c - 1
                )));
            }
            let i = match masks.iter().position(|m| m.value == v) {
                Some(i) => i,
                None => {
                    masks.push(LayerMask {
                        value: v,
                        rows: vec![None; samples * k],
                    });
                    masks.len() - 1
                }
            };
            for n in 0..samples {
                masks[i].rows[n * k + ci] = Some(channels.clone());
            }
        }
    }
    Ok(masks)
}

/// The groups of conditions naming the same layers, in order of first appearance: for
/// [`Parallel::Exclude`], each group is swept on its own.
pub(crate) fn groups(conditions: &[Condition]) -> Vec<Vec<usize>> {
    let mut keys: Vec<Vec<&str>> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let key = c.layer_set();
        match keys.iter().position(|k| *k == key) {
            Some(g) => out[g].push(i),
            None => {
                keys.push(key);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// Sets the relevance of the channels a row does not keep to zero (`r`: `[rows, C, …]`).
pub(crate) fn apply_mask<T: Float>(mask: &LayerMask, r: &mut Tensor<T>) -> Result<()> {
    let shape = r.shape().to_vec();
    let (rows, c) = match shape[..] {
        [rows, c, ..] if rows == mask.rows.len() => (rows, c),
        _ => {
            return Err(AttributionError::Invalid(format!(
                "a conditioned relevance has shape {shape:?}, expected {} rows with a channel \
                 axis",
                mask.rows.len()
            )))
        }
    };
    let inner: usize = shape[2..].iter().product();
    let data = r.data_mut();
    for (row, keep) in mask.rows.iter().enumerate().take(rows) {
        let Some(keep) = keep else { continue };
        let mut kept = vec![false; c];
        for &ch in keep {
            kept[ch] = true;
        }
        for (ch, on) in kept.iter().enumerate() {
            if !on {
                let start = (row * c + ch) * inner;
                data[start..start + inner].fill(T::zero());
            }
        }
    }
    Ok(())
}

/// What the backward sweep does besides propagating: masks conditioned layers (see
/// [`Condition`]) and copies the relevance of recorded values once complete.
#[derive(Debug)]
pub struct SweepHooks<T> {
    pub(crate) masks: Vec<LayerMask>,
    pub(crate) record: Vec<ValueId>,
    /// The relevance recorded at each of `record` (`None`: not reached yet).
    pub(crate) recorded: Vec<Option<Tensor<T>>>,
}

impl<T: Float> SweepHooks<T> {
    /// No masks, no recording: the plain sweep.
    pub fn none() -> Self {
        SweepHooks {
            masks: Vec::new(),
            record: Vec::new(),
            recorded: Vec::new(),
        }
    }

    pub(crate) fn new(masks: Vec<LayerMask>, record: Vec<ValueId>) -> Self {
        let recorded = vec![None; record.len()];
        SweepHooks {
            masks,
            record,
            recorded,
        }
    }

    /// The recorded relevance, one per recorded value (`None`: no relevance reached it).
    pub(crate) fn into_recorded(self) -> Vec<Option<Tensor<T>>> {
        self.recorded
    }

    /// Whether the sweep needs to stop at values: true when there is anything to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.masks.is_empty() && self.record.is_empty()
    }

    /// Called with the complete relevance at value `v` (`None`: none reached it): masks it if
    /// `v` is conditioned, then records it if `v` is recorded and was not recorded before.
    pub(crate) fn complete(&mut self, v: ValueId, r: &mut Option<Tensor<T>>) -> Result<()> {
        if let (Some(m), Some(r)) = (self.masks.iter().find(|m| m.value == v), r.as_mut()) {
            apply_mask(m, r)?;
        }
        for (i, rv) in self.record.iter().enumerate() {
            if *rv == v && self.recorded[i].is_none() {
                if let Some(r) = r.as_ref() {
                    self.recorded[i] = Some(r.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_ranges_lists_and_several_layers() {
        let c = Condition::parse("/features/features.28/Conv:3, 1,0-2;l2:7").unwrap();
        assert_eq!(
            c.layers,
            vec![
                ("/features/features.28/Conv".to_string(), vec![0, 1, 2, 3]),
                ("l2".to_string(), vec![7])
            ]
        );
        // the channels follow the last ':'
        let c = Condition::parse("a:b:4").unwrap();
        assert_eq!(c.layers, vec![("a:b".to_string(), vec![4])]);
        for bad in ["", "conv", "conv:", "conv:x", "conv:3-1", ":2", "a:1;a:2"] {
            let e = Condition::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected LAYER:ch,ch"), "{bad}: {e}");
        }
    }

    #[test]
    fn masks_zero_the_channels_a_row_does_not_keep() {
        let mut r = Tensor::new(vec![2, 3, 2], (1..=12).map(f64::from).collect()).unwrap();
        let m = LayerMask {
            value: ValueId(0),
            rows: vec![Some(vec![1]), None],
        };
        apply_mask(&m, &mut r).unwrap();
        assert_eq!(
            r.data(),
            &[0., 0., 3., 4., 0., 0., 7., 8., 9., 10., 11., 12.]
        );
    }

    #[test]
    fn top_channels_are_ordered_with_shares_of_the_absolute_total() {
        let rel = Tensor::new(vec![1, 4], vec![1.0f64, -3.0, 4.0, 2.0]).unwrap();
        let rec = Recorded {
            node: "n".into(),
            tensor: "t".into(),
            sample_shape: vec![4],
            relevance: rel.clone(),
            activation: rel,
        };
        let (idx, share) = rec.top_channels(3);
        assert_eq!(idx, vec![2, 3, 0]);
        assert_eq!(share, vec![0.4, 0.2, 0.1]);
    }

    #[test]
    fn groups_collect_conditions_naming_the_same_layers() {
        let c = |s| Condition::parse(s).unwrap();
        let g = groups(&[c("a:1"), c("b:1"), c("a:2"), c("b:0;a:1"), c("a:3;b:2")]);
        assert_eq!(g, vec![vec![0, 2], vec![1], vec![3, 4]]);
    }
}
