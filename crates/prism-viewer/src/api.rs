//! The HTTP API (GET only) and the embedded UI.
//!
//! JSON routes keep ViRelAy's paths and keys where they exist; the binary routes send typed
//! arrays (little-endian) so a million points cost 8 MB, not a JSON object per point. The
//! concept routes (`/api/projects/{id}/concepts…`) are in [`concepts`].

mod concepts;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prism_heatmap::{BuiltinColorMap, Normalization, BUILTIN_COLOR_MAPS};
use serde_json::{json, Value};

use crate::cache::{ByteCache, Entry};
use crate::error::ViewerError;
use crate::render::{self, ImageMode};
use crate::workspace::{LoadedProject, Workspace};

/// Most sample numbers one `attributions?indices=` request may ask for.
pub const MAX_INDICES: usize = 1000;
/// Most values ViRelAy's JSON analysis route sends (use the binary routes beyond).
pub const MAX_JSON_VALUES: usize = 4_000_000;

struct AppState {
    ws: Arc<Workspace>,
    cache: ByteCache,
}

type Shared = Arc<AppState>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// An error answered as `{"errorMessage": …}` with a 4xx/5xx status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errorMessage": self.1 }))).into_response()
    }
}

impl From<ViewerError> for ApiError {
    fn from(e: ViewerError) -> Self {
        let message = prism_store::error::chain(&e);
        tracing::warn!("request failed: {message}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg.into())
}

type ApiResult = Result<Response, ApiError>;

/// The router over a workspace, with a response cache of `cache_bytes`; every answer carries the
/// security headers of [`crate::guard`]. It checks neither `Host` nor a token: [`crate::serve`]
/// adds those checks.
pub fn router(ws: Arc<Workspace>, cache_bytes: usize) -> Router {
    routes(ws, cache_bytes).layer(axum::middleware::from_fn(crate::guard::headers))
}

/// The routes alone.
pub(crate) fn routes(ws: Arc<Workspace>, cache_bytes: usize) -> Router {
    let state = Arc::new(AppState {
        ws,
        cache: ByteCache::new(cache_bytes),
    });
    Router::new()
        .route("/api/projects", get(projects))
        .route("/api/projects/{id}", get(project))
        .route("/api/projects/{id}/dataset/{index}", get(dataset_sample))
        .route(
            "/api/projects/{id}/dataset/{index}/image",
            get(dataset_image),
        )
        .route(
            "/api/projects/{id}/dataset/{index}/tokens",
            get(dataset_tokens),
        )
        .route("/api/projects/{id}/attributions", get(attributions))
        .route("/api/projects/{id}/attributions/{index}", get(attribution))
        .route(
            "/api/projects/{id}/attributions/{index}/heatmap",
            get(attribution_heatmap),
        )
        .route(
            "/api/projects/{id}/attributions/{index}/image",
            get(attribution_image),
        )
        .route(
            "/api/projects/{id}/attributions/{index}/tokens",
            get(attribution_tokens),
        )
        .route("/api/projects/{id}/analyses/{method}", get(analysis_json))
        .route(
            "/api/projects/{id}/analyses/{method}/category",
            get(category_meta),
        )
        .route(
            "/api/projects/{id}/analyses/{method}/index.u32",
            get(category_index),
        )
        .route(
            "/api/projects/{id}/analyses/{method}/embedding.f32",
            get(category_embedding),
        )
        .route(
            "/api/projects/{id}/analyses/{method}/clustering.i32",
            get(category_clustering),
        )
        .route("/api/projects/{id}/concepts", get(concepts::layers))
        .route(
            "/api/projects/{id}/concepts/{layer}/samples/{sample}",
            get(concepts::sample_concepts),
        )
        .route(
            "/api/projects/{id}/concepts/{layer}/samples/{sample}/heatmaps/{channel}/image",
            get(concepts::heatmap_image),
        )
        .route(
            "/api/projects/{id}/concepts/{layer}/selection",
            get(concepts::selection_concepts),
        )
        .route(
            "/api/projects/{id}/concepts/{layer}/cluster",
            get(concepts::cluster_concepts),
        )
        .route(
            "/api/projects/{id}/concepts/{layer}/channels/{channel}",
            get(concepts::channel_references),
        )
        .route(
            "/api/projects/{id}/concepts/{layer}/channels/{channel}/references/{rank}/image",
            get(concepts::reference_image),
        )
        .route("/api/color-maps", get(color_maps))
        .route("/api/color-maps/{name}", get(color_map_image))
        .fallback(get(static_asset))
        .with_state(state)
}

// ---------------------------------------------------------------- helpers

fn query(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| bad(format!("malformed query string: {e}")))
}

fn required<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    match q.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(format!("the query parameter `{name}` is required"))),
    }
}

