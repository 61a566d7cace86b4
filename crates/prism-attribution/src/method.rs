//! An attribution method as one value: where the composite comes from, the attributor, the seed
//! mode, canonizers, and every rule and attributor parameter ([`MethodSpec`]).
//!
//! A `MethodSpec` is what a run records and compares: it serialises with serde, and its
//! [`Display`](std::fmt::Display) form is the one-line description stored in attribution files
//! and hashed into resume keys (so that form must never change; [`FromStr`] reads it back).
//! [`MethodSpec::build`] turns it into the runnable parts ([`Method`]). Reading a composite
//! file is the caller's job: `build` takes the file's TOML text.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use prism_model::Tensor;
use serde::{Deserialize, Serialize};

use crate::attributor::{
    Attributor, AttributorParams, BaselineArray, Baselines, Fill, DEFAULT_BASELINE,
    DEFAULT_BLUR_SIGMA, DEFAULT_NOISE_LEVEL, DEFAULT_SEED, DEFAULT_STRIDE,
    DEFAULT_UNIFORM_BASELINES, DEFAULT_WINDOW,
};
use crate::composite::{Composite, CompositeParams};
use crate::error::{AttributionError, Result};
use crate::rule::{
    Bound, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_BETA_SMOOTH, DEFAULT_EPSILON, DEFAULT_GAMMA,
    DEFAULT_STABILIZER,
};
use crate::SeedMode;

/// Where a method's LRP composite comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CompositeSource {
    /// No composite: the attributor drives plain gradients.
    #[default]
    None,
    /// A built-in composite, by the name as given (Zennit's, kebab or snake case).
    Builtin { name: String },
    /// A user composite from a TOML file; `blake3` (hex) identifies the file's bytes.
    File { path: PathBuf, blake3: String },
}

impl CompositeSource {
    /// Reads a user composite file: its source (path and blake3 of its bytes, for provenance and
    /// run keys) and its TOML text, for [`MethodSpec::build`].
    pub fn read_file(path: &std::path::Path) -> Result<(CompositeSource, String)> {
        let bad = |detail: String| AttributionError::CompositeFile {
            path: path.display().to_string(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let source = CompositeSource::File {
            path: path.to_path_buf(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        Ok((source, text))
    }
}

impl fmt::Display for CompositeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompositeSource::None => f.write_str("none"),
            CompositeSource::Builtin { name } => f.write_str(name),
            CompositeSource::File { path, blake3 } => {
                write!(f, "file:{}#{blake3}", path.display())
            }
        }
    }
}

impl FromStr for CompositeSource {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        if s == "none" {
            return Ok(CompositeSource::None);
        }
        if let Some(rest) = s.strip_prefix("file:") {
            // the path may hold '#'; the hash (hex) never does
            let (path, hash) = rest.rsplit_once('#').ok_or_else(|| {
                AttributionError::MethodDescription(format!(
                    "composite '{s}' has no #hash after the file path"
                ))
            })?;
            return Ok(CompositeSource::File {
                path: PathBuf::from(path),
                blake3: hash.to_string(),
            });
        }
        Ok(CompositeSource::Builtin {
            name: s.to_string(),
        })
    }
}

/// Integrated Gradients' baselines other than a constant, as a method records them:
/// `blur:SIGMA`, `uniform:K` (drawn with the method's seed) or `file:PATH#BLAKE3` (an array;
/// the hash identifies the file's bytes, like a composite file's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BaselineSource {
    Blur { sigma: f64 },
    Uniform { count: usize },
    File { path: PathBuf, blake3: String },
}

impl fmt::Display for BaselineSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineSource::Blur { sigma } => write!(f, "blur:{sigma}"),
            BaselineSource::Uniform { count } => write!(f, "uniform:{count}"),
            BaselineSource::File { path, blake3 } => {
                write!(f, "file:{}#{blake3}", path.display())
            }
        }
    }
}

