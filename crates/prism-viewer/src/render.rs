//! Pictures of samples: the input, its heatmap in a colour map, or the heatmap over the input;
//! for token datasets the text coloured by relevance (the HTML of `prism heatmap --tokens`).

use prism_heatmap::{
    align_tokens, render_tokens_html, Batch, BuiltinColorMap, HeatmapOptions, Image, Normalization,
    OverlayOptions, Renderer, TokenHeatmapOptions, TokenRelevance,
};

use crate::dataset::RgbImage;
use crate::error::ViewerError;
use crate::workspace::LoadedProject;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageMode {
    Input,
    Attribution,
    Overlay,
}

impl ImageMode {
    pub fn parse(s: &str) -> Option<ImageMode> {
        match s {
            "input" => Some(ImageMode::Input),
            "attribution" | "heatmap" => Some(ImageMode::Attribution),
            "overlay" | "superimposed" => Some(ImageMode::Overlay),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageMode::Input => "input",
            ImageMode::Attribution => "attribution",
            ImageMode::Overlay => "overlay",
        }
    }
}

/// Parses a normalisation name.
pub fn parse_normalization(s: &str) -> Option<Normalization> {
    match s {
        "symmetric" => Some(Normalization::Symmetric),
        "absolute" => Some(Normalization::Absolute),
        "unaligned" => Some(Normalization::Unaligned),
        _ => None,
    }
}

pub fn normalization_name(n: Normalization) -> &'static str {
    match n {
        Normalization::Symmetric => "symmetric",
        Normalization::Absolute => "absolute",
        Normalization::Unaligned => "unaligned",
    }
}

/// The default normalisation of a map: symmetric for diverging maps, absolute otherwise.
pub fn default_normalization(map: &BuiltinColorMap) -> Normalization {
    if map.signed {
        Normalization::Symmetric
    } else {
        Normalization::Absolute
    }
}

/// The input picture of dataset sample `index` as PNG.
pub fn input_png(project: &LoadedProject, index: usize) -> Result<Vec<u8>, ViewerError> {
    let img = project.dataset.image(index)?;
    Ok(rgb_png(&img)?)
}

fn rgb_png(img: &RgbImage) -> Result<Vec<u8>, prism_heatmap::HeatmapError> {
    Image::Rgb {
        width: img.width,
        height: img.height,
        pixels: img.pixels.clone(),
    }
    .encode_png()
}

/// The heatmap (or overlay) of the attribution of dataset sample `index`, as PNG.
pub fn heatmap_png(
    project: &LoadedProject,
    index: u32,
    map: &BuiltinColorMap,
    normalization: Normalization,
    overlay: bool,
) -> Result<Option<Vec<u8>>, ViewerError> {
    let Some(at) = project.attribution_row(index) else {
        return Ok(None);
    };
    let file = &project.attributions[at.file];
    let values = file.read_rows(&[at.row])?;
    let [c, h, w] = file.sample_shape();
    let over = overlay && (index as usize) < project.dataset.len();
    render_png(
        project,
        index as usize,
        &values,
        [c, h, w],
        map,
        normalization,
        over,
    )
    .map(Some)
}

/// A heatmap of shape `[c, h, w]` in a colour map as PNG, over dataset sample `index`'s picture
/// (in grayscale) when `overlay`.
fn render_png(
    project: &LoadedProject,
    index: usize,
    values: &[f32],
    [c, h, w]: [usize; 3],
    map: &BuiltinColorMap,
    normalization: Normalization,
    overlay: bool,
) -> Result<Vec<u8>, ViewerError> {
    let batch = Batch::new(values, &[1, c, h, w])?;
    let renderer = Renderer::new(&HeatmapOptions {
        color_map: map.color_map(),
        normalization,
        ..Default::default()
    })?;
    if !overlay {
        return Ok(renderer.render(&batch, 0)?.encode_png()?);
    }
    let mut input = project.dataset.image(index)?;
    if input.width != w || input.height != h {
        input = input.resized(w, h);
    }
    // Planar float input in 0..255 for the overlay's grayscale conversion.
    let plane = w * h;
    let mut planar = vec![0f32; 3 * plane];
    for (p, px) in input.pixels.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            planar[ch * plane + p] = f32::from(px[ch]);
        }
    }
    let input_batch = Batch::new(&planar, &[1, 3, h, w])?;
    let img = renderer.overlay(&batch, &input_batch, 0, &OverlayOptions::default())?;
    Ok(img.encode_png()?)
}

