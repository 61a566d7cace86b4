//! Composite files (prism-attribution `composite`): TOML parsing, rule and matcher checks.
use prism_attribution::composite::Composite;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Composite::from_toml(text) {
        let _ = c.validate();
    }
}