impl FromStr for BaselineSource {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            bad(format!(
                "baseline_source={s} is not blur:S, uniform:K or file:PATH#HASH"
            ))
        };
        if let Some(rest) = s.strip_prefix("file:") {
            let (path, hash) = rest.rsplit_once('#').ok_or_else(bad)?;
            return Ok(BaselineSource::File {
                path: PathBuf::from(path),
                blake3: hash.to_string(),
            });
        }
        match s.split_once(':') {
            Some(("blur", v)) => Ok(BaselineSource::Blur {
                sigma: v.parse().map_err(|_| bad())?,
            }),
            Some(("uniform", v)) => Ok(BaselineSource::Uniform {
                count: v.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

impl From<BaselineSource> for String {
    fn from(b: BaselineSource) -> String {
        b.to_string()
    }
}

impl TryFrom<String> for BaselineSource {
    type Error = AttributionError;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// `--baseline` (the Python `baseline` key) as written: a number, `blur[:SIGMA]`,
/// `uniform[:K]`, or a `.npy` file, which the caller reads (with its hash) into a
/// [`BaselineSource::File`] and hands to [`MethodSpec::build_with`].
#[derive(Clone, Debug, PartialEq)]
pub enum BaselineArg {
    Constant(f64),
    Source(BaselineSource),
    File(PathBuf),
}

impl BaselineArg {
    /// Reads the argument; `blur` and `uniform` alone take [`DEFAULT_BLUR_SIGMA`] and
    /// [`DEFAULT_UNIFORM_BASELINES`].
    pub fn parse(s: &str) -> Result<BaselineArg> {
        let bad = || AttributionError::Parameter {
            names: &["baseline"],
            detail: format!("'{s}' is not a number, blur[:SIGMA], uniform[:K] or a .npy file"),
        };
        if let Ok(v) = s.parse::<f64>() {
            return Ok(BaselineArg::Constant(v));
        }
        if s.ends_with(".npy") {
            return Ok(BaselineArg::File(PathBuf::from(s)));
        }
        let (kind, value) = match s.split_once(':') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        match kind {
            "blur" => Ok(BaselineArg::Source(BaselineSource::Blur {
                sigma: value.map_or(Ok(DEFAULT_BLUR_SIGMA), |v| v.parse().map_err(|_| bad()))?,
            })),
            "uniform" => Ok(BaselineArg::Source(BaselineSource::Uniform {
                count: value.map_or(Ok(DEFAULT_UNIFORM_BASELINES), |v| {
                    v.parse().map_err(|_| bad())
                })?,
            })),
            _ => Err(bad()),
        }
    }
}

/// How the initial relevance is formed, in a method description (`OneHot`, `Logit`).
mod seed_mode_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::SeedMode;

    pub fn serialize<S: Serializer>(m: &SeedMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::seed_mode_name(*m))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SeedMode, D::Error> {
        let name = String::deserialize(d)?;
        super::parse_seed_mode(&name).map_err(serde::de::Error::custom)
    }
}

fn seed_mode_name(m: SeedMode) -> &'static str {
    match m {
        SeedMode::OneHot => "OneHot",
        SeedMode::Logit => "Logit",
    }
}

fn parse_seed_mode(s: &str) -> Result<SeedMode> {
    match s {
        "OneHot" => Ok(SeedMode::OneHot),
        "Logit" => Ok(SeedMode::Logit),
        other => Err(AttributionError::MethodDescription(format!(
            "seed mode '{other}' is neither OneHot nor Logit"
        ))),
    }
}

/// Everything that decides an attribution: composite, attributor, seed mode, canonizers and
/// every parameter, whether or not the chosen composite and attributor use it.
///
/// `Default` is Zennit's defaults: no composite, the gradient attributor, one-hot seed,
/// canonizers on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodSpec {
    pub composite: CompositeSource,
    /// The attributor's name as given (`gradient`, `smoothgrad`, `integrated-gradients`,
    /// `occlusion`; snake case accepted).
    pub attributor: String,
    #[serde(with = "seed_mode_serde")]
    pub seed_mode: SeedMode,
    pub canonize: bool,
    pub zero_bias: bool,
    pub epsilon: f64,
    pub stabilizer: f64,
    pub gamma: f64,
    pub alpha: f64,
    pub beta: f64,
    pub low: Option<Bound>,
    pub high: Option<Bound>,
    pub beta_smooth: f64,
    /// `None`: the attributor's default ([`crate::attributor::DEFAULT_N_ITER`]).
    pub n_iter: Option<usize>,
    pub noise_level: f64,
    pub baseline: f64,
    pub window: Vec<usize>,
    pub stride: Vec<usize>,
    pub invert_occlusion: bool,
    pub seed: u64,
    /// The layer (an ONNX node or tensor name) a class-activation-map attributor reads its
    /// activations and gradients at (`grad-cam`, …); `None`: the last convolution.
    /// An optional field ([`OPTIONAL_METHOD_FIELDS`]): written in the description only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// SmoothGrad, SmoothGrad² and VarGrad with Captum's noise (σ = `noise_level`, every copy
    /// noisy) instead of Zennit's ([`crate::Noise`]). Optional field: written when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absolute_noise: bool,
    /// Integrated Gradients' baselines when not the constant `baseline`. Optional field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_source: Option<BaselineSource>,
    /// Occlusion's fill when not Zennit's zero. Optional field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion_fill: Option<Fill>,
}

impl Default for MethodSpec {
    fn default() -> Self {
        MethodSpec {
            composite: CompositeSource::None,
            attributor: "gradient".into(),
            seed_mode: SeedMode::OneHot,
            canonize: true,
            zero_bias: false,
            epsilon: DEFAULT_EPSILON,
            stabilizer: DEFAULT_STABILIZER,
            gamma: DEFAULT_GAMMA,
            alpha: DEFAULT_ALPHA,
            beta: DEFAULT_BETA,
            low: None,
            high: None,
            beta_smooth: DEFAULT_BETA_SMOOTH,
            n_iter: None,
            noise_level: DEFAULT_NOISE_LEVEL,
            baseline: DEFAULT_BASELINE,
            window: vec![DEFAULT_WINDOW],
            stride: vec![DEFAULT_STRIDE],
            invert_occlusion: false,
            seed: DEFAULT_SEED,
            layer: None,
            absolute_noise: false,
            baseline_source: None,
            occlusion_fill: None,
        }
    }
}

/// A method ready to run: what [`crate::Explainer`] and its `attribute` take.
#[derive(Clone, Debug)]
pub struct Method {
    pub composite: Option<Composite>,
    pub attributor: Attributor,
    pub seed: SeedMode,
    pub canonize: bool,
}

impl MethodSpec {
    /// The parameters of the built-in composites.
    pub fn composite_params(&self) -> CompositeParams {
        CompositeParams {
            epsilon: self.epsilon,
            stabilizer: self.stabilizer,
            gamma: self.gamma,
            alpha: self.alpha,
            beta: self.beta,
            low: self.low.clone(),
            high: self.high.clone(),
            beta_smooth: self.beta_smooth,
            zero_bias: self.zero_bias,
        }
    }

    /// The parameters of the attributors; `baseline_array` is the array of a
    /// [`BaselineSource::File`] (an error when it is missing).
    pub fn attributor_params(
        &self,
        baseline_array: Option<Tensor<f64>>,
    ) -> Result<AttributorParams> {
        let baselines = match (&self.baseline_source, baseline_array) {
            (None, None) => Baselines::Constant,
            (Some(BaselineSource::Blur { sigma }), None) => Baselines::Blur { sigma: *sigma },
            (Some(BaselineSource::Uniform { count }), None) => Baselines::Uniform {
                count: *count,
                seed: self.seed,
            },
            (Some(BaselineSource::File { path, .. }), Some(values)) => {
                Baselines::Array(std::sync::Arc::new(BaselineArray {
                    name: path.display().to_string(),
                    values,
                }))
            }
            (Some(BaselineSource::File { path, .. }), None) => {
                return Err(AttributionError::Invalid(format!(
                    "the baseline array {} was not given to the method (the caller reads the \
                     file: MethodSpec::build_with)",
                    path.display()
                )))
            }
            (_, Some(_)) => {
                return Err(AttributionError::Invalid(
                    "a baseline array was given but the method's baseline is not a file".into(),
                ))
            }
        };
        Ok(AttributorParams {
            n_iter: self.n_iter,
            noise_level: self.noise_level,
            window: self.window.clone(),
            stride: self.stride.clone(),
            invert: self.invert_occlusion,
            seed: self.seed,
            baseline: self.baseline,
            layer: self.layer.clone(),
            absolute_noise: self.absolute_noise,
            baselines,
            fill: self.occlusion_fill.unwrap_or_default(),
        })
    }

    /// Builds the composite and the attributor. `composite_toml` is the text of the composite
    /// file when [`MethodSpec::composite`] is a [`CompositeSource::File`] (ignored otherwise).
    /// A method with a baseline file takes [`build_with`](Self::build_with).
    pub fn build(&self, composite_toml: Option<&str>) -> Result<Method> {
        self.build_with(composite_toml, None)
    }

    /// [`build`](Self::build), with the array of a [`BaselineSource::File`] baseline (read by
    /// the caller, who also recorded its path and hash in [`MethodSpec::baseline_source`]).
    pub fn build_with(
        &self,
        composite_toml: Option<&str>,
        baseline_array: Option<Tensor<f64>>,
    ) -> Result<Method> {
        let params = self.composite_params();
        let composite = match &self.composite {
            CompositeSource::None => None,
            CompositeSource::Builtin { name } => Some(Composite::builtin(name, &params)?),
            CompositeSource::File { path, .. } => {
                let in_file = |detail: String| AttributionError::CompositeFile {
                    path: path.display().to_string(),
                    detail,
                };
                let text = composite_toml.ok_or_else(|| {
                    in_file("the file's TOML text was not given to the method".into())
                })?;
                let c = Composite::from_toml_with(text, &params).map_err(|e| match e {
                    AttributionError::CompositeFile { detail, .. } => in_file(detail),
                    other => in_file(other.to_string()),
                })?;
                Some(if self.zero_bias {
                    c.with_zero_bias()
                } else {
                    c
                })
            }
        };
        let attributor =
            Attributor::by_name(&self.attributor, &self.attributor_params(baseline_array)?)?;
        if let (Attributor::Cam { kind, .. }, Some(_)) = (&attributor, &composite) {
            return Err(AttributionError::Parameter {
                names: &["composite"],
                detail: format!(
                    "does not apply to {}: a class activation map weighs a layer's activations \
                     by plain gradients or scores",
                    kind.name()
                ),
            });
        }
        Ok(Method {
            composite,
            attributor,
            seed: self.seed_mode,
            canonize: self.canonize,
        })
    }
}

/// A bound as the description has always written it: `Option<Vec<f64>>`'s `{:?}`.
fn bound_debug(b: &Option<Bound>) -> String {
    match b {
        None => "None".into(),
        Some(Bound::Scalar(v)) => format!("Some({:?})", [*v]),
        Some(Bound::PerChannel(v)) => format!("Some({v:?})"),
    }
}

impl fmt::Display for MethodSpec {
    /// `composite=… attributor=… seed_mode=OneHot canonize=true …`: every field, in a fixed
    /// order and format (stored in files and hashed into resume keys; never change it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "composite={} attributor={} seed_mode={} canonize={} zero_bias={} \
             epsilon={} stabilizer={} gamma={} alpha={} beta={} low={} high={} beta_smooth={} \
             n_iter={:?} noise_level={} baseline={} window={:?} stride={:?} invert_occlusion={} seed={}",
            self.composite,
            self.attributor,
            seed_mode_name(self.seed_mode),
            self.canonize,
            self.zero_bias,
            self.epsilon,
            self.stabilizer,
            self.gamma,
            self.alpha,
            self.beta,
            bound_debug(&self.low),
            bound_debug(&self.high),
            self.beta_smooth,
            self.n_iter,
            self.noise_level,
            self.baseline,
            self.window,
            self.stride,
            self.invert_occlusion,
            self.seed,
        )?;
        // fields added later: written only when they differ from their default, so that every
        // description (and resume key) of a method without them stays what it was
        if let Some(layer) = &self.layer {
            write!(f, " layer={layer}")?;
        }
        if self.absolute_noise {
            write!(f, " absolute_noise=true")?;
        }
        if let Some(b) = &self.baseline_source {
            write!(f, " baseline_source={b}")?;
        }
        if let Some(fill) = &self.occlusion_fill {
            write!(f, " occlusion_fill={fill}")?;
        }
        Ok(())
    }
}

