//! Bar charts with error whiskers (TCAV scores per concept), drawn with the line plots' canvas,
//! font and axis helpers; and PNG encoding to bytes, for callers that write files through
//! `prism_store::atomic`.

use super::{nice_step, text_width, tick_label, Canvas, GREY, PALETTE};
use crate::error::{EvalError, Result};

/// One bar.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// The whisker's half-length (a standard deviation, say); 0 draws none.
    pub error: f64,
    /// A second line under the label (`p=0.003`), empty for none.
    pub note: String,
    /// Drawn grey (baselines such as random-vs-random scores).
    pub reference: bool,
}

/// A bar chart.
#[derive(Clone, Debug, Default)]
pub struct BarPlot {
    pub title: String,
    pub y_label: String,
    /// The y axis' range; `None` fits the bars and whiskers (with 0 included).
    pub y_range: Option<(f64, f64)>,
    /// A dashed horizontal line (e.g. the chance level 0.5), `None` for none.
    pub guide: Option<f64>,
    pub bars: Vec<Bar>,
}

impl BarPlot {
    /// Renders the chart on a `width × height` canvas.
    pub fn render(&self, width: usize, height: usize) -> Canvas {
        let mut cv = Canvas::new(width, height);
        let black = [0, 0, 0];
        let (mut lo, mut hi) = match self.y_range {
            Some(r) => r,
            None => self.bars.iter().filter(|b| b.value.is_finite()).fold(
                (0.0f64, 0.0f64),
                |(l, h), b| {
                    let e = if b.error.is_finite() { b.error } else { 0.0 };
                    (l.min(b.value - e), h.max(b.value + e))
                },
            ),
        };
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let step = nice_step(hi - lo, 5.0);
        if self.y_range.is_none() {
            (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        }
        let (left, right, top, bottom) = (90i64, width as i64 - 20, 50i64, height as i64 - 80);
        let py = |v: f64| bottom as f64 - (bottom - top) as f64 * (v - lo) / (hi - lo);
        let tw = text_width(&self.title, 2);
        cv.text(
            (width as i64 / 2 - tw / 2).max(4),
            14,
            &self.title,
            2,
            black,
        );
        let yw = text_width(&self.y_label, 2);
        cv.text_vertical(8, (top + bottom) / 2 + yw / 2, &self.y_label, 2, black);
        let ticks = ((hi - lo) / step).round().clamp(1.0, 50.0) as usize;
        for t in 0..=ticks {
            let v = lo + t as f64 * step;
            let y = py(v).round();
            cv.line((left as f64, y), (right as f64, y), [0xe4; 3], 1, 0);
            let l = tick_label(v, step);
            cv.text(left - 8 - text_width(&l, 2), y as i64 - 7, &l, 2, black);
        }
        let n = self.bars.len().max(1) as i64;
        let slot = (right - left) / n;
        let mut colour = 0;
        for (i, b) in self.bars.iter().enumerate() {
            let c = if b.reference {
                GREY
            } else {
                colour += 1;
                PALETTE[(colour - 1) % PALETTE.len()]
            };
            let x0 = left + i as i64 * slot + slot / 5;
            let x1 = left + (i as i64 + 1) * slot - slot / 5;
            if b.value.is_finite() {
                let (ya, yb) = (py(b.value.clamp(lo, hi)), py(0.0f64.clamp(lo, hi)));
                cv.rect(
                    x0,
                    ya.min(yb).round() as i64,
                    x1,
                    ya.max(yb).round() as i64 + 1,
                    c,
                );
                if b.error > 0.0 && b.error.is_finite() {
                    let xm = ((x0 + x1) / 2) as f64;
                    let (e0, e1) = (
                        py((b.value - b.error).clamp(lo, hi)),
                        py((b.value + b.error).clamp(lo, hi)),
                    );
                    cv.line((xm, e0), (xm, e1), black, 2, 0);
                    cv.line((xm - 8.0, e0), (xm + 8.0, e0), black, 2, 0);
                    cv.line((xm - 8.0, e1), (xm + 8.0, e1), black, 2, 0);
                }
            }
            let xm = (x0 + x1) / 2;
            // labels wider than the slot are drawn at scale 1
            for (k, text) in [&b.label, &b.note].into_iter().enumerate() {
                let scale = if text_width(text, 2) <= slot { 2 } else { 1 };
                let y = bottom + 10 + k as i64 * 24;
                cv.text(xm - text_width(text, scale) / 2, y, text, scale, black);
            }
        }
        if let Some(g) = self.guide.filter(|g| *g > lo && *g < hi) {
            let y = py(g);
            cv.line((left as f64, y), (right as f64, y), [0x60; 3], 1, 6);
        }
        for (a, b) in [
            ((left, top), (left, bottom)),
            ((left, bottom), (right, bottom)),
            ((right, top), (right, bottom)),
            ((left, top), (right, top)),
        ] {
            cv.line(
                (a.0 as f64, a.1 as f64),
                (b.0 as f64, b.1 as f64),
                black,
                1,
                0,
            );
        }
        cv
    }

    /// The chart as PNG bytes (`width × height`).
    pub fn png(&self, width: usize, height: usize) -> Result<Vec<u8>> {
        self.render(width, height).png_bytes()
    }
}

impl Canvas {
    /// The canvas as an 8-bit RGB PNG.
    pub fn png_bytes(&self) -> Result<Vec<u8>> {
        let io = |e: png::EncodingError| EvalError::Io {
            path: "(PNG in memory)".into(),
            detail: e.to_string(),
        };
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(io)?;
            w.write_image_data(&self.rgb).map_err(io)?;
            w.finish().map_err(io)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_drawn_in_their_colours_and_the_baseline_grey() {
        let plot = BarPlot {
            title: "t".into(),
            y_label: "score".into(),
            y_range: Some((0.0, 1.0)),
            guide: Some(0.5),
            bars: vec![
                Bar {
                    label: "a".into(),
                    value: 0.8,
                    error: 0.1,
                    note: "p=0.01".into(),
                    reference: false,
                },
                Bar {
                    label: "random".into(),
                    value: 0.4,
                    error: 0.0,
                    note: String::new(),
                    reference: true,
                },
            ],
        };
        let cv = plot.render(400, 300);
        let at = |x: usize, y: usize| {
            let i = (y * cv.width + x) * 3;
            [cv.rgb[i], cv.rgb[i + 1], cv.rgb[i + 2]]
        };
        // slot width (380 − 90) / 2 = 145; bar 0 spans x 119..206, bar 1 264..351
        // y of 0.3: bottom 220, top 50 → 220 − 170·0.3 = 169
        assert_eq!(at(130, 169), PALETTE[0]);
        assert_eq!(at(300, 169), GREY);
        // above bar 1 (0.4 → y 152): background
        assert_eq!(at(300, 120), [255; 3]);
        let png = plot.png(400, 300).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
