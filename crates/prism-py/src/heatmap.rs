//! Heatmaps as numpy images: `render`, `overlay`, `grid`, `encode_png`, `colormaps`, with the
//! renderer `prism heatmap` uses (so the pixels are the CLI's).

use numpy::ndarray::Array3;
use numpy::{PyArray3, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use prism_heatmap::{
    color_map, grid as grid_images, Batch, ChannelReduction, Element, GridShape, HeatmapError,
    HeatmapOptions, Image, Normalization, OverlayOptions, Renderer, BUILTIN_COLOR_MAPS,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{invalid, Kind};
use crate::model::{as_ndarray, copy_as};
use crate::runtime::compute;

fn heatmap_error(e: &HeatmapError) -> PyErr {
    let kind = match e {
        HeatmapError::Io { .. } | HeatmapError::Png { .. } => Kind::Heatmap,
        _ => Kind::InvalidArgument,
    };
    let mut message = crate::errors::chain(e);
    if let HeatmapError::Cmsl(c) = e {
        message = format!("{message}\n{}", c.pointer());
    }
    if let HeatmapError::UnknownColorMap { cmsl, .. } = e {
        message = format!("{message}\n{}", cmsl.pointer());
    }
    crate::errors::error(kind, message)
}

/// A float array (relevance or input images) as f32 or f64 values with its shape.
enum Values {
    F32(Vec<f32>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
}

fn float_values(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Values> {
    let a = as_ndarray(obj)?;
    let shape = a.shape().to_vec();
    let dtype = a.dtype();
    let kind: char = dtype.kind().into();
    match (kind, dtype.itemsize()) {
        ('f', 2) => Ok(Values::F32(
            copy_as(&a, |v: half::f16| f32::from(v))?,
            shape,
        )),
        ('f', 4) => Ok(Values::F32(copy_as(&a, |v: f32| v)?, shape)),
        ('f', 8) => Ok(Values::F64(copy_as(&a, |v: f64| v)?, shape)),
        _ => Err(invalid(format!(
            "{what} must be a float array (float16/32/64), got dtype {}",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn options(
    cmap: &str,
    level: f64,
    symmetric: bool,
    absolute: bool,
    vmin: Option<f64>,
    vmax: Option<f64>,
    channels: &str,
) -> PyResult<Renderer> {
    if symmetric && absolute {
        return Err(invalid("give symmetric or absolute, not both"));
    }
    let color_map = color_map(cmap).map_err(|e| heatmap_error(&e))?;
    let channels = match channels {
        "sum" => ChannelReduction::Sum,
        "abs-sum" | "abs_sum" => ChannelReduction::AbsSum,
        "none" => ChannelReduction::None,
        other => {
            return Err(invalid(format!(
                "channels {other:?} is not one of \"sum\", \"abs-sum\", \"none\""
            )))
        }
    };
    let options = HeatmapOptions {
        color_map,
        level,
        normalization: if symmetric {
            Normalization::Symmetric
        } else if absolute {
            Normalization::Absolute
        } else {
            Normalization::Unaligned
        },
        vmin,
        vmax,
        channels,
    };
    Renderer::new(&options).map_err(|e| heatmap_error(&e))
}

/// An image as a uint8 `[H, W, 3]` array.
fn image_to_numpy<'py>(py: Python<'py>, image: &Image) -> PyResult<Bound<'py, PyAny>> {
    let (w, h) = (image.width(), image.height());
    let pixels: Vec<u8> = image.to_rgb().into_iter().flatten().collect();
    let a =
        Array3::from_shape_vec((h, w, 3), pixels).map_err(|e| invalid(format!("internal: {e}")))?;
    Ok(PyArray3::from_owned_array(py, a).into_any())
}

/// A uint8 `[H, W, 3]` or `[H, W]` array as an image.
fn numpy_to_image(obj: &Bound<'_, PyAny>) -> PyResult<Image> {
    let a: Bound<'_, PyUntypedArray> = as_ndarray(obj)?;
    let shape = a.shape().to_vec();
    let dtype = a.dtype();
    let kind: char = dtype.kind().into();
    if kind != 'u' || dtype.itemsize() != 1 {
        return Err(invalid(format!(
            "images must be uint8 arrays, got dtype {}",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    let bytes: Vec<u8> = copy_as(&a, |v: u8| v)?;
    let (height, width, pixels) = match shape.as_slice() {
        [h, w, 3] => (*h, *w, bytes),
        [h, w] => (*h, *w, bytes.iter().flat_map(|&v| [v, v, v]).collect()),
        other => {
            return Err(invalid(format!(
                "an image must be H×W×3 (RGB) or H×W (grey), got shape {other:?}"
            )))
        }
    };
    Ok(Image::Rgb {
        width,
        height,
        pixels,
    })
}

fn render_typed<T: Element>(
    renderer: &Renderer,
    data: &[T],
    shape: &[usize],
) -> Result<Vec<Image>, HeatmapError> {
    renderer.render_all(&Batch::new(data, shape)?)
}

fn overlay_typed<T: Element, U: Element>(
    renderer: &Renderer,
    relevance: (&[T], &[usize]),
    input: (&[U], &[usize]),
    alpha: f64,
) -> Result<Vec<Image>, HeatmapError> {
    renderer.overlay_all(
        &Batch::new(relevance.0, relevance.1)?,
        &Batch::new(input.0, input.1)?,
        &OverlayOptions { max_alpha: alpha },
    )
}

/// Heatmaps of a relevance batch (`[N, C, H, W]`, `[N, H, W]` or `[H, W]`): one uint8
/// `[H, W, 3]` image per sample, rendered as `prism heatmap` does.
#[pyfunction]
#[pyo3(signature = (relevance, *, cmap="bwr", level=1.0, symmetric=false, absolute=false, vmin=None, vmax=None, channels="sum"))]
#[allow(clippy::too_many_arguments)]
fn render<'py>(
    py: Python<'py>,
    relevance: &Bound<'py, PyAny>,
    cmap: &str,
    level: f64,
    symmetric: bool,
    absolute: bool,
    vmin: Option<f64>,
    vmax: Option<f64>,
    channels: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let renderer = options(cmap, level, symmetric, absolute, vmin, vmax, channels)?;
    let values = float_values(relevance, "relevance")?;
    let images = compute(py, || match &values {
        Values::F32(d, s) => render_typed(&renderer, d, s),
        Values::F64(d, s) => render_typed(&renderer, d, s),
    })
    .map_err(|e| heatmap_error(&e))?;
    images.iter().map(|i| image_to_numpy(py, i)).collect()
}

/// Heatmaps blended over the input images (ViRelAy's overlay): `alpha` is the heatmap's
/// opacity where |R| is largest (default 0.9, as `prism heatmap --overlay`).
#[pyfunction]
#[pyo3(signature = (relevance, images, *, alpha=None, cmap="bwr", level=1.0, symmetric=false, absolute=false, vmin=None, vmax=None, channels="sum"))]
#[allow(clippy::too_many_arguments)]
fn overlay<'py>(
    py: Python<'py>,
    relevance: &Bound<'py, PyAny>,
    images: &Bound<'py, PyAny>,
    alpha: Option<f64>,
    cmap: &str,
    level: f64,
    symmetric: bool,
    absolute: bool,
    vmin: Option<f64>,
    vmax: Option<f64>,
    channels: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let renderer = options(cmap, level, symmetric, absolute, vmin, vmax, channels)?;
    let alpha = alpha.unwrap_or(OverlayOptions::default().max_alpha);
    if !(0.0..=1.0).contains(&alpha) {
        return Err(invalid(format!("alpha {alpha} is not within 0..=1")));
    }
    let r = float_values(relevance, "relevance")?;
    let x = float_values(images, "images")?;
    let out = compute(py, || match (&r, &x) {
        (Values::F32(a, s), Values::F32(b, t)) => overlay_typed(&renderer, (a, s), (b, t), alpha),
        (Values::F32(a, s), Values::F64(b, t)) => overlay_typed(&renderer, (a, s), (b, t), alpha),
        (Values::F64(a, s), Values::F32(b, t)) => overlay_typed(&renderer, (a, s), (b, t), alpha),
        (Values::F64(a, s), Values::F64(b, t)) => overlay_typed(&renderer, (a, s), (b, t), alpha),
    })
    .map_err(|e| heatmap_error(&e))?;
    out.iter().map(|i| image_to_numpy(py, i)).collect()
}

/// The images in a grid (`shape` = (rows, columns); default ⌊√N⌋ columns, Zennit's).
#[pyfunction]
#[pyo3(signature = (images, shape=None))]
fn grid<'py>(
    py: Python<'py>,
    images: Vec<Bound<'py, PyAny>>,
    shape: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    let images: Vec<Image> = images.iter().map(numpy_to_image).collect::<PyResult<_>>()?;
    let shape = match shape {
        Some((rows, columns)) if rows > 0 && columns > 0 => Some(GridShape { rows, columns }),
        Some(s) => {
            return Err(invalid(format!(
                "grid shape {s:?} needs rows and columns ≥ 1"
            )))
        }
        None => None,
    };
    let image = grid_images(&images, shape).map_err(|e| heatmap_error(&e))?;
    image_to_numpy(py, &image)
}

/// The image as PNG bytes (8-bit RGB).
#[pyfunction]
fn encode_png<'py>(py: Python<'py>, image: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let image = numpy_to_image(image)?;
    let png = image.encode_png().map_err(|e| heatmap_error(&e))?;
    Ok(PyBytes::new(py, &png))
}

/// The built-in colour maps: `(name, signed, CMSL source, description)`.
#[pyfunction]
fn colormaps() -> Vec<(&'static str, bool, &'static str, &'static str)> {
    BUILTIN_COLOR_MAPS
        .iter()
        .map(|m| (m.name, m.signed, m.source, m.description))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(overlay, m)?)?;
    m.add_function(wrap_pyfunction!(grid, m)?)?;
    m.add_function(wrap_pyfunction!(encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(colormaps, m)?)?;
    Ok(())
}