fn project_of(ws: &Workspace, id: &str) -> Result<usize, ApiError> {
    let n: usize = id
        .parse()
        .map_err(|_| bad(format!("project id `{id}` is not a number")))?;
    if n >= ws.projects.len() {
        return Err(not_found(format!(
            "there is no project {n} (the server has {})",
            ws.projects.len()
        )));
    }
    Ok(n)
}

fn sample_of(s: &str) -> Result<u32, ApiError> {
    s.parse()
        .map_err(|_| bad(format!("sample index `{s}` is not a number in 0..2³²")))
}

fn path2(p: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| bad(format!("malformed path: {e}")))
}

fn path1(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| bad(format!("malformed path: {e}")))
}

fn color_map_of(name: Option<&String>) -> Result<&'static BuiltinColorMap, ApiError> {
    let name = name
        .map(String::as_str)
        .unwrap_or(prism_heatmap::DEFAULT_COLOR_MAP);
    BuiltinColorMap::by_name(name).ok_or_else(|| {
        bad(format!(
            "unknown colour map `{name}`; known: {}",
            BUILTIN_COLOR_MAPS.map(|m| m.name).join(", ")
        ))
    })
}

fn normalization_of(
    q: &HashMap<String, String>,
    map: &BuiltinColorMap,
) -> Result<Normalization, ApiError> {
    match q.get("normalization") {
        None => Ok(render::default_normalization(map)),
        Some(s) => render::parse_normalization(s).ok_or_else(|| {
            bad(format!(
                "unknown normalization `{s}`; use symmetric, absolute or unaligned"
            ))
        }),
    }
}

fn bytes_response(entry: Entry) -> Response {
    let mut r = Response::new(axum::body::Body::from(entry.bytes.as_ref().clone()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(entry.content_type),
    );
    // Projects are read once at start-up and never change while the server runs.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=600"),
    );
    if entry.content_type.starts_with("text/html") {
        // The token pages: inline styles only, never a script, shown in a frame of the UI.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
            ),
        );
    }
    r
}

/// Answers from the cache, or computes the body on a blocking thread and caches it.
async fn cached<F>(state: Shared, key: String, content_type: &'static str, compute: F) -> ApiResult
where
    F: FnOnce(&Workspace) -> Result<Vec<u8>, ApiError> + Send + 'static,
{
    if let Some(e) = state.cache.get(&key) {
        return Ok(bytes_response(e));
    }
    let st = state.clone();
    let bytes = tokio::task::spawn_blocking(move || compute(&st.ws))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("worker failed: {e}"),
            )
        })??;
    let entry = Entry {
        content_type,
        bytes: Arc::new(bytes),
    };
    state.cache.insert(key, entry.clone());
    Ok(bytes_response(entry))
}

async fn blocking<T, F>(state: &Shared, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Workspace) -> Result<T, ApiError> + Send + 'static,
{
    let st = state.clone();
    tokio::task::spawn_blocking(move || f(&st.ws))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("worker failed: {e}"),
            )
        })?
}

fn label_json(p: &LoadedProject, class: u32) -> Value {
    match p.label(class) {
        Some(e) => json!({"index": class, "wordNetId": e.word_net_id, "name": e.name}),
        None => json!({"index": class, "wordNetId": "", "name": class.to_string()}),
    }
}

