//! Token heatmaps as pictures: the text rasterised with the bundled DejaVu Sans, word-wrapped
//! at a fixed width, each token's box filled with its colour.

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};

use crate::array::Element;
use crate::error::HeatmapError;
use crate::image::Image;
use crate::render::Renderer;
use crate::tokens::{
    check_layout, legend_quantity, legend_value, prepare, text_color, Laid, TokenHeatmapOptions,
    TokenSample,
};

/// DejaVu Sans 2.37 (Bitstream Vera licence with the Arev additions; `fonts/LICENSE`).
static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The blank border around the picture, in pixels.
pub(crate) const MARGIN: usize = 12;
const BACKGROUND: [u8; 3] = [255, 255, 255];
const MUTED: [u8; 3] = [85, 85, 85];
/// Tab stops are this many spaces wide.
const TAB_SPACES: f32 = 4.0;

/// What the picture is made of, in drawing order (boxes before the glyphs on them).
enum Op {
    Rect {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
        color: [u8; 3],
    },
    Glyph {
        id: GlyphId,
        x: f32,
        baseline: f32,
        size: f32,
        color: [u8; 3],
    },
}

/// One placed character of the token flow.
struct Placed {
    c: char,
    x: f32,
    advance: f32,
    line: usize,
    /// The token it belongs to; `None` for the uncoloured gaps between words.
    token: Option<usize>,
}

/// Renders the samples as one RGB picture `options.width` pixels wide: per sample a heading,
/// a legend (the colour bar with the values at its ends) and the text, word-wrapped, each
/// token's box filled with the colour of its relevance (the same colours as
/// [`render_tokens_html`](crate::render_tokens_html) and the image heatmaps). Glyphs the font
/// lacks (e.g. CJK) are drawn as its empty box.
pub fn render_tokens_png<T: Element>(
    samples: &[TokenSample<T>],
    options: &TokenHeatmapOptions,
) -> Result<Image, HeatmapError> {
    let renderer = Renderer::new(&options.heatmap)?;
    check_layout(options)?;
    let laid = prepare(&renderer, samples, options.subwords)?;
    let font = FontRef::try_from_slice(DEJAVU_SANS)
        .map_err(|e| HeatmapError::Parameter(format!("the bundled font does not load: {e}")))?;
    let mut ops = Vec::new();
    let mut y = MARGIN as f32;
    for (k, sample) in laid.iter().enumerate() {
        if k > 0 {
            y += options.font_size;
        }
        y = layout_sample(&font, &renderer, sample, options, y, &mut ops);
    }
    let height = (y.ceil() as usize + MARGIN).max(1);
    Ok(draw(&font, options.width, height, &ops))
}

/// Lays out one sample starting at `top`; returns the y below it.
fn layout_sample(
    font: &FontRef<'_>,
    renderer: &Renderer,
    sample: &Laid,
    options: &TokenHeatmapOptions,
    top: f32,
    ops: &mut Vec<Op>,
) -> f32 {
    let left = MARGIN as f32;
    let right = (options.width - MARGIN) as f32;
    let small = (options.font_size * 0.8).round().max(4.0);

    // heading
    let heading = format!("sample {} · {} tokens", sample.index, sample.tokens.len());
    let scaled = font.as_scaled(PxScale::from(small));
    let mut y = top + scaled.ascent();
    text_ops(font, small, &heading, left, y, MUTED, ops);
    y += -scaled.descent() + small * 0.4;

    // legend: lo [bar] hi R
    let (lo, hi) = sample.range;
    let (lo, hi) = (legend_value(lo), legend_value(hi));
    let quantity = legend_quantity(renderer.normalization());
    let gap = small * 0.5;
    let fixed = text_width(font, small, &lo)
        + text_width(font, small, &hi)
        + text_width(font, small, quantity)
        + 3.0 * gap;
    let bar = (right - left - fixed).clamp(16.0, 256.0);
    let baseline = y + scaled.ascent();
    let mut x = text_ops(font, small, &lo, left, baseline, MUTED, ops) + gap;
    let bar_top = y + (scaled.ascent() - scaled.descent() - small * 0.75) / 2.0;
    let palette = renderer.palette();
    for px in 0..bar as usize {
        let index = px * 256 / bar as usize;
        ops.push(Op::Rect {
            x0: x + px as f32,
            y0: bar_top,
            x1: x + px as f32 + 1.0,
            y1: bar_top + small * 0.75,
            color: palette[index.min(255)],
        });
    }
    x += bar + gap;
    x = text_ops(font, small, &hi, x, baseline, MUTED, ops) + gap;
    text_ops(font, small, quantity, x, baseline, MUTED, ops);
    y += scaled.ascent() - scaled.descent() + small * 0.6;

    // the text
    let size = options.font_size;
    let scaled = font.as_scaled(PxScale::from(size));
    let line_height = (scaled.ascent() - scaled.descent() + scaled.line_gap()).ceil() + 2.0;
    let placed = flow(font, size, sample, left, right);
    let lines = placed.iter().map(|p| p.line + 1).max().unwrap_or(1);
    for p in &placed {
        let Some(t) = p.token else { continue };
        let line_top = y + p.line as f32 * line_height;
        ops.push(Op::Rect {
            x0: p.x,
            y0: line_top + 1.0,
            x1: p.x + p.advance,
            y1: line_top + line_height - 1.0,
            color: sample.tokens[t].color,
        });
    }
    for p in &placed {
        if p.c.is_whitespace() {
            continue;
        }
        let color = p
            .token
            .map_or(MUTED, |t| text_color(sample.tokens[t].color));
        let baseline = y + p.line as f32 * line_height + 1.0 + scaled.ascent();
        ops.push(Op::Glyph {
            id: font.glyph_id(p.c),
            x: p.x,
            baseline,
            size,
            color,
        });
    }
    y + lines as f32 * line_height
}

