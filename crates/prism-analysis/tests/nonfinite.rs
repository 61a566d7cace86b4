//! Attributions holding NaN or ±Inf are refused with the samples named, never clustered into a
//! plausible-looking analysis.

use prism_analysis::config::AnalysisConfig;
use prism_analysis::{analyze_file, AnalysisError, NoProgress, RunOptions};
use prism_store::{AttributionLayout, AttributionWriter, BatchLabels, LabelLayout};

#[test]
fn nan_relevance_is_an_error_naming_class_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nan.h5");
    let n = 12;
    let layout = AttributionLayout {
        n_samples: n,
        sample_shape: vec![1, 4, 4],
        n_outputs: 2,
        labels: LabelLayout::Single,
        with_index: true,
        compression: None,
    };
    let mut w = AttributionWriter::create(&input, layout).unwrap();
    let mut data: Vec<f32> = (0..n * 16).map(|i| ((i * 31 % 17) as f32) + 1.0).collect();
    data[5 * 16 + 3] = f32::NAN; // row 5: class 1, sample number 105
    data[9 * 16] = f32::INFINITY; // row 9: class 1, sample number 109
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let index: Vec<u32> = (0..n as u32).map(|i| 100 + i).collect();
    w.write_batch(
        0,
        &data,
        &vec![0.0; n * 2],
        &BatchLabels::Single(&labels),
        Some(&index),
    )
    .unwrap();
    w.finish().unwrap();
    let output = dir.path().join("analysis.h5");
    // A tiny block size: the two bad samples lie in different blocks.
    let opts = RunOptions {
        block_bytes: 2 * 16 * 4,
        ..RunOptions::default()
    };
    let err = analyze_file(
        &input,
        &output,
        &AnalysisConfig::default(),
        &opts,
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::NonFinite {
                class: 1,
                count: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("2 samples of class 1 (sample numbers 105, 109)"),
        "{msg}"
    );
    assert!(!output.exists(), "no analysis file after the error");
    // Class 0 alone is finite and is analysed.
    let only0 = RunOptions {
        classes: Some(vec![0]),
        ..RunOptions::default()
    };
    analyze_file(
        &input,
        &output,
        &AnalysisConfig::default(),
        &only0,
        &NoProgress,
    )
    .unwrap();
}
