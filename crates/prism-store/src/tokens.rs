//! Token files: the token strings of text-model inputs, for `prism heatmap --tokens`.
//!
//! Two spellings (described for users in `docs/heatmaps.md`):
//!
//! - **Text** (any name not ending in `.json`): UTF-8, one token per line, samples separated by
//!   one or more empty lines (leading and trailing empty lines are ignored; a `\r` before the
//!   line end is dropped, so CRLF files work). A line is the token verbatim, except for five
//!   escapes: `\n` (newline), `\t` (tab), `\r` (carriage return), `\s` (space) and `\\`
//!   (backslash); a backslash before any other character is an ordinary character. So a
//!   token that is a space is a line holding one space (or `\s`), a newline token is `\n`.
//! - **JSON** (a name ending in `.json`): a list of samples, each a list of token strings
//!   (`[["[CLS]", "hi", "[SEP]"], [...]]`), or a single list of strings for one sample. Any
//!   string is a token, the empty string included.

use std::path::{Path, PathBuf};

/// A token file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read the tokens file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("the tokens file `{path}` is not UTF-8 text (byte {offset})")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// The content does not follow the format.
    #[error("the tokens file `{path}`: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// Reads a token file: JSON when the name ends in `.json`, the line format otherwise.
/// Returns one list of tokens per sample; every sample has at least one token.
pub fn read_tokens(path: &Path) -> Result<Vec<Vec<String>>, TokenFileError> {
    let bytes = std::fs::read(path).map_err(|source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| TokenFileError::Utf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if json {
        parse_tokens_json(&text)
    } else {
        parse_tokens_text(&text)
    };
    parsed.map_err(|message| TokenFileError::Format {
        path: path.to_owned(),
        message,
    })
}

/// Parses the line format (see the module documentation).
pub fn parse_tokens_text(text: &str) -> Result<Vec<Vec<String>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut samples: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !current.is_empty() {
                samples.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push(unescape(line));
    }
    if !current.is_empty() {
        samples.push(current);
    }
    if samples.is_empty() {
        return Err(
            "it holds no tokens (one token per line, samples separated by an empty \
                    line)"
                .into(),
        );
    }
    Ok(samples)
}

/// Resolves the five escapes of the line format.
fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.peek() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('s') => ' ',
            Some('\\') => '\\',
            _ => {
                out.push('\\');
                continue;
            }
        };
        chars.next();
        out.push(escaped);
    }
    out
}

/// Parses the JSON format: a list of lists of strings, or one list of strings.
pub fn parse_tokens_json(text: &str) -> Result<Vec<Vec<String>>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?;
    let shape_error = || {
        "it must be a JSON list of samples, each a list of token strings \
         ([[\"a\", \"b\"], [\"c\"]]), or one list of strings for one sample"
            .to_string()
    };
    let serde_json::Value::Array(items) = value else {
        return Err(shape_error());
    };
    if items.is_empty() {
        return Err("it holds no samples".into());
    }
    let strings = |items: &[serde_json::Value]| -> Option<Vec<String>> {
        items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let samples = if items.iter().all(serde_json::Value::is_string) {
        vec![strings(&items).ok_or_else(shape_error)?]
    } else {
        items
            .iter()
            .map(|v| match v {
                serde_json::Value::Array(list) => strings(list).ok_or_else(shape_error),
                _ => Err(shape_error()),
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(k) = samples.iter().position(Vec::is_empty) {
        return Err(format!("sample {k} has no tokens"));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tokens_and_empty_lines_separate_samples() {
        let parsed = parse_tokens_text("\n[CLS]\nhi\n \n\\n\n\r\n\n\nyo\\\\\n\\x\n\\s\n").unwrap();
        assert_eq!(
            parsed,
            vec![vec!["[CLS]", "hi", " ", "\n"], vec!["yo\\", "\\x", " "]]
        );
    }

    #[test]
    fn crlf_and_bom_are_tolerated() {
        let parsed = parse_tokens_text("\u{feff}a\r\nb\r\n\r\nc\r\n").unwrap();
        assert_eq!(parsed, vec![vec!["a", "b"], vec!["c"]]);
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(parse_tokens_text("\n\n").unwrap_err().contains("no tokens"));
    }

    #[test]
    fn json_takes_lists_of_lists_or_one_list() {
        assert_eq!(
            parse_tokens_json(r#"[["a", ""], ["\n"]]"#).unwrap(),
            vec![vec!["a", ""], vec!["\n"]]
        );
        assert_eq!(
            parse_tokens_json(r#"["a", " "]"#).unwrap(),
            vec![vec!["a", " "]]
        );
        assert!(parse_tokens_json(r#"[["a"], [1]]"#).is_err());
        assert!(parse_tokens_json(r#"[["a"], []]"#)
            .unwrap_err()
            .contains("sample 1"));
        assert!(parse_tokens_json("{").unwrap_err().contains("JSON"));
    }
}
