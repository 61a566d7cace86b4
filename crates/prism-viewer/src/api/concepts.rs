//! The concept routes: a project's concept layers, the concepts of a sample or of a set of
//! samples ranked by relevance, a concept's reference samples (RelMax, ActMax), and PNGs of
//! reference crops and conditional heatmaps. Layers, channels, samples and references are
//! addressed by number; nothing names a file.

use std::collections::{BTreeSet, HashMap};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use prism_store::concepts::SCORE_EPSILON;
use prism_store::{ChannelQuantity, ReferenceKind};
use serde_json::{json, Value};

use super::{
    bad, blocking, cached, color_map_of, label_json, normalization_of, not_found, project_of,
    query, sample_of, ApiError, ApiResult, Params, Shared, MAX_INDICES,
};
use crate::render::{self, ReferenceFrame};
use crate::workspace::{ConceptLayerRef, LoadedProject};

/// Concepts listed when `count` is not given.
pub const DEFAULT_CONCEPTS: usize = 10;
/// Rows of a concepts file read at once when a set of samples is summarised.
const ROWS_PER_READ: usize = 4096;

type Path3 = Result<Path<(String, String, String)>, PathRejection>;
type Path4 = Result<Path<(String, String, String, String)>, PathRejection>;

fn malformed(e: PathRejection) -> ApiError {
    bad(format!("malformed path: {e}"))
}

/// The project's concept layer `layer` (a number), or a 4xx naming the valid range.
fn layer_of<'a>(
    p: &'a LoadedProject,
    id: usize,
    layer: &str,
) -> Result<ConceptLayerRef<'a>, ApiError> {
    let n = p.concept_layer_count();
    let range = if n == 0 {
        format!("project {id} has no concepts files")
    } else {
        format!("project {id} has concept layers 0..={}", n - 1)
    };
    let number: usize = layer
        .parse()
        .map_err(|_| bad(format!("concept layer `{layer}` is not a number; {range}")))?;
    p.concept_layer(number)
        .ok_or_else(|| not_found(format!("there is no concept layer {number}; {range}")))
}

/// Channel `c` (a number) of a layer, or a 4xx naming the valid range.
fn channel_of(l: &ConceptLayerRef<'_>, c: &str) -> Result<usize, ApiError> {
    let range = format!(
        "layer {} (`{}`) has channels 0..={}",
        l.number,
        l.info.node,
        l.info.channels - 1
    );
    let channel: usize = c
        .parse()
        .map_err(|_| bad(format!("channel `{c}` is not a number; {range}")))?;
    if channel >= l.info.channels {
        return Err(not_found(format!("there is no channel {channel}; {range}")));
    }
    Ok(channel)
}

/// The row of dataset sample `sample` in the layer's concepts file, or a 404.
fn row_of(l: &ConceptLayerRef<'_>, sample: u32) -> Result<usize, ApiError> {
    l.file.row_of(sample).ok_or_else(|| {
        let covered = match (l.file.index().first(), l.file.index().last()) {
            (Some(a), Some(b)) => format!("{} samples, {a}..={b}", l.file.n_rows()),
            _ => "no samples".into(),
        };
        not_found(format!(
            "sample {sample} is not in the concepts run of layer {} ({covered})",
            l.number
        ))
    })
}

fn count_of(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("count") {
        None => Ok(DEFAULT_CONCEPTS),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(bad(format!(
                "count must be a number of concepts, at least 1, got `{v}`"
            ))),
        },
    }
}

fn kind_of(q: &HashMap<String, String>) -> Result<ReferenceKind, ApiError> {
    match q.get("mode") {
        None => Ok(ReferenceKind::RelMax),
        Some(m) => ReferenceKind::parse(m)
            .ok_or_else(|| bad(format!("unknown mode `{m}`; use relmax or actmax"))),
    }
}

/// The channels ranked by `score`, largest first (ties: lower channel first), `count` of them.
fn ranked(score: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    order.truncate(count);
    order
}

/// `R_c / (Σ_c' |R_c'| + ε)` of one row (zennit-crp's `abs_norm`, the scores of RelMax).
fn shares(relevance: &[f32]) -> (f64, Vec<f64>) {
    let total: f64 = relevance.iter().map(|r| f64::from(r.abs())).sum();
    let denom = total + f64::from(SCORE_EPSILON);
    (
        total,
        relevance.iter().map(|&r| f64::from(r) / denom).collect(),
    )
}

