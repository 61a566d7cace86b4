//! Every operator fixture (tests/fixtures/ops, written by scripts/make_op_fixtures.py) against
//! onnxruntime, in f32 and f64, and every error fixture refused with its message.

#[path = "common/op_fixture.rs"]
mod op_fixture;

use op_fixture::{cases, scaled_error, OpCase};
use prism_model::{Float, Model, Tensor};

fn run<T: Float>(case: &OpCase) -> Result<Vec<Tensor<T>>, String> {
    let model = Model::load(&case.onnx).map_err(|e| e.to_string())?;
    // IsNaN/IsInf cases feed NaN and ±Inf on purpose.
    model.set_nonfinite(prism_model::NonFinite::Allow);
    let ys = model
        .forward(case.read_inputs::<T>())
        .map_err(|e| e.to_string())?;
    Ok(ys.into_iter().map(|y| (*y).clone()).collect())
}

#[test]
fn every_operator_fixture_matches_onnxruntime() {
    let all = cases();
    assert!(!all.is_empty(), "no operator fixtures found");
    let mut failures = Vec::new();
    for case in all.iter().filter(|c| c.error.is_none()) {
        let want = case.read_outputs::<f64>();
        let (y32, y64) = match (run::<f32>(case), run::<f64>(case)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{}: {e}", case.id));
                continue;
            }
        };
        if y32.len() != want.len() {
            failures.push(format!(
                "{}: {} outputs, onnxruntime has {}",
                case.id,
                y32.len(),
                want.len()
            ));
            continue;
        }
        for (i, ((a, b), w)) in y32.iter().zip(&y64).zip(&want).enumerate() {
            if a.shape() != w.shape() || b.shape() != w.shape() {
                failures.push(format!(
                    "{} output {i}: shape {:?}, onnxruntime {:?}",
                    case.id,
                    a.shape(),
                    w.shape()
                ));
                continue;
            }
            let e32 = scaled_error(&a.cast::<f64>(), w);
            let e64 = scaled_error(b, w);
            let e3264 = scaled_error(&a.cast::<f64>(), b);
            eprintln!(
                "{} output {i}: f32 {e32:.2e}, f64 {e64:.2e}, f32~f64 {e3264:.2e}",
                case.id
            );
            if e32 > 1e-4 || e64 > 1e-4 || e3264 > 1e-4 {
                failures.push(format!(
                    "{} output {i}: scaled max error f32 {e32:e}, f64 {e64:e}, f32 vs f64 {e3264:e}",
                    case.id
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_fixture_is_refused_with_its_message() {
    let mut failures = Vec::new();
    for case in cases() {
        let Some(want) = &case.error else { continue };
        match run::<f32>(&case) {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected an error with {want:?}",
                case.id
            )),
            Err(e) if !e.contains(want.as_str()) => failures.push(format!(
                "{}: error {e:?} does not mention {want:?}",
                case.id
            )),
            Err(e) => eprintln!("{}: {e}", case.id),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
