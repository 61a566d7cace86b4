//! The colour-map specification language (CMSL) of Zennit, and the colour maps it describes.
//!
//! Grammar (whitespace between tokens is ignored):
//!
//! ```text
//! cmap       := node ("," node)+ [","]
//! node       := [index ":"] colour
//! index      := hex | hex hex          one digit is doubled: "8" means 0x88
//! colour     := hex{3} | hex{6}        "0f0" means "00ff00"
//! ```
//!
//! Tokens are read greedily in this order: six hex digits (a colour), three hex digits (a short
//! colour), one or two hex digits (an index), `:`, `,`, whitespace. So `"0000"` reads as the short
//! colour `000` followed by the index `0`, which is an error, exactly as in Zennit.
//!
//! Semantics (Zennit's `ColorMap`): the first node always sits at index 0 (an explicit first
//! index above 0 adds a second node of the same colour there); an un-indexed last node sits at
//! 255; un-indexed nodes in between are spread evenly between their indexed neighbours; explicit
//! indices must not decrease, and two nodes at one index make a hard edge. A sentinel node at
//! 256 repeats the last colour. Values between nodes are interpolated linearly.

use std::fmt;

use crate::error::{CmslError, CmslErrorKind};

/// An RGB colour with 8 bits per channel.
pub type Rgb = [u8; 3];

/// A palette: the colour of each of the 256 indices of a palette image.
pub type Palette = [Rgb; 256];

/// One node of a compiled colour map: a colour at a position in 0..=256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColorNode {
    /// Position on the 0..=255 scale (256 only for the closing sentinel).
    pub index: u16,
    /// The node's colour.
    pub color: Rgb,
}

/// A piecewise-linear colour map compiled from CMSL.
///
/// ```
/// use prism_heatmap::ColorMap;
/// let cmap = ColorMap::parse("70:0d0,70:ddd,90:ddd,90:d0d").unwrap();
/// let indices: Vec<u16> = cmap.nodes().iter().map(|n| n.index).collect();
/// assert_eq!(indices, [0, 112, 112, 144, 144, 256]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColorMap {
    source: String,
    nodes: Vec<ColorNode>,
}

/// A parsed node before layout: its explicit index (if any), colour, and where it starts.
#[derive(Clone, Copy, Debug)]
struct SourceNode {
    index: Option<(u8, usize)>,
    color: Rgb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// Three or six hex digits.
    Color(Rgb),
    /// One or two hex digits.
    Index(u8),
    Colon,
    Comma,
    Whitespace,
    /// Anything else.
    Invalid(char),
}

/// Python's `\s` (what Zennit's lexer uses) also matches the four ASCII separators U+001C..U+001F.
fn is_cmsl_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn hex_value(c: char) -> u8 {
    // Only called on ASCII hex digits.
    c.to_digit(16).map_or(0, |d| d as u8)
}

/// Splits `source` into tokens, each with its position in characters.
fn lex(source: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < chars.len() {
        let c = chars[pos];
        let hex_run = chars[pos..]
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let (token, len) = if hex_run == 6 {
            let d: Vec<u8> = chars[pos..pos + 6].iter().map(|&c| hex_value(c)).collect();
            (
                Token::Color([d[0] * 16 + d[1], d[2] * 16 + d[3], d[4] * 16 + d[5]]),
                6,
            )
        } else if hex_run >= 3 {
            let d: Vec<u8> = chars[pos..pos + 3].iter().map(|&c| hex_value(c)).collect();
            (Token::Color([d[0] * 17, d[1] * 17, d[2] * 17]), 3)
        } else if hex_run == 2 {
            (
                Token::Index(hex_value(c) * 16 + hex_value(chars[pos + 1])),
                2,
            )
        } else if hex_run == 1 {
            (Token::Index(hex_value(c) * 17), 1)
        } else if c == ':' {
            (Token::Colon, 1)
        } else if c == ',' {
            (Token::Comma, 1)
        } else if is_cmsl_whitespace(c) {
            let run = chars[pos..]
                .iter()
                .take_while(|&&c| is_cmsl_whitespace(c))
                .count();
            (Token::Whitespace, run)
        } else {
            (Token::Invalid(c), 1)
        };
        tokens.push((token, pos));
        pos += len;
    }
    tokens
}

/// Where the parser is inside a node.
#[derive(Clone, Copy, Debug)]
enum State {
    /// At the start of a node: expects an index or a colour.
    NodeStart,
    /// After an index (value, position): expects `:`.
    AfterIndex(u8, usize),
    /// After `index:`: expects a colour.
    AfterColon(u8, usize),
    /// After a colour: expects `,` or the end.
    AfterColor,
}

