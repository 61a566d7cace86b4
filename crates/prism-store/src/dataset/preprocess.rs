//! Image-folder preprocessing, the same steps and numbers as torchvision's
//! `Resize(S) → CenterCrop(H, W) → ToTensor() → Normalize(mean, std)` on PIL images.
//!
//! Resizing reproduces Pillow's `Image.resize(…, BILINEAR)` (what torchvision calls for PIL
//! images): a separable triangle filter whose support widens with the down-scaling factor
//! (antialiasing), 22-bit fixed-point weights, horizontal pass first, each pass rounded to 8 bits.
//! On PNG images the result equals torchvision's bit for bit (checked by a fixture test).

use serde::{Deserialize, Serialize};

use super::DatasetError;

/// Mean of ImageNet's training images per RGB channel (torchvision's reference value).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Standard deviation of ImageNet's training images per RGB channel.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How images are resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// The shorter side becomes `S`, the longer keeps the aspect ratio (truncated), like
    /// torchvision's `Resize(S)`.
    Shorter(usize),
    /// Exactly `[H, W]`, like torchvision's `Resize((H, W))`.
    Exact([usize; 2]),
}

/// Per-channel normalisation `x ↦ (x − mean[c]) / std[c]`; one value applies to every channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// ImageNet's mean and standard deviation (RGB), torchvision's usual values.
    pub fn imagenet() -> Self {
        Normalize {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// A named normalisation; the only name is `imagenet`.
    pub fn by_name(name: &str) -> Result<Self, DatasetError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "imagenet" => Ok(Self::imagenet()),
            other => Err(DatasetError::Options {
                message: format!(
                    "unknown normalisation `{other}`; use `imagenet` or explicit mean and std lists"
                ),
            }),
        }
    }

    /// Explicit mean and std lists (same length; std entries > 0, all finite).
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, DatasetError> {
        let n = Normalize { mean, std };
        n.check(None)?;
        Ok(n)
    }

    fn check(&self, channels: Option<usize>) -> Result<(), DatasetError> {
        let bad = |message: String| Err(DatasetError::Options { message });
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return bad(format!(
                "normalisation needs as many means as standard deviations (got {} and {})",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad(format!(
                "normalisation values must be finite and std > 0 (mean {:?}, std {:?})",
                self.mean, self.std
            ));
        }
        if let Some(c) = channels {
            if self.mean.len() != 1 && self.mean.len() != c {
                return bad(format!(
                    "normalisation has {} values per list, but the samples have {c} channels \
                     (give 1 or {c})",
                    self.mean.len()
                ));
            }
        }
        Ok(())
    }

    /// Normalises one sample in place (`c` channels of `plane` values each).
    pub(crate) fn apply(&self, sample: &mut [f32], c: usize) {
        let plane = sample.len() / c.max(1);
        for (ch, values) in sample.chunks_mut(plane.max(1)).enumerate() {
            let k = if self.mean.len() == 1 { 0 } else { ch };
            let (m, s) = (self.mean[k], self.std[k]);
            for v in values {
                *v = (*v - m) / s;
            }
        }
    }
}

/// Preprocessing options. Resizing, cropping and the channel count apply to image folders; an
/// HDF5 or `.npy` dataset is used at its stored size, scaled only when asked, and normalised
/// when a normalisation is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Resize images first (image folders only).
    pub resize: Option<Resize>,
    /// Then centre-crop to `[H, W]`, padding with zeros where the image is smaller, like
    /// torchvision's `CenterCrop` (image folders only).
    pub crop: Option<[usize; 2]>,
    /// Divide by 255. `None`: yes for image folders (torchvision's `ToTensor`), no for HDF5 and
    /// `.npy` data, which ViRelAy stores already preprocessed (even when it is uint8).
    pub scale: Option<bool>,
    /// Then normalise per channel.
    pub normalize: Option<Normalize>,
    /// Channels of image-folder samples: 3 (RGB, the default) or 1 (grayscale). See
    /// `docs/datasets.md` for the conversion rule.
    pub channels: Option<usize>,
}

impl Preprocess {
    /// Checks the options for an image folder; returns the channel count.
    pub(crate) fn check_images(&self) -> Result<usize, DatasetError> {
        let bad = |message: String| Err(DatasetError::Options { message });
        let c = self.channels.unwrap_or(3);
        if c != 1 && c != 3 {
            return bad(format!(
                "image samples have 1 (grayscale) or 3 (RGB) channels, not {c}"
            ));
        }
        match self.resize {
            Some(Resize::Shorter(0)) => return bad("resize size must be positive".into()),
            Some(Resize::Exact([h, w])) if h == 0 || w == 0 => {
                return bad(format!("resize size {h}×{w} must be positive"))
            }
            _ => {}
        }
        if let Some([h, w]) = self.crop {
            if h == 0 || w == 0 {
                return bad(format!("crop size {h}×{w} must be positive"));
            }
        }
        if let Some(n) = &self.normalize {
            n.check(Some(c))?;
        }
        Ok(c)
    }

