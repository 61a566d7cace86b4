//! A project's dataset as the viewer shows it: an HDF5 file (`data` N×C×H×W or N×H×W×C, float
//! or uint8; `label` N class numbers or N×classes n-hot) or a ViRelAy image directory (sorted
//! paths, or `<path>_paths.txt`; labels from a regex on the path).
//!
//! Samples come out as 8-bit RGB at the model's input size. Float data is mapped to 0..255 from
//! whichever of [-1, 1], [0, 1] and [0, 255] fits its range best (ViRelAy's heuristic). Unlike
//! [`super::Dataset`], which feeds a model, this reader makes pictures for people: it follows
//! ViRelAy's display rules (channels-last detection, up- and down-sampling methods) and never
//! normalises.
//!
//! A token dataset (`type: tokens`, [`TokenDataset`]) has no pictures: its samples are spelled
//! by the vocabulary ([`DisplayDataset::tokens`]) and [`DisplayDataset::image`] refuses them.

use std::path::{Path, PathBuf};

use hdf5::types::{IntSize, TypeDescriptor};

use super::array::Hdf5Data;
use super::preprocess::{self, Interpolation, Pixels};
use super::{LabelSet, TokenDataset};
use crate::error::StoreError;
use crate::label_map::LabelEntry;
use crate::project::{DatasetKind, DatasetSpec, DownSampling, Project, UpSampling};

/// Errors of the display reader. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// Opening or confining a file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dataset is inconsistent or of a layout the viewer does not show.
    #[error("`{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
    /// HDF5 failed while reading a sample.
    #[error("`{path}`: reading `{dataset}` failed")]
    Read {
        path: PathBuf,
        dataset: String,
        #[source]
        source: hdf5::Error,
    },
    /// A file or folder could not be read.
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image of an image directory could not be decoded.
    #[error("`{path}`: {message}")]
    Image { path: PathBuf, message: String },
}

/// An 8-bit RGB picture, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// An open dataset, shown sample by sample.
#[derive(Debug)]
pub struct DisplayDataset {
    source: DisplaySource,
    labels: Vec<Vec<u32>>,
}

#[derive(Debug)]
enum DisplaySource {
    Hdf5 {
        data: Hdf5Data,
        /// Shape of one sample as stored (without N).
        sample_shape: Vec<usize>,
        channels_last: bool,
        is_u8: bool,
    },
    Images {
        files: Vec<PathBuf>,
        width: usize,
        height: usize,
        up: UpSampling,
        down: DownSampling,
    },
    Tokens(TokenDataset),
}

impl DisplayDataset {
    /// Opens the dataset of a project whose YAML lies in `dir` (its path confined to `dir`).
    pub fn open(
        spec: &DatasetSpec,
        dir: &Path,
        label_map: &[LabelEntry],
    ) -> Result<DisplayDataset, DisplayError> {
        let path = Project::resolve_confined(dir, &spec.path)?;
        match spec.kind {
            DatasetKind::Hdf5 => open_hdf5(&path),
            DatasetKind::ImageDirectory => open_images(spec, &path, dir, label_map),
            DatasetKind::Tokens => open_tokens(&path),
        }
    }

