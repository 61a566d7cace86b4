//! Pixel identity with Zennit: every case in `fixtures/zennit/cases.tsv` was rendered by
//! `zennit.image.imsave` (scripts/make_heatmap_reference.py). We render the same array with the
//! same options, encode our PNG, decode both files, and require identical pixels.

use std::path::{Path, PathBuf};

use prism_heatmap::{
    color_map, Batch, ChannelReduction, ColorMap, GridShape, HeatmapOptions, Image, Normalization,
    Renderer,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zennit")
}

/// A fixture array: its values widened to f64 or kept as f32, and its shape.
enum Array {
    F32(Vec<f32>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
}

fn read_npy(name: &str) -> Array {
    let bytes = std::fs::read(fixtures().join(format!("{name}.npy"))).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    match npy.dtype() {
        npyz::DType::Plain(t) if t.size_field() == 4 => Array::F32(npy.into_vec().unwrap(), shape),
        _ => Array::F64(npy.into_vec().unwrap(), shape),
    }
}

fn decode(bytes: &[u8]) -> Image {
    Image::decode_png(bytes).unwrap()
}

/// Compares two decoded images: same size and colours, and for palette images the same
/// indices and the same palette.
fn assert_same_pixels(name: &str, ours: &Image, zennit: &Image) {
    assert_eq!(
        (ours.width(), ours.height()),
        (zennit.width(), zennit.height()),
        "{name}: size"
    );
    match (ours, zennit) {
        (
            Image::Indexed {
                indices: a,
                palette: pa,
                ..
            },
            Image::Indexed {
                indices: b,
                palette: pb,
                ..
            },
        ) => {
            let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
            assert_eq!(diff, 0, "{name}: {diff} palette indices differ");
            for (i, (x, y)) in pa.iter().zip(pb.iter()).enumerate() {
                assert_eq!(x, y, "{name}: palette entry {i} differs");
            }
        }
        (Image::Rgb { .. }, Image::Rgb { .. }) => {}
        _ => panic!("{name}: one image is a palette image, the other is not"),
    }
    let (a, b) = (ours.to_rgb(), zennit.to_rgb());
    let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(diff, 0, "{name}: {diff} pixel colours differ");
}

fn cell(value: &str) -> Option<f64> {
    (value != "-").then(|| value.parse().unwrap())
}

#[test]
fn every_case_is_pixel_identical_to_zennit_imsave() {
    let manifest = std::fs::read_to_string(fixtures().join("cases.tsv")).unwrap();
    let mut cases = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, input, cmap, level, mode, vmin, vmax, grid, channels, sample] = f[..] else {
            panic!("bad manifest line {line:?}");
        };
        let options = HeatmapOptions {
            color_map: color_map(cmap).unwrap(),
            level: level.parse().unwrap(),
            normalization: match mode {
                "symmetric" => Normalization::Symmetric,
                "absolute" => Normalization::Absolute,
                _ => Normalization::Unaligned,
            },
            vmin: cell(vmin),
            vmax: cell(vmax),
            channels: if channels == "none" {
                ChannelReduction::None
            } else {
                ChannelReduction::Sum
            },
        };
        let renderer = Renderer::new(&options).unwrap();
        let sample: usize = sample.parse().unwrap();
        let grid = match grid {
            "-" => None,
            "auto" => Some(None),
            shape => Some(Some(shape.parse::<GridShape>().unwrap())),
        };
        let image = match read_npy(input) {
            Array::F32(data, shape) => {
                render(&renderer, &Batch::new(&data, &shape).unwrap(), sample, grid)
            }
            Array::F64(data, shape) => {
                render(&renderer, &Batch::new(&data, &shape).unwrap(), sample, grid)
            }
        };
        let ours = decode(&image.encode_png().unwrap());
        assert_eq!(ours, image, "{name}: our PNG does not round-trip");
        let zennit = decode(&std::fs::read(fixtures().join(format!("{name}.png"))).unwrap());
        assert_same_pixels(name, &ours, &zennit);
        cases += 1;
    }
    // 11 maps and 3 CMSL strings × {symmetric, unaligned} × levels {1, 2}, plus 15 special cases.
    assert_eq!(cases, 14 * 4 + 15);
}

fn render<T: prism_heatmap::Element>(
    renderer: &Renderer,
    batch: &Batch<'_, T>,
    sample: usize,
    grid: Option<Option<GridShape>>,
) -> Image {
    match grid {
        Some(shape) => renderer.render_grid(batch, shape).unwrap(),
        None => renderer.render(batch, sample).unwrap(),
    }
}

#[test]
fn palettes_at_other_levels_match_zennit() {
    let manifest = std::fs::read_to_string(fixtures().join("palettes.tsv")).unwrap();
    let mut count = 0;
    for line in manifest.lines().filter(|l| !l.is_empty()) {
        let [name, cmap, level] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let Image::Indexed { palette, .. } =
            decode(&std::fs::read(fixtures().join(format!("{name}.png"))).unwrap())
        else {
            panic!("{name} is not a palette image");
        };
        let ours = color_map(cmap).unwrap().palette(level.parse().unwrap());
        assert_eq!(&ours[..], &palette[..], "{name}");
        count += 1;
    }
    assert_eq!(count, 11 * 4);
}

/// Undoes Python's `unicode_escape` for the sources in cmsl.tsv.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| {
            let digits: String = chars.take(n).collect();
            char::from_u32(u32::from_str_radix(&digits, 16).unwrap()).unwrap()
        };
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('x') => out.push(hex(&mut chars, 2)),
            Some('u') => out.push(hex(&mut chars, 4)),
            Some('U') => out.push(hex(&mut chars, 8)),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[test]
fn cmsl_compiles_exactly_as_zennit_or_fails_where_zennit_fails() {
    let table = std::fs::read_to_string(fixtures().join("cmsl.tsv")).unwrap();
    let (mut accepted, mut rejected) = (0, 0);
    for line in table.lines() {
        let [source, indices, colors] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let source = unescape(source);
        match (ColorMap::parse(&source), indices) {
            (Err(err), "error") => {
                assert!(err.position <= source.chars().count(), "{source:?}: {err}");
                rejected += 1;
            }
            (Err(err), _) => panic!("{source:?}: Zennit accepts it, we say {err}"),
            (Ok(_), "error") => panic!("{source:?}: Zennit rejects it, we accept it"),
            (Ok(cmap), _) => {
                let ours: Vec<String> = cmap.nodes().iter().map(|n| n.index.to_string()).collect();
                assert_eq!(ours.join(" "), indices, "{source:?}: indices");
                let ours: Vec<String> = cmap
                    .nodes()
                    .iter()
                    .map(|n| format!("{:02x}{:02x}{:02x}", n.color[0], n.color[1], n.color[2]))
                    .collect();
                assert_eq!(ours.join(" "), colors, "{source:?}: colours");
                accepted += 1;
            }
        }
    }
    assert!(
        accepted > 100 && rejected > 50,
        "{accepted} accepted, {rejected} rejected"
    );
}
