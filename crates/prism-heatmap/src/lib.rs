//! Heatmaps of relevance, pixel for pixel as Zennit draws them.
//!
//! This crate turns relevance arrays (N×C×H×W, N×H×W or H×W, `f32` or `f64`) into pictures:
//! it compiles colour maps from Zennit's colour-map specification language (CMSL; all eleven
//! built-in maps are defined in it), builds 256-colour palettes with Zennit's `level`,
//! normalises each sample (unaligned, symmetric, absolute, or explicit bounds), reduces channels,
//! lays batches out in grids, blends heatmaps over grayscale inputs (ViRelAy's overlay mode), and
//! encodes PNG files (palette images for single-channel maps, like Zennit). It also renders
//! relevance per token of text models: the text with each token's background coloured by the
//! same palettes, as HTML ([`render_tokens_html`]) or as a PNG rasterised with the bundled
//! DejaVu Sans font ([`render_tokens_png`]). The palettes and
//! palette indices it produces are identical to those of Zennit's `imgify`, which the tests check
//! against reference images; where Zennit breaks (a constant map divides by zero) this crate
//! documents what it does instead. It does not read `.npy` or HDF5 files, compute attributions,
//! or resize images: callers hand it arrays.
//!
//! ```
//! use prism_heatmap::{color_map, Batch, HeatmapOptions, Normalization, Renderer};
//!
//! let relevance = [-1.0f32, 0.0, 0.5, 1.0];
//! let batch = Batch::new(&relevance, &[2, 2]).unwrap();
//! let renderer = Renderer::new(&HeatmapOptions {
//!     color_map: color_map("coldnhot").unwrap(),
//!     normalization: Normalization::Symmetric,
//!     ..Default::default()
//! })
//! .unwrap();
//! let image = renderer.render(&batch, 0).unwrap();
//! let png = image.encode_png().unwrap();
//! assert_eq!(&png[1..4], b"PNG");
//! ```

mod array;
mod builtin;
mod cmsl;
mod error;
mod image;
mod render;
mod text;
mod tokens;

pub use array::{Batch, Element};
pub use builtin::{color_map, BuiltinColorMap, BUILTIN_COLOR_MAPS, DEFAULT_COLOR_MAP};
pub use cmsl::{ColorMap, ColorNode, Palette, Rgb};
pub use error::{CmslError, CmslErrorKind, HeatmapError};
pub use image::Image;
pub use render::{
    color_bar, grid, ChannelReduction, GridShape, HeatmapOptions, Normalization, OverlayOptions,
    Renderer,
};
pub use text::render_tokens_png;
pub use tokens::{
    align_tokens, display_tokens, escape_html, render_tokens_html, SubwordStyle, TokenDisplay,
    TokenHeatmapOptions, TokenRelevance, TokenSample, DEFAULT_FONT_SIZE, DEFAULT_TOKEN_WIDTH,
};