    /// Checks the options for an array (HDF5 or `.npy`) dataset of `channels` channels.
    pub(crate) fn check_array(&self, channels: usize) -> Result<(), DatasetError> {
        if self.resize.is_some() || self.crop.is_some() {
            return Err(DatasetError::Options {
                message: "resize and crop apply to image folders; an HDF5 or .npy dataset is \
                          used at its stored size (preprocess it before storing)"
                    .into(),
            });
        }
        if let Some(c) = self.channels {
            if c != channels {
                return Err(DatasetError::Options {
                    message: format!(
                        "channels = {c} was asked, but the stored samples have {channels}; \
                         channel conversion applies to image folders only"
                    ),
                });
            }
        }
        if let Some(n) = &self.normalize {
            n.check(Some(channels))?;
        }
        Ok(())
    }

    /// A canonical description of every option that changes the samples (for fingerprints).
    pub(crate) fn canonical(&self, scale: bool, channels: usize) -> String {
        let norm = match &self.normalize {
            Some(n) => format!("{:?}/{:?}", n.mean, n.std),
            None => "none".into(),
        };
        format!(
            "resize={:?};crop={:?};scale={scale};normalize={norm};channels={channels}",
            self.resize, self.crop
        )
    }
}

/// The size `[H, W]` torchvision's `Resize` gives an `h×w` image.
pub(crate) fn resized_size(resize: Resize, h: usize, w: usize) -> [usize; 2] {
    match resize {
        Resize::Exact(hw) => hw,
        Resize::Shorter(s) => {
            // torchvision: new_long = int(S * long / short), in floating point.
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = ((s as f64 * long as f64) / short.max(1) as f64) as usize;
            let new_long = new_long.max(1);
            if w <= h {
                [new_long, s]
            } else {
                [s, new_long]
            }
        }
    }
}

/// An 8-bit image, channels interleaved (1 or 3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pixels {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<u8>,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear (triangle) filter followed by
/// `normalize_coeffs_8bpc`: for each output position, the first input index, the number of
/// inputs, and fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle filter's support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates with a C cast after adding 0.5.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - t.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    (bounds, kk, ksize)
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// How [`resize`] interpolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interpolation {
    /// Pillow's `BILINEAR`: a triangle filter widened by the down-scaling factor
    /// (antialiasing), 22-bit fixed-point weights, horizontal pass first, each pass rounded to 8
    /// bits. What torchvision applies to PIL images, so model inputs equal torchvision's.
    Pillow,
    /// Bilinear interpolation between the four nearest pixels (pixel centres aligned, no
    /// antialiasing), in f32 and rounded once: how the viewer has always scaled pictures for
    /// display. Kept bit for bit so that the viewer's pictures do not change; it differs from
    /// [`Interpolation::Pillow`] by up to 1 when enlarging and by much more when shrinking.
    Display,
}

/// Resizes an 8-bit image to `out_h × out_w`: the one image resize of the workspace.
pub(crate) fn resize(img: &Pixels, out_h: usize, out_w: usize, how: Interpolation) -> Pixels {
    match how {
        Interpolation::Pillow => resize_pillow(img, out_h, out_w),
        Interpolation::Display => resize_display(img, out_h, out_w),
    }
}

