//! The dataset options as a person spells them, on the command line (`--resize 256`) or as
//! keyword arguments (`resize="224x224"`), parsed into [`DatasetOptions`]. One parser for every
//! front end, so that `prism attribute` and the Python package accept the same spellings and
//! build the same options (and so the same dataset fingerprint).

use std::path::PathBuf;

use super::{DatasetError, DatasetKind, DatasetOptions, Normalize, Preprocess, Resize};

/// Dataset options as text, before parsing. Every field is optional; `None` takes the
/// library's default (see [`Preprocess`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetOptionsText {
    /// `hdf5`, `image-folder` or `npy` (see [`DatasetKind::by_name`]).
    pub kind: Option<String>,
    /// Labels of a `.npy` dataset.
    pub labels: Option<PathBuf>,
    /// `S` (the shorter side) or `HxW` (exactly); see [`Resize::parse`].
    pub resize: Option<String>,
    /// `S` (a square) or `HxW`; see [`parse_size`].
    pub crop: Option<String>,
    /// `imagenet`, or `MEAN,…/STD,…`; see [`Normalize::parse`].
    pub normalize: Option<String>,
    /// Channels of image-folder samples (1 or 3).
    pub channels: Option<usize>,
    /// Divide values by 255.
    pub scale: Option<bool>,
}

/// A dataset option that does not parse. `option` is the parameter's name in snake case
/// (`dataset_kind`, `resize`, `crop`, `normalize`); front ends render it as their flag or keyword.
#[derive(Debug, thiserror::Error)]
pub enum OptionTextError {
    /// A size is not `S` or `HxW` with positive integers.
    #[error("{option} takes S or HxW with positive integers, got `{text}`")]
    Size { option: &'static str, text: String },
    /// A mean or standard deviation is not a number.
    #[error(
        "{option}: `{value}` is not a number (expected e.g. 0.485,0.456,0.406/0.229,0.224,0.225)"
    )]
    Number { option: &'static str, value: String },
    /// The value parses but is not valid (an unknown name, mismatched lists).
    #[error("{option}")]
    Invalid {
        option: &'static str,
        #[source]
        source: DatasetError,
    },
}

impl OptionTextError {
    /// The option's name in snake case.
    pub fn option(&self) -> &'static str {
        match self {
            OptionTextError::Size { option, .. }
            | OptionTextError::Number { option, .. }
            | OptionTextError::Invalid { option, .. } => option,
        }
    }
}

/// `S` → `[S, S]`, `HxW` (also `X` or `×`) → `[H, W]`; every size positive. `option` names the
/// parameter in the error.
pub fn parse_size(option: &'static str, s: &str) -> Result<[usize; 2], OptionTextError> {
    let parse = |v: &str| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(OptionTextError::Size {
            option,
            text: s.to_string(),
        }),
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => {
            let v = parse(s)?;
            Ok([v, v])
        }
    }
}

impl Resize {
    /// `S` (the shorter side becomes S) or `HxW` (exactly H×W).
    pub fn parse(s: &str) -> Result<Resize, OptionTextError> {
        if s.contains(['x', 'X', '×']) {
            Ok(Resize::Exact(parse_size("resize", s)?))
        } else {
            Ok(Resize::Shorter(parse_size("resize", s)?[0]))
        }
    }
}

fn floats(s: &str) -> Result<Vec<f32>, OptionTextError> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| OptionTextError::Number {
                    option: "normalize",
                    value: v.to_string(),
                })
        })
        .collect()
}

impl Normalize {
    /// A name (`imagenet`) or explicit lists `MEAN,…/STD,…` (one value applies to every
    /// channel, e.g. `0.5/0.5`).
    pub fn parse(s: &str) -> Result<Normalize, OptionTextError> {
        let invalid = |source| OptionTextError::Invalid {
            option: "normalize",
            source,
        };
        match s.split_once('/') {
            Some((m, sd)) => Normalize::new(floats(m)?, floats(sd)?).map_err(invalid),
            None => Normalize::by_name(s).map_err(invalid),
        }
    }
}

impl DatasetOptionsText {
    /// The options for [`super::Dataset::open`].
    pub fn parse(&self) -> Result<DatasetOptions, OptionTextError> {
        let kind = self
            .kind
            .as_deref()
            .map(DatasetKind::by_name)
            .transpose()
            .map_err(|source| OptionTextError::Invalid {
                option: "dataset_kind",
                source,
            })?;
        Ok(DatasetOptions {
            kind,
            labels: self.labels.clone(),
            preprocess: Preprocess {
                resize: self.resize.as_deref().map(Resize::parse).transpose()?,
                crop: self
                    .crop
                    .as_deref()
                    .map(|s| parse_size("crop", s))
                    .transpose()?,
                scale: self.scale,
                normalize: self
                    .normalize
                    .as_deref()
                    .map(Normalize::parse)
                    .transpose()?,
                channels: self.channels,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_square_or_height_by_width() {
        assert_eq!(parse_size("crop", "224").unwrap(), [224, 224]);
        assert_eq!(parse_size("crop", "224x160").unwrap(), [224, 160]);
        assert_eq!(parse_size("crop", "7×9").unwrap(), [7, 9]);
        assert!(parse_size("crop", "0").is_err());
        assert!(parse_size("crop", "2x").is_err());
        assert_eq!(Resize::parse("256").unwrap(), Resize::Shorter(256));
        assert_eq!(Resize::parse("32X48").unwrap(), Resize::Exact([32, 48]));
    }

    #[test]
    fn normalize_takes_a_name_or_mean_and_std_lists() {
        assert_eq!(Normalize::parse("imagenet").unwrap(), Normalize::imagenet());
        assert_eq!(
            Normalize::parse("0.5/0.25").unwrap(),
            Normalize::new(vec![0.5], vec![0.25]).unwrap()
        );
        let e = Normalize::parse("0.5,a/1,1").unwrap_err();
        assert_eq!(e.option(), "normalize");
        assert!(e.to_string().contains("`a` is not a number"));
        assert!(matches!(
            Normalize::parse("cifar"),
            Err(OptionTextError::Invalid { .. })
        ));
    }

    #[test]
    fn unknown_dataset_kind_names_the_option() {
        let text = DatasetOptionsText {
            kind: Some("zip".into()),
            ..Default::default()
        };
        assert_eq!(text.parse().unwrap_err().option(), "dataset_kind");
    }
}