/// The project's dataset kind as the project file spells it.
fn dataset_kind(p: &LoadedProject) -> &'static str {
    match p.project.dataset.kind {
        prism_store::project::DatasetKind::Hdf5 => "hdf5",
        prism_store::project::DatasetKind::ImageDirectory => "image_directory",
        prism_store::project::DatasetKind::Tokens => "tokens",
    }
}

/// The answer to a picture asked of a token project.
fn no_pictures(id: usize, index: u32) -> ApiError {
    not_found(format!(
        "project {id} has a token dataset: its samples are text, not pictures; ask \
         /api/projects/{id}/attributions/{index}/tokens for the tokens coloured by relevance"
    ))
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * N);
    for &x in v {
        out.extend_from_slice(&f(x));
    }
    out
}

// ---------------------------------------------------------------- projects

async fn projects(State(s): State<Shared>) -> Response {
    let list: Vec<Value> =
        s.ws.projects
            .iter()
            .enumerate()
            .map(|(id, p)| {
                json!({
                    "id": id,
                    "name": p.project.name,
                    "model": p.project.model,
                    "dataset": p.project.dataset.name,
                })
            })
            .collect();
    Json(list).into_response()
}

async fn project(State(s): State<Shared>, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = project_of(&s.ws, &path1(id)?)?;
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[id];
        let mut methods = Vec::new();
        for a in &p.analyses {
            let categories: Vec<Value> = a
                .categories
                .iter()
                .map(|(c, _)| json!({"name": c, "humanReadableName": p.category_display_name(c)}))
                .collect();
            // ViRelAy takes the names from the first category.
            let first = match a.categories.first() {
                Some((c, _)) => a.category_meta(c)?,
                None => None,
            };
            let (clusterings, embeddings) = match first {
                Some(m) => (
                    m.clusterings.clone(),
                    m.embeddings.iter().map(|e| e.0.clone()).collect(),
                ),
                None => (Vec::new(), Vec::new()),
            };
            methods.push(json!({
                "name": a.method,
                "clusterings": clusterings,
                "embeddings": embeddings,
                "categories": categories,
            }));
        }
        let (w, h) = p.dataset.size();
        Ok(json!({
            "id": id,
            "name": p.project.name,
            "model": p.project.model,
            "dataset": p.project.dataset.name,
            "attributionMethod": p.project.attributions.method,
            "attributionStrategy": p.project.attributions.strategy,
            "datasetSize": p.dataset.len(),
            "datasetKind": dataset_kind(p),
            "width": w,
            "height": h,
            "labels": p.label_map.iter().map(|e| json!({"index": e.index, "wordNetId": e.word_net_id, "name": e.name})).collect::<Vec<_>>(),
            "analysisMethods": methods,
            "conceptLayers": p.concept_layer_count(),
        }))
    })
    .await?;
    Ok(Json(v).into_response())
}

// ---------------------------------------------------------------- dataset

async fn dataset_sample(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let p = &s.ws.projects[id];
    let labels = p
        .dataset
        .labels(index as usize)
        .ok_or_else(|| not_found(format!("the dataset has no sample {index}")))?;
    let (w, h) = p.dataset.size();
    let route = if p.dataset.is_tokens() {
        "tokens"
    } else {
        "image"
    };
    Ok(Json(json!({
        "index": index,
        "labels": labels.iter().map(|&c| label_json(p, c)).collect::<Vec<_>>(),
        "width": w,
        "height": h,
        "url": format!("/api/projects/{id}/dataset/{index}/{route}"),
    }))
    .into_response())
}

/// The tokens of a sample of a token dataset: `{index, tokens, attentionMask}`.
async fn dataset_tokens(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let p = &s.ws.projects[id];
    if index as usize >= p.dataset.len() {
        return Err(not_found(format!("the dataset has no sample {index}")));
    }
    let Some(spelled) = p.dataset.tokens(index as usize) else {
        return Err(not_found(format!(
            "project {id}'s dataset holds pictures, not tokens; ask \
             /api/projects/{id}/dataset/{index}/image"
        )));
    };
    let (tokens, mask) = spelled.map_err(ViewerError::from)?;
    Ok(Json(json!({
        "index": index,
        "tokens": tokens,
        "attentionMask": mask,
    }))
    .into_response())
}