/// The fields of [`MethodSpec`] in the order of its description (`Display`): the parameter
/// names every front end uses (the Python package's `method` keys add `composite_file`).
pub const METHOD_FIELDS: [&str; 20] = [
    "composite",
    "attributor",
    "seed_mode",
    "canonize",
    "zero_bias",
    "epsilon",
    "stabilizer",
    "gamma",
    "alpha",
    "beta",
    "low",
    "high",
    "beta_smooth",
    "n_iter",
    "noise_level",
    "baseline",
    "window",
    "stride",
    "invert_occlusion",
    "seed",
];

/// Fields added after [`METHOD_FIELDS`], in the order of the description's tail: each is
/// written (` name=value`) only when it differs from its default, so descriptions and resume
/// keys of methods without them never changed. A new field goes at the end of this list, in
/// `Display` and in `FromStr`.
pub const OPTIONAL_METHOD_FIELDS: [&str; 4] = [
    "layer",
    "absolute_noise",
    "baseline_source",
    "occlusion_fill",
];

fn bad(detail: String) -> AttributionError {
    AttributionError::MethodDescription(detail)
}

fn num<T: FromStr>(key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| bad(format!("{key}={v} is not a valid value")))
}

/// `[1, 2]`, `[-1.5, 2.0]` (Rust's `{:?}` of a Vec).
fn list<T: FromStr>(key: &str, v: &str) -> Result<Vec<T>> {
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| bad(format!("{key}={v} is not a [list]")))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner.split(", ").map(|x| num(key, x)).collect()
}