/// Word-wraps the sample's gaps and token texts between `left` and `right`: lines break after
/// whitespace, at `\n`, and inside a word only when the word is wider than a line.
fn flow(font: &FontRef<'_>, size: f32, sample: &Laid, left: f32, right: f32) -> Vec<Placed> {
    let scaled = font.as_scaled(PxScale::from(size));
    let advance = |c: char| match c {
        '\t' => TAB_SPACES * scaled.h_advance(font.glyph_id(' ')),
        c => scaled.h_advance(font.glyph_id(c)),
    };
    let chars: Vec<(char, Option<usize>)> = sample
        .tokens
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let gap = t.display.gap.chars().map(|c| (c, None));
            gap.chain(t.display.text.chars().map(move |c| (c, Some(i))))
        })
        .collect();
    let mut placed = Vec::with_capacity(chars.len());
    let (mut x, mut line) = (left, 0usize);
    let mut i = 0;
    while i < chars.len() {
        // the word starting at i: its non-whitespace characters
        let word_end = chars[i..]
            .iter()
            .position(|&(c, _)| c.is_whitespace())
            .map_or(chars.len(), |p| i + p);
        let word: f32 = chars[i..word_end].iter().map(|&(c, _)| advance(c)).sum();
        if x > left && x + word > right {
            x = left;
            line += 1;
        }
        for &(c, token) in &chars[i..word_end] {
            let a = advance(c);
            if x > left && x + a > right {
                x = left;
                line += 1;
            }
            placed.push(Placed {
                c,
                x,
                advance: a,
                line,
                token,
            });
            x += a;
        }
        // the whitespace after it
        i = word_end;
        while i < chars.len() && chars[i].0.is_whitespace() {
            let (c, token) = chars[i];
            i += 1;
            if c == '\n' {
                x = left;
                line += 1;
                continue;
            }
            if token.is_none() && x == left {
                // an uncoloured separator does not indent a line
                continue;
            }
            let a = advance(c);
            if x + a > right {
                if token.is_none() {
                    // an uncoloured separator at the end of a line is not drawn
                    continue;
                }
                x = left;
                line += 1;
            }
            placed.push(Placed {
                c,
                x,
                advance: a,
                line,
                token,
            });
            x += a;
        }
    }
    placed
}

/// Width of a single-line text, in pixels.
fn text_width(font: &FontRef<'_>, size: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    text.chars()
        .map(|c| scaled.h_advance(font.glyph_id(c)))
        .sum()
}

/// Adds the glyphs of a single-line text; returns the x after it.
fn text_ops(
    font: &FontRef<'_>,
    size: f32,
    text: &str,
    mut x: f32,
    baseline: f32,
    color: [u8; 3],
    ops: &mut Vec<Op>,
) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    for c in text.chars() {
        let id = font.glyph_id(c);
        ops.push(Op::Glyph {
            id,
            x,
            baseline,
            size,
            color,
        });
        x += scaled.h_advance(id);
    }
    x
}

