//! Image folders laid out like torchvision's `ImageFolder`: `ROOT/<class>/**/<image>`, classes
//! numbered in sorted order of their folder names, samples in torchvision's order.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::preprocess::{self, Pixels, Preprocess};
use super::DatasetError;

/// torchvision's `IMG_EXTENSIONS`: files with these endings are samples.
const IMAGE_EXTENSIONS: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
];
/// The formats Prism decodes.
const DECODED_EXTENSIONS: [&str; 3] = [".jpg", ".jpeg", ".png"];

/// The most values (C×H×W) one sample may have: 2²⁷ (512 MiB of f32, e.g. 3 × 6689 × 6689).
/// The sample size comes from an image header, which may declare any size.
pub(crate) const MAX_SAMPLE_VALUES: usize = 1 << 27;

/// The most pixels Prism decodes from one image: Pillow's decompression-bomb threshold
/// (`Image.MAX_IMAGE_PIXELS`, where torchvision's loader warns), 89 478 485.
pub(crate) const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// The most pixels a file may declare per byte it holds: a JPEG of one flat colour holds about
/// 250 pixels per byte at best (every 8×8 block costs a few bits), a 1-bit PNG about 8000
/// (deflate's 1032:1 on 8 pixels per byte). A header declaring far more belongs to a truncated
/// or crafted file, whose decoding would spend seconds to minutes producing filler pixels.
const MAX_PIXELS_PER_BYTE_JPEG: u64 = 2048;
const MAX_PIXELS_PER_BYTE: u64 = 16384;

/// Opens and decodes one image after checking its header's size: at most [`MAX_IMAGE_PIXELS`],
/// and no more pixels than a file of its length can hold. The error is a message to follow the
/// path.
pub(crate) fn decode_image(path: &Path) -> Result<DynamicImage, String> {
    let reader = ImageReader::open(path)
        .map_err(|e| format!("cannot open it: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read it: {e}"))?;
    let format = reader.format();
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    let decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot read the image header: {e}"))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(format!(
            "its header declares {w}×{h} = {pixels} pixels, more than the {MAX_IMAGE_PIXELS} \
             Prism decodes from one image (Pillow's decompression-bomb threshold); downscale it"
        ));
    }
    let per_byte = if format == Some(ImageFormat::Jpeg) {
        MAX_PIXELS_PER_BYTE_JPEG
    } else {
        MAX_PIXELS_PER_BYTE
    };
    if pixels > bytes.saturating_mul(per_byte) {
        return Err(format!(
            "its header declares {w}×{h} pixels, but the file has only {bytes} bytes, too few \
             for that many pixels (the file is truncated or corrupt)"
        ));
    }
    DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("cannot decode it (corrupt or truncated?): {e}"))
}

/// One image of the folder.
#[derive(Debug, Clone)]
pub(crate) struct ImageEntry {
    /// Path relative to the root, with `/` separators.
    pub rel: String,
    pub class: u32,
    pub size: u64,
    pub mtime_ns: u128,
}

#[derive(Debug)]
pub(crate) struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub entries: Vec<ImageEntry>,
    pub channels: usize,
    /// `[H, W]` of every sample after preprocessing.
    pub hw: [usize; 2],
}

fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ImageFolder {
    pub(crate) fn open(root: &Path, p: &Preprocess) -> Result<Self, DatasetError> {
        let channels = p.check_images()?;
        // Classes: the sub-folders (symbolic links followed), sorted by name.
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| io_err(root, e))? {
            let entry = entry.map_err(|e| io_err(root, e))?;
            let is_dir = std::fs::metadata(entry.path())
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_dir {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        if classes.is_empty() {
            return Err(DatasetError::Empty {
                path: root.to_path_buf(),
                message: "no class sub-folders; an image folder holds one sub-folder per class \
                          (ROOT/<class>/<image>.png)"
                    .into(),
            });
        }
        let mut entries = Vec::new();
        let mut unsupported: Vec<String> = Vec::new();
        let mut empty_classes = Vec::new();
        for (class, name) in classes.iter().enumerate() {
            let class_dir = root.join(name);
            // (root-relative parent, file name, metadata): sorted like torchvision's
            // `sorted(os.walk(dir))` then `sorted(fnames)`.
            let mut files: Vec<(String, String, u64, u128)> = Vec::new();
            for item in walkdir::WalkDir::new(&class_dir).follow_links(true) {
                let item = item.map_err(|e| {
                    let path = e.path().unwrap_or(&class_dir).to_path_buf();
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("file-system loop"));
                    io_err(&path, source)
                })?;
                if item.file_type().is_dir() {
                    continue;
                }
                let fname = item.file_name().to_string_lossy().into_owned();
                let lower = fname.to_lowercase();
                if !IMAGE_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                    continue;
                }
                let rel_parent = item
                    .path()
                    .parent()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map(|p| {
                        p.components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default();
                if !DECODED_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                    unsupported.push(format!("{rel_parent}/{fname}"));
                    continue;
                }
                let meta = item.metadata().map_err(|e| {
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("cannot read metadata"));
                    io_err(item.path(), source)
                })?;
                let mtime_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                files.push((rel_parent, fname, meta.len(), mtime_ns));
            }
            if files.is_empty() {
                empty_classes.push(name.clone());
            }
            files.sort();
            entries.extend(
                files
                    .into_iter()
                    .map(|(parent, fname, size, mtime_ns)| ImageEntry {
                        rel: format!("{parent}/{fname}"),
                        class: class as u32,
                        size,
                        mtime_ns,
                    }),
            );
        }
        if !unsupported.is_empty() {
            return Err(DatasetError::UnsupportedImage {
                path: root.join(&unsupported[0]),
                count: unsupported.len(),
            });
        }
        if !empty_classes.is_empty() {
            return Err(DatasetError::Empty {
                path: root.to_path_buf(),
                message: format!(
                    "class folder(s) {} hold no PNG or JPEG images (torchvision's ImageFolder \
                     refuses empty classes too); remove them or add images",
                    empty_classes
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        // The sample size: fixed by the crop or an exact resize, else by the first image.
        let hw = match (p.crop, p.resize) {
            (Some(hw), _) | (None, Some(preprocess::Resize::Exact(hw))) => hw,
            (None, resize) => {
                let first = root.join(&entries[0].rel);
                let (w, h) = image_dimensions(&first)?;
                match resize {
                    Some(r) => preprocess::resized_size(r, h, w),
                    None => [h, w],
                }
            }
        };
        // The size comes from a file's header: check it before a batch allocates C×H×W floats
        // per sample (a header may declare 2³² × 2³² pixels).
        let values = hw
            .iter()
            .try_fold(channels, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_SAMPLE_VALUES);
        if values.is_none() {
            return Err(DatasetError::Image {
                path: root.join(&entries[0].rel),
                index: 0,
                message: format!(
                    "the samples would be {channels}×{}×{} values, more than the {MAX_SAMPLE_VALUES} \
                     Prism reads per sample; resize or crop them (--resize, --crop)",
                    hw[0], hw[1]
                ),
            });
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            entries,
            channels,
            hw,
        })
    }

    /// Decodes and preprocesses sample `i` into `out` (C×H×W).
    pub(crate) fn load(
        &self,
        i: usize,
        p: &Preprocess,
        scale: bool,
        out: &mut [f32],
    ) -> Result<(), DatasetError> {
        let path = self.root.join(&self.entries[i].rel);
        let img = decode(&path, i)?;
        let pixels = to_pixels(img, self.channels);
        let [h, w] = self.hw;
        if p.crop.is_none() {
            let got = match p.resize {
                Some(r) => preprocess::resized_size(r, pixels.h, pixels.w),
                None => [pixels.h, pixels.w],
            };
            if got != [h, w] {
                return Err(DatasetError::Image {
                    path,
                    index: i,
                    message: format!(
                        "it gives a {}×{} sample, but the dataset's samples are {h}×{w} (the \
                         first image's size); give a crop size (or an exact resize) so that all \
                         samples have one size",
                        got[0], got[1]
                    ),
                });
            }
        }
        preprocess::finish(pixels, p, scale, out);
        Ok(())
    }
}

fn image_dimensions(path: &Path) -> Result<(usize, usize), DatasetError> {
    let reader = ImageReader::open(path)
        .map_err(|e| io_err(path, e))?
        .with_guessed_format()
        .map_err(|e| io_err(path, e))?;
    let (w, h) = reader.into_dimensions().map_err(|e| DatasetError::Image {
        path: path.to_path_buf(),
        index: 0,
        message: format!("cannot read the image header: {e}"),
    })?;
    Ok((w as usize, h as usize))
}

fn decode(path: &Path, index: usize) -> Result<DynamicImage, DatasetError> {
    decode_image(path).map_err(|message| DatasetError::Image {
        path: path.to_path_buf(),
        index,
        message,
    })
}

/// Converts to 8-bit RGB or grayscale like Pillow's `convert("RGB")` / `convert("L")`: alpha is
/// dropped (not composited), gray is replicated to RGB, RGB becomes gray by ITU-R 601-2 luma.
/// 16-bit and float images are first reduced to 8 bits by the `image` crate (rounding).
pub(crate) fn to_pixels(img: DynamicImage, channels: usize) -> Pixels {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match (channels, img) {
        (1, DynamicImage::ImageLuma8(b)) => b.into_raw(),
        (1, DynamicImage::ImageLumaA8(b)) => b.into_raw().chunks_exact(2).map(|p| p[0]).collect(),
        (1, gray @ (DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_))) => {
            gray.to_luma8().into_raw()
        }
        (1, other) => other
            .to_rgb8()
            .into_raw()
            .chunks_exact(3)
            .map(|p| preprocess::rgb_to_luma(p[0], p[1], p[2]))
            .collect(),
        (_, DynamicImage::ImageRgb8(b)) => b.into_raw(),
        (_, other) => other.to_rgb8().into_raw(),
    };
    Pixels {
        h,
        w,
        c: channels,
        data,
    }
}