/// `None` or `Some(…)` (Rust's `{:?}` of an Option).
fn option<'a>(key: &str, v: &'a str) -> Result<Option<&'a str>> {
    if v == "None" {
        return Ok(None);
    }
    v.strip_prefix("Some(")
        .and_then(|v| v.strip_suffix(')'))
        .map(Some)
        .ok_or_else(|| bad(format!("{key}={v} is neither None nor Some(…)")))
}

fn bound(key: &str, v: &str) -> Result<Option<Bound>> {
    option(key, v)?
        .map(|v| {
            let mut values = list::<f64>(key, v)?;
            Ok(if values.len() == 1 {
                Bound::Scalar(values.remove(0))
            } else {
                Bound::PerChannel(values)
            })
        })
        .transpose()
}

impl FromStr for MethodSpec {
    type Err = AttributionError;

    /// Reads back what [`Display`](fmt::Display) wrote. Fields are split off from the right,
    /// so a composite file path may contain spaces or `key=` text.
    fn from_str(s: &str) -> Result<Self> {
        let mut rest = s
            .strip_prefix("composite=")
            .ok_or_else(|| bad(format!("'{s}' does not start with composite=")))?;
        // the optional tail, split off from the right (each only when it follows `seed=`)
        let mut optional = [None::<&str>; OPTIONAL_METHOD_FIELDS.len()];
        for i in (0..OPTIONAL_METHOD_FIELDS.len()).rev() {
            let key = format!(" {}=", OPTIONAL_METHOD_FIELDS[i]);
            if let Some(at) = rest.rfind(&key) {
                if rest[..at].contains(" seed=") {
                    optional[i] = Some(&rest[at + key.len()..]);
                    rest = &rest[..at];
                }
            }
        }
        let mut values = [""; METHOD_FIELDS.len()];
        for i in (1..METHOD_FIELDS.len()).rev() {
            let (head, value) = rest
                .rsplit_once(&format!(" {}=", METHOD_FIELDS[i]))
                .ok_or_else(|| bad(format!("'{s}' lacks {}=", METHOD_FIELDS[i])))?;
            values[i] = value;
            rest = head;
        }
        values[0] = rest;
        let v = |key: &str| -> &str {
            METHOD_FIELDS
                .iter()
                .position(|k| *k == key)
                .map_or("", |i| values[i])
        };
        Ok(MethodSpec {
            composite: v("composite").parse()?,
            attributor: v("attributor").to_string(),
            seed_mode: parse_seed_mode(v("seed_mode"))?,
            canonize: num("canonize", v("canonize"))?,
            zero_bias: num("zero_bias", v("zero_bias"))?,
            epsilon: num("epsilon", v("epsilon"))?,
            stabilizer: num("stabilizer", v("stabilizer"))?,
            gamma: num("gamma", v("gamma"))?,
            alpha: num("alpha", v("alpha"))?,
            beta: num("beta", v("beta"))?,
            low: bound("low", v("low"))?,
            high: bound("high", v("high"))?,
            beta_smooth: num("beta_smooth", v("beta_smooth"))?,
            n_iter: option("n_iter", v("n_iter"))?
                .map(|n| num("n_iter", n))
                .transpose()?,
            noise_level: num("noise_level", v("noise_level"))?,
            baseline: num("baseline", v("baseline"))?,
            window: list("window", v("window"))?,
            stride: list("stride", v("stride"))?,
            invert_occlusion: num("invert_occlusion", v("invert_occlusion"))?,
            seed: num("seed", v("seed"))?,
            layer: optional[0].map(str::to_string),
            absolute_noise: optional[1]
                .map(|v| num("absolute_noise", v))
                .transpose()?
                .unwrap_or(false),
            baseline_source: optional[2].map(str::parse).transpose()?,
            occlusion_fill: optional[3]
                .map(|v| {
                    v.parse::<Fill>()
                        .map_err(|_| bad(format!("occlusion_fill={v} is not a valid value")))
                })
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_description_is_the_historic_one() {
        assert_eq!(
            MethodSpec::default().to_string(),
            "composite=none attributor=gradient seed_mode=OneHot canonize=true zero_bias=false \
             epsilon=0.000001 stabilizer=0.000001 gamma=0.25 alpha=2 beta=1 low=None high=None \
             beta_smooth=10 n_iter=None noise_level=0.1 baseline=0 window=[8] stride=[8] \
             invert_occlusion=false seed=0"
        );
    }

    #[test]
    fn description_writes_bounds_like_an_optional_list() {
        let m = MethodSpec {
            composite: CompositeSource::File {
                path: "my dir/c#1.toml".into(),
                blake3: "ab12".into(),
            },
            low: Some(Bound::Scalar(-2.5)),
            high: Some(Bound::PerChannel(vec![1.0, 2.25, 3.0])),
            n_iter: Some(50),
            window: vec![4, 4],
            ..MethodSpec::default()
        };
        let s = m.to_string();
        assert!(
            s.starts_with("composite=file:my dir/c#1.toml#ab12 attributor=gradient"),
            "{s}"
        );
        assert!(
            s.contains(" low=Some([-2.5]) high=Some([1.0, 2.25, 3.0]) "),
            "{s}"
        );
        assert!(s.contains(" n_iter=Some(50) "), "{s}");
        assert!(s.contains(" window=[4, 4] "), "{s}");
        assert_eq!(s.parse::<MethodSpec>().unwrap(), m);
    }

    #[test]
    fn optional_fields_are_written_only_when_set_and_read_back() {
        let plain = MethodSpec::default().to_string();
        assert!(!plain.contains("layer="), "{plain}");
        let m = MethodSpec {
            attributor: "grad-cam".into(),
            layer: Some("/features/features.28/Conv".into()),
            ..MethodSpec::default()
        };
        let s = m.to_string();
        assert!(
            s.ends_with(" seed=0 layer=/features/features.28/Conv"),
            "{s}"
        );
        assert_eq!(s.parse::<MethodSpec>().unwrap(), m);
        assert_eq!(plain.parse::<MethodSpec>().unwrap(), MethodSpec::default());
    }

    #[test]
    fn malformed_descriptions_are_errors() {
        for s in [
            "",
            "attributor=gradient",
            "composite=none attributor=gradient",
            &MethodSpec::default()
                .to_string()
                .replace("seed=0", "seed=x"),
            &MethodSpec::default()
                .to_string()
                .replace("OneHot", "Uniform"),
        ] {
            assert!(s.parse::<MethodSpec>().is_err(), "{s}");
        }
    }
}