    /// The token dataset, for a `type: tokens` project.
    pub fn token_dataset(&self) -> Option<&TokenDataset> {
        match &self.source {
            DisplaySource::Tokens(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the dataset is a token dataset (no pictures; see [`tokens`](Self::tokens)).
    pub fn is_tokens(&self) -> bool {
        self.token_dataset().is_some()
    }

    /// The tokens of sample `i` spelled by the vocabulary (every position, padding included)
    /// and its attention mask if the dataset has one; `None` for a dataset of images.
    #[allow(clippy::type_complexity)]
    pub fn tokens(
        &self,
        i: usize,
    ) -> Option<Result<(Vec<String>, Option<Vec<bool>>), DisplayError>> {
        let t = self.token_dataset()?;
        let bad = |e: super::DatasetError| DisplayError::Invalid {
            path: t.path().to_path_buf(),
            message: e.to_string(),
        };
        Some(
            t.tokens(i)
                .and_then(|tokens| Ok((tokens, t.mask(i)?)))
                .map_err(bad),
        )
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class numbers of sample `i` (several with n-hot labels); `None` past the end.
    pub fn labels(&self, i: usize) -> Option<&[u32]> {
        self.labels.get(i).map(Vec::as_slice)
    }

    /// Width and height of the pictures (the input size for image directories).
    pub fn size(&self) -> (usize, usize) {
        match &self.source {
            DisplaySource::Hdf5 {
                sample_shape,
                channels_last,
                ..
            } => match *sample_shape.as_slice() {
                [h, w] => (w, h),
                [a, b, _] if *channels_last => (b, a),
                [_, h, w] => (w, h),
                _ => (0, 0),
            },
            DisplaySource::Images { width, height, .. } => (*width, *height),
            DisplaySource::Tokens(t) => (t.positions(), 1),
        }
    }

    /// Sample `i` as an RGB picture.
    pub fn image(&self, i: usize) -> Result<RgbImage, DisplayError> {
        match &self.source {
            DisplaySource::Hdf5 {
                data,
                sample_shape,
                channels_last,
                is_u8,
            } => {
                if i >= self.len() {
                    return Err(DisplayError::Invalid {
                        path: data.path.clone(),
                        message: format!("sample {i} does not exist"),
                    });
                }
                let values = data
                    .read_rows_h5(i, i + 1)
                    .map_err(|source| DisplayError::Read {
                        path: data.path.clone(),
                        dataset: format!("data[{i}]"),
                        source,
                    })?;
                let (c, h, w) = match *sample_shape.as_slice() {
                    [h, w] => (1, h, w),
                    [a, b, c] if *channels_last => (c, a, b),
                    [a, b, c] => (a, b, c),
                    _ => {
                        return Err(DisplayError::Invalid {
                            path: data.path.clone(),
                            message: format!("samples of shape {sample_shape:?} are not images"),
                        })
                    }
                };
                let bytes = to_bytes(&values, *is_u8);
                Ok(to_rgb(&bytes, c, h, w, *channels_last))
            }
            DisplaySource::Images {
                files,
                width,
                height,
                up,
                down,
            } => {
                let path = files.get(i).ok_or_else(|| DisplayError::Invalid {
                    path: PathBuf::new(),
                    message: format!("sample {i} does not exist"),
                })?;
                let img = super::image_folder::decode_image(path)
                    .map_err(|message| DisplayError::Image {
                        path: path.clone(),
                        message,
                    })?
                    .to_rgb8();
                let src = RgbImage {
                    width: img.width() as usize,
                    height: img.height() as usize,
                    pixels: img.into_raw(),
                };
                Ok(resample(&src, *width, *height, *up, *down))
            }
            DisplaySource::Tokens(t) => Err(DisplayError::Invalid {
                path: t.path().to_path_buf(),
                message: format!(
                    "sample {i} is text: a token dataset has no pictures (its tokens are shown \
                     coloured by their relevance instead)"
                ),
            }),
        }
    }
}

/// A token dataset directory. Every file in it must stay inside it (no symbolic link out), as
/// every other file of a project.
fn open_tokens(dir: &Path) -> Result<DisplayDataset, DisplayError> {
    let bad = |message: String| DisplayError::Invalid {
        path: dir.to_path_buf(),
        message,
    };
    if !dir.is_dir() {
        return Err(bad(
            "a `type: tokens` dataset must be a directory (input_ids.npy and vocab.txt or \
             vocab.json)"
                .into(),
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DisplayError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| DisplayError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = PathBuf::from(entry.file_name());
        // refuses links that lead outside the directory (and dangling ones)
        Project::resolve_confined(dir, &name)?;
    }
    let t = TokenDataset::open(dir).map_err(|e| bad(e.to_string()))?;
    let labels = match t.labels() {
        Some(l) => l.iter().map(|c| c.iter().copied().collect()).collect(),
        None => vec![Vec::new(); t.len()],
    };
    Ok(DisplayDataset {
        source: DisplaySource::Tokens(t),
        labels,
    })
}

fn open_hdf5(path: &Path) -> Result<DisplayDataset, DisplayError> {
    let bad = |message: String| DisplayError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (data, labels) = Hdf5Data::open(path).map_err(|e| match e {
        super::DatasetError::Store(s) => DisplayError::Store(s),
        other => bad(other.to_string()),
    })?;
    let shape = data.shape.clone();
    let n = shape[0];
    let sample_shape = shape[1..].to_vec();
    let channels_last = match sample_shape.as_slice() {
        [_, _] => false,
        // ViRelAy: the smallest axis is the channel axis.
        [a, _, c] => *c < *a && *c <= 4,
        _ => {
            return Err(bad(format!(
                "dataset `data` has shape {shape:?}, but it must be N×C×H×W, N×H×W×C or N×H×W"
            )))
        }
    };
    let is_u8 = matches!(data.desc, TypeDescriptor::Unsigned(IntSize::U1));
    let Some(labels) = labels else {
        return Err(bad("dataset `label` is missing".into()));
    };
    let labels = display_labels(&labels);
    if labels.len() != n {
        return Err(bad(format!(
            "dataset `label` has {} rows, but it must have N = {n} like `data`",
            labels.len()
        )));
    }
    Ok(DisplayDataset {
        source: DisplaySource::Hdf5 {
            data,
            sample_shape,
            channels_last,
            is_u8,
        },
        labels,
    })
}

/// The classes of each sample: the set bits of n-hot labels, else the class number (none for
/// an unlabelled sample).
fn display_labels(labels: &LabelSet) -> Vec<Vec<u32>> {
    match &labels.multi_hot {
        Some((k, bits)) => bits
            .chunks((*k).max(1))
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, &b)| b)
                    .map(|(c, _)| c as u32)
                    .collect()
            })
            .collect(),
        None => labels
            .first
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect(),
    }
}

fn open_images(
    spec: &DatasetSpec,
    root: &Path,
    project_dir: &Path,
    label_map: &[LabelEntry],
) -> Result<DisplayDataset, DisplayError> {
    let bad = |message: String| DisplayError::Invalid {
        path: root.to_path_buf(),
        message,
    };
    // An explicit list `<path>_paths.txt` (paths relative to the list's directory), else all
    // files with an extension below `path`, sorted.
    let list = PathBuf::from(format!("{}_paths.txt", root.display()));
    let files = if list.is_file() {
        let text = std::fs::read_to_string(&list).map_err(|source| DisplayError::Io {
            path: list.clone(),
            source,
        })?;
        let base = list.parent().unwrap_or(project_dir);
        let mut files = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let rel = base.join(line);
            let rel = rel.strip_prefix(project_dir).unwrap_or(&rel).to_path_buf();
            files.push(Project::resolve_confined(project_dir, &rel)?);
        }
        files
    } else {
        let mut files = Vec::new();
        walk(root, &mut files)?;
        // ViRelAy: `sorted(glob(path + '/**/*.*'))`, i.e. Python's string order.
        files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        files
    };
    let (regex, by_wnid) = match (&spec.label_index_regex, &spec.label_word_net_id_regex) {
        (Some(r), None) => (r, false),
        (None, Some(r)) => (r, true),
        _ => {
            return Err(bad(
                "an image directory needs exactly one label regex".into()
            ))
        }
    };
    let re = regex::Regex::new(&format!("^(?:{regex})"))
        .map_err(|e| bad(format!("label regex `{regex}` does not compile: {e}")))?;
    let mut labels = Vec::with_capacity(files.len());
    for f in &files {
        let s = f.to_string_lossy();
        let m = re
            .captures(&s)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string());
        let Some(m) = m else {
            return Err(bad(format!(
                "label regex `{regex}` does not match `{s}` (its first group must capture \
                 the label)"
            )));
        };
        let class = if by_wnid {
            label_map
                .iter()
                .find(|e| e.word_net_id == m)
                .map(|e| e.index)
                .ok_or_else(|| bad(format!("WordNet id `{m}` of `{s}` is not in the label map")))?
        } else {
            m.parse::<u32>()
                .map_err(|_| bad(format!("label `{m}` of `{s}` is not a class number")))?
        };
        labels.push(vec![class]);
    }
    Ok(DisplayDataset {
        source: DisplaySource::Images {
            files,
            width: spec.input_width as usize,
            height: spec.input_height as usize,
            up: spec.up_sampling,
            down: spec.down_sampling,
        },
        labels,
    })
}