/// Paints the operations on a white canvas.
fn draw(font: &FontRef<'_>, width: usize, height: usize, ops: &[Op]) -> Image {
    let mut pixels: Vec<u8> = BACKGROUND
        .iter()
        .copied()
        .cycle()
        .take(width * height * 3)
        .collect();
    let mut blend = |x: i64, y: i64, color: [u8; 3], alpha: f32| {
        if x < 0 || y < 0 || x >= width as i64 || y >= height as i64 {
            return;
        }
        let at = (y as usize * width + x as usize) * 3;
        let alpha = alpha.clamp(0.0, 1.0);
        for (p, c) in pixels[at..at + 3].iter_mut().zip(color) {
            *p = (f32::from(*p) * (1.0 - alpha) + f32::from(c) * alpha).round() as u8;
        }
    };
    for op in ops {
        match *op {
            Op::Rect {
                x0,
                y0,
                x1,
                y1,
                color,
            } => {
                // boxes snap to whole pixels so that neighbouring tokens meet without seams
                for y in y0.round() as i64..y1.round() as i64 {
                    for x in x0.round() as i64..x1.round() as i64 {
                        blend(x, y, color, 1.0);
                    }
                }
            }
            Op::Glyph {
                id,
                x,
                baseline,
                size,
                color,
            } => {
                let glyph = id.with_scale_and_position(PxScale::from(size), point(x, baseline));
                if let Some(outline) = font.outline_glyph(glyph) {
                    let bounds = outline.px_bounds();
                    outline.draw(|gx, gy, coverage| {
                        blend(
                            bounds.min.x as i64 + i64::from(gx),
                            bounds.min.y as i64 + i64::from(gy),
                            color,
                            coverage,
                        )
                    });
                }
            }
        }
    }
    Image::Rgb {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::SubwordStyle;

    fn sample(tokens: &[&str], values: &[f32]) -> TokenSample<f32> {
        TokenSample {
            index: 0,
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            values: values.to_vec(),
            positions: (0..values.len()).collect(),
        }
    }

    fn options(width: usize) -> TokenHeatmapOptions {
        TokenHeatmapOptions {
            width,
            subwords: SubwordStyle::Auto,
            ..Default::default()
        }
    }

    #[test]
    fn png_has_the_width_and_coloured_token_boxes() {
        let s = sample(
            &["[CLS]", "the", "movie", "was", "great", "##ly", "[SEP]"],
            &[0.0, 0.1, -0.2, 0.0, 1.0, 0.5, 0.0],
        );
        let image = render_tokens_png(&[s], &options(400)).unwrap();
        assert_eq!(image.width(), 400);
        assert!(
            image.height() > 3 * 16 && image.height() < 200,
            "{}",
            image.height()
        );
        let rgb = image.to_rgb();
        // the most relevant token is pure red in bwr, symmetric
        assert!(rgb.contains(&[255, 0, 0]));
        // blue for the negative one, and dark glyph pixels
        assert!(rgb.iter().any(|&[r, g, b]| b == 255 && r < 200 && g < 200));
        assert!(rgb.iter().any(|&[r, g, b]| r < 60 && g < 60 && b < 60));
        // the margin stays white
        assert!(rgb[..400 * MARGIN].iter().all(|&p| p == BACKGROUND));
    }

    #[test]
    fn long_text_wraps_into_more_lines() {
        let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
        let tokens: Vec<&str> = words.iter().map(String::as_str).collect();
        let values: Vec<f32> = (0..60).map(|i| i as f32 - 30.0).collect();
        let narrow = render_tokens_png(&[sample(&tokens, &values)], &options(300)).unwrap();
        let wide = render_tokens_png(&[sample(&tokens, &values)], &options(1200)).unwrap();
        assert!(narrow.height() > 2 * wide.height() - 60);
        // every block of two samples is taller than one
        let two = render_tokens_png(
            &[sample(&tokens, &values), sample(&tokens, &values)],
            &options(300),
        )
        .unwrap();
        assert!(two.height() > 2 * narrow.height() - 2 * MARGIN);
    }

    #[test]
    fn a_word_wider_than_the_line_is_broken() {
        let long = "x".repeat(200);
        let image = render_tokens_png(&[sample(&[&long], &[1.0])], &options(200)).unwrap();
        assert_eq!(image.width(), 200);
        // no red box pixel beyond the right margin
        let rgb = image.to_rgb();
        for row in rgb.chunks_exact(200) {
            assert!(row[200 - MARGIN + 1..].iter().all(|&p| p == BACKGROUND));
        }
    }

    #[test]
    fn too_narrow_widths_are_refused() {
        let e = render_tokens_png(&[sample(&["a"], &[1.0])], &options(20)).unwrap_err();
        assert!(e.to_string().contains("width"), "{e}");
    }
}
