//! From relevance values to palette indices (Zennit's `imgify`), grids and overlays.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::array::{Batch, Element};
use crate::builtin::{color_map, DEFAULT_COLOR_MAP};
use crate::cmsl::{ColorMap, Palette};
use crate::error::HeatmapError;
use crate::image::Image;

/// How relevance values are mapped to the palette's 0..=255 range, per sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Normalization {
    /// `[min, max]` → `[0, 255]`: Zennit's default (`symmetric=False`). Zero lands wherever it
    /// falls, so colours are not comparable across samples.
    #[default]
    Unaligned,
    /// `[−max|R|, max|R|]` → `[0, 255]` (Zennit's `symmetric=True`): zero is the palette's
    /// centre, for diverging maps like `bwr` and `coldnhot`.
    Symmetric,
    /// `|R|` with `[0, max|R|]` → `[0, 255]`: only the amplitude matters, zero is the bottom.
    /// (Removed from Zennit's library; it lives on in its `feed_forward.py` example.)
    Absolute,
}

/// How the channels of an N×C×H×W relevance are combined into one heatmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelReduction {
    /// Sum over channels, as Zennit's examples do (`relevance.sum(1)`).
    #[default]
    Sum,
    /// Sum of absolute values over channels.
    AbsSum,
    /// Keep the channels: 1 channel gives a palette image, 3 channels an RGB image normalised
    /// over all channels jointly (Zennit's `imgify` on a 3-channel array).
    None,
}

/// Everything that decides how a heatmap looks.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatmapOptions {
    /// The colour map.
    pub color_map: ColorMap,
    /// Palette level (Zennit's `level`, default 1).
    pub level: f64,
    /// Normalisation mode.
    pub normalization: Normalization,
    /// Explicit lower bound; overrides the mode's bound.
    pub vmin: Option<f64>,
    /// Explicit upper bound; overrides the mode's bound.
    pub vmax: Option<f64>,
    /// Channel reduction.
    pub channels: ChannelReduction,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        Self {
            color_map: color_map(DEFAULT_COLOR_MAP)
                .unwrap_or_else(|_| unreachable!("the default map is built in")),
            level: 1.0,
            normalization: Normalization::Unaligned,
            vmin: None,
            vmax: None,
            channels: ChannelReduction::Sum,
        }
    }
}

/// The shape of a grid of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridShape {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
}

impl GridShape {
    /// Zennit's default for N samples: ⌊√N⌋ columns and as many rows as needed.
    pub fn square(n: usize) -> Self {
        let columns = ((n as f64).sqrt() as usize).max(1);
        Self {
            rows: n.div_ceil(columns),
            columns,
        }
    }
}

impl std::str::FromStr for GridShape {
    type Err = HeatmapError;
    /// Parses `ROWSxCOLS`, e.g. `2x4`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            HeatmapError::Parameter(format!(
                "grid shape {s:?} is not ROWSxCOLUMNS with both at least 1, e.g. 2x4"
            ))
        };
        let (rows, columns) = s.split_once(['x', 'X', '×']).ok_or_else(bad)?;
        let rows: usize = rows.trim().parse().map_err(|_| bad())?;
        let columns: usize = columns.trim().parse().map_err(|_| bad())?;
        if rows == 0 || columns == 0 {
            return Err(bad());
        }
        Ok(Self { rows, columns })
    }
}

/// Parameters of the overlay on the input image (ViRelAy's "overlay" image mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayOptions {
    /// Opacity of the heatmap where |R| is largest (ViRelAy: 0.9); it falls linearly to 0 at R = 0.
    pub max_alpha: f64,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        Self { max_alpha: 0.9 }
    }
}

/// Renders relevance batches with fixed options; cheap to share across threads.
#[derive(Clone, Debug)]
pub struct Renderer {
    palette: Box<Palette>,
    normalization: Normalization,
    vmin: Option<f64>,
    vmax: Option<f64>,
    channels: ChannelReduction,
}

