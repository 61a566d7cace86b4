//! ONNX models (prism-model `onnx`): protobuf decoding, graph building and validation, then
//! specialisation (constant folding, shape inference) to the declared input shapes.
use prism_model::Dim;
use std::path::Path;

/// Inputs larger than this (elements) are not specialised: the user chooses the input shape,
/// and a large one is a legitimate (slow) request, not a parser bug.
const MAX_INPUT_ELEMENTS: usize = 1 << 12;

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    // An empty folder as the base of external data: a model that names an external file gets
    // a "cannot read" error, never a file outside the scratch directory.
    let base = crate::scratch().join("no-external-data");
    let Ok(graph) = prism_model::onnx::from_bytes(data, Path::new("fuzz.onnx"), &base) else {
        return;
    };
    let _ = graph.parameter_count();
    let shapes: Vec<Vec<usize>> = (0..graph.inputs.len())
        .map(|i| {
            graph
                .input_dims(i)
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) => 2,
                })
                .collect()
        })
        .collect();
    let small = shapes.iter().all(|s| {
        s.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_some_and(|n| n <= MAX_INPUT_ELEMENTS)
    });
    if small {
        let _ = graph.specialize(&shapes);
    }
}
