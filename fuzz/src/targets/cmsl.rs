//! The colour-map language (prism-heatmap `cmsl`): parse, lay out, sample and make a palette.
use prism_heatmap::ColorMap;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(map) = ColorMap::parse(text) else {
        return;
    };
    for x in [0.0, 0.25, 0.5, 1.0, -1.0, 2.0, f64::NAN] {
        let _ = map.sample(x);
    }
    let _ = map.palette(0.5);
}
