//! Rendered images and their PNG encoding.

use std::io::{BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};

use crate::cmsl::{Palette, Rgb};
use crate::error::HeatmapError;

/// A rendered heatmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// One palette index per pixel, like Zennit's mode-`'P'` images: the colours can be swapped
    /// later by replacing the palette alone.
    Indexed {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Row-major palette indices.
        indices: Vec<u8>,
        /// The 256 colours.
        palette: Box<Palette>,
    },
    /// Three bytes (R, G, B) per pixel, row-major.
    Rgb {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Interleaved RGB bytes.
        pixels: Vec<u8>,
    },
}

impl Image {
    /// Width in pixels.
    pub fn width(&self) -> usize {
        match self {
            Image::Indexed { width, .. } | Image::Rgb { width, .. } => *width,
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        match self {
            Image::Indexed { height, .. } | Image::Rgb { height, .. } => *height,
        }
    }

    /// The colour of every pixel, row-major.
    pub fn to_rgb(&self) -> Vec<Rgb> {
        match self {
            Image::Indexed {
                indices, palette, ..
            } => indices.iter().map(|&i| palette[usize::from(i)]).collect(),
            Image::Rgb { pixels, .. } => {
                pixels.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
            }
        }
    }

    /// Encodes the image as PNG (8-bit palette or 8-bit RGB).
    pub fn encode_png(&self) -> Result<Vec<u8>, HeatmapError> {
        let mut out = Vec::new();
        self.write_png(&mut out, Path::new("<memory>"))?;
        Ok(out)
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) -> Result<(), HeatmapError> {
        let file = std::fs::File::create(path).map_err(|source| HeatmapError::Io {
            action: "create",
            path: path.to_owned(),
            source,
        })?;
        let mut writer = BufWriter::new(file);
        self.write_png(&mut writer, path)?;
        writer.flush().map_err(|source| HeatmapError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
    }

    fn write_png<W: Write>(&self, writer: W, path: &Path) -> Result<(), HeatmapError> {
        let png_error = |e: png::EncodingError| HeatmapError::Png {
            action: "encoding",
            path: path.to_owned(),
            source: Box::new(e),
        };
        let too_large = || {
            HeatmapError::Parameter(format!(
                "a {}×{} image is too large for PNG",
                self.width(),
                self.height()
            ))
        };
        let width = u32::try_from(self.width()).map_err(|_| too_large())?;
        let height = u32::try_from(self.height()).map_err(|_| too_large())?;
        let mut encoder = png::Encoder::new(writer, width, height);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let data = match self {
            Image::Indexed {
                indices, palette, ..
            } => {
                encoder.set_color(png::ColorType::Indexed);
                encoder.set_palette(palette.concat());
                // Filters rarely help palette images (the PNG spec recommends none).
                encoder.set_filter(png::Filter::NoFilter);
                indices
            }
            Image::Rgb { pixels, .. } => {
                encoder.set_color(png::ColorType::Rgb);
                pixels
            }
        };
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(data).map_err(png_error)?;
        writer.finish().map_err(png_error)
    }

    /// Decodes an 8-bit palette or RGB(A)/gray PNG, keeping palette images as indices.
    ///
    /// Used to compare with reference images; other bit depths are expanded to 8 bits.
    pub fn decode_png(bytes: &[u8]) -> Result<Image, HeatmapError> {
        let png_error = |e: png::DecodingError| HeatmapError::Png {
            action: "decoding",
            path: PathBuf::from("<memory>"),
            source: Box::new(e),
        };
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        let indexed_8bit = {
            let info = decoder.read_header_info().map_err(png_error)?;
            info.color_type == png::ColorType::Indexed && info.bit_depth == png::BitDepth::Eight
        };
        if !indexed_8bit {
            decoder
                .set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        }
        let mut reader = decoder.read_info().map_err(png_error)?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| HeatmapError::Parameter("the PNG is too large to decode".into()))?;
        let mut buf = vec![0; size];
        let frame = reader.next_frame(&mut buf).map_err(png_error)?;
        buf.truncate(frame.buffer_size());
        let (width, height) = (frame.width as usize, frame.height as usize);
        if indexed_8bit {
            let mut palette = Box::new([[0u8; 3]; 256]);
            if let Some(plte) = reader.info().palette.as_ref() {
                for (entry, rgb) in palette.iter_mut().zip(plte.chunks_exact(3)) {
                    *entry = [rgb[0], rgb[1], rgb[2]];
                }
            }
            return Ok(Image::Indexed {
                width,
                height,
                indices: buf,
                palette,
            });
        }
        let pixels = match frame.color_type {
            png::ColorType::Rgb => buf,
            png::ColorType::Rgba => buf
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
            png::ColorType::GrayscaleAlpha => buf
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]])
                .collect(),
            png::ColorType::Indexed => {
                return Err(HeatmapError::Parameter(
                    "unexpected palette output after expansion".into(),
                ))
            }
        };
        Ok(Image::Rgb {
            width,
            height,
            pixels,
        })
    }
}
