//! `prism heatmap`: relevance arrays to heatmap PNGs, pixel for pixel as Zennit draws them.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use prism_heatmap::{
    align_tokens, color_bar, color_map, grid, render_tokens_html, render_tokens_png, Batch,
    ChannelReduction, Element, GridShape, HeatmapError, HeatmapOptions, Image, Normalization,
    OverlayOptions, Renderer, SubwordStyle, TokenHeatmapOptions, TokenRelevance,
    BUILTIN_COLOR_MAPS, DEFAULT_FONT_SIZE, DEFAULT_TOKEN_WIDTH,
};
use prism_store::npy::{NpyArray, NpyType};
use rayon::prelude::*;

/// Render relevance maps as heatmap PNGs, identical to Zennit's `imgify`/`imsave`, or the
/// relevance per token of a text model as coloured text (--tokens).
///
/// RELEVANCE is a float32 or float64 .npy array, N×C×H×W, N×H×W or H×W. Channels are summed
/// (see --channels), each sample is normalised on its own (unaligned [min, max] by default, as
/// in Zennit; --symmetric puts zero at the palette's centre; --absolute shows |R|), and written
/// as an 8-bit palette PNG whose palette can be swapped later.
///
/// OUTPUT ending in .png is one file (a single sample, or the whole batch with --grid);
/// anything else is a directory that gets one PNG per sample (000.png, 001.png, ...).
///
/// Colour maps are built-in names (see --list-cmaps) or strings in Zennit's colour-map
/// specification language (CMSL): comma-separated RGB colours of 3 or 6 hex digits, each
/// optionally placed at a hex index 00..ff with "index:", e.g. '00f,80:fff,f00'.
///
/// Examples:
///
///   prism heatmap relevance.npy --output heatmaps/ --cmap coldnhot --symmetric
///
///   prism heatmap relevance.npy --output batch.png --grid --cmap '70:0d0,70:ddd,90:ddd,90:d0d'
///
///   prism heatmap relevance.npy --output overlays/ --overlay input.npy --absolute --cmap hot
///
///   prism heatmap --list-cmaps --output cmaps/
///
/// Token models (--tokens): RELEVANCE is [tokens], [N, tokens] (what `prism explain` writes
/// for a token model) or [N, tokens, hidden] (summed over hidden); TOKENS.txt holds one token
/// per line, samples separated by an empty line (or a JSON list of lists, TOKENS.json; see
/// docs/heatmaps.md). OUTPUT ending in .html is a page with one block per sample, each
/// token's background coloured by its relevance, its value as a tooltip; .png rasterises the
/// same at --width pixels. Normalisation is symmetric unless --absolute or --unaligned.
///
///   prism heatmap relevance.npy --tokens tokens.txt --output text.html
///
///   prism heatmap relevance.npy --tokens tokens.txt --attention-mask mask.npy \
///       --sample 1 --cmap coldnhot --output text.png --width 600
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct HeatmapArgs {
    /// Relevance array (.npy, float32 or float64): N×C×H×W, N×H×W or H×W.
    #[arg(required_unless_present = "list_cmaps")]
    pub relevance: Option<PathBuf>,

    /// Output .png file (one sample, or with --grid), or a directory for one PNG per sample.
    /// With --list-cmaps: a directory for one colour bar PNG per built-in map.
    #[arg(short, long, required_unless_present = "list_cmaps")]
    pub output: Option<PathBuf>,

    /// Colour map: a built-in name or a CMSL string such as '00f,80:fff,f00'.
    #[arg(long, default_value = "bwr", value_name = "NAME|CMSL")]
    pub cmap: String,

    /// Palette level: above 1 saturates earlier (steeper centre), below 1 uses only the
    /// middle of the map.
    #[arg(
        long,
        default_value_t = 1.0,
        allow_negative_numbers = true,
        value_name = "L"
    )]
    pub level: f64,

    /// Normalise to [-max|R|, max|R|], so that zero is the palette's centre.
    #[arg(long, conflicts_with = "absolute")]
    pub symmetric: bool,

    /// Show |R| scaled to [0, max|R|]: only the amplitude matters.
    #[arg(long, conflicts_with = "unaligned")]
    pub absolute: bool,

    /// Map [min, max] of each sample onto the palette (the default for images; token
    /// renderings default to --symmetric).
    #[arg(long, conflicts_with = "symmetric")]
    pub unaligned: bool,

    /// Value shown at the palette's first colour (overrides the normalisation's lower bound).
    #[arg(long, allow_negative_numbers = true)]
    pub vmin: Option<f64>,

    /// Value shown at the palette's last colour (overrides the normalisation's upper bound).
    #[arg(long, allow_negative_numbers = true)]
    pub vmax: Option<f64>,

    /// Blend each heatmap over a grayscale version of this input (.npy with the relevance's
    /// N, H and W; 1 or 3 channels; rescaled from [min, max] per sample). The heatmap's
    /// opacity grows with |R| up to --overlay-alpha (ViRelAy's overlay mode). Writes RGB PNGs.
    #[arg(long, value_name = "INPUT.npy")]
    pub overlay: Option<PathBuf>,

    /// Opacity of the overlay where |R| is largest.
    #[arg(
        long,
        default_value_t = 0.9,
        requires = "overlay",
        value_name = "ALPHA"
    )]
    pub overlay_alpha: f64,

    /// Write the whole batch as one grid image: `--grid` for ⌊√N⌋ columns (Zennit's default),
    /// `--grid=ROWSxCOLS` for a fixed shape (extra samples are left out).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "auto",
        value_name = "ROWSxCOLS"
    )]
    pub grid: Option<String>,

    /// How channels are combined: sum (as Zennit's examples), abs-sum, or none (keep 1 or 3
    /// channels; 3 channels give an RGB image, as Zennit's imgify does).
    #[arg(long, value_enum, default_value_t = Channels::Sum)]
    pub channels: Channels,

    /// List the built-in colour maps; with --output DIR also write each as a colour bar PNG
    /// (256×24, at --level).
    #[arg(long)]
    pub list_cmaps: bool,

    /// Render relevance per token as coloured text: the tokens of each sample (one per line,
    /// samples separated by an empty line; or a JSON list of lists when the name ends in
    /// .json). OUTPUT must end in .html or .png.
    #[arg(
        long,
        value_name = "TOKENS.txt",
        conflicts_with_all = ["overlay", "grid", "list_cmaps"]
    )]
    pub tokens: Option<PathBuf>,

    /// With --tokens: the model's attention mask (.npy, [N, tokens], non-zero = real token).
    /// Padding positions are left out; each sample then lists all its tokens or only the
    /// real ones.
    #[arg(long, value_name = "MASK.npy", requires = "tokens")]
    pub attention_mask: Option<PathBuf>,

    /// With --tokens: render only sample K (0-based).
    #[arg(long, value_name = "K", requires = "tokens")]
    pub sample: Option<usize>,

    /// With --tokens: how sub-word tokens are joined (auto, wordpiece, byte-level,
    /// sentencepiece, words, raw); auto picks byte-level for `Ġ`, sentencepiece for `▁`,
    /// else wordpiece (`##piece` joins the token before it).
    #[arg(
        long,
        default_value = "auto",
        value_name = "STYLE",
        requires = "tokens"
    )]
    pub subwords: String,

    /// With --tokens: width in pixels of the PNG (and the largest width of the HTML text).
    #[arg(long, default_value_t = DEFAULT_TOKEN_WIDTH, value_name = "PX", requires = "tokens")]
    pub width: usize,

    /// With --tokens: font size in pixels.
    #[arg(long, default_value_t = DEFAULT_FONT_SIZE, value_name = "PX", requires = "tokens")]
    pub font_size: f32,
}