/// One sample after channel reduction: its values and how many channels remain (1 or 3).
struct Plane<T> {
    values: Vec<T>,
    channels: usize,
}

impl Renderer {
    /// Checks the options and builds the palette.
    pub fn new(options: &HeatmapOptions) -> Result<Self, HeatmapError> {
        if !options.level.is_finite() {
            return Err(HeatmapError::Parameter(format!(
                "level must be a finite number, got {}",
                options.level
            )));
        }
        for (name, value) in [("vmin", options.vmin), ("vmax", options.vmax)] {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                return Err(HeatmapError::Parameter(format!(
                    "{name} must be a finite number, got {v}"
                )));
            }
        }
        Ok(Self {
            palette: Box::new(options.color_map.palette(options.level)),
            normalization: options.normalization,
            vmin: options.vmin,
            vmax: options.vmax,
            channels: options.channels,
        })
    }

    /// The palette of the rendered images.
    pub fn palette(&self) -> &Palette {
        &self.palette
    }

    fn reduce<T: Element>(&self, batch: &Batch<'_, T>, n: usize) -> Result<Plane<T>, HeatmapError> {
        batch.check_finite(n)?;
        let sample = batch.sample(n);
        let plane = batch.height() * batch.width();
        let channels = batch.channels();
        let summed = |abs: bool| {
            let value = |v: T| if abs { v.abs() } else { v };
            let mut out: Vec<T> = sample[..plane].iter().map(|&v| value(v)).collect();
            for c in 1..channels {
                for (o, &v) in out.iter_mut().zip(&sample[c * plane..(c + 1) * plane]) {
                    *o = *o + value(v);
                }
            }
            Plane {
                values: out,
                channels: 1,
            }
        };
        match self.channels {
            ChannelReduction::Sum => Ok(summed(false)),
            ChannelReduction::AbsSum => Ok(summed(true)),
            ChannelReduction::None if channels == 1 || channels == 3 => Ok(Plane {
                values: sample.to_vec(),
                channels,
            }),
            ChannelReduction::None => Err(HeatmapError::Shape {
                shape: vec![batch.len(), channels, batch.height(), batch.width()],
                reason: format!(
                    "without channel reduction a sample needs 1 or 3 channels, it has {channels}"
                ),
            }),
        }
    }

    /// The bytes (palette indices, or channel values for RGB) of one reduced sample.
    fn to_bytes<T: Element>(&self, values: &[T]) -> Vec<u8> {
        let absolute;
        let values = if self.normalization == Normalization::Absolute {
            absolute = values.iter().map(|v| v.abs()).collect::<Vec<T>>();
            &absolute[..]
        } else {
            values
        };
        let (lo, hi) = data_bounds(values, self.normalization);
        // A constant map has no scale: put it at the palette's centre (Zennit divides by zero
        // there), or at the bottom in absolute mode, where it means "no relevance".
        let centre = if self.normalization == Normalization::Absolute {
            0
        } else {
            127
        };
        if self.vmin.is_none() && self.vmax.is_none() {
            // Zennit computes `((a - vmin) / (vmax - vmin) * 255).clip(0, 255).astype(uint8)`
            // in the array's dtype when the bounds come from the data.
            let range = hi - lo;
            if range == T::ZERO {
                return values.iter().map(|&v| degenerate(v, lo, centre)).collect();
            }
            if !range.is_finite() {
                // Bounds near the type's largest value overflow `hi - lo` (Zennit then renders
                // NaN); halving everything first keeps the same ratios finite.
                let (lo, range) = (lo * T::HALF, hi * T::HALF - lo * T::HALF);
                return values
                    .iter()
                    .map(|&v| ((v * T::HALF - lo) / range * T::BYTE_MAX).clip_to_byte())
                    .collect();
            }
            values
                .iter()
                .map(|&v| ((v - lo) / range * T::BYTE_MAX).clip_to_byte())
                .collect()
        } else {
            // Explicit bounds are Python floats in Zennit, so numpy computes in float64.
            let lo = self.vmin.unwrap_or(lo.to_f64());
            let hi = self.vmax.unwrap_or(hi.to_f64());
            let range = hi - lo;
            if range == 0.0 {
                return values
                    .iter()
                    .map(|&v| degenerate(v.to_f64(), lo, centre))
                    .collect();
            }
            if !range.is_finite() {
                let (lo, range) = (lo * 0.5, hi * 0.5 - lo * 0.5);
                return values
                    .iter()
                    .map(|&v| ((v.to_f64() * 0.5 - lo) / range * 255.0).clip_to_byte())
                    .collect();
            }
            values
                .iter()
                .map(|&v| ((v.to_f64() - lo) / range * 255.0).clip_to_byte())
                .collect()
        }
    }

    /// The palette index of every value of one sample, exactly as [`Renderer::render`] colours
    /// a one-channel sample with these values (the same normalisation, bounds and rounding);
    /// the token renderings use it so that a token and a pixel of equal relevance get the same
    /// colour. The values are normalised together, as one sample.
    pub fn palette_indices<T: Element>(&self, values: &[T]) -> Result<Vec<u8>, HeatmapError> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(HeatmapError::Parameter(format!(
                "relevance value {i} is {}; heatmaps need finite values (check the attribution)",
                values[i]
            )));
        }
        Ok(self.to_bytes(values))
    }

    /// The values that land on the palette's first and last colour for these values (one
    /// sample), for a legend: the normalisation's bounds, overridden by `vmin`/`vmax`. In
    /// absolute mode the bounds are those of |R|.
    pub fn value_range<T: Element>(&self, values: &[T]) -> (f64, f64) {
        let (lo, hi) = if self.normalization == Normalization::Absolute {
            let absolute: Vec<T> = values.iter().map(|v| v.abs()).collect();
            data_bounds(&absolute, self.normalization)
        } else {
            data_bounds(values, self.normalization)
        };
        (
            self.vmin.unwrap_or(lo.to_f64()),
            self.vmax.unwrap_or(hi.to_f64()),
        )
    }

    /// The normalisation mode.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// Renders sample `n`: a palette image (one channel after reduction) or an RGB image.
    pub fn render<T: Element>(
        &self,
        batch: &Batch<'_, T>,
        n: usize,
    ) -> Result<Image, HeatmapError> {
        self.check_index(batch, n)?;
        let plane = self.reduce(batch, n)?;
        let bytes = self.to_bytes(&plane.values);
        Ok(self.image_from_bytes(bytes, plane.channels, batch.width(), batch.height()))
    }

    /// Renders every sample, in parallel.
    pub fn render_all<T: Element>(&self, batch: &Batch<'_, T>) -> Result<Vec<Image>, HeatmapError> {
        (0..batch.len())
            .into_par_iter()
            .map(|n| self.render(batch, n))
            .collect()
    }

    /// Renders the batch as one grid image (Zennit's `imgify(..., grid=True)`): each sample is
    /// normalised on its own; empty cells take the smallest value of the batch; with an explicit
    /// shape smaller than the batch only the first rows×columns samples are shown.
    pub fn render_grid<T: Element>(
        &self,
        batch: &Batch<'_, T>,
        shape: Option<GridShape>,
    ) -> Result<Image, HeatmapError> {
        grid(&self.render_all(batch)?, shape)
    }

    /// Renders every sample and writes it as PNG to `path_of(n)`, in parallel, without keeping
    /// the images.
    pub fn save_all<T: Element>(
        &self,
        batch: &Batch<'_, T>,
        path_of: impl Fn(usize) -> PathBuf + Sync,
    ) -> Result<(), HeatmapError> {
        (0..batch.len())
            .into_par_iter()
            .try_for_each(|n| self.render(batch, n)?.save_png(&path_of(n)))
    }

    /// Renders every overlay and writes it as PNG to `path_of(n)`, in parallel.
    pub fn save_all_overlays<T: Element, U: Element>(
        &self,
        batch: &Batch<'_, T>,
        input: &Batch<'_, U>,
        options: &OverlayOptions,
        path_of: impl Fn(usize) -> PathBuf + Sync,
    ) -> Result<(), HeatmapError> {
        (0..batch.len()).into_par_iter().try_for_each(|n| {
            self.overlay(batch, input, n, options)?
                .save_png(&path_of(n))
        })
    }

    /// Renders every overlay, in parallel.
    pub fn overlay_all<T: Element, U: Element>(
        &self,
        batch: &Batch<'_, T>,
        input: &Batch<'_, U>,
        options: &OverlayOptions,
    ) -> Result<Vec<Image>, HeatmapError> {
        (0..batch.len())
            .into_par_iter()
            .map(|n| self.overlay(batch, input, n, options))
            .collect()
    }

    /// Renders sample `n` over a grayscale version of `input` (same N, H and W; 1 or 3
    /// channels), ViRelAy's overlay mode: the heatmap's opacity is `max_alpha·|R|/max|R|`.
    ///
    /// Unlike ViRelAy before its PR #24, a relevance without negative (or without positive)
    /// values blends like any other, and an all-zero relevance shows the input alone.
    /// The input is rescaled per sample from [min, max] to [0, 255] (inputs are usually
    /// preprocessed for the model), then converted to luma as PIL's `convert('L')` does.
    pub fn overlay<T: Element, U: Element>(
        &self,
        batch: &Batch<'_, T>,
        input: &Batch<'_, U>,
        n: usize,
        options: &OverlayOptions,
    ) -> Result<Image, HeatmapError> {
        self.check_index(batch, n)?;
        if input.len() != batch.len()
            || input.height() != batch.height()
            || input.width() != batch.width()
        {
            return Err(HeatmapError::Shape {
                shape: vec![input.len(), input.channels(), input.height(), input.width()],
                reason: format!(
                    "the overlay input must match the relevance's N×H×W = {}×{}×{}",
                    batch.len(),
                    batch.height(),
                    batch.width()
                ),
            });
        }
        if !(0.0..=1.0).contains(&options.max_alpha) {
            return Err(HeatmapError::Parameter(format!(
                "overlay opacity must lie in [0, 1], got {}",
                options.max_alpha
            )));
        }
        input.check_finite(n)?;
        let gray = grayscale(input, n)?;
        let plane = self.reduce(batch, n)?;
        let bytes = self.to_bytes(&plane.values);
        let pixels = batch.width() * batch.height();
        // Opacity follows the relevance of the heatmap's own pixel: the channel sum for RGB.
        let amplitude: Vec<f64> = (0..pixels)
            .map(|i| {
                (0..plane.channels)
                    .map(|c| plane.values[c * pixels + i].to_f64())
                    .sum::<f64>()
                    .abs()
            })
            .collect();
        let max = amplitude.iter().copied().fold(0.0, f64::max);
        let colors = match plane.channels {
            1 => bytes
                .iter()
                .map(|&b| self.palette[usize::from(b)])
                .collect(),
            _ => (0..pixels)
                .map(|i| [bytes[i], bytes[pixels + i], bytes[2 * pixels + i]])
                .collect::<Vec<[u8; 3]>>(),
        };
        let mut out = Vec::with_capacity(pixels * 3);
        for ((&amplitude, &gray), color) in amplitude.iter().zip(&gray).zip(&colors) {
            let alpha = if max > 0.0 {
                options.max_alpha * amplitude / max
            } else {
                0.0
            };
            for &c in color {
                let v = f64::from(gray) * (1.0 - alpha) + f64::from(c) * alpha;
                out.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
        Ok(Image::Rgb {
            width: batch.width(),
            height: batch.height(),
            pixels: out,
        })
    }

    fn check_index<T: Element>(&self, batch: &Batch<'_, T>, n: usize) -> Result<(), HeatmapError> {
        if n >= batch.len() {
            return Err(HeatmapError::Parameter(format!(
                "sample {n} does not exist in a batch of {}",
                batch.len()
            )));
        }
        Ok(())
    }

    fn image_from_bytes(
        &self,
        bytes: Vec<u8>,
        channels: usize,
        width: usize,
        height: usize,
    ) -> Image {
        if channels == 1 {
            Image::Indexed {
                width,
                height,
                indices: bytes,
                palette: self.palette.clone(),
            }
        } else {
            Image::Rgb {
                width,
                height,
                pixels: interleave(&bytes, channels, width * height),
            }
        }
    }
}

/// The mode's bounds from the data: `[min, max]`, `[−max|R|, max|R|]` or `[0, max]` (the values
/// are already absolute in absolute mode).
fn data_bounds<T: Element>(values: &[T], normalization: Normalization) -> (T, T) {
    let first = values.first().copied().unwrap_or(T::ZERO);
    match normalization {
        Normalization::Unaligned => values.iter().fold((first, first), |(lo, hi), &v| {
            (if v < lo { v } else { lo }, if v > hi { v } else { hi })
        }),
        Normalization::Symmetric => {
            let max = values
                .iter()
                .fold(T::ZERO, |m, &v| if v.abs() > m { v.abs() } else { m });
            (-max, max)
        }
        Normalization::Absolute => {
            let max = values
                .iter()
                .fold(T::ZERO, |m, &v| if v > m { v } else { m });
            (T::ZERO, max)
        }
    }
}

/// The index of a value when the bounds coincide: below → 0, above → 255, at → `centre`.
fn degenerate<T: PartialOrd>(v: T, at: T, centre: u8) -> u8 {
    if v < at {
        0
    } else if v > at {
        255
    } else {
        centre
    }
}

/// C×(H·W) planar bytes → (H·W)×C interleaved.
fn interleave(planar: &[u8], channels: usize, pixels: usize) -> Vec<u8> {
    if channels == 1 {
        return planar.to_vec();
    }
    let mut out = Vec::with_capacity(planar.len());
    for i in 0..pixels {
        for c in 0..channels {
            out.push(planar[c * pixels + i]);
        }
    }
    out
}

/// Lays images of one size and kind out in a grid, row-major, like Zennit's `gridify`: `None`
/// gives ⌊√N⌋ columns; empty cells are filled with the smallest value of each channel over all
/// images (the smallest palette index for palette images, which share the first one's palette);
/// only the first rows×columns images are shown.
pub fn grid(images: &[Image], shape: Option<GridShape>) -> Result<Image, HeatmapError> {
    let first = images
        .first()
        .ok_or_else(|| HeatmapError::Parameter("a grid needs at least one image".into()))?;
    let (width, height) = (first.width(), first.height());
    let shape = shape.unwrap_or_else(|| GridShape::square(images.len()));
    let mut tiles = Vec::with_capacity(images.len());
    for image in images {
        let same_kind = matches!(
            (first, image),
            (Image::Indexed { .. }, Image::Indexed { .. }) | (Image::Rgb { .. }, Image::Rgb { .. })
        );
        if !same_kind || image.width() != width || image.height() != height {
            return Err(HeatmapError::Parameter(format!(
                "grid images must share size and kind: {}×{} vs {}×{}",
                width,
                height,
                image.width(),
                image.height()
            )));
        }
        tiles.push(match image {
            Image::Indexed { indices, .. } => &indices[..],
            Image::Rgb { pixels, .. } => &pixels[..],
        });
    }
    let channels = if matches!(first, Image::Rgb { .. }) {
        3
    } else {
        1
    };
    let cells = shape.rows.saturating_mul(shape.columns);
    let too_large = || {
        HeatmapError::Parameter(format!(
            "a {}×{} grid of {width}×{height} images is too large",
            shape.rows, shape.columns
        ))
    };
    let gw = width.checked_mul(shape.columns).ok_or_else(too_large)?;
    let gh = height.checked_mul(shape.rows).ok_or_else(too_large)?;
    let total = gw
        .checked_mul(gh)
        .and_then(|p| p.checked_mul(channels))
        .filter(|_| cells > 0 && gw <= u32::MAX as usize && gh <= u32::MAX as usize)
        .ok_or_else(too_large)?;
    let mut fill = [u8::MAX; 3];
    for tile in &tiles {
        for px in tile.chunks_exact(channels) {
            for (f, &v) in fill.iter_mut().zip(px) {
                *f = (*f).min(v);
            }
        }
    }
    let mut out: Vec<u8> = fill[..channels]
        .iter()
        .copied()
        .cycle()
        .take(total)
        .collect();
    let row_bytes = width * channels;
    for (k, tile) in tiles.iter().take(cells).enumerate() {
        let (r, c) = (k / shape.columns, k % shape.columns);
        for y in 0..height {
            let start = ((r * height + y) * gw + c * width) * channels;
            out[start..start + row_bytes]
                .copy_from_slice(&tile[y * row_bytes..(y + 1) * row_bytes]);
        }
    }
    Ok(match first {
        Image::Indexed { palette, .. } => Image::Indexed {
            width: gw,
            height: gh,
            indices: out,
            palette: palette.clone(),
        },
        Image::Rgb { .. } => Image::Rgb {
            width: gw,
            height: gh,
            pixels: out,
        },
    })
}

/// Sample `n` of an image batch as 8-bit luma, after rescaling [min, max] to [0, 255].
fn grayscale<U: Element>(input: &Batch<'_, U>, n: usize) -> Result<Vec<u8>, HeatmapError> {
    let channels = input.channels();
    if channels != 1 && channels != 3 {
        return Err(HeatmapError::Shape {
            shape: vec![input.len(), channels, input.height(), input.width()],
            reason: format!("an overlay input needs 1 or 3 channels, it has {channels}"),
        });
    }
    let sample = input.sample(n);
    let (lo, hi) = data_bounds(sample, Normalization::Unaligned);
    let (lo, range) = (lo.to_f64(), hi.to_f64() - lo.to_f64());
    let byte = |v: U| {
        if range > 0.0 {
            ((v.to_f64() - lo) / range * 255.0)
                .round()
                .clamp(0.0, 255.0) as u32
        } else {
            0
        }
    };
    let pixels = input.width() * input.height();
    Ok((0..pixels)
        .map(|i| {
            if channels == 1 {
                byte(sample[i]) as u8
            } else {
                // ITU-R 601-2 luma in PIL's fixed point: L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16.
                let (r, g, b) = (
                    byte(sample[i]),
                    byte(sample[pixels + i]),
                    byte(sample[2 * pixels + i]),
                );
                ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
            }
        })
        .collect())
}

/// A horizontal colour bar of a palette: index `⌊x·256/width⌋` in column x.
pub fn color_bar(palette: &Palette, width: usize, height: usize) -> Image {
    let width = width.max(1);
    let row: Vec<u8> = (0..width).map(|x| (x * 256 / width) as u8).collect();
    Image::Indexed {
        width,
        height: height.max(1),
        indices: row.repeat(height.max(1)),
        palette: Box::new(*palette),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_grid_matches_zennit() {
        assert_eq!(
            GridShape::square(1),
            GridShape {
                rows: 1,
                columns: 1
            }
        );
        assert_eq!(
            GridShape::square(5),
            GridShape {
                rows: 3,
                columns: 2
            }
        );
        assert_eq!(
            GridShape::square(9),
            GridShape {
                rows: 3,
                columns: 3
            }
        );
        assert_eq!(
            GridShape::square(10),
            GridShape {
                rows: 4,
                columns: 3
            }
        );
    }

    #[test]
    fn grid_shape_parses_rows_by_columns() {
        assert_eq!(
            "2x4".parse::<GridShape>().unwrap(),
            GridShape {
                rows: 2,
                columns: 4
            }
        );
        assert!("2x0".parse::<GridShape>().is_err());
        assert!("24".parse::<GridShape>().is_err());
    }

    #[test]
    fn symmetric_zero_is_the_centre() {
        let renderer = Renderer::new(&HeatmapOptions {
            normalization: Normalization::Symmetric,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(renderer.to_bytes(&[-2.0f32, 0.0, 2.0]), [0, 127, 255]);
    }
}