fn parse_nodes(source: &str) -> Result<Vec<SourceNode>, CmslError> {
    let error = |position: usize, kind: CmslErrorKind| CmslError {
        text: source.to_owned(),
        position,
        kind,
    };
    let mut nodes = Vec::new();
    let mut state = State::NodeStart;
    for (token, pos) in lex(source) {
        if let Token::Invalid(found) = token {
            return Err(error(pos, CmslErrorKind::InvalidCharacter { found }));
        }
        if token == Token::Whitespace {
            continue;
        }
        state = match (state, token) {
            (State::NodeStart, Token::Index(i)) => State::AfterIndex(i, pos),
            (State::NodeStart, Token::Color(color)) => {
                nodes.push(SourceNode { index: None, color });
                State::AfterColor
            }
            (State::AfterIndex(i, at), Token::Colon) => State::AfterColon(i, at),
            (State::AfterColon(i, at), Token::Color(color)) => {
                nodes.push(SourceNode {
                    index: Some((i, at)),
                    color,
                });
                State::AfterColor
            }
            (State::AfterColor, Token::Comma) => State::NodeStart,
            (state, token) => {
                let expected = match state {
                    State::NodeStart => {
                        "a colour (3 or 6 hex digits) or an index (1 or 2 hex digits)"
                    }
                    State::AfterIndex(..) => "':' after the index",
                    State::AfterColon(..) => "a colour (3 or 6 hex digits) after ':'",
                    State::AfterColor => "',' between nodes",
                };
                return Err(error(
                    pos,
                    CmslErrorKind::Unexpected {
                        found: describe(token),
                        expected,
                    },
                ));
            }
        };
    }
    let end = source.chars().count();
    match state {
        State::AfterIndex(..) => Err(error(
            end,
            CmslErrorKind::UnexpectedEnd {
                expected: "':' and a colour after the index",
            },
        )),
        State::AfterColon(..) => Err(error(
            end,
            CmslErrorKind::UnexpectedEnd {
                expected: "a colour after ':'",
            },
        )),
        State::NodeStart | State::AfterColor => Ok(nodes),
    }
}

fn describe(token: Token) -> String {
    match token {
        Token::Color(_) => "a colour".into(),
        Token::Index(_) => "an index (1 or 2 hex digits)".into(),
        Token::Colon => "':'".into(),
        Token::Comma => "','".into(),
        Token::Whitespace => "whitespace".into(),
        Token::Invalid(c) => format!("{c:?}"),
    }
}

/// Lays parsed nodes out on the index scale, as Zennit's `_make_palette` does.
fn layout(source: &str, parsed: &[SourceNode]) -> Result<Vec<ColorNode>, CmslError> {
    let (first, rest) = match parsed {
        [first, rest @ ..] if !rest.is_empty() => (first, rest),
        _ => {
            return Err(CmslError {
                text: source.to_owned(),
                position: source.chars().count(),
                kind: CmslErrorKind::TooFewColors {
                    found: parsed.len(),
                },
            })
        }
    };
    let mut result = vec![ColorNode {
        index: 0,
        color: first.color,
    }];
    if let Some((index, _)) = first.index {
        if index > 0 {
            result.push(ColorNode {
                index: u16::from(index),
                color: first.color,
            });
        }
    }
    let mut pending: Vec<Rgb> = Vec::new();
    for (k, node) in rest.iter().enumerate() {
        let previous = result.last().map_or(0, |n| n.index);
        let index = match node.index {
            None if k + 1 < rest.len() => {
                pending.push(node.color);
                continue;
            }
            None => 255,
            Some((index, position)) => {
                let index = u16::from(index);
                if index < previous {
                    return Err(CmslError {
                        text: source.to_owned(),
                        position,
                        kind: CmslErrorKind::Descending { index, previous },
                    });
                }
                index
            }
        };
        if !pending.is_empty() {
            // Zennit spreads the pending nodes with `linspace(0, 1, n + 2)[1:-1]` and truncates.
            let step = 1.0 / (pending.len() + 1) as f64;
            let (lo, hi) = (f64::from(previous), f64::from(index));
            for (j, &color) in pending.iter().enumerate() {
                let alpha = (j + 1) as f64 * step;
                let at = lo * (1.0 - alpha) + hi * alpha;
                result.push(ColorNode {
                    index: at as u16,
                    color,
                });
            }
            pending.clear();
        }
        result.push(ColorNode {
            index,
            color: node.color,
        });
    }
    let last = result.last().map_or([0; 3], |n| n.color);
    result.push(ColorNode {
        index: 256,
        color: last,
    });
    Ok(result)
}

impl ColorMap {
    /// Compiles a CMSL source, e.g. `"00f,80:fff,f00"`.
    ///
    /// A malformed source gives a [`CmslError`] whose `position` is the character where parsing
    /// failed (the end of the string for a source that stops too early).
    pub fn parse(source: &str) -> Result<Self, CmslError> {
        let parsed = parse_nodes(source)?;
        let nodes = layout(source, &parsed)?;
        Ok(Self {
            source: source.to_owned(),
            nodes,
        })
    }

    /// The CMSL source this map was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compiled nodes, from index 0 to the sentinel at 256.
    pub fn nodes(&self) -> &[ColorNode] {
        &self.nodes
    }