async fn dataset_image(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)? as usize;
    if index >= s.ws.projects[id].dataset.len() {
        return Err(not_found(format!("the dataset has no sample {index}")));
    }
    if s.ws.projects[id].dataset.is_tokens() {
        return Err(no_pictures(id, index as u32));
    }
    cached(s, format!("in/{id}/{index}"), "image/png", move |ws| {
        Ok(render::input_png(&ws.projects[id], index)?)
    })
    .await
}

// ---------------------------------------------------------------- attributions

fn attribution_json(
    p: &LoadedProject,
    id: usize,
    index: u32,
    mode: ImageMode,
    map: &BuiltinColorMap,
) -> Result<Option<Value>, ApiError> {
    let Some(at) = p.attribution_row(index) else {
        return Ok(None);
    };
    let prediction = p.prediction(at)?;
    let mut order: Vec<usize> = (0..prediction.len()).collect();
    order.sort_by(|&a, &b| prediction[b].total_cmp(&prediction[a]));
    let top: Vec<Value> = order
        .iter()
        .take(5)
        .map(|&c| {
            let mut l = label_json(p, c as u32);
            l["score"] = json!(prediction[c]);
            l
        })
        .collect();
    let [_, h, w] = p.attributions[at.file].sample_shape();
    let tokens = p.dataset.is_tokens();
    let url = |m: &str| {
        if tokens {
            format!("/api/projects/{id}/attributions/{index}/tokens?colorMap={m}")
        } else if mode == ImageMode::Input {
            format!("/api/projects/{id}/attributions/{index}/image?mode=input")
        } else {
            format!(
                "/api/projects/{id}/attributions/{index}/image?mode={}&colorMap={m}",
                mode.name()
            )
        }
    };
    let urls: serde_json::Map<String, Value> = BUILTIN_COLOR_MAPS
        .iter()
        .map(|m| (m.name.to_string(), json!(url(m.name))))
        .collect();
    Ok(Some(json!({
        "index": index,
        "labels": p.attribution_labels(at).iter().map(|&c| label_json(p, c)).collect::<Vec<_>>(),
        "prediction": prediction,
        "topPredictions": top,
        "width": w,
        "height": h,
        "url": url(map.name),
        "urls": urls,
    })))
}

fn mode_of(q: &HashMap<String, String>) -> Result<ImageMode, ApiError> {
    match q.get("imageMode").or_else(|| q.get("mode")) {
        None => Ok(ImageMode::Overlay),
        Some(m) => ImageMode::parse(m).ok_or_else(|| {
            bad(format!(
                "unknown image mode `{m}`; use input, attribution or overlay"
            ))
        }),
    }
}

