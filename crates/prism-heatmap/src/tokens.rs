//! Relevance per token: token arrays, their alignment with the token strings, how sub-word
//! pieces are shown, and the HTML rendering (the PNG rendering is in `text.rs`).

use std::fmt::Write as _;

use crate::array::Element;
use crate::error::HeatmapError;
use crate::render::{HeatmapOptions, Normalization, Renderer};

/// Relevance per token of a batch: N samples × T token positions, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRelevance<T> {
    values: Vec<T>,
    samples: usize,
    tokens: usize,
    shape: Vec<usize>,
}

impl<T: Element> TokenRelevance<T> {
    /// Reads relevance of shape `[T]` (one sample), `[N, T]` (what `prism explain` writes for a
    /// token model), or `[N, T, H]` (relevance at the embedding output, summed here over the
    /// hidden dimension H in `T`'s precision, in order, as `prism explain` sums it).
    pub fn new(data: &[T], shape: &[usize]) -> Result<Self, HeatmapError> {
        let (samples, tokens, hidden) = match *shape {
            [t] => (1, t, 1),
            [n, t] => (n, t, 1),
            [n, t, h] => (n, t, h),
            _ => {
                return Err(HeatmapError::Shape {
                    shape: shape.to_vec(),
                    reason: "token relevance must be [tokens], [N, tokens] or \
                             [N, tokens, hidden]"
                        .into(),
                })
            }
        };
        if samples == 0 || tokens == 0 || hidden == 0 {
            return Err(HeatmapError::Shape {
                shape: shape.to_vec(),
                reason: "every dimension must be at least 1".into(),
            });
        }
        let expected = samples
            .checked_mul(tokens)
            .and_then(|v| v.checked_mul(hidden));
        if expected != Some(data.len()) {
            return Err(HeatmapError::Shape {
                shape: shape.to_vec(),
                reason: format!(
                    "the shape needs {expected:?} values, the data has {}",
                    data.len()
                ),
            });
        }
        let values = if hidden == 1 {
            data.to_vec()
        } else {
            data.chunks_exact(hidden)
                .map(|h| h.iter().fold(T::ZERO, |s, &v| s + v))
                .collect()
        };
        Ok(Self {
            values,
            samples,
            tokens,
            shape: shape.to_vec(),
        })
    }

    /// Number of samples N.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Token positions per sample T.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The shape the relevance was given in.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The T values of sample `n` (panics when `n` is out of range, like slice indexing).
    pub fn sample(&self, n: usize) -> &[T] {
        &self.values[n * self.tokens..(n + 1) * self.tokens]
    }
}

/// One sample ready to render: its tokens and their relevance, position for position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSample<T> {
    /// The sample's index in the batch (0-based), shown in the rendering.
    pub index: usize,
    /// The tokens as the tokenizer spells them (`##ing`, `Ġthe`, `▁the`, `[CLS]`, ...).
    pub tokens: Vec<String>,
    /// The relevance of each token.
    pub values: Vec<T>,
    /// The position of each token in the relevance's token axis (differs from 0, 1, 2, ...
    /// where an attention mask dropped padding).
    pub positions: Vec<usize>,
}

