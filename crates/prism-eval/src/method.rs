//! Attribution methods under evaluation: a composite, an attributor, or both.

use prism_attribution::{
    Attributor, Composite, CompositeSource, Explainer, MethodSpec, SeedMode, Target, ATTRIBUTORS,
    COMPOSITES,
};
use prism_model::{Float, Model, Tensor};

use crate::error::{EvalError, Result};
use crate::Progress;

/// One attribution method: LRP (a composite driven by the gradient attributor), a plain
/// attributor, or a composite under another attributor (`epsilon-plus-flat+smoothgrad`).
#[derive(Clone, Debug)]
pub struct Method {
    /// The name as given (`epsilon-plus-flat`, `gradient`, `epsilon-plus+smoothgrad`), or a
    /// composite file's `name`.
    pub name: String,
    /// The whole method, parameters included.
    pub spec: MethodSpec,
    pub composite: Option<Composite>,
    pub attributor: Attributor,
}

impl Method {
    /// Parses `COMPOSITE`, `ATTRIBUTOR` or `COMPOSITE+ATTRIBUTOR` (Zennit's names, kebab case);
    /// every parameter comes from `base`.
    pub fn parse(spec: &str, base: &MethodSpec) -> Result<Method> {
        let spec = spec.trim();
        let (c, a) = match spec.split_once('+') {
            Some((c, a)) => (Some(c), a),
            None if COMPOSITES.contains(&spec.replace('_', "-").as_str()) => {
                (Some(spec), "gradient")
            }
            None if ATTRIBUTORS.contains(&spec.replace('_', "-").as_str()) => (None, spec),
            None => {
                return Err(EvalError::Invalid(format!(
                    "unknown method '{spec}'; use a composite ({}), an attributor ({}) or \
                     COMPOSITE+ATTRIBUTOR",
                    COMPOSITES.join(", "),
                    ATTRIBUTORS.join(", ")
                )))
            }
        };
        let method = MethodSpec {
            composite: c.map_or(CompositeSource::None, |c| CompositeSource::Builtin {
                name: c.to_string(),
            }),
            attributor: a.to_string(),
            // the layer is the class activation maps' alone
            layer: base
                .layer
                .clone()
                .filter(|_| prism_attribution::CamKind::by_name(a).is_some()),
            ..base.clone()
        };
        Method::from_spec(spec.to_string(), method, None)
    }

    /// A composite file's composite (its TOML `text`, identified by `source`) with every other
    /// parameter from `base`, named by the composite's `name`.
    pub fn from_composite_file(
        source: CompositeSource,
        text: &str,
        base: &MethodSpec,
    ) -> Result<Method> {
        let spec = MethodSpec {
            composite: source,
            layer: None,
            ..base.clone()
        };
        let m = Method::from_spec(String::new(), spec, Some(text))?;
        let name = m
            .composite
            .as_ref()
            .map_or_else(String::new, |c| c.name.clone());
        Ok(Method { name, ..m })
    }

    /// The method `spec` under `name`; `composite_toml` is the text of its composite file, if
    /// it has one.
    pub fn from_spec(
        name: String,
        spec: MethodSpec,
        composite_toml: Option<&str>,
    ) -> Result<Method> {
        let built = spec.build(composite_toml)?;
        Ok(Method {
            name,
            spec,
            composite: built.composite,
            attributor: built.attributor,
        })
    }

    /// Whether relevance should be conserved (an LRP composite under the plain gradient
    /// attributor) — what the completeness check holds the method to.
    pub fn conserves(&self) -> bool {
        self.composite.is_some() && self.attributor == Attributor::Gradient
    }

    /// An explainer for `model` with this method's composite.
    pub fn explainer<'m>(&self, model: &'m Model, canonize: bool) -> Explainer<'m> {
        let e = Explainer::new(model).with_canonizers(canonize);
        match &self.composite {
            Some(c) => e.with_composite(c.clone()),
            None => e,
        }
    }

    /// Attributes all of `x` for the given targets in batches of `batch` samples.
    pub fn attribute<T: Float>(
        &self,
        model: &Model,
        x: &Tensor<T>,
        targets: &[usize],
        batch: usize,
        canonize: bool,
        progress: &dyn Progress,
    ) -> Result<Tensor<T>> {
        let explainer = self.explainer(model, canonize);
        let n = x.shape()[0];
        let per = x.len() / n.max(1);
        let mut out = Vec::with_capacity(x.len());
        // the relevance's shape: the input's, or a class activation map's N × 1 × H × W
        let mut shape_out: Option<Vec<usize>> = None;
        for s in (0..n).step_by(batch.max(1)) {
            let e = (s + batch.max(1)).min(n);
            let mut shape = x.shape().to_vec();
            shape[0] = e - s;
            let part = Tensor::new(shape, x.data()[s * per..e * per].to_vec())?;
            let a = explainer.attribute(
                &part,
                &Target::PerSample(targets[s..e].to_vec()),
                SeedMode::OneHot,
                &self.attributor,
            )?;
            out.extend_from_slice(a.relevance.data());
            shape_out.get_or_insert_with(|| {
                let mut s = a.relevance.shape().to_vec();
                s[0] = n;
                s
            });
            progress.inc((e - s) as u64);
        }
        Ok(Tensor::new(
            shape_out.unwrap_or_else(|| x.shape().to_vec()),
            out,
        )?)
    }
}

/// Fills the ZBox bounds `spec` lacks (`low`, `high`) with the minimum and maximum of the inputs
/// `x`: the input domain evaluation on this data can know (epsilon-gamma-box's first layer needs
/// it). NaN and ±Inf (inputs allowed to hold them) are left out; inputs without a finite value
/// are an error. Returns the range taken.
pub fn zbox_bounds_from_inputs<T: Float>(
    spec: &mut MethodSpec,
    x: &Tensor<T>,
) -> Result<(f64, f64)> {
    let (lo, hi) = x
        .data()
        .iter()
        .map(|v| v.f64())
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |m, v| {
            (m.0.min(v), m.1.max(v))
        });
    if lo > hi {
        return Err(EvalError::Invalid(
            "the inputs hold no finite value, so they give no ZBox bounds; give --low and --high"
                .into(),
        ));
    }
    spec.low = spec
        .low
        .take()
        .or(Some(prism_attribution::Bound::Scalar(lo)));
    spec.high = spec
        .high
        .take()
        .or(Some(prism_attribution::Bound::Scalar(hi)));
    Ok((lo, hi))
}