/// Channel reduction, as a command-line value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// Sum over channels.
    Sum,
    /// Sum of absolute values over channels.
    AbsSum,
    /// Keep the channels (1 or 3).
    None,
}

/// Runs `prism heatmap`.
pub fn run(args: &HeatmapArgs) -> anyhow::Result<()> {
    if args.list_cmaps {
        return list_cmaps(args);
    }
    let (Some(relevance_path), Some(output)) = (&args.relevance, &args.output) else {
        bail!("RELEVANCE.npy and --output are required (or use --list-cmaps)");
    };
    if let Some(tokens) = &args.tokens {
        return run_tokens(args, relevance_path, tokens, output);
    }
    let renderer = Renderer::new(&options(args)?)?;
    let grid_shape = match args.grid.as_deref() {
        None => None,
        Some("auto") => Some(None),
        Some(shape) => Some(Some(shape.parse::<GridShape>()?)),
    };
    let relevance = read_npy(relevance_path)?;
    let input = args.overlay.as_deref().map(read_npy).transpose()?;
    let overlay = OverlayOptions {
        max_alpha: args.overlay_alpha,
    };
    let n = relevance.batch_len()?;

    let to_file = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if to_file && n > 1 && grid_shape.is_none() {
        bail!(
            "{} holds {n} samples but {} is one file: pass --grid for one grid image, or a \
             directory as --output for one PNG per sample",
            relevance_path.display(),
            output.display()
        );
    }
    if to_file {
        if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
    } else {
        fs::create_dir_all(output)
            .with_context(|| format!("cannot create output directory {}", output.display()))?;
    }

    let job = Job {
        renderer: &renderer,
        input: input.as_ref(),
        overlay: &overlay,
        output,
        to_file,
        grid: grid_shape,
    };
    let written = match &relevance {
        Array::F32(data, shape) => job.run(&Batch::new(data, shape)?)?,
        Array::F64(data, shape) => job.run(&Batch::new(data, shape)?)?,
    };
    eprintln!("wrote {written}");
    Ok(())
}