/// Pairs each sample's tokens with its relevance, checking that the counts agree.
///
/// `tokens` holds one list per sample, as many as the relevance has samples. Without a mask
/// each list must have exactly T tokens (padding tokens such as `[PAD]` included). With a mask
/// (one row of T flags per sample, `true` for a real token, as a model's `attention_mask`),
/// the padding positions are left out of the rendering and of the normalisation, and a list
/// may have either T tokens (the padding tokens are dropped with their positions) or exactly
/// as many tokens as the row has real positions (the tokens of the real positions, in order).
/// `only` restricts the result to one sample.
pub fn align_tokens<T: Element>(
    relevance: &TokenRelevance<T>,
    tokens: &[Vec<String>],
    mask: Option<&[Vec<bool>]>,
    only: Option<usize>,
) -> Result<Vec<TokenSample<T>>, HeatmapError> {
    let n = relevance.samples();
    let t = relevance.tokens();
    if tokens.len() != n {
        return Err(HeatmapError::TokenCount(format!(
            "the tokens have {} sample(s) but the relevance {:?} has {n} sample(s)",
            tokens.len(),
            relevance.shape()
        )));
    }
    if let Some(mask) = mask {
        if mask.len() != n || mask.iter().any(|row| row.len() != t) {
            let rows: Vec<usize> = mask.iter().map(Vec::len).collect();
            return Err(HeatmapError::TokenCount(format!(
                "the attention mask must have one row of {t} flags for each of the {n} \
                 samples (the relevance's shape {:?}); it has {} row(s) of lengths {rows:?}",
                relevance.shape(),
                mask.len()
            )));
        }
    }
    if let Some(k) = only.filter(|&k| k >= n) {
        return Err(HeatmapError::Parameter(format!(
            "sample {k} does not exist: the relevance has {n} sample(s) (0 .. {})",
            n - 1
        )));
    }
    let selected: Vec<usize> = match only {
        Some(k) => vec![k],
        None => (0..n).collect(),
    };
    selected
        .into_iter()
        .map(|k| {
            let values = relevance.sample(k);
            let list = &tokens[k];
            let Some(row) = mask.map(|m| &m[k]) else {
                if list.len() != t {
                    return Err(count_error(k, list.len(), t, relevance.shape(), None));
                }
                return Ok(TokenSample {
                    index: k,
                    tokens: list.clone(),
                    values: values.to_vec(),
                    positions: (0..t).collect(),
                });
            };
            let real: Vec<usize> = (0..t).filter(|&i| row[i]).collect();
            let tokens = if list.len() == t {
                real.iter().map(|&i| list[i].clone()).collect()
            } else if list.len() == real.len() {
                list.clone()
            } else {
                return Err(count_error(
                    k,
                    list.len(),
                    t,
                    relevance.shape(),
                    Some(real.len()),
                ));
            };
            if real.is_empty() {
                return Err(HeatmapError::TokenCount(format!(
                    "sample {k}: the attention mask marks no position as a real token"
                )));
            }
            Ok(TokenSample {
                index: k,
                tokens,
                values: real.iter().map(|&i| values[i]).collect(),
                positions: real,
            })
        })
        .collect()
}

fn count_error(
    sample: usize,
    tokens: usize,
    positions: usize,
    shape: &[usize],
    real: Option<usize>,
) -> HeatmapError {
    let mut message = format!(
        "sample {sample}: the tokens file has {tokens} token(s) but the relevance {shape:?} has \
         {positions} token position(s)"
    );
    match real {
        Some(real) => {
            let _ = write!(
                message,
                " and the attention mask {real} real one(s); give all {positions} tokens or \
                 only the {real} real ones"
            );
        }
        None if tokens < positions => message.push_str(
            "; if the rest is padding, pass the attention mask (--attention-mask) or list the \
             padding tokens too",
        ),
        None => {}
    }
    if shape.len() == 2 && shape[0] == tokens && sample == 0 {
        message.push_str(
            "; a [tokens, hidden] array needs a batch axis: reshape it to [1, tokens, hidden]",
        );
    }
    HeatmapError::TokenCount(message)
}

/// How tokens are joined into readable text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubwordStyle {
    /// Byte-level BPE when a token contains `Ġ` or `Ċ`, else SentencePiece when one contains
    /// `▁`, else WordPiece.
    #[default]
    Auto,
    /// BERT's WordPiece: words separated by a space, a `##piece` joined to the token before it
    /// (without its `##`).
    WordPiece,
    /// GPT-2's byte-level BPE: each character stands for a byte (`Ġ` a space, `Ċ` a newline);
    /// tokens are decoded to text and joined without separators.
    ByteLevel,
    /// SentencePiece (LLaMA, T5): `▁` is a space, byte tokens `<0x0A>` of ASCII bytes are that
    /// character; tokens are joined without separators.
    SentencePiece,
    /// Tokens are whole words: joined with a space, shown as given.
    Words,
    /// Tokens are shown exactly as given and joined without separators.
    Raw,
}

impl SubwordStyle {
    /// The names accepted by [`str::parse`], in the enum's order.
    pub const NAMES: [&'static str; 6] = [
        "auto",
        "wordpiece",
        "byte-level",
        "sentencepiece",
        "words",
        "raw",
    ];

