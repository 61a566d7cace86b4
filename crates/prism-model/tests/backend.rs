//! Properties of the CPU backend seam.

use prism_model::backend::{Backend, Cpu, Map, Sign, Stabilize, Zip};
use prism_model::{ModelError, Tensor};

fn t(shape: &[usize], data: &[f64]) -> Tensor<f64> {
    Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
}

#[test]
fn shape_mismatch_is_a_typed_error_naming_the_op_and_both_shapes() {
    let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = t(&[4], &[1.0, 2.0, 3.0, 4.0]);
    match Cpu.zip(Zip::Add, &a, &b) {
        Err(ModelError::Shape { op, left, right }) => {
            assert_eq!(op, "zip");
            assert_eq!(left, vec![2, 2]);
            assert_eq!(right, vec![4]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let c = t(&[3], &[1.0, 2.0, 3.0]);
    let e = Cpu.broadcast(Zip::Mul, &a, &c).unwrap_err().to_string();
    assert!(
        e.contains("broadcast") && e.contains("[2, 2]") && e.contains("[3]"),
        "{e}"
    );
}

#[test]
fn stabilized_ratio_follows_zennit_sign_convention() {
    let r = t(&[4], &[1.0, 1.0, 1.0, 1.0]);
    let z = t(&[4], &[0.0, -0.5, 2.0, 1e-9]);
    let got = Cpu
        .zip(
            Zip::StabilizedRatio {
                epsilon: 0.5,
                clip: false,
            },
            &r,
            &z,
        )
        .unwrap();
    // sign(0) = +1: 1 / (0 + 0.5)
    assert_eq!(
        got.data(),
        &[2.0, 1.0 / -1.0, 1.0 / 2.5, 1.0 / (1e-9 + 0.5)]
    );
    let clipped = Cpu
        .zip(
            Zip::StabilizedRatio {
                epsilon: 0.5,
                clip: true,
            },
            &r,
            &z,
        )
        .unwrap();
    assert_eq!(clipped.data(), &[2.0, -2.0, 0.5, 2.0]);
    // The norm-scaled stabiliser scales ε by the per-sample root mean square.
    let z = t(&[2, 2], &[3.0, 4.0, 0.0, 0.0]);
    let s = Cpu.stabilize(
        &z,
        &Stabilize {
            epsilon: 0.1,
            clip: false,
            norm_scale: true,
        },
    );
    let rms = (12.5f64).sqrt();
    assert_eq!(s.data(), &[3.0 + 0.1 * rms, 4.0 + 0.1 * rms, 0.0, 0.0]);
}

#[test]
fn maps_and_routes_are_the_documented_formulas() {
    let x = t(&[4], &[-2.0, -0.0, 0.5, 3.0]);
    let b = &Cpu;
    assert_eq!(b.map(Map::Positive, &x).data(), &[0.0, 0.0, 0.5, 3.0]);
    assert_eq!(b.map(Map::Negative, &x).data(), &[-2.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        b.map(Map::GammaUp(0.5), &x).data(),
        &[-2.0, -0.0, 0.75, 4.5]
    );
    assert_eq!(
        b.map(Map::GammaDown(0.5), &x).data(),
        &[-3.0, 0.0, 0.5, 3.0]
    );
    let y = t(&[4], &[1.0, -1.0, 0.0, 2.0]);
    assert_eq!(
        b.zip(Zip::RouteBySign(Sign::Positive), &x, &y)
            .unwrap()
            .data(),
        &[-2.0, 0.0, 0.0, 3.0]
    );
    assert_eq!(
        b.zip(Zip::RouteBySign(Sign::Negative), &x, &y)
            .unwrap()
            .data(),
        &[0.0, -0.0, 0.0, 0.0]
    );
    assert_eq!(
        b.zip(
            Zip::WeightedDifference {
                alpha: 2.0,
                beta: 1.0
            },
            &x,
            &y
        )
        .unwrap()
        .data(),
        &[-5.0, 1.0, 1.0, 4.0]
    );
}

#[test]
fn reduce_to_shape_sums_the_broadcast_axes() {
    let g = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        Cpu.reduce_to_shape(&g, &[3]).unwrap().data(),
        &[5.0, 7.0, 9.0]
    );
    assert_eq!(
        Cpu.reduce_to_shape(&g, &[2, 1]).unwrap().data(),
        &[6.0, 15.0]
    );
    assert!(Cpu.reduce_to_shape(&g, &[4]).is_err());
}