fn layer_json(l: &ConceptLayerRef<'_>) -> Value {
    json!({
        "index": l.number,
        "file": l.file_number,
        "node": l.info.node,
        "tensor": l.info.tensor,
        "shape": l.info.shape,
        "channels": l.info.channels,
        "samples": l.file.n_rows(),
        "topN": l.info.top_n,
        "crops": {
            "relmax": l.info.crops(ReferenceKind::RelMax),
            "actmax": l.info.crops(ReferenceKind::ActMax),
        },
        "heatmaps": l.info.heatmaps,
        "heatmapSize": l.info.heatmap_size.map(|(h, w)| json!({"height": h, "width": w})),
    })
}

/// `{layers: [{index, file, node, tensor, shape, channels, samples, topN, crops, heatmaps,
/// heatmapSize}]}`; no layers for a project without concepts files.
pub(super) async fn layers(
    State(s): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = project_of(&s.ws, &id.map(|Path(v)| v).map_err(malformed)?)?;
    let p = &s.ws.projects[id];
    let layers: Vec<Value> = (0..p.concept_layer_count())
        .filter_map(|i| p.concept_layer(i))
        .map(|l| layer_json(&l))
        .collect();
    Ok(Json(json!({ "layers": layers })).into_response())
}

/// One sample's concepts at a layer, most relevant first: `{layer, node, sample, row, target,
/// channels, total, concepts: [{channel, relevance, share, heatmap}]}` (`?count=`).
pub(super) async fn sample_concepts(State(s): State<Shared>, p: Path3, q: Params) -> ApiResult {
    let Path((id, layer, sample)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let count = count_of(&q)?;
    let sample = sample_of(&sample)?;
    let number = layer_of(&s.ws.projects[id], id, &layer)?.number;
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[id];
        let l = layer_of(p, id, &number.to_string())?;
        let row = row_of(&l, sample)?;
        let relevance = l.file.relevance(l.layer, row).map_err(store)?;
        let with_heatmap = l.file.heatmap_channels_of(l.layer, row).map_err(store)?;
        let (total, share) = shares(&relevance);
        let order = ranked(
            &relevance.iter().map(|&r| f64::from(r)).collect::<Vec<_>>(),
            count,
        );
        let target = l.file.target().get(row).copied();
        Ok(json!({
            "layer": l.number,
            "node": l.info.node,
            "sample": sample,
            "row": row,
            "target": target.map(|t| label_json(p, t)),
            "channels": l.info.channels,
            "total": total,
            "concepts": order.iter().map(|&c| json!({
                "channel": c,
                "relevance": relevance[c],
                "share": share[c],
                "heatmap": with_heatmap.contains(&(c as u32)),
            })).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(Json(v).into_response())
}

fn store(e: prism_store::StoreError) -> ApiError {
    ApiError::from(crate::error::ViewerError::from(e))
}

/// The concepts of a set of samples: per channel the mean over the samples of their shares
/// `R_c / (Σ|R| + ε)` and of their relevance, ranked by the mean share. Samples that the run did
/// not cover are counted in `missing` (and the first ten listed), not averaged.
fn set_concepts(
    p: &LoadedProject,
    id: usize,
    number: usize,
    samples: &BTreeSet<u32>,
    count: usize,
) -> Result<Value, ApiError> {
    let l = layer_of(p, id, &number.to_string())?;
    let mut rows = Vec::with_capacity(samples.len());
    let mut missing = Vec::new();
    for &s in samples {
        match l.file.row_of(s) {
            Some(r) => rows.push(r),
            None => missing.push(s),
        }
    }
    if rows.is_empty() {
        return Err(not_found(format!(
            "none of the {} samples is in the concepts run of layer {} ({} samples)",
            samples.len(),
            l.number,
            l.file.n_rows()
        )));
    }
    // `samples` is ascending and `index` too, so `rows` is ascending and distinct.
    let c = l.info.channels;
    let (mut share_sum, mut rel_sum) = (vec![0f64; c], vec![0f64; c]);
    for chunk in rows.chunks(ROWS_PER_READ) {
        let values = l
            .file
            .channel_rows(l.layer, ChannelQuantity::Relevance, chunk)
            .map_err(store)?;
        for row in values.chunks_exact(c) {
            let (_, share) = shares(row);
            for k in 0..c {
                share_sum[k] += share[k];
                rel_sum[k] += f64::from(row[k]);
            }
        }
    }
    let n = rows.len() as f64;
    let mean_share: Vec<f64> = share_sum.iter().map(|v| v / n).collect();
    let order = ranked(&mean_share, count);
    Ok(json!({
        "layer": l.number,
        "node": l.info.node,
        "channels": c,
        "samples": rows.len(),
        "missing": missing.len(),
        "missingSamples": missing.iter().take(10).collect::<Vec<_>>(),
        "concepts": order.iter().map(|&k| json!({
            "channel": k,
            "share": mean_share[k],
            "relevance": rel_sum[k] / n,
        })).collect::<Vec<_>>(),
    }))
}

/// The concepts of the samples `?samples=1,2,…` (at most [`MAX_INDICES`]), see [`set_concepts`].
pub(super) async fn selection_concepts(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let Path((id, layer)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let count = count_of(&q)?;
    let number = layer_of(&s.ws.projects[id], id, &layer)?.number;
    let raw = super::required(&q, "samples")?;
    let mut samples = BTreeSet::new();
    for (i, part) in raw.split(',').enumerate() {
        if i >= MAX_INDICES {
            return Err(bad(format!(
                "at most {MAX_INDICES} samples per request; for a whole cluster ask \
                 /api/projects/{id}/concepts/{number}/cluster?analysis=…&category=…&\
                 clustering=…&cluster=…"
            )));
        }
        samples.insert(sample_of(part.trim())?);
    }
    let v = blocking(&s, move |ws| {
        set_concepts(&ws.projects[id], id, number, &samples, count)
    })
    .await?;
    Ok(Json(v).into_response())
}

/// The concepts of one cluster of an analysis, addressed as the analysis routes address it:
/// `?analysis=&category=&clustering=&cluster=` (see [`set_concepts`]).
pub(super) async fn cluster_concepts(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let Path((id, layer)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let count = count_of(&q)?;
    let number = layer_of(&s.ws.projects[id], id, &layer)?.number;
    let method = super::required(&q, "analysis")?.to_string();
    let category = super::required(&q, "category")?.to_string();
    let clustering = super::required(&q, "clustering")?.to_string();
    let cluster_text = super::required(&q, "cluster")?;
    let cluster: i32 = cluster_text.parse().map_err(|_| {
        bad(format!(
            "cluster must be a cluster number (−1 for noise), got `{cluster_text}`"
        ))
    })?;
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[id];
        let an = p
            .analysis(&method)
            .ok_or_else(|| not_found(format!("project {id} has no analysis `{method}`")))?;
        if !an.has_category(&category) {
            return Err(not_found(format!(
                "analysis `{method}` has no category `{category}`"
            )));
        }
        let labels = an.clustering(&category, &clustering)?.ok_or_else(|| {
            not_found(format!(
                "category `{category}` has no clustering `{clustering}`"
            ))
        })?;
        let index = an
            .index(&category)?
            .ok_or_else(|| not_found(format!("no category `{category}`")))?;
        let members: BTreeSet<u32> = index
            .iter()
            .zip(&labels)
            .filter(|(_, c)| **c == cluster)
            .map(|(&i, _)| i)
            .collect();
        if members.is_empty() {
            return Err(not_found(format!(
                "clustering `{clustering}` of `{category}` has no cluster {cluster}"
            )));
        }
        let mut v = set_concepts(p, id, number, &members, count)?;
        v["cluster"] = json!({
            "analysis": method, "category": category, "clustering": clustering,
            "cluster": cluster, "size": members.len(),
        });
        Ok(v)
    })
    .await?;
    Ok(Json(v).into_response())
}

/// A concept's reference samples: `{layer, node, channel, mode, topN, crops, references:
/// [{rank, sample, score, location, box: [y0, y1, x0, x1] or null}]}` (`?mode=relmax|actmax`).
pub(super) async fn channel_references(State(s): State<Shared>, p: Path3, q: Params) -> ApiResult {
    let Path((id, layer, channel)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let kind = kind_of(&q)?;
    let (number, channel) = {
        let l = layer_of(&s.ws.projects[id], id, &layer)?;
        (l.number, channel_of(&l, &channel)?)
    };
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[id];
        let l = layer_of(p, id, &number.to_string())?;
        let refs = l.file.references(l.layer, kind, channel).map_err(store)?;
        Ok(json!({
            "layer": l.number,
            "node": l.info.node,
            "channel": channel,
            "mode": kind.name(),
            "topN": l.info.top_n,
            "crops": l.info.crops(kind),
            "references": refs.iter().map(|r| json!({
                "rank": r.rank,
                "sample": r.sample,
                "score": r.score,
                "location": r.location,
                "box": r.crop.map(|b| b.to_array()),
            })).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(Json(v).into_response())
}

/// PNG of reference `rank` of a concept: `?mode=relmax|actmax&frame=crop|box|whole` (crop, the
/// default: the picture cut to the box; box: the whole picture with the box drawn; whole: the
/// picture). A reference without a computed box has only `whole`.
pub(super) async fn reference_image(State(s): State<Shared>, p: Path4, q: Params) -> ApiResult {
    let Path((id, layer, channel, rank)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let kind = kind_of(&q)?;
    let frame = match q.get("frame") {
        None => ReferenceFrame::Crop,
        Some(f) => ReferenceFrame::parse(f)
            .ok_or_else(|| bad(format!("unknown frame `{f}`; use crop, box or whole")))?,
    };
    let (number, channel) = {
        let l = layer_of(&s.ws.projects[id], id, &layer)?;
        (l.number, channel_of(&l, &channel)?)
    };
    let rank: usize = rank.parse().map_err(|_| {
        bad(format!(
            "reference `{rank}` is not a number (a rank, 0 = best)"
        ))
    })?;
    if s.ws.projects[id].dataset.is_tokens() {
        return Err(not_found(format!(
            "project {id} has a token dataset: its samples are text, not pictures"
        )));
    }
    let key = format!(
        "cr/{id}/{number}/{channel}/{}/{rank}/{}",
        kind.name(),
        frame.name()
    );
    cached(s, key, "image/png", move |ws| {
        let p = &ws.projects[id];
        let l = layer_of(p, id, &number.to_string())?;
        let refs = l.file.references(l.layer, kind, channel).map_err(store)?;
        let r = refs.get(rank).ok_or_else(|| {
            not_found(format!(
                "channel {channel} of layer {number} has {} {} reference(s){}",
                refs.len(),
                kind.name(),
                if refs.is_empty() {
                    String::new()
                } else {
                    format!(", ranks 0..={}", refs.len() - 1)
                }
            ))
        })?;
        if r.crop.is_none() && frame != ReferenceFrame::Whole {
            return Err(not_found(format!(
                "reference {rank} of channel {channel} has no crop box (the run computed boxes \
                 for the first {} references); ask frame=whole",
                l.info.crops(kind)
            )));
        }
        Ok(render::reference_png(p, r.sample, r.crop, frame)?)
    })
    .await
}

/// PNG of the conditional heatmap of concept `channel` in a sample:
/// `?colorMap=&normalization=&mode=attribution|overlay`.
pub(super) async fn heatmap_image(State(s): State<Shared>, p: Path4, q: Params) -> ApiResult {
    let Path((id, layer, sample, channel)) = p.map_err(malformed)?;
    let id = project_of(&s.ws, &id)?;
    let q = query(q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let norm = normalization_of(&q, map)?;
    let overlay = match q.get("mode").map(String::as_str) {
        None | Some("attribution") | Some("heatmap") => false,
        Some("overlay") => true,
        Some(m) => {
            return Err(bad(format!(
                "unknown image mode `{m}`; use attribution or overlay"
            )))
        }
    };
    let sample = sample_of(&sample)?;
    let (number, channel) = {
        let p = &s.ws.projects[id];
        if p.dataset.is_tokens() {
            return Err(not_found(format!(
                "project {id} has a token dataset: its samples are text, not pictures"
            )));
        }
        let l = layer_of(p, id, &layer)?;
        (l.number, channel_of(&l, &channel)?)
    };
    let key = format!(
        "chm/{id}/{number}/{sample}/{channel}/{overlay}/{}/{}",
        map.name,
        render::normalization_name(norm)
    );
    cached(s, key, "image/png", move |ws| {
        let p = &ws.projects[id];
        let l = layer_of(p, id, &number.to_string())?;
        let row = row_of(&l, sample)?;
        let has = l.file.heatmap_channels_of(l.layer, row).map_err(store)?;
        if !has.contains(&(channel as u32)) {
            return Err(not_found(format!(
                "sample {sample} has no conditional heatmap of channel {channel} at layer \
                 {number}; it has heatmaps of channels {has:?}"
            )));
        }
        render::concept_heatmap_png(p, number, sample, channel as u32, map, norm, overlay)?
            .ok_or_else(|| {
                not_found(format!(
                    "sample {sample} has no heatmap of channel {channel}"
                ))
            })
    })
    .await
}