async fn attributions(
    State(s): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let id = project_of(&s.ws, &path1(id)?)?;
    let q = query(q)?;
    let mode = mode_of(&q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let raw = required(&q, "indices")?;
    let mut indices = Vec::new();
    for part in raw.split(',') {
        indices.push(sample_of(part.trim())?);
        if indices.len() > MAX_INDICES {
            return Err(bad(format!(
                "at most {MAX_INDICES} indices per request; split the request"
            )));
        }
    }
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[id];
        let mut out = Vec::with_capacity(indices.len());
        for i in indices {
            match attribution_json(p, id, i, mode, map)? {
                Some(v) => out.push(v),
                None => return Err(not_found(format!("sample {i} has no attribution"))),
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn attribution(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let q = query(q)?;
    let mode = mode_of(&q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let v = blocking(&s, move |ws| {
        attribution_json(&ws.projects[id], id, index, mode, map)?
            .ok_or_else(|| not_found(format!("sample {index} has no attribution")))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn image_response(
    s: Shared,
    id: usize,
    index: u32,
    mode: ImageMode,
    map: &'static BuiltinColorMap,
    norm: Normalization,
) -> ApiResult {
    let p = &s.ws.projects[id];
    if p.attribution_row(index).is_none()
        && !(mode == ImageMode::Input && (index as usize) < p.dataset.len())
    {
        return Err(not_found(format!("sample {index} has no attribution")));
    }
    if p.dataset.is_tokens() {
        return Err(no_pictures(id, index));
    }
    if mode == ImageMode::Input {
        if index as usize >= p.dataset.len() {
            return Err(not_found(format!("the dataset has no sample {index}")));
        }
        let i = index as usize;
        return cached(s, format!("in/{id}/{i}"), "image/png", move |ws| {
            Ok(render::input_png(&ws.projects[id], i)?)
        })
        .await;
    }
    let key = format!(
        "hm/{id}/{index}/{}/{}/{}",
        mode.name(),
        map.name,
        render::normalization_name(norm)
    );
    cached(s, key, "image/png", move |ws| {
        render::heatmap_png(
            &ws.projects[id],
            index,
            map,
            norm,
            mode == ImageMode::Overlay,
        )?
        .ok_or_else(|| not_found(format!("sample {index} has no attribution")))
    })
    .await
}

async fn attribution_image(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let q = query(q)?;
    let mode = mode_of(&q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let norm = normalization_of(&q, map)?;
    image_response(s, id, index, mode, map, norm).await
}

/// A token project's sample: its text, each token coloured by its relevance, as the HTML page
/// `prism heatmap --tokens` writes (`?colorMap=…&normalization=…`).
async fn attribution_tokens(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let q = query(q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let norm = normalization_of(&q, map)?;
    let p = &s.ws.projects[id];
    if !p.dataset.is_tokens() {
        return Err(not_found(format!(
            "project {id}'s dataset holds pictures, not tokens; ask \
             /api/projects/{id}/attributions/{index}/image"
        )));
    }
    if p.attribution_row(index).is_none() {
        return Err(not_found(format!("sample {index} has no attribution")));
    }
    let key = format!(
        "tk/{id}/{index}/{}/{}",
        map.name,
        render::normalization_name(norm)
    );
    cached(s, key, "text/html; charset=utf-8", move |ws| {
        let html = render::tokens_html(&ws.projects[id], index, map, norm)?
            .ok_or_else(|| not_found(format!("sample {index} has no attribution")))?;
        Ok(html.into_bytes())
    })
    .await
}

/// ViRelAy's heatmap route: `?colorMap=…&superimpose=true|false`.
async fn attribution_heatmap(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (id, index) = path2(p)?;
    let id = project_of(&s.ws, &id)?;
    let index = sample_of(&index)?;
    let q = query(q)?;
    let map = color_map_of(q.get("colorMap"))?;
    let norm = normalization_of(&q, map)?;
    let mode = match q.get("superimpose").map(String::as_str) {
        None | Some("false") | Some("0") => ImageMode::Attribution,
        Some("true") | Some("1") => ImageMode::Overlay,
        Some(o) => return Err(bad(format!("superimpose must be true or false, not `{o}`"))),
    };
    image_response(s, id, index, mode, map, norm).await
}

// ---------------------------------------------------------------- analyses

struct AnalysisQuery {
    id: usize,
    method: String,
    category: String,
}

fn analysis_of(
    ws: &Workspace,
    p: Result<Path<(String, String)>, PathRejection>,
    q: &HashMap<String, String>,
) -> Result<AnalysisQuery, ApiError> {
    let (id, method) = path2(p)?;
    let id = project_of(ws, &id)?;
    let project = &ws.projects[id];
    let a = project.analysis(&method).ok_or_else(|| {
        not_found(format!(
            "project {id} has no analysis `{method}`; it has: {}",
            project
                .analyses
                .iter()
                .map(|a| a.method.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let category = required(q, "category")?.to_string();
    if !a.has_category(&category) {
        return Err(not_found(format!(
            "analysis `{method}` has no category `{category}`"
        )));
    }
    Ok(AnalysisQuery {
        id,
        method,
        category,
    })
}

async fn category_meta(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let a = analysis_of(&s.ws, p, &q)?;
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[a.id];
        let an = p.analysis(&a.method).ok_or_else(|| not_found("analysis"))?;
        let m = an
            .category_meta(&a.category)?
            .ok_or_else(|| not_found(format!("no category `{}`", a.category)))?;
        Ok(json!({
            "name": m.name,
            "humanReadableName": p.category_display_name(&m.name),
            "size": m.n,
            "embeddings": m.embeddings.iter().map(|(n, d, e)| json!({"name": n, "dimensions": d, "eigenvalues": e})).collect::<Vec<_>>(),
            "clusterings": m.clusterings,
            "eigengapSuggestedK": m.eigengap_suggested_k,
        }))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn category_index(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let a = analysis_of(&s.ws, p, &q)?;
    let key = format!("ix/{}/{}/{}", a.id, a.method, a.category);
    cached(s, key, "application/octet-stream", move |ws| {
        let an = ws.projects[a.id]
            .analysis(&a.method)
            .ok_or_else(|| not_found("analysis"))?;
        let v = an
            .index(&a.category)?
            .ok_or_else(|| not_found("category"))?;
        Ok(le_bytes(&v, u32::to_le_bytes))
    })
    .await
}

fn dims_of(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let Some(d) = q.get("dims") else {
        return Ok((0, 1));
    };
    let parts: Vec<&str> = d.split(',').collect();
    let parse = |s: &str| {
        s.trim().parse::<usize>().map_err(|_| {
            bad(format!(
                "dims must be two column numbers like `0,1`, got `{d}`"
            ))
        })
    };
    match parts[..] {
        [x, y] => Ok((parse(x)?, parse(y)?)),
        _ => Err(bad(format!(
            "dims must be two column numbers like `0,1`, got `{d}`"
        ))),
    }
}

async fn category_embedding(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let a = analysis_of(&s.ws, p, &q)?;
    let embedding = required(&q, "embedding")?.to_string();
    let dims = dims_of(&q)?;
    let key = format!(
        "em/{}/{}/{}/{}/{}/{}",
        a.id, a.method, a.category, embedding, dims.0, dims.1
    );
    if let Some(e) = s.cache.get(&key) {
        return Ok(bytes_response(e));
    }
    // Check the name and the dimensions before reading (and before anything is cached).
    let (em, cat) = (embedding.clone(), a.category.clone());
    let (method, id) = (a.method.clone(), a.id);
    let dim = blocking(&s, move |ws| {
        let an = ws.projects[id]
            .analysis(&method)
            .ok_or_else(|| not_found("analysis"))?;
        let m = an
            .category_meta(&cat)?
            .ok_or_else(|| not_found("category"))?;
        m.embeddings
            .iter()
            .find(|e| e.0 == em)
            .map(|e| e.1)
            .ok_or_else(|| not_found(format!("category `{cat}` has no embedding `{em}`")))
    })
    .await?;
    if dims.0 >= dim || dims.1 >= dim {
        return Err(bad(format!(
            "embedding `{embedding}` has {dim} dimensions; dims {},{} are out of range",
            dims.0, dims.1
        )));
    }
    cached(s, key, "application/octet-stream", move |ws| {
        let an = ws.projects[a.id]
            .analysis(&a.method)
            .ok_or_else(|| not_found("analysis"))?;
        let v = an
            .embedding_xy(&a.category, &embedding, dims)?
            .ok_or_else(|| not_found("embedding"))?;
        Ok(le_bytes(&v, f32::to_le_bytes))
    })
    .await
}

async fn category_clustering(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let a = analysis_of(&s.ws, p, &q)?;
    let clustering = required(&q, "clustering")?.to_string();
    let key = format!("cl/{}/{}/{}/{}", a.id, a.method, a.category, clustering);
    cached(s, key, "application/octet-stream", move |ws| {
        let an = ws.projects[a.id]
            .analysis(&a.method)
            .ok_or_else(|| not_found("analysis"))?;
        let m = an
            .category_meta(&a.category)?
            .ok_or_else(|| not_found("category"))?;
        if !m.clusterings.contains(&clustering) {
            return Err(not_found(format!(
                "category `{}` has no clustering `{clustering}`",
                a.category
            )));
        }
        let v = an
            .clustering(&a.category, &clustering)?
            .ok_or_else(|| not_found("clustering"))?;
        Ok(le_bytes(&v, i32::to_le_bytes))
    })
    .await
}

/// ViRelAy's analysis route: every point as a JSON object (kept for compatibility).
async fn analysis_json(
    State(s): State<Shared>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let a = analysis_of(&s.ws, p, &q)?;
    let clustering = required(&q, "clustering")?.to_string();
    let embedding = required(&q, "embedding")?.to_string();
    let v = blocking(&s, move |ws| {
        let p = &ws.projects[a.id];
        let an = p.analysis(&a.method).ok_or_else(|| not_found("analysis"))?;
        let m = an
            .category_meta(&a.category)?
            .ok_or_else(|| not_found("category"))?;
        let Some((_, d, eig)) = m.embeddings.iter().find(|e| e.0 == embedding) else {
            return Err(not_found(format!("no embedding `{embedding}`")));
        };
        if !m.clusterings.contains(&clustering) {
            return Err(not_found(format!("no clustering `{clustering}`")));
        }
        if m.n * d > MAX_JSON_VALUES {
            return Err(bad(format!(
                "{} points × {d} dimensions is too much for JSON; use the binary routes \
                 (embedding.f32, clustering.i32, index.u32)",
                m.n
            )));
        }
        let index = an.index(&a.category)?.unwrap_or_default();
        let (d, values) = an
            .embedding_full(&a.category, &embedding)?
            .unwrap_or_default();
        let clusters = an.clustering(&a.category, &clustering)?.unwrap_or_default();
        let points: Vec<Value> = index
            .iter()
            .zip(values.chunks(d.max(1)))
            .zip(&clusters)
            .map(|((i, v), c)| json!({"attributionIndex": i, "cluster": c, "value": v}))
            .collect();
        let mut out = json!({
            "categoryName": a.category,
            "humanReadableCategoryName": p.category_display_name(&a.category),
            "clusteringName": clustering,
            "embeddingName": embedding,
            "embedding": points,
        });
        if let Some(e) = eig {
            out["eigenvalues"] = json!(e);
        }
        Ok(out)
    })
    .await?;
    Ok(Json(v).into_response())
}

// ---------------------------------------------------------------- colour maps

async fn color_maps() -> Response {
    let v: Vec<Value> = BUILTIN_COLOR_MAPS
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "humanReadableName": m.name,
                "description": m.description,
                "signed": m.signed,
                "defaultNormalization": render::normalization_name(render::default_normalization(m)),
                "url": format!("/api/color-maps/{}", m.name),
            })
        })
        .collect();
    Json(v).into_response()
}

async fn color_map_image(
    State(s): State<Shared>,
    name: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let name = path1(name)?;
    let q = query(q)?;
    let map = BuiltinColorMap::by_name(&name)
        .ok_or_else(|| not_found(format!("unknown colour map `{name}`")))?;
    let size = |k: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad(format!("{k} must be a number in 1..={max}, got `{v}`"))),
            },
        }
    };
    let (w, h) = (size("width", 200, 4096)?, size("height", 20, 512)?);
    cached(s, format!("cb/{name}/{w}/{h}"), "image/png", move |_| {
        Ok(render::color_bar_png(map, w, h)?)
    })
    .await
}

// ---------------------------------------------------------------- UI

async fn static_asset(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" {
        return not_found(format!("no API route `{path}`")).into_response();
    }
    match crate::assets::asset(path) {
        Some((content_type, body)) => {
            let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => not_found(format!("no file `{path}`")).into_response(),
    }
}
