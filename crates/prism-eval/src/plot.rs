//! Line plots as PNG: perturbation curves per method, randomisation curves per layer.
//!
//! A deliberately small renderer (axes, ticks, polylines, a legend, a built-in 5×7 bitmap font)
//! so that plots need no system fonts or graphics libraries. Labels are drawn in capitals.

use std::path::Path;

use crate::error::{EvalError, Result};

pub mod bar;
pub use bar::{Bar, BarPlot};

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub values: Vec<f64>,
    /// Drawn dashed and grey (baselines such as the random order).
    pub reference: bool,
}

/// A line plot over x = 0, 1, …, n − 1.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Value of the first x position (0 for perturbation steps, 1 for layers).
    pub x_start: usize,
    pub series: Vec<Series>,
}

const PALETTE: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
    [0x44, 0x44, 0x44],
];
const GREY: [u8; 3] = [0x90, 0x90, 0x90];

/// An RGB canvas.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line `thick` pixels wide; `dash` > 0 draws `dash` pixels on, `dash` off.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), c: [u8; 3], thick: i64, dash: usize) {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            if dash > 0 && (i / dash) % 2 == 1 {
                continue;
            }
            let t = i as f64 / n as f64;
            let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            let (x, y) = (x.round() as i64, y.round() as i64);
            self.rect(
                x - thick / 2,
                y - thick / 2,
                x - thick / 2 + thick,
                y - thick / 2 + thick,
                c,
            );
        }
    }

    /// Text with its top-left corner at (x, y), `scale` pixels per font pixel.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        let px = x + (k as i64 * 6 + col) * scale;
                        let py = y + r as i64 * scale;
                        self.rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
        }
    }

    /// Text rotated a quarter turn anticlockwise (for the y axis), reading bottom to top.
    fn text_vertical(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            for (r, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        let px = x + r as i64 * scale;
                        let py = y - (k as i64 * 6 + col) * scale;
                        self.rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
        }
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        let io = |e: String| EvalError::Io {
            path: path.display().to_string(),
            detail: e,
        };
        let file = std::fs::File::create(path).map_err(|e| io(e.to_string()))?;
        let mut enc = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| io(e.to_string()))?;
        w.write_image_data(&self.rgb)
            .map_err(|e| io(e.to_string()))?;
        w.finish().map_err(|e| io(e.to_string()))
    }
}

/// Text width in pixels.
fn text_width(s: &str, scale: i64) -> i64 {
    (s.chars().count() as i64 * 6 - 1).max(0) * scale
}

/// A step of 1, 2 or 5 × 10ᵏ giving about `n` intervals over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

fn tick_label(v: f64, step: f64) -> String {
    let digits = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.digits$}");
    if s.starts_with("-0") && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