    /// The style's name, as accepted by [`str::parse`].
    pub fn name(self) -> &'static str {
        match self {
            SubwordStyle::Auto => Self::NAMES[0],
            SubwordStyle::WordPiece => Self::NAMES[1],
            SubwordStyle::ByteLevel => Self::NAMES[2],
            SubwordStyle::SentencePiece => Self::NAMES[3],
            SubwordStyle::Words => Self::NAMES[4],
            SubwordStyle::Raw => Self::NAMES[5],
        }
    }

    /// The style that `Auto` stands for with these tokens (other styles are returned as they
    /// are).
    pub fn resolve(self, tokens: &[String]) -> SubwordStyle {
        if self != SubwordStyle::Auto {
            return self;
        }
        if tokens
            .iter()
            .any(|t| t.contains(BYTE_LEVEL_SPACE) || t.contains(BYTE_LEVEL_NEWLINE))
        {
            SubwordStyle::ByteLevel
        } else if tokens.iter().any(|t| t.contains(SENTENCEPIECE_SPACE)) {
            SubwordStyle::SentencePiece
        } else {
            SubwordStyle::WordPiece
        }
    }
}

impl std::str::FromStr for SubwordStyle {
    type Err = HeatmapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = [
            SubwordStyle::Auto,
            SubwordStyle::WordPiece,
            SubwordStyle::ByteLevel,
            SubwordStyle::SentencePiece,
            SubwordStyle::Words,
            SubwordStyle::Raw,
        ];
        all.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            HeatmapError::Parameter(format!(
                "unknown sub-word style {s:?}; known: {}",
                Self::NAMES.join(", ")
            ))
        })
    }
}

/// GPT-2's byte-level stand-in for the space byte.
const BYTE_LEVEL_SPACE: char = '\u{120}';
/// GPT-2's byte-level stand-in for the newline byte.
const BYTE_LEVEL_NEWLINE: char = '\u{10A}';
/// SentencePiece's word-boundary mark.
const SENTENCEPIECE_SPACE: char = '\u{2581}';

/// How one token is shown: whitespace before it (not coloured) and its coloured text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDisplay {
    /// Uncoloured whitespace before the token (a word separator).
    pub gap: String,
    /// The coloured text; `\n` in it is a line break after a visible `↵`.
    pub text: String,
}

/// How each token is shown, by the rules of `style` (see [`SubwordStyle`]):
///
/// - a word-initial space (from `Ġ`, `▁`, or WordPiece's separator) becomes the uncoloured
///   gap before the token, so that the coloured boxes hold the visible characters;
/// - a token that is only whitespace keeps it as its coloured text, so it stays visible as a
///   coloured space; a newline is shown as `↵` followed by the line break; an empty token as
///   `∅`; other control characters as their Unicode control pictures (`␍` for `\r`);
/// - the first token, and a token after a line break, have no gap.
pub fn display_tokens(tokens: &[String], style: SubwordStyle) -> Vec<TokenDisplay> {
    let style = style.resolve(tokens);
    let mut after_newline = true;
    tokens
        .iter()
        .map(|token| {
            let (separator, decoded) = match style {
                SubwordStyle::WordPiece => match token.strip_prefix("##") {
                    Some(rest) if !rest.is_empty() => ("", rest.to_owned()),
                    _ => (" ", token.clone()),
                },
                SubwordStyle::Words => (" ", token.clone()),
                SubwordStyle::ByteLevel => ("", decode_byte_level(token)),
                SubwordStyle::SentencePiece => ("", decode_sentencepiece(token)),
                SubwordStyle::Raw | SubwordStyle::Auto => ("", token.clone()),
            };
            let (mut gap, text) = if decoded.chars().all(char::is_whitespace) {
                (separator.to_owned(), decoded)
            } else {
                let body = decoded.trim_start_matches(' ');
                let spaces = &decoded[..decoded.len() - body.len()];
                (format!("{separator}{spaces}"), body.to_owned())
            };
            if after_newline {
                gap.clear();
            }
            after_newline = text.ends_with('\n');
            TokenDisplay {
                gap,
                text: visible(&text),
            }
        })
        .collect()
}

/// Makes whitespace-only and control text visible (see [`display_tokens`]).
fn visible(text: &str) -> String {
    if text.is_empty() {
        return "\u{2205}".into();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\u{21b5}\n"),
            '\t' | ' ' => out.push(c),
            // U+2400 + c: the control pictures ␀ .. ␟; U+2421 for DEL
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or(c)),
            '\u{7f}' => out.push('\u{2421}'),
            c => out.push(c),
        }
    }
    out
}

