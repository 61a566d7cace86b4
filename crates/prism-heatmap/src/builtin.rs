//! The built-in colour maps, each defined in CMSL exactly as in Zennit's `image.CMAPS`.

use crate::cmsl::ColorMap;
use crate::error::HeatmapError;

/// A built-in colour map: its name, CMSL source, and whether it is meant for signed data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinColorMap {
    /// The name accepted by `--cmap` and [`color_map`].
    pub name: &'static str,
    /// The CMSL source.
    pub source: &'static str,
    /// `true` for diverging maps with a neutral centre (meant for signed relevance with
    /// symmetric normalisation), `false` for sequential maps.
    pub signed: bool,
    /// One line on what the map shows.
    pub description: &'static str,
}

/// All built-in maps, in Zennit's order. `bwr` is the default.
pub const BUILTIN_COLOR_MAPS: [BuiltinColorMap; 11] = [
    builtin("gray", "000,fff", false, "black to white"),
    builtin("wred", "fff,f00", false, "white to red"),
    builtin("wblue", "fff,00f", false, "white to blue"),
    builtin(
        "hot",
        "000,f00,ff0,fff",
        false,
        "black to red to yellow to white",
    ),
    builtin("cold", "000,00f,0ff", false, "black to blue to cyan"),
    builtin(
        "coldnhot",
        "0ff,00f,80:000,f00,ff0,fff",
        true,
        "cold (reversed) and hot around a black centre",
    ),
    builtin(
        "bwr",
        "00f,80:fff,f00",
        true,
        "blue to white to red (the default)",
    ),
    builtin(
        "france",
        "0055a4,80:fff,ef4135",
        true,
        "blue to white to red as in the French flag",
    ),
    builtin(
        "seismic",
        "0000d0,80:d0d0d0,d00000",
        true,
        "blue to grey to red, brightness 0xd0",
    ),
    builtin(
        "coolio",
        "00d0d0,80:d0d0d0,d000d0",
        true,
        "cyan to grey to magenta, brightness 0xd0",
    ),
    builtin(
        "coleus",
        "00d000,80:d0d0d0,d000d0",
        true,
        "green to grey to magenta, brightness 0xd0",
    ),
];

const fn builtin(
    name: &'static str,
    source: &'static str,
    signed: bool,
    description: &'static str,
) -> BuiltinColorMap {
    BuiltinColorMap {
        name,
        source,
        signed,
        description,
    }
}

/// The name of the default colour map (Zennit's default for `imgify`).
pub const DEFAULT_COLOR_MAP: &str = "bwr";

impl BuiltinColorMap {
    /// Looks a built-in map up by name.
    pub fn by_name(name: &str) -> Option<&'static BuiltinColorMap> {
        BUILTIN_COLOR_MAPS.iter().find(|m| m.name == name)
    }

    /// The compiled colour map.
    pub fn color_map(&self) -> ColorMap {
        // The built-in sources are tested to compile; fall back to gray rather than panic.
        ColorMap::parse(self.source).unwrap_or_else(|_| fallback_gray())
    }
}

fn fallback_gray() -> ColorMap {
    match ColorMap::parse("000,fff") {
        Ok(c) => c,
        Err(_) => unreachable!("the gray source is valid CMSL"),
    }
}

/// A colour map by built-in name or CMSL source, as Zennit's `get_cmap` (names first).
pub fn color_map(name_or_cmsl: &str) -> Result<ColorMap, HeatmapError> {
    if let Some(builtin) = BuiltinColorMap::by_name(name_or_cmsl) {
        return Ok(builtin.color_map());
    }
    ColorMap::parse(name_or_cmsl).map_err(|err| {
        // A word that is not hex-like was most likely meant as a name.
        let looks_like_name = name_or_cmsl
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit());
        if looks_like_name && !name_or_cmsl.contains([',', ':']) {
            HeatmapError::UnknownColorMap {
                name: name_or_cmsl.to_owned(),
                known: BUILTIN_COLOR_MAPS.map(|m| m.name).join(", "),
                cmsl: Box::new(err),
            }
        } else {
            HeatmapError::Cmsl(err)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_source_compiles() {
        for map in &BUILTIN_COLOR_MAPS {
            assert!(ColorMap::parse(map.source).is_ok(), "{}", map.name);
        }
    }

    #[test]
    fn names_win_over_cmsl_and_unknown_names_are_reported_as_names() {
        assert_eq!(color_map("bwr").unwrap().source(), "00f,80:fff,f00");
        assert!(matches!(
            color_map("viridis"),
            Err(HeatmapError::UnknownColorMap { .. })
        ));
        assert!(matches!(color_map("000,fxf"), Err(HeatmapError::Cmsl(_))));
    }
}