impl LinePlot {
    /// Renders the plot on a `width × height` canvas.
    pub fn render(&self, width: usize, height: usize) -> Canvas {
        let mut cv = Canvas::new(width, height);
        let black = [0, 0, 0];
        let finite = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite());
        let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |m, v| {
            (m.0.min(v), m.1.max(v))
        });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let step = nice_step(hi - lo, 5.0);
        let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let npts = self
            .series
            .iter()
            .map(|s| s.values.len())
            .max()
            .unwrap_or(1);
        let legend_w = self
            .series
            .iter()
            .map(|s| text_width(&s.label, 2))
            .max()
            .unwrap_or(0)
            + 80;
        let (left, right, top, bottom) = (
            90i64,
            width as i64 - legend_w - 20,
            50i64,
            height as i64 - 60,
        );
        let px = |i: f64| {
            left as f64 + (right - left) as f64 * i / (npts.saturating_sub(1).max(1)) as f64
        };
        let py = |v: f64| bottom as f64 - (bottom - top) as f64 * (v - lo) / (hi - lo);
        // Title and axis labels.
        let tw = text_width(&self.title, 2);
        cv.text(
            (width as i64 / 2 - tw / 2).max(4),
            14,
            &self.title,
            2,
            black,
        );
        let xw = text_width(&self.x_label, 2);
        cv.text(
            (left + right) / 2 - xw / 2,
            height as i64 - 24,
            &self.x_label,
            2,
            black,
        );
        let yw = text_width(&self.y_label, 2);
        cv.text_vertical(8, (top + bottom) / 2 + yw / 2, &self.y_label, 2, black);
        // Grid and y ticks.
        let ticks = ((hi - lo) / step).round().clamp(1.0, 50.0) as usize;
        for t in 0..=ticks {
            let v = lo + t as f64 * step;
            let y = py(v).round() as i64;
            cv.line(
                (left as f64, y as f64),
                (right as f64, y as f64),
                [0xe4; 3],
                1,
                0,
            );
            let l = tick_label(v, step);
            cv.text(left - 8 - text_width(&l, 1) * 2, y - 7, &l, 2, black);
        }
        if lo < 0.0 && hi > 0.0 {
            let y = py(0.0);
            cv.line((left as f64, y), (right as f64, y), [0xb0; 3], 1, 0);
        }
        // x ticks: about 10.
        let xstep = nice_step(npts.saturating_sub(1).max(1) as f64, 10.0).max(1.0) as usize;
        for i in (0..npts).step_by(xstep) {
            let x = px(i as f64).round() as i64;
            cv.line(
                (x as f64, bottom as f64),
                (x as f64, bottom as f64 + 5.0),
                black,
                1,
                0,
            );
            let l = (i + self.x_start).to_string();
            cv.text(x - text_width(&l, 2) / 2, bottom + 10, &l, 2, black);
        }
        // Axes box.
        cv.line(
            (left as f64, top as f64),
            (left as f64, bottom as f64),
            black,
            1,
            0,
        );
        cv.line(
            (left as f64, bottom as f64),
            (right as f64, bottom as f64),
            black,
            1,
            0,
        );
        cv.line(
            (right as f64, top as f64),
            (right as f64, bottom as f64),
            black,
            1,
            0,
        );
        cv.line(
            (left as f64, top as f64),
            (right as f64, top as f64),
            black,
            1,
            0,
        );
        // Series and legend.
        let mut colour = 0;
        for (k, s) in self.series.iter().enumerate() {
            let c = if s.reference {
                GREY
            } else {
                colour += 1;
                PALETTE[(colour - 1) % PALETTE.len()]
            };
            let dash = if s.reference { 6 } else { 0 };
            let pts: Vec<(f64, f64)> = s
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (px(i as f64), py(v)))
                .collect();
            for w in pts.windows(2) {
                cv.line(w[0], w[1], c, 3, dash);
            }
            if pts.len() == 1 {
                let (x, y) = (pts[0].0 as i64, pts[0].1 as i64);
                cv.rect(x - 3, y - 3, x + 4, y + 4, c);
            }
            let ly = top + 10 + k as i64 * 26;
            cv.line(
                ((right + 15) as f64, (ly + 7) as f64),
                ((right + 45) as f64, (ly + 7) as f64),
                c,
                3,
                dash / 2,
            );
            cv.text(right + 52, ly, &s.label, 2, black);
        }
        cv
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        self.render(1000, 560).save_png(path)
    }
}

/// The 5×7 glyph of `c` (rows top to bottom, bit 4 = leftmost column); lower case is drawn as
/// upper case, unknown characters as a box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' | '×' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '-' | '−' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