/// The byte GPT-2's byte-level alphabet maps to character `c`, if it is in the alphabet.
///
/// The alphabet (GPT-2's `bytes_to_unicode`): the printable bytes `!`..`~`, `¡`..`¬` and
/// `®`..`ÿ` stand for themselves; the other 68 bytes, in increasing order, are U+0100 onwards.
fn byte_of(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let code = c as u32;
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let n = (code - 0x100) as usize;
    (0u32..0x100)
        .filter(|&b| !printable(b))
        .nth(n)
        .map(|b| b as u8)
}

/// Decodes a byte-level BPE token to text; a token outside the alphabet is returned as given,
/// and bytes that are not valid UTF-8 on their own (half a character) become U+FFFD.
fn decode_byte_level(token: &str) -> String {
    match token.chars().map(byte_of).collect::<Option<Vec<u8>>>() {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => token.to_owned(),
    }
}

/// `▁` → space; a byte token `<0xHH>` of an ASCII byte → that character.
fn decode_sentencepiece(token: &str) -> String {
    if let Some(hex) = token
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        if let Ok(byte) = u8::from_str_radix(hex, 16) {
            if byte.is_ascii() && hex.len() == 2 {
                return char::from(byte).to_string();
            }
        }
    }
    token.replace(SENTENCEPIECE_SPACE, " ")
}

/// Options of the token renderings.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenHeatmapOptions {
    /// Colour map, level, normalisation and bounds, as for image heatmaps (the channel
    /// reduction is not used: token relevance has no channels).
    pub heatmap: HeatmapOptions,
    /// How sub-word pieces are joined.
    pub subwords: SubwordStyle,
    /// Width in pixels: of the PNG, and the largest width of the HTML text.
    pub width: usize,
    /// Font size in pixels.
    pub font_size: f32,
}

/// The default width of token renderings, in pixels.
pub const DEFAULT_TOKEN_WIDTH: usize = 800;
/// The default font size of token renderings, in pixels.
pub const DEFAULT_FONT_SIZE: f32 = 16.0;

impl Default for TokenHeatmapOptions {
    fn default() -> Self {
        Self {
            heatmap: HeatmapOptions {
                normalization: Normalization::Symmetric,
                ..Default::default()
            },
            subwords: SubwordStyle::Auto,
            width: DEFAULT_TOKEN_WIDTH,
            font_size: DEFAULT_FONT_SIZE,
        }
    }
}

/// One sample's tokens with everything both renderers draw.
pub(crate) struct Laid {
    /// Sample index in the batch.
    pub index: usize,
    /// Per token: display, palette index, value as text, position, raw token.
    pub tokens: Vec<LaidToken>,
    /// The legend's bounds.
    pub range: (f64, f64),
}

pub(crate) struct LaidToken {
    pub display: TokenDisplay,
    pub color: [u8; 3],
    pub value: String,
    pub position: usize,
    pub raw: String,
}

/// Colours and display texts of every sample, checked.
pub(crate) fn prepare<T: Element>(
    renderer: &Renderer,
    samples: &[TokenSample<T>],
    style: SubwordStyle,
) -> Result<Vec<Laid>, HeatmapError> {
    if samples.is_empty() {
        return Err(HeatmapError::Parameter(
            "no samples to render (the token list is empty)".into(),
        ));
    }
    samples
        .iter()
        .map(|s| {
            if s.tokens.len() != s.values.len() || s.positions.len() != s.values.len() {
                return Err(HeatmapError::TokenCount(format!(
                    "sample {}: {} token(s), {} value(s) and {} position(s) do not pair up",
                    s.index,
                    s.tokens.len(),
                    s.values.len(),
                    s.positions.len()
                )));
            }
            if s.values.is_empty() {
                return Err(HeatmapError::TokenCount(format!(
                    "sample {} has no tokens",
                    s.index
                )));
            }
            let indices = renderer.palette_indices(&s.values).map_err(|e| match e {
                HeatmapError::Parameter(m) => {
                    HeatmapError::Parameter(format!("sample {}: {m}", s.index))
                }
                e => e,
            })?;
            let displays = display_tokens(&s.tokens, style);
            let tokens = displays
                .into_iter()
                .zip(&indices)
                .zip(s.values.iter().zip(&s.positions).zip(&s.tokens))
                .map(|((display, &i), ((v, &position), raw))| LaidToken {
                    display,
                    color: renderer.palette()[usize::from(i)],
                    value: v.to_string(),
                    position,
                    raw: raw.clone(),
                })
                .collect();
            Ok(Laid {
                index: s.index,
                tokens,
                range: renderer.value_range(&s.values),
            })
        })
        .collect()
}