fn options(args: &HeatmapArgs) -> anyhow::Result<HeatmapOptions> {
    let cmap = color_map(&args.cmap).map_err(|err| match &err {
        HeatmapError::Cmsl(cmsl) => anyhow::anyhow!("{err}\n{}", cmsl.pointer()),
        _ => anyhow::Error::new(err),
    })?;
    Ok(HeatmapOptions {
        color_map: cmap,
        level: args.level,
        normalization: if args.symmetric {
            Normalization::Symmetric
        } else if args.absolute {
            Normalization::Absolute
        } else if args.unaligned || args.tokens.is_none() {
            Normalization::Unaligned
        } else {
            Normalization::Symmetric
        },
        vmin: args.vmin,
        vmax: args.vmax,
        channels: match args.channels {
            Channels::Sum => ChannelReduction::Sum,
            Channels::AbsSum => ChannelReduction::AbsSum,
            Channels::None => ChannelReduction::None,
        },
    })
}

/// `prism heatmap --tokens`: coloured text as HTML or PNG.
fn run_tokens(
    args: &HeatmapArgs,
    relevance_path: &Path,
    tokens_path: &Path,
    output: &Path,
) -> anyhow::Result<()> {
    let extension = output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let png = match extension.as_deref() {
        Some("html" | "htm") => false,
        Some("png") => true,
        _ => bail!(
            "with --tokens, --output must end in .html or .png, got {}",
            output.display()
        ),
    };
    let options = TokenHeatmapOptions {
        heatmap: options(args)?,
        subwords: args
            .subwords
            .parse::<SubwordStyle>()
            .context("--subwords")?,
        width: args.width,
        font_size: args.font_size,
    };
    let tokens = prism_store::read_tokens(tokens_path)?;
    let mask = args.attention_mask.as_deref().map(read_mask).transpose()?;
    let relevance = read_npy(relevance_path)?;
    let rendered = match &relevance {
        Array::F32(data, shape) => render_tokens(
            &TokenRelevance::new(data, shape)?,
            &tokens,
            mask.as_deref(),
            args,
            &options,
            png,
        ),
        Array::F64(data, shape) => render_tokens(
            &TokenRelevance::new(data, shape)?,
            &tokens,
            mask.as_deref(),
            args,
            &options,
            png,
        ),
    }
    .with_context(|| {
        format!(
            "rendering {} with the tokens of {}",
            relevance_path.display(),
            tokens_path.display()
        )
    })?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    match rendered {
        Rendered::Html(html) => prism_store::write_bytes_atomic(output, html.as_bytes())?,
        Rendered::Png(image) => save_png(&image, output)?,
    }
    eprintln!("wrote {}", output.display());
    Ok(())
}