fn resize_display(src: &Pixels, out_h: usize, out_w: usize) -> Pixels {
    let (width, height, c) = (out_w.max(1), out_h.max(1), src.c);
    if src.w == 0 || src.h == 0 {
        return Pixels {
            h: height,
            w: width,
            c,
            data: vec![0; width * height * c],
        };
    }
    let sx = src.w as f32 / width as f32;
    let sy = src.h as f32 / height as f32;
    let mut data = Vec::with_capacity(width * height * c);
    for y in 0..height {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (src.h - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(src.h - 1);
        let ty = fy - y0 as f32;
        for x in 0..width {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (src.w - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(src.w - 1);
            let tx = fx - x0 as f32;
            for ch in 0..c {
                let p = |x: usize, y: usize| f32::from(src.data[(y * src.w + x) * c + ch]);
                let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
                let bottom = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
                data.push((top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Pixels {
        h: height,
        w: width,
        c,
        data,
    }
}

/// Resizes like Pillow's `Image.resize((w, h), Image.BILINEAR)`.
fn resize_pillow(img: &Pixels, out_h: usize, out_w: usize) -> Pixels {
    let c = img.c;
    let mut cur = img.clone();
    if out_w != cur.w {
        let (bounds, kk, ksize) = coefficients(cur.w, out_w);
        let mut out = vec![0u8; cur.h * out_w * c];
        for y in 0..cur.h {
            let row = &cur.data[y * cur.w * c..(y + 1) * cur.w * c];
            for (xx, &(xmin, n)) in bounds.iter().enumerate() {
                let k = &kk[xx * ksize..xx * ksize + n];
                for ch in 0..c {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row[(x + xmin) * c + ch] as i64 * kx as i64;
                    }
                    out[(y * out_w + xx) * c + ch] = clip8(ss);
                }
            }
        }
        cur = Pixels {
            h: cur.h,
            w: out_w,
            c,
            data: out,
        };
    }
    if out_h != cur.h {
        let (bounds, kk, ksize) = coefficients(cur.h, out_h);
        let stride = cur.w * c;
        let mut out = vec![0u8; out_h * stride];
        for (yy, &(ymin, n)) in bounds.iter().enumerate() {
            let k = &kk[yy * ksize..yy * ksize + n];
            for i in 0..stride {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, &ky) in k.iter().enumerate() {
                    ss += cur.data[(y + ymin) * stride + i] as i64 * ky as i64;
                }
                out[yy * stride + i] = clip8(ss);
            }
        }
        cur = Pixels {
            h: out_h,
            w: cur.w,
            c,
            data: out,
        };
    }
    cur
}

/// Python's `int(round(d / 2.0))` for a non-negative integer `d` (round half to even).
fn half_round_even(d: usize) -> usize {
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// torchvision's `CenterCrop([ch, cw])`, padding with zeros first where the image is smaller.
pub(crate) fn center_crop(img: &Pixels, ch: usize, cw: usize) -> Pixels {
    let c = img.c;
    let pad_top = if ch > img.h { (ch - img.h) / 2 } else { 0 };
    let pad_left = if cw > img.w { (cw - img.w) / 2 } else { 0 };
    let ph = img.h.max(ch);
    let pw = img.w.max(cw);
    let top = half_round_even(ph - ch);
    let left = half_round_even(pw - cw);
    let mut out = vec![0u8; ch * cw * c];
    for y in 0..ch {
        let sy = (y + top) as isize - pad_top as isize;
        if sy < 0 || sy >= img.h as isize {
            continue;
        }
        for x in 0..cw {
            let sx = (x + left) as isize - pad_left as isize;
            if sx < 0 || sx >= img.w as isize {
                continue;
            }
            let (sy, sx) = (sy as usize, sx as usize);
            let src = (sy * img.w + sx) * c;
            out[(y * cw + x) * c..(y * cw + x + 1) * c].copy_from_slice(&img.data[src..src + c]);
        }
    }
    Pixels {
        h: ch,
        w: cw,
        c,
        data: out,
    }
}

/// Pillow's `convert("L")` from RGB: ITU-R 601-2 luma in 16-bit fixed point.
pub(crate) fn rgb_to_luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Resize and crop as asked, then write CHW floats (scaled, normalised) into `out`.
pub(crate) fn finish(img: Pixels, p: &Preprocess, scale: bool, out: &mut [f32]) {
    let mut img = img;
    if let Some(r) = p.resize {
        let [h, w] = resized_size(r, img.h, img.w);
        if [h, w] != [img.h, img.w] {
            img = resize(&img, h, w, Interpolation::Pillow);
        }
    }
    if let Some([ch, cw]) = p.crop {
        if [ch, cw] != [img.h, img.w] {
            img = center_crop(&img, ch, cw);
        }
    }
    let (c, plane) = (img.c, img.h * img.w);
    // Divide (not multiply by 1/255), as torchvision's `ToTensor` does, for identical floats.
    let d = if scale { 255.0 } else { 1.0 };
    for ch in 0..c {
        for (i, o) in out[ch * plane..(ch + 1) * plane].iter_mut().enumerate() {
            *o = img.data[i * c + ch] as f32 / d;
        }
    }
    if let Some(n) = &p.normalize {
        n.apply(out, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_resize_truncates_the_long_side_like_torchvision() {
        assert_eq!(resized_size(Resize::Shorter(256), 375, 500), [256, 341]);
        assert_eq!(resized_size(Resize::Shorter(256), 500, 375), [341, 256]);
        assert_eq!(resized_size(Resize::Shorter(4), 2, 2), [4, 4]);
    }

    #[test]
    fn center_crop_offsets_round_half_to_even_like_python() {
        assert_eq!(
            (0..7).map(half_round_even).collect::<Vec<_>>(),
            [0, 0, 1, 2, 2, 2, 3]
        );
    }

    #[test]
    fn upsampling_2x2_to_4x4_matches_a_hand_computation() {
        // Pillow, 2 → 4 (scale 0.5, support 1): output centres at 0.25, 0.75, 1.25, 1.75
        // input units; weights for [a, b]: 1, 0.75/0.25, 0.25/0.75, 1.
        let img = Pixels {
            h: 1,
            w: 2,
            c: 1,
            data: vec![0, 200],
        };
        let out = resize(&img, 1, 4, Interpolation::Pillow);
        assert_eq!(out.data, vec![0, 50, 150, 200]);
    }

    #[test]
    fn downsampling_averages_over_the_widened_support() {
        // 4 → 2: scale 2, support 2: output 0 centre 1.0 covers inputs 0..3 with weights
        // triangle((x + 0.5 − 1) / 2) = 0.75, 0.75, 0.25 → normalised 3/7, 3/7, 1/7.
        let img = Pixels {
            h: 1,
            w: 4,
            c: 1,
            data: vec![70, 140, 210, 0],
        };
        let out = resize(&img, 1, 2, Interpolation::Pillow);
        let expected0: f64 = (70.0 * 3.0 + 140.0 * 3.0 + 210.0) / 7.0;
        assert_eq!(out.data[0], expected0.round() as u8);
    }
}