/// Black or white, whichever reads better on `background` (ITU-R 601 luma).
pub(crate) fn text_color(background: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = background.map(f64::from);
    if 0.299 * r + 0.587 * g + 0.114 * b < 128.0 {
        [255, 255, 255]
    } else {
        [0, 0, 0]
    }
}

/// A legend number: 4 significant digits, in plain notation from 0.001 to 9999.
pub(crate) fn legend_value(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// What a legend says the colours show.
pub(crate) fn legend_quantity(normalization: Normalization) -> &'static str {
    match normalization {
        Normalization::Absolute => "|R|",
        Normalization::Symmetric | Normalization::Unaligned => "R",
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Renders the samples as one self-contained HTML page: per sample a heading, a legend (the
/// colour bar with the values at its ends) and the text, each token's background coloured by
/// its relevance, with its position, token and value as a tooltip (`title`) and the value in
/// `data-r`. Each sample is normalised on its own, as image heatmaps are.
pub fn render_tokens_html<T: Element>(
    samples: &[TokenSample<T>],
    options: &TokenHeatmapOptions,
) -> Result<String, HeatmapError> {
    let renderer = Renderer::new(&options.heatmap)?;
    check_layout(options)?;
    let laid = prepare(&renderer, samples, options.subwords)?;
    let gradient: Vec<String> = renderer.palette().iter().map(|&c| hex(c)).collect();
    let quantity = legend_quantity(renderer.normalization());
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Token relevance</title>\n<style>\n\
         body{{font-family:\"DejaVu Sans\",Verdana,sans-serif;margin:16px;color:#222;background:#fff}}\n\
         .sample{{max-width:{width}px;margin:0 0 24px}}\n\
         .sample h2{{font-size:13px;font-weight:normal;color:#555;margin:0 0 4px}}\n\
         .legend{{display:flex;align-items:center;gap:6px;font-size:12px;color:#555;margin:0 0 8px}}\n\
         .bar{{display:inline-block;width:256px;height:12px;border:1px solid #ccc;\
         background:linear-gradient(to right,{gradient})}}\n\
         .text{{white-space:pre-wrap;font-size:{font}px;line-height:1.7;margin:0}}\n\
         .t{{border-radius:2px;padding:1px 0}}\n\
         </style>\n</head>\n<body>\n",
        width = options.width,
        font = options.font_size,
        gradient = gradient.join(","),
    );
    for sample in &laid {
        let (lo, hi) = sample.range;
        let _ = write!(
            html,
            "<section class=\"sample\" data-sample=\"{index}\">\n\
             <h2>sample {index} · {count} tokens</h2>\n\
             <div class=\"legend\"><span class=\"lo\">{lo}</span><span class=\"bar\"></span>\
             <span class=\"hi\">{hi}</span><span>{quantity}</span></div>\n<p class=\"text\">",
            index = sample.index,
            count = sample.tokens.len(),
            lo = escape_html(&legend_value(lo)),
            hi = escape_html(&legend_value(hi)),
        );
        for token in &sample.tokens {
            let title = format!(
                "position {} · {} · R = {}",
                token.position,
                debug_token(&token.raw),
                token.value
            );
            let _ = write!(
                html,
                "{gap}<span class=\"t\" style=\"background:{bg};color:{fg}\" title=\"{title}\" \
                 data-r=\"{value}\">{text}</span>",
                gap = escape_html(&token.display.gap),
                bg = hex(token.color),
                fg = hex(text_color(token.color)),
                title = escape_html(&title),
                value = escape_html(&token.value),
                text = escape_html(&token.display.text),
            );
        }
        html.push_str("</p>\n</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// The raw token in quotes with its control characters escaped, for tooltips.
fn debug_token(raw: &str) -> String {
    format!("{raw:?}")
}

pub(crate) fn check_layout(options: &TokenHeatmapOptions) -> Result<(), HeatmapError> {
    if !(options.font_size.is_finite() && (4.0..=200.0).contains(&options.font_size)) {
        return Err(HeatmapError::Parameter(format!(
            "font size must lie in [4, 200] pixels, got {}",
            options.font_size
        )));
    }
    let least = (options.font_size * 4.0).ceil() as usize + 2 * crate::text::MARGIN;
    if options.width < least || options.width > 20_000 {
        return Err(HeatmapError::Parameter(format!(
            "width must lie in [{least}, 20000] pixels at font size {}, got {}",
            options.font_size, options.width
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn shown(tokens: &[&str], style: SubwordStyle) -> String {
        display_tokens(&strings(tokens), style)
            .into_iter()
            .map(|d| format!("{}[{}]", d.gap, d.text))
            .collect()
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<b>&"x"'</b>"#),
            "&lt;b&gt;&amp;&quot;x&quot;&#39;&lt;/b&gt;"
        );
        assert_eq!(escape_html("plain ü"), "plain ü");
    }

    #[test]
    fn html_escapes_tokens_and_tooltips() {
        let samples = [TokenSample {
            index: 0,
            tokens: strings(&["<script>", "a&b", "\"q\""]),
            values: vec![1.0f32, -1.0, 0.0],
            positions: vec![0, 1, 2],
        }];
        let html = render_tokens_html(&samples, &TokenHeatmapOptions::default()).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(">&lt;script&gt;</span>"), "{html}");
        assert!(html.contains(">a&amp;b</span>"), "{html}");
        assert!(html.contains("title=\"position 2 · &quot;\\&quot;q\\&quot;&quot; · R = 0\""));
    }

    #[test]
    fn wordpiece_joins_continuations_to_the_previous_token() {
        assert_eq!(
            shown(
                &["[CLS]", "play", "##ing", "it", "##", "[SEP]"],
                SubwordStyle::Auto
            ),
            "[[CLS]] [play][ing] [it] [##] [[SEP]]"
        );
    }

    #[test]
    fn byte_level_spaces_and_newlines_are_decoded() {
        assert_eq!(
            shown(
                &["Hello", "Ġworld", "Ċ", "ĠĠ", "Ã©", "Ċ", "Ġnext"],
                SubwordStyle::Auto
            ),
            "[Hello] [world][↵\n][  ][é][↵\n][next]"
        );
    }

    #[test]
    fn sentencepiece_marks_are_spaces() {
        assert_eq!(
            shown(
                &["▁The", "▁cat", "s", "▁", "<0x0A>", "<0xE2>"],
                SubwordStyle::Auto
            ),
            "[The] [cat][s][ ][↵\n][<0xE2>]"
        );
    }

    #[test]
    fn empty_and_control_tokens_stay_visible() {
        assert_eq!(shown(&["a", "", "\r"], SubwordStyle::Raw), "[a][∅][␍]");
        assert_eq!(shown(&["a", "b"], SubwordStyle::Words), "[a] [b]");
    }

    #[test]
    fn byte_level_alphabet_round_trips_every_byte() {
        let printable =
            |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        let mut next = 0x100u32;
        for b in 0u32..0x100 {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            assert_eq!(byte_of(char::from_u32(c).unwrap()), Some(b as u8));
        }
        assert_eq!(next, 0x100 + 68);
        assert_eq!(byte_of('\u{144}'), None);
    }

    #[test]
    fn hidden_axis_is_summed() {
        let r = TokenRelevance::new(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 3, 2]).unwrap();
        assert_eq!((r.samples(), r.tokens()), (1, 3));
        assert_eq!(r.sample(0), &[3.0, 7.0, 11.0]);
        assert!(TokenRelevance::new(&[1.0f32; 4], &[1, 1, 2, 2]).is_err());
        assert!(TokenRelevance::new(&[1.0f32; 4], &[3]).is_err());
    }

    #[test]
    fn count_mismatch_names_both_counts() {
        let r = TokenRelevance::new(&[0.5f32; 6], &[2, 3]).unwrap();
        let e = align_tokens(
            &r,
            &[strings(&["a", "b", "c"]), strings(&["a", "b"])],
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sample 1") && e.contains("2 token(s)") && e.contains("3 token position(s)"),
            "{e}"
        );
        let e = align_tokens(&r, &[strings(&["a", "b", "c"])], None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 sample(s)") && e.contains("2 sample(s)"),
            "{e}"
        );
    }

    #[test]
    fn mask_drops_padding_positions() {
        let r = TokenRelevance::new(&[1.0f32, 2.0, 3.0, 4.0], &[1, 4]).unwrap();
        let mask = [vec![true, true, true, false]];
        let short = align_tokens(&r, &[strings(&["a", "b", "c"])], Some(&mask), None).unwrap();
        let full =
            align_tokens(&r, &[strings(&["a", "b", "c", "[PAD]"])], Some(&mask), None).unwrap();
        assert_eq!(short, full);
        assert_eq!(short[0].values, [1.0, 2.0, 3.0]);
        assert_eq!(short[0].positions, [0, 1, 2]);
        let e = align_tokens(&r, &[strings(&["a", "b"])], Some(&mask), None).unwrap_err();
        assert!(e.to_string().contains("3 real one(s)"), "{e}");
    }

    #[test]
    fn token_colours_equal_the_image_path() {
        use crate::array::Batch;
        use crate::builtin::color_map;
        let values = [-3.0f32, -0.5, 0.0, 0.25, 1.5, 2.0, -1.0];
        for (normalization, vmin, vmax) in [
            (Normalization::Symmetric, None, None),
            (Normalization::Unaligned, None, None),
            (Normalization::Absolute, None, None),
            (Normalization::Unaligned, Some(-1.0), Some(1.0)),
        ] {
            let options = TokenHeatmapOptions {
                heatmap: HeatmapOptions {
                    color_map: color_map("coldnhot").unwrap(),
                    level: 1.5,
                    normalization,
                    vmin,
                    vmax,
                    ..Default::default()
                },
                ..Default::default()
            };
            let renderer = Renderer::new(&options.heatmap).unwrap();
            let image = renderer
                .render(&Batch::new(&values, &[1, values.len()]).unwrap(), 0)
                .unwrap()
                .to_rgb();
            let sample = TokenSample {
                index: 0,
                tokens: (0..values.len()).map(|i| format!("t{i}")).collect(),
                values: values.to_vec(),
                positions: (0..values.len()).collect(),
            };
            let laid = prepare(&renderer, &[sample], SubwordStyle::Words).unwrap();
            let colors: Vec<[u8; 3]> = laid[0].tokens.iter().map(|t| t.color).collect();
            assert_eq!(colors, image, "{normalization:?}");
            let html = render_tokens_html(
                &[TokenSample {
                    index: 0,
                    tokens: (0..values.len()).map(|i| format!("t{i}")).collect(),
                    values: values.to_vec(),
                    positions: (0..values.len()).collect(),
                }],
                &options,
            )
            .unwrap();
            for c in &image {
                assert!(html.contains(&format!("background:{}", hex(*c))));
            }
        }
    }

    #[test]
    fn legend_values_have_four_significant_digits() {
        assert_eq!(legend_value(3.55321), "3.553");
        assert_eq!(legend_value(-0.7), "-0.7000");
        assert_eq!(legend_value(0.0012), "0.001200");
        assert_eq!(legend_value(1.5e-7), "1.500e-7");
        assert_eq!(legend_value(0.0), "0");
    }

    #[test]
    fn legend_range_follows_the_normalisation() {
        let values = [-3.0f32, 1.0];
        let range = |normalization, vmin, vmax| {
            Renderer::new(&HeatmapOptions {
                normalization,
                vmin,
                vmax,
                ..Default::default()
            })
            .unwrap()
            .value_range(&values)
        };
        assert_eq!(range(Normalization::Symmetric, None, None), (-3.0, 3.0));
        assert_eq!(range(Normalization::Unaligned, None, None), (-3.0, 1.0));
        assert_eq!(range(Normalization::Absolute, None, None), (0.0, 3.0));
        assert_eq!(
            range(Normalization::Symmetric, None, Some(2.0)),
            (-3.0, 2.0)
        );
    }

    #[test]
    fn non_finite_relevance_is_refused() {
        let samples = [TokenSample {
            index: 4,
            tokens: strings(&["a", "b"]),
            values: vec![1.0f32, f32::NAN],
            positions: vec![0, 1],
        }];
        let e = render_tokens_html(&samples, &TokenHeatmapOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("sample 4") && e.to_string().contains("NaN"),
            "{e}"
        );
    }
}