enum Rendered {
    Html(String),
    Png(Image),
}

fn render_tokens<T: Element>(
    relevance: &TokenRelevance<T>,
    tokens: &[Vec<String>],
    mask: Option<&[Vec<bool>]>,
    args: &HeatmapArgs,
    options: &TokenHeatmapOptions,
    png: bool,
) -> Result<Rendered, HeatmapError> {
    let samples = align_tokens(relevance, tokens, mask, args.sample)?;
    Ok(if png {
        Rendered::Png(render_tokens_png(&samples, options)?)
    } else {
        Rendered::Html(render_tokens_html(&samples, options)?)
    })
}

/// An attention mask: [N, tokens] of any numeric dtype, non-zero for real tokens.
fn read_mask(path: &Path) -> anyhow::Result<Vec<Vec<bool>>> {
    let npy = NpyArray::open(path)?;
    let shape = npy.shape().to_vec();
    let [n, t] = shape[..] else {
        bail!(
            "the attention mask {} has shape {shape:?}; it must be [N, tokens]",
            path.display()
        );
    };
    let values = npy
        .read_all()
        .with_context(|| format!("cannot read the values of {}", path.display()))?;
    if t == 0 {
        bail!(
            "the attention mask {} has no token positions",
            path.display()
        );
    }
    let rows: Vec<Vec<bool>> = values
        .chunks_exact(t)
        .map(|row| row.iter().map(|&v| v != 0.0).collect())
        .collect();
    debug_assert_eq!(rows.len(), n);
    Ok(rows)
}

/// What to render and where.
struct Job<'a> {
    renderer: &'a Renderer,
    input: Option<&'a Array>,
    overlay: &'a OverlayOptions,
    output: &'a Path,
    to_file: bool,
    grid: Option<Option<GridShape>>,
}

impl Job<'_> {
    /// Renders and writes; returns a description of what was written.
    fn run<T: Element>(&self, relevance: &Batch<'_, T>) -> anyhow::Result<String> {
        match self.input {
            None => self.write(relevance, None::<&Batch<'_, f32>>),
            Some(Array::F32(data, shape)) => self.write(relevance, Some(&Batch::new(data, shape)?)),
            Some(Array::F64(data, shape)) => self.write(relevance, Some(&Batch::new(data, shape)?)),
        }
    }

    fn write<T: Element, U: Element>(
        &self,
        relevance: &Batch<'_, T>,
        input: Option<&Batch<'_, U>>,
    ) -> anyhow::Result<String> {
        let n = relevance.len();
        if let Some(shape) = self.grid {
            let image = match input {
                None => self.renderer.render_grid(relevance, shape)?,
                Some(input) => grid(
                    &self.renderer.overlay_all(relevance, input, self.overlay)?,
                    shape,
                )?,
            };
            let path = if self.to_file {
                self.output.to_owned()
            } else {
                self.output.join("grid.png")
            };
            save_png(&image, &path)?;
            return Ok(format!(
                "a {}×{} grid of {n} samples to {}",
                image.width(),
                image.height(),
                path.display()
            ));
        }
        if self.to_file {
            let image: Image = match input {
                None => self.renderer.render(relevance, 0)?,
                Some(input) => self.renderer.overlay(relevance, input, 0, self.overlay)?,
            };
            save_png(&image, self.output)?;
            return Ok(self.output.display().to_string());
        }
        let digits = (n - 1).max(1).to_string().len().max(3);
        let path_of = |k: usize| self.output.join(format!("{k:0digits$}.png"));
        (0..n).into_par_iter().try_for_each(|k| {
            let image = match input {
                None => self.renderer.render(relevance, k)?,
                Some(input) => self.renderer.overlay(relevance, input, k, self.overlay)?,
            };
            save_png(&image, &path_of(k))
        })?;
        Ok(format!(
            "{n} PNG files to {} ({} .. {})",
            self.output.display(),
            path_of(0).file_name().unwrap_or_default().to_string_lossy(),
            path_of(n - 1)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ))
    }
}