    /// The colour at `x` in [0, 1] (clipped), as RGB in [0, 1]; Zennit's `ColorMap.__call__`.
    pub fn sample(&self, x: f64) -> [f64; 3] {
        let x = (x * 255.0).clamp(0.0, 255.0);
        let x = if x.is_nan() { 0.0 } else { x };
        // searchsorted(indices[:-1], x, side='right'): number of nodes (sentinel excluded) <= x.
        let below = self.nodes[..self.nodes.len() - 1]
            .iter()
            .take_while(|n| f64::from(n.index) <= x)
            .count()
            .max(1);
        let (lo, hi) = (self.nodes[below - 1], self.nodes[below]);
        let alpha = (x - f64::from(lo.index)) / (f64::from(hi.index) - f64::from(lo.index));
        let mut rgb = [0.0; 3];
        for (c, out) in rgb.iter_mut().enumerate() {
            *out =
                (f64::from(lo.color[c]) * (1.0 - alpha) + f64::from(hi.color[c]) * alpha) / 255.0;
        }
        rgb
    }

    /// The 256-colour palette at `level` (Zennit's `ColorMap.palette`).
    ///
    /// Index `i` shows the map at `((2i/255 - 1)·level + 1)/2`, clipped to [0, 1]: level 1 spans
    /// the whole map, a level above 1 saturates earlier (a steeper centre), a level below 1 uses
    /// only the middle of the map.
    pub fn palette(&self, level: f64) -> Palette {
        let mut palette = [[0u8; 3]; 256];
        let step = 2.0 / 255.0;
        for (i, entry) in palette.iter_mut().enumerate() {
            // numpy's linspace(-1, 1, 256): i·step + start, with the last point set to stop.
            let x = if i == 255 {
                1.0
            } else {
                i as f64 * step + -1.0
            };
            let x = (((x * level) + 1.0) / 2.0).clamp(0.0, 1.0);
            let rgb = self.sample(x);
            for (c, out) in entry.iter_mut().enumerate() {
                // numpy's round(12) is rint(v·1e12)/1e12; the cast truncates.
                let v = rgb[c] * 255.0;
                let v = ((v * 1e12).round_ties_even() / 1e12).clamp(0.0, 255.0);
                *out = v as u8;
            }
        }
        palette
    }
}

impl fmt::Display for ColorMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for ColorMap {
    type Err = CmslError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(source: &str) -> Vec<u16> {
        ColorMap::parse(source)
            .map(|c| c.nodes().iter().map(|n| n.index).collect())
            .unwrap_or_default()
    }

    #[test]
    fn hard_edges_compile_to_zennits_indices() {
        let cmap = ColorMap::parse("70:0d0,70:ddd,90:ddd,90:d0d").unwrap();
        let colors: Vec<Rgb> = cmap.nodes().iter().map(|n| n.color).collect();
        assert_eq!(indices(cmap.source()), [0, 112, 112, 144, 144, 256]);
        let (g, d, m) = ([0, 0xdd, 0], [0xdd; 3], [0xdd, 0, 0xdd]);
        assert_eq!(colors, [g, g, d, d, m, m]);
    }

    #[test]
    fn unindexed_middle_nodes_are_spread_evenly() {
        assert_eq!(indices("000,f00,ff0,fff"), [0, 85, 170, 255, 256]);
        assert_eq!(
            indices("0ff,00f,80:000,f00,ff0,fff"),
            [0, 64, 128, 170, 212, 255, 256]
        );
    }

    #[test]
    fn one_digit_index_is_doubled_and_short_colours_expand() {
        let cmap = ColorMap::parse("8:a1b,fff").unwrap();
        assert_eq!(
            cmap.nodes()[1],
            ColorNode {
                index: 0x88,
                color: [0xaa, 0x11, 0xbb]
            }
        );
    }

    #[test]
    fn trailing_comma_and_whitespace_are_accepted() {
        assert_eq!(indices(" 000 ,\n 80 : fff , "), [0, 128, 256]);
    }

    #[test]
    fn errors_point_at_the_bad_character() {
        let position = |s: &str| ColorMap::parse(s).map_err(|e| e.position).err();
        assert_eq!(position("000,fxf"), Some(5));
        assert_eq!(position("0000,fff"), Some(3));
        assert_eq!(position("000,80:"), Some(7));
        assert_eq!(position(",000,fff"), Some(0));
        assert_eq!(position("80:000,40:fff"), Some(7));
        assert_eq!(position("fff"), Some(3));
        assert_eq!(position("000 fff"), Some(4));
    }

    #[test]
    fn sample_interpolates_linearly() {
        let gray = ColorMap::parse("000,fff").unwrap();
        assert_eq!(gray.sample(0.0), [0.0; 3]);
        assert_eq!(gray.sample(1.0), [1.0; 3]);
        assert!((gray.sample(0.5)[0] - 0.5).abs() < 1e-12);
    }
}
