//! Properties that hold for any input: constant maps, extreme values, error positions,
//! grids and overlays.

use prism_heatmap::{
    color_map, Batch, BuiltinColorMap, ColorMap, GridShape, HeatmapError, HeatmapOptions, Image,
    Normalization, OverlayOptions, Renderer, BUILTIN_COLOR_MAPS,
};
use proptest::prelude::*;

fn renderer(normalization: Normalization, vmin: Option<f64>, vmax: Option<f64>) -> Renderer {
    Renderer::new(&HeatmapOptions {
        normalization,
        vmin,
        vmax,
        ..Default::default()
    })
    .unwrap()
}

fn indices(image: &Image) -> &[u8] {
    match image {
        Image::Indexed { indices, .. } => indices,
        Image::Rgb { .. } => panic!("expected a palette image"),
    }
}

fn modes() -> impl Strategy<Value = Normalization> {
    prop_oneof![
        Just(Normalization::Unaligned),
        Just(Normalization::Symmetric),
        Just(Normalization::Absolute),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn constant_map_renders_at_the_centre(
        value in prop_oneof![Just(0.0f32), -1e30f32..1e30f32],
        mode in modes(),
        h in 1usize..6,
        w in 1usize..6,
    ) {
        let data = vec![value; h * w];
        let image = renderer(mode, None, None).render(&Batch::new(&data, &[h, w]).unwrap(), 0).unwrap();
        let expected = match mode {
            // A constant map has a scale only if it is not zero and the mode pins zero.
            Normalization::Symmetric if value != 0.0 => if value > 0.0 { 255 } else { 0 },
            Normalization::Absolute if value != 0.0 => 255,
            Normalization::Absolute => 0,
            _ => 127,
        };
        prop_assert!(indices(&image).iter().all(|&i| i == expected), "{:?}", indices(&image));
        prop_assert!(image.encode_png().is_ok());
    }

    #[test]
    fn equal_explicit_bounds_split_below_at_and_above(bound in -10.0f64..10.0) {
        let data = [bound as f32 - 1.0, bound as f32, bound as f32 + 1.0];
        let image = renderer(Normalization::Unaligned, Some(f64::from(bound as f32)), Some(f64::from(bound as f32)))
            .render(&Batch::new(&data, &[1, 3]).unwrap(), 0)
            .unwrap();
        prop_assert_eq!(indices(&image), &[0, 127, 255]);
    }

    #[test]
    fn any_finite_map_is_ordered_and_spans_the_palette(
        data in prop::collection::vec(
            prop_oneof![-1e3f32..1e3f32, Just(f32::MAX), Just(-f32::MAX), Just(f32::MIN_POSITIVE / 4.0)],
            2..64,
        ),
        mode in modes(),
    ) {
        let image = renderer(mode, None, None).render(&Batch::new(&data, &[1, data.len()]).unwrap(), 0).unwrap();
        let idx = indices(&image);
        let key = |v: f32| if mode == Normalization::Absolute { v.abs() } else { v };
        for (a, &ia) in data.iter().zip(idx) {
            for (b, &ib) in data.iter().zip(idx) {
                if key(*a) < key(*b) {
                    prop_assert!(ia <= ib, "{a} → {ia} but {b} → {ib}");
                }
            }
        }
        let max = data.iter().copied().map(key).fold(f32::MIN, f32::max);
        let min = data.iter().copied().map(key).fold(f32::MAX, f32::min);
        let at = |target: f32| data.iter().position(|&v| key(v) == target).unwrap();
        match mode {
            Normalization::Unaligned if min < max => {
                prop_assert_eq!(idx[at(max)], 255);
                prop_assert_eq!(idx[at(min)], 0);
            }
            Normalization::Absolute if max > 0.0 => prop_assert_eq!(idx[at(max)], 255),
            Normalization::Symmetric => {
                let amax = data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if amax > 0.0 {
                    let k = data.iter().position(|v| v.abs() == amax).unwrap();
                    prop_assert_eq!(idx[k], if data[k] > 0.0 { 255 } else { 0 });
                }
            }
            _ => {}
        }
    }

    #[test]
    fn random_text_never_panics_and_errors_point_inside_it(source in "[0-9a-fA-F:, x#\t]{0,24}") {
        if let Err(err) = ColorMap::parse(&source) {
            prop_assert!(err.position <= source.chars().count());
            let expected = format!("character {}", err.position);
            prop_assert!(err.to_string().contains(&expected));
        }
    }

    #[test]
    fn a_bad_character_at_a_node_start_is_reported_there(
        map in 0usize..BUILTIN_COLOR_MAPS.len(),
        node in 0usize..3,
        bad in "[g-zG-Z#;.!é]",
    ) {
        let source = BUILTIN_COLOR_MAPS[map].source;
        let starts: Vec<usize> = std::iter::once(0)
            .chain(source.match_indices(',').map(|(i, _)| i + 1))
            .collect();
        let at = starts[node % starts.len()];
        let broken = format!("{}{}{}", &source[..at], bad, &source[at..]);
        let err = ColorMap::parse(&broken).unwrap_err();
        prop_assert_eq!(err.position, at, "{}", broken);
        // Anywhere else, the error is at the inserted character or before it.
        for at in 0..=source.len() {
            let broken = format!("{}{}{}", &source[..at], bad, &source[at..]);
            let err = ColorMap::parse(&broken).unwrap_err();
            prop_assert!(err.position <= at, "{}: {}", broken, err);
        }
    }

    #[test]
    fn grid_tiles_equal_single_renders(n in 1usize..7, h in 1usize..5, w in 1usize..5, seed in any::<u64>()) {
        let mut state = seed;
        let data: Vec<f64> = (0..n * h * w)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        let batch = Batch::new(&data, &[n, h, w]).unwrap();
        let r = renderer(Normalization::Symmetric, None, None);
        let shape = GridShape::square(n);
        let grid = r.render_grid(&batch, None).unwrap();
        prop_assert_eq!((grid.width(), grid.height()), (w * shape.columns, h * shape.rows));
        let g = indices(&grid);
        for k in 0..n {
            let tile = r.render(&batch, k).unwrap();
            let t = indices(&tile);
            let (row, col) = (k / shape.columns, k % shape.columns);
            for y in 0..h {
                let start = (row * h + y) * grid.width() + col * w;
                prop_assert_eq!(&g[start..start + w], &t[y * w..(y + 1) * w]);
            }
        }
    }
}

#[test]
fn non_finite_relevance_is_an_error_that_says_where() {
    let data = [0.0f32, 1.0, f32::NAN, 2.0, 3.0, 4.0];
    let batch = Batch::new(&data, &[2, 1, 1, 3]).unwrap();
    let err = renderer(Normalization::Unaligned, None, None)
        .render(&batch, 0)
        .unwrap_err();
    match err {
        HeatmapError::NonFinite {
            sample,
            row,
            column,
            ..
        } => assert_eq!((sample, row, column), (0, 0, 2)),
        other => panic!("unexpected {other}"),
    }
    assert!(renderer(Normalization::Unaligned, None, None)
        .render(&batch, 1)
        .is_ok());
}

#[test]
fn bad_shapes_and_parameters_are_errors() {
    let data = [0.0f32; 6];
    assert!(Batch::new(&data, &[4, 2]).is_err());
    assert!(Batch::new(&data, &[6]).is_err());
    assert!(Batch::new(&data, &[0, 6]).is_err());
    let bad_level = HeatmapOptions {
        level: f64::NAN,
        ..Default::default()
    };
    assert!(Renderer::new(&bad_level).is_err());
    let batch = Batch::new(&data, &[1, 2, 3]).unwrap();
    assert!(renderer(Normalization::Unaligned, None, None)
        .render(&batch, 1)
        .is_err());
}

#[test]
fn builtin_palettes_run_from_first_to_last_colour() {
    for map in &BUILTIN_COLOR_MAPS {
        let cmap = map.color_map();
        let palette = cmap.palette(1.0);
        let nodes = cmap.nodes();
        assert_eq!(palette[0], nodes[0].color, "{}", map.name);
        assert_eq!(palette[255], nodes[nodes.len() - 1].color, "{}", map.name);
    }
    assert!(BuiltinColorMap::by_name("coldnhot").is_some_and(|m| m.signed));
}

fn overlay(relevance: &[f32], input: &[f32]) -> Vec<[u8; 3]> {
    let n = relevance.len();
    let r = Renderer::new(&HeatmapOptions {
        color_map: color_map("hot").unwrap(),
        ..Default::default()
    })
    .unwrap();
    r.overlay(
        &Batch::new(relevance, &[1, n]).unwrap(),
        &Batch::new(input, &[1, 1, 1, n]).unwrap(),
        0,
        &OverlayOptions::default(),
    )
    .unwrap()
    .to_rgb()
}

#[test]
fn overlay_of_zero_relevance_is_the_grayscale_input() {
    let input = [0.0f32, 0.25, 0.5, 1.0];
    let out = overlay(&[0.0; 4], &input);
    let gray: Vec<[u8; 3]> = [0u8, 64, 128, 255].iter().map(|&g| [g; 3]).collect();
    assert_eq!(out, gray);
}

#[test]
fn overlay_blends_one_sided_relevance_instead_of_covering_the_input() {
    // ViRelAy before PR #24 showed only the heatmap when no value was negative.
    let input = [0.0f32, 1.0, 1.0, 1.0];
    let out = overlay(&[0.0, 0.0, 0.5, 1.0], &input);
    assert_eq!(out[1], [255; 3], "zero relevance keeps the input");
    // hot at the top index is white; 90 % of white over white is still white, so check the
    // half-relevance pixel: alpha 0.45 between white input and hot's colour at index 127.
    let hot = color_map("hot").unwrap().palette(1.0)[127];
    let expect = |c: u8| (255.0 * 0.55 + f64::from(c) * 0.45).round() as u8;
    assert_eq!(out[2], [expect(hot[0]), expect(hot[1]), expect(hot[2])]);
    let negative = overlay(&[0.0, 0.0, -0.5, -1.0], &input);
    assert_eq!(negative[1], [255; 3]);
}