/// Float values → 0..255 by the best-fitting range of [-1, 1], [0, 1], [0, 255].
fn to_bytes(values: &[f32], is_u8: bool) -> Vec<u8> {
    if is_u8 {
        return values.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    }
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let ranges = [(-1.0f32, 1.0f32), (0.0, 1.0), (0.0, 255.0)];
    let (a, b) = ranges
        .iter()
        .copied()
        .min_by(|x, y| {
            let dx = (x.0 - lo).abs() + (x.1 - hi).abs();
            let dy = (y.0 - lo).abs() + (y.1 - hi).abs();
            dx.total_cmp(&dy)
        })
        .unwrap_or((0.0, 1.0));
    values
        .iter()
        .map(|&v| {
            let t = if v.is_finite() {
                (v - a) / (b - a) * 255.0
            } else {
                0.0
            };
            t.round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Planar (C×H×W) or interleaved (H×W×C) bytes with 1, 3 or more channels → RGB.
fn to_rgb(bytes: &[u8], c: usize, h: usize, w: usize, channels_last: bool) -> RgbImage {
    let plane = h * w;
    let at = |ch: usize, p: usize| -> u8 {
        let ch = if c >= 3 { ch } else { 0 };
        if channels_last {
            bytes[p * c + ch]
        } else {
            bytes[ch * plane + p]
        }
    };
    let mut pixels = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        for ch in 0..3 {
            pixels.push(at(ch, p));
        }
    }
    RgbImage {
        width: w,
        height: h,
        pixels,
    }
}

/// The files ViRelAy's `glob(path + '/**/*.*')` finds: without `recursive=True`, `**` is one
/// folder level, so `ROOT/<folder>/<name>.<ext>`, hidden names excluded. Symbolic links are not
/// followed (they could lead out of the project).
fn walk(root: &Path, out: &mut Vec<PathBuf>) -> Result<(), DisplayError> {
    let list = |dir: &Path| -> Result<Vec<(PathBuf, std::fs::FileType)>, DisplayError> {
        let io = |source| DisplayError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io)? {
            let e = e.map_err(io)?;
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if !hidden {
                v.push((e.path(), e.file_type().map_err(io)?));
            }
        }
        Ok(v)
    };
    for (sub, ft) in list(root)? {
        if !ft.is_dir() {
            continue;
        }
        for (file, ft) in list(&sub)? {
            let dotted = file
                .file_name()
                .map(|n| n.to_string_lossy().contains('.'))
                .unwrap_or(false);
            if ft.is_file() && dotted {
                out.push(file);
            }
        }
    }
    Ok(())
}
/// Brings an image to `width × height` with ViRelAy's up- and down-sampling methods, axis by
/// axis: `resize` (bilinear) for either, else padding (smaller axes) or a centre crop (larger).
pub fn resample(
    src: &RgbImage,
    width: usize,
    height: usize,
    up: UpSampling,
    down: DownSampling,
) -> RgbImage {
    let smaller = src.width < width || src.height < height;
    let larger = src.width > width || src.height > height;
    if (smaller && up == UpSampling::Resize) || (larger && down == DownSampling::Resize) {
        return src.resized(width, height);
    }
    let out_w = axis_size(src.width, width, up, down);
    let out_h = axis_size(src.height, height, up, down);
    if out_w == src.width && out_h == src.height {
        return src.clone();
    }
    let map = |dst: usize, src_len: usize, out_len: usize| -> Option<usize> {
        // Centre: offset of the source inside the output (negative when cropping).
        let offset = (out_len as isize - src_len as isize) / 2;
        let s = dst as isize - offset;
        if (0..src_len as isize).contains(&s) {
            return Some(s as usize);
        }
        let n = src_len as isize;
        match up {
            UpSampling::EdgeRepeat => Some(s.clamp(0, n - 1) as usize),
            UpSampling::WrapAround => Some(s.rem_euclid(n) as usize),
            UpSampling::MirrorEdge => {
                // Symmetric reflection: … 1 0 | 0 1 2 … n-1 | n-1 n-2 …
                let period = 2 * n;
                let m = s.rem_euclid(period);
                Some(if m < n { m } else { period - 1 - m } as usize)
            }
            _ => None,
        }
    };
    let fill = if up == UpSampling::FillOnes { 255 } else { 0 };
    let mut pixels = Vec::with_capacity(out_w * out_h * 3);
    for y in 0..out_h {
        let sy = map(y, src.height, out_h);
        for x in 0..out_w {
            match (sy, map(x, src.width, out_w)) {
                (Some(sy), Some(sx)) => {
                    let i = (sy * src.width + sx) * 3;
                    pixels.extend_from_slice(&src.pixels[i..i + 3]);
                }
                _ => pixels.extend_from_slice(&[fill; 3]),
            }
        }
    }
    RgbImage {
        width: out_w,
        height: out_h,
        pixels,
    }
}

fn axis_size(have: usize, want: usize, up: UpSampling, down: DownSampling) -> usize {
    let pad = have < want && up != UpSampling::None;
    let crop = have > want && down == DownSampling::CenterCrop;
    if pad || crop {
        want
    } else {
        have
    }
}

impl RgbImage {
    /// This picture at `width × height`, scaled with the display interpolation (bilinear
    /// between the four nearest pixels, pixel centres aligned; see `docs/viewer.md`).
    pub fn resized(&self, width: usize, height: usize) -> RgbImage {
        let px = preprocess::resize(
            &Pixels {
                h: self.height,
                w: self.width,
                c: 3,
                data: self.pixels.clone(),
            },
            height,
            width,
            Interpolation::Display,
        );
        RgbImage {
            width: px.w,
            height: px.h,
            pixels: px.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize) -> RgbImage {
        RgbImage {
            width: w,
            height: h,
            pixels: (0..w * h).flat_map(|i| [i as u8; 3]).collect(),
        }
    }

    #[test]
    fn float_ranges_map_to_bytes_by_best_fit() {
        assert_eq!(to_bytes(&[-1.0, 0.0, 1.0], false), [0, 128, 255]);
        assert_eq!(to_bytes(&[0.0, 1.0], false), [0, 255]);
        assert_eq!(to_bytes(&[0.0, 200.0], false), [0, 200]);
    }

    #[test]
    fn padding_methods_follow_numpy_pad() {
        let src = img(2, 1); // values 0, 1
        let row = |up| {
            let out = resample(&src, 6, 1, up, DownSampling::None);
            out.pixels.chunks(3).map(|p| p[0]).collect::<Vec<_>>()
        };
        assert_eq!(row(UpSampling::FillZeros), [0, 0, 0, 1, 0, 0]);
        assert_eq!(row(UpSampling::FillOnes), [255, 255, 0, 1, 255, 255]);
        assert_eq!(row(UpSampling::EdgeRepeat), [0, 0, 0, 1, 1, 1]);
        assert_eq!(row(UpSampling::WrapAround), [0, 1, 0, 1, 0, 1]);
        assert_eq!(row(UpSampling::MirrorEdge), [1, 0, 0, 1, 1, 0]);
        assert_eq!(row(UpSampling::None), [0, 1]);
    }

    #[test]
    fn image_folders_are_listed_like_virelays_glob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "b/2.png",
            "a/1.png",
            "a-b/0.png",
            "x.png",
            "a/.hidden.png",
            "a/sub/3.png",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let mut files = Vec::new();
        walk(root, &mut files).unwrap();
        files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        let rel: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(rel, ["a-b/0.png", "a/1.png", "b/2.png"]);
    }

    #[test]
    fn centre_crop_and_resize_reach_the_input_size() {
        let src = img(4, 4);
        let c = resample(&src, 2, 2, UpSampling::None, DownSampling::CenterCrop);
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(c.pixels[0], 5); // pixel (1, 1)
        let r = resample(&src, 8, 3, UpSampling::Resize, DownSampling::Resize);
        assert_eq!((r.width, r.height), (8, 3));
    }

    /// The viewer's resize before it moved here (`prism-viewer/src/dataset.rs`), verbatim: the
    /// oracle that keeps the viewer's pictures bit for bit.
    fn viewer_resize_before(src: &RgbImage, width: usize, height: usize) -> RgbImage {
        let (width, height) = (width.max(1), height.max(1));
        if src.width == 0 || src.height == 0 {
            return RgbImage {
                width,
                height,
                pixels: vec![0; width * height * 3],
            };
        }
        let sx = src.width as f32 / width as f32;
        let sy = src.height as f32 / height as f32;
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (src.height - 1) as f32);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(src.height - 1);
            let ty = fy - y0 as f32;
            for x in 0..width {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (src.width - 1) as f32);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(src.width - 1);
                let tx = fx - x0 as f32;
                for c in 0..3 {
                    let p = |x: usize, y: usize| f32::from(src.pixels[(y * src.width + x) * 3 + c]);
                    let top = p(x0, y0) * (1.0 - tx) + p(x1, y0) * tx;
                    let bottom = p(x0, y1) * (1.0 - tx) + p(x1, y1) * tx;
                    pixels.push((top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn display_resize_equals_the_viewers_former_resize_bit_for_bit() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        };
        for (sw, sh, w, h) in [
            (2, 2, 4, 4),
            (3, 5, 7, 9),
            (7, 7, 14, 14),
            (64, 48, 224, 224),
            (32, 32, 16, 16),
            (5, 5, 3, 3),
            (17, 9, 17, 9),
            (1, 1, 3, 2),
            (0, 4, 3, 3),
            (4, 4, 0, 0),
        ] {
            let src = RgbImage {
                width: sw,
                height: sh,
                pixels: (0..sw * sh * 3).map(|_| byte()).collect(),
            };
            assert_eq!(
                src.resized(w, h),
                viewer_resize_before(&src, w, h),
                "{sw}×{sh} → {w}×{h}"
            );
        }
    }

    fn spec(path: &str) -> DatasetSpec {
        DatasetSpec {
            name: "d".into(),
            kind: DatasetKind::Hdf5,
            path: PathBuf::from(path),
            input_width: 2,
            input_height: 2,
            up_sampling: UpSampling::None,
            down_sampling: DownSampling::None,
            label_index_regex: None,
            label_word_net_id_regex: None,
        }
    }

    #[test]
    fn hdf5_samples_show_as_rgb_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        // Two 1×2×2 float samples in [0, 1] and two 3×1×4 uint8 samples (3 < 4: channels first).
        let gray = dir.path().join("gray.h5");
        crate::dataset::write_dataset(
            &gray,
            &[1, 2, 2],
            &[0.0, 1.0, 0.5, 0.25, 1.0, 1.0, 0.0, 0.0],
            &[3, 1],
        )
        .unwrap();
        let d = DisplayDataset::open(&spec("gray.h5"), dir.path(), &[]).unwrap();
        assert_eq!((d.len(), d.size()), (2, (2, 2)));
        assert_eq!(d.labels(0), Some(&[3u32][..]));
        assert_eq!(d.labels(2), None);
        let img = d.image(0).unwrap();
        assert_eq!(
            img.pixels,
            [0, 0, 0, 255, 255, 255, 128, 128, 128, 64, 64, 64]
        );
        let rgb = dir.path().join("rgb.h5");
        let layout = crate::dataset::DataLayout {
            sample_type: crate::dataset::SampleType::U8,
            ..Default::default()
        };
        let mut w =
            crate::dataset::DatasetWriter::with_layout(&rgb, 2, &[3, 1, 4], layout).unwrap();
        w.write_u8(&(0..24).map(|v| v as u8 * 10).collect::<Vec<_>>(), &[0, 2])
            .unwrap();
        w.finish().unwrap();
        let d = DisplayDataset::open(&spec("rgb.h5"), dir.path(), &[]).unwrap();
        // Planar C×H×W bytes are interleaved to RGB as stored (no range mapping for uint8).
        assert_eq!(
            d.image(1).unwrap().pixels,
            [120, 160, 200, 130, 170, 210, 140, 180, 220, 150, 190, 230]
        );
        assert!(DisplayDataset::open(&spec("../gray.h5"), dir.path(), &[]).is_err());
    }
}