/// The conditional (CRP) heatmap of concept `channel` in dataset sample `sample` at concept
/// layer `layer`, rendered as the attribution heatmaps are (colour map, normalisation, optional
/// overlay); `None` when the sample is not in the run or has no heatmap of that channel.
pub fn concept_heatmap_png(
    project: &LoadedProject,
    layer: usize,
    sample: u32,
    channel: u32,
    map: &BuiltinColorMap,
    normalization: Normalization,
    overlay: bool,
) -> Result<Option<Vec<u8>>, ViewerError> {
    let Some(l) = project.concept_layer(layer) else {
        return Ok(None);
    };
    let (Some(row), Some((h, w))) = (l.file.row_of(sample), l.info.heatmap_size) else {
        return Ok(None);
    };
    let Some(values) = l.file.heatmap(l.layer, row, channel)? else {
        return Ok(None);
    };
    render_png(
        project,
        sample as usize,
        &values,
        [1, h, w],
        map,
        normalization,
        overlay,
    )
    .map(Some)
}

/// How a reference sample is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceFrame {
    /// The picture cut to the crop box.
    Crop,
    /// The whole picture with the box drawn.
    Box,
    /// The whole picture.
    Whole,
}

impl ReferenceFrame {
    pub fn parse(s: &str) -> Option<ReferenceFrame> {
        match s {
            "crop" => Some(ReferenceFrame::Crop),
            "box" => Some(ReferenceFrame::Box),
            "whole" => Some(ReferenceFrame::Whole),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReferenceFrame::Crop => "crop",
            ReferenceFrame::Box => "box",
            ReferenceFrame::Whole => "whole",
        }
    }
}

/// The colour of drawn crop boxes (a yellow that stands out on heatmap colours and photos).
const BOX_COLOR: [u8; 3] = [255, 214, 0];

/// Dataset sample `sample`'s picture cut to `crop` (`Crop`), with `crop` drawn (`Box`) or whole,
/// as PNG. A box outside the picture is an error naming both sizes.
pub fn reference_png(
    project: &LoadedProject,
    sample: u32,
    crop: Option<prism_store::CropBox>,
    frame: ReferenceFrame,
) -> Result<Vec<u8>, ViewerError> {
    let img = project.dataset.image(sample as usize)?;
    let Some(b) = crop.filter(|_| frame != ReferenceFrame::Whole) else {
        return Ok(rgb_png(&img)?);
    };
    let [y0, y1, x0, x1] = b.to_array().map(|v| v as usize);
    if y1 > img.height || x1 > img.width {
        return Err(ViewerError::Project {
            path: project.yaml.clone(),
            message: format!(
                "the crop box y {y0}..{y1}, x {x0}..{x1} of sample {sample} lies outside its \
                 {}×{} picture (were the concepts computed on inputs of another size?)",
                img.width, img.height
            ),
        });
    }
    let out = match frame {
        ReferenceFrame::Crop => {
            let mut pixels = Vec::with_capacity((y1 - y0) * (x1 - x0) * 3);
            for y in y0..y1 {
                pixels.extend_from_slice(
                    &img.pixels[(y * img.width + x0) * 3..(y * img.width + x1) * 3],
                );
            }
            RgbImage {
                width: x1 - x0,
                height: y1 - y0,
                pixels,
            }
        }
        ReferenceFrame::Box | ReferenceFrame::Whole => {
            let mut img = img;
            // A line of about 1/64 of the picture, at least one pixel, inside the box.
            let t = (img.width.min(img.height) / 64).max(1);
            for y in y0..y1 {
                for x in x0..x1 {
                    let edge = y < y0 + t || y + t >= y1 || x < x0 + t || x + t >= x1;
                    if edge {
                        let p = (y * img.width + x) * 3;
                        img.pixels[p..p + 3].copy_from_slice(&BOX_COLOR);
                    }
                }
            }
            img
        }
    };
    Ok(rgb_png(&out)?)
}

/// The tokens of dataset sample `index` coloured by their relevance, as the page `prism heatmap
/// --tokens` writes for one sample (padding left out where the dataset has an attention mask);
/// `None` when the sample has no attribution or the dataset is not a token dataset.
pub fn tokens_html(
    project: &LoadedProject,
    index: u32,
    map: &BuiltinColorMap,
    normalization: Normalization,
) -> Result<Option<String>, ViewerError> {
    let Some(at) = project.attribution_row(index) else {
        return Ok(None);
    };
    let Some(spelled) = project.dataset.tokens(index as usize) else {
        return Ok(None);
    };
    let (tokens, mask) = spelled?;
    let values = project.attributions[at.file].read_rows(&[at.row])?;
    let relevance = TokenRelevance::new(&values, &[1, values.len()])?;
    let mask = mask.map(|m| vec![m]);
    let mut samples = align_tokens(&relevance, &[tokens], mask.as_deref(), None)?;
    for s in &mut samples {
        // the heading names the dataset's sample, not the position in this one-sample batch
        s.index = index as usize;
    }
    let options = TokenHeatmapOptions {
        heatmap: HeatmapOptions {
            color_map: map.color_map(),
            normalization,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(Some(render_tokens_html(&samples, &options)?))
}

/// A colour bar of a built-in map as PNG.
pub fn color_bar_png(
    map: &BuiltinColorMap,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, ViewerError> {
    let palette = map.color_map().palette(1.0);
    Ok(prism_heatmap::color_bar(&palette, width, height).encode_png()?)
}