fn list_cmaps(args: &HeatmapArgs) -> anyhow::Result<()> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Some(dir) = &args.output {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    println!("{:<9} {:<8} {:<26} description", "name", "kind", "CMSL");
    for map in &BUILTIN_COLOR_MAPS {
        let palette = map.color_map().palette(args.level);
        let swatch = if colour {
            terminal_swatch(&palette)
        } else {
            String::new()
        };
        let kind = if map.signed { "signed" } else { "unsigned" };
        println!(
            "{:<9} {:<8} {:<26} {}{}",
            map.name, kind, map.source, map.description, swatch
        );
        if let Some(dir) = &args.output {
            let path = dir.join(format!("{}.png", map.name));
            save_png(&color_bar(&palette, 256, 24), &path)?;
        }
    }
    if let Some(dir) = &args.output {
        eprintln!(
            "wrote {} colour bars to {}",
            BUILTIN_COLOR_MAPS.len(),
            dir.display()
        );
    }
    Ok(())
}

/// 32 cells of the palette as 24-bit terminal colours.
fn terminal_swatch(palette: &prism_heatmap::Palette) -> String {
    let mut out = String::from("  ");
    for i in 0..32 {
        let [r, g, b] = palette[i * 8 + 4];
        out.push_str(&format!("\x1b[48;2;{r};{g};{b}m \x1b[0m"));
    }
    out
}

/// A .npy array read into memory.
enum Array {
    F32(Vec<f32>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
}

impl Array {
    fn batch_len(&self) -> anyhow::Result<usize> {
        let shape = match self {
            Array::F32(_, s) | Array::F64(_, s) => s,
        };
        Ok(match shape.len() {
            2 => 1,
            3 | 4 => shape[0],
            _ => bail!("an array of shape {shape:?} is not N×C×H×W, N×H×W or H×W"),
        })
    }
}

fn read_npy(path: &Path) -> anyhow::Result<Array> {
    let npy = NpyArray::open(path)?;
    let shape = npy.shape().to_vec();
    let values = || {
        npy.read_all()
            .with_context(|| format!("cannot read the values of {}", path.display()))
    };
    let values = || -> anyhow::Result<Vec<f64>> {
        let v = values()?;
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            bail!(
                "{} holds {bad} non-finite value{} (NaN or ±Inf); a heatmap of them would be \
                 meaningless: explain again (prism explain refuses non-finite relevance unless \
                 --allow-nonfinite is given)",
                path.display(),
                if bad == 1 { "" } else { "s" }
            );
        }
        Ok(v)
    };
    match npy.element_type() {
        NpyType::F32 => Ok(Array::F32(
            values()?.into_iter().map(|v| v as f32).collect(),
            shape,
        )),
        NpyType::F64 => Ok(Array::F64(values()?, shape)),
        _ => bail!(
            "{} has dtype {}; heatmaps need float32 or float64 (e.g. array.astype(numpy.float32))",
            path.display(),
            npy.descr()
        ),
    }
}

/// Writes `image` as a PNG file atomically (`prism_store::atomic`): a killed run leaves the old
/// file or the complete new one, never a truncated PNG.
fn save_png(image: &Image, path: &Path) -> anyhow::Result<()> {
    prism_store::write_bytes_atomic(path, &image.encode_png()?)?;
    Ok(())
}