/// Writes the report's plots into `dir`: `perturbation_morf.png`, `perturbation_lerf.png` and,
/// per randomisation mode, `randomisation_<mode>.png` (Spearman) and
/// `randomisation_<mode>_ssim.png`, and with the weight-noise check `weight_noise.png` (Spearman
/// per σ, and the share of unchanged predictions). Returns the files written.
pub fn write_report_plots(
    report: &crate::report::Report,
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    use crate::randomisation::Mode;
    let mut files = Vec::new();
    let rp = &report.perturbation;
    for (name, title, lerf) in [
        ("perturbation_morf.png", "most relevant first", false),
        ("perturbation_lerf.png", "least relevant first", true),
    ] {
        let mut series: Vec<Series> = report
            .methods
            .iter()
            .map(|m| Series {
                label: m.name.clone(),
                values: if lerf { &m.lerf } else { &m.morf }.mean_curve.clone(),
                reference: false,
            })
            .collect();
        series.push(Series {
            label: "random order".into(),
            values: report.random_order.mean_curve.clone(),
            reference: true,
        });
        let plot = LinePlot {
            title: format!(
                "Region perturbation, {title} ({}x{} patches, baseline {})",
                rp.patch,
                rp.patch,
                rp.baseline.name()
            ),
            x_label: "patches perturbed".into(),
            y_label: "target score".into(),
            x_start: 0,
            series,
        };
        let path = dir.join(name);
        plot.save_png(&path)?;
        files.push(path);
    }
    let modes: Vec<Mode> = report
        .randomisation
        .as_ref()
        .map(|r| r.modes.clone())
        .unwrap_or_default();
    for mode in modes {
        for (metric, suffix) in [("Spearman", ""), ("SSIM", "_ssim")] {
            let series = report
                .methods
                .iter()
                .filter_map(|m| {
                    let rc = m.randomisation.iter().find(|r| r.mode == mode)?;
                    let mut values = Vec::with_capacity(rc.steps.len() + 1);
                    if mode != Mode::Independent {
                        values.push(1.0);
                    }
                    values.extend(rc.steps.iter().map(|s| {
                        if suffix.is_empty() {
                            s.spearman
                        } else {
                            s.ssim
                        }
                    }));
                    Some(Series {
                        label: m.name.clone(),
                        values,
                        reference: false,
                    })
                })
                .collect();
            let (x_label, x_start) = match mode {
                Mode::Cascading => ("layers randomised, from the output", 0),
                Mode::BottomUp => ("layers randomised, from the input", 0),
                Mode::Independent => ("layer randomised alone (input to output)", 1),
            };
            let plot = LinePlot {
                title: format!("Parameter randomisation ({}): {metric}", mode.name()),
                x_label: x_label.into(),
                y_label: format!("{metric} with original"),
                x_start,
                series,
            };
            let path = dir.join(format!("randomisation_{}{suffix}.png", mode.name()));
            plot.save_png(&path)?;
            files.push(path);
        }
    }
    if let Some(wn) = &report.weight_noise {
        let mut series: Vec<Series> = report
            .methods
            .iter()
            .filter(|m| !m.weight_noise.is_empty())
            .map(|m| Series {
                label: m.name.clone(),
                values: m.weight_noise.iter().map(|l| l.spearman).collect(),
                reference: false,
            })
            .collect();
        series.push(Series {
            label: "same prediction".into(),
            values: wn.prediction_unchanged.clone(),
            reference: true,
        });
        let levels: Vec<String> = wn
            .settings
            .sigmas
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} = {s}", i + 1))
            .collect();
        let plot = LinePlot {
            title: format!(
                "Weight noise ({}, {} draws): Spearman with the unperturbed maps",
                wn.settings.scale.name(),
                wn.settings.draws
            ),
            x_label: format!("noise level sigma ({})", levels.join(", ")),
            y_label: "Spearman / share".into(),
            x_start: 1,
            series,
        };
        let path = dir.join("weight_noise.png");
        plot.save_png(&path)?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_five() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert!((nice_step(0.03, 5.0) - 0.005).abs() < 1e-15);
    }

    #[test]
    fn degenerate_values_neither_hang_nor_panic() {
        for values in [vec![1e17, 1e17 + 2.0], vec![f64::NAN], vec![], vec![3.0; 4]] {
            let p = LinePlot {
                series: vec![Series {
                    label: "x".into(),
                    values,
                    reference: false,
                }],
                ..LinePlot::default()
            };
            assert_eq!(p.render(300, 200).rgb.len(), 300 * 200 * 3);
        }
    }

    #[test]
    fn series_are_drawn_in_their_colours() {
        let p = LinePlot {
            title: "t".into(),
            series: vec![
                Series {
                    label: "a".into(),
                    values: vec![0.0, 1.0, 2.0],
                    reference: false,
                },
                Series {
                    label: "b".into(),
                    values: vec![2.0, 1.0, 0.0],
                    reference: true,
                },
            ],
            ..LinePlot::default()
        };
        let c = p.render(400, 300);
        let has = |col: [u8; 3]| c.rgb.chunks(3).any(|px| px == col);
        assert!(has(PALETTE[0]) && has(GREY));
        assert!(!has(PALETTE[1]));
    }
}
