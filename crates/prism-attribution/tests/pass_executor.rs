//! The fast paths of the linear rules (skipping the `x⁻` passes after a ReLU, Gamma fused into
//! one convolution and two input-gradients) agree with the generic pass executor, for every
//! linear rule, on random convolutions and dense layers, with and without bias, with negative
//! and non-negative inputs (f64, relative tolerance 1e-10).

use prism_attribution::linear::{self, Linear};
use prism_attribution::{Bound, Rule, Stabilizer};
use prism_model::backend::{Backend, Cpu};
use prism_model::op::{AutoPad, Op, Window};
use prism_model::{Node, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, shape: &[usize], nonnegative: bool) -> Tensor<f64> {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let v: f64 = rng.random_range(-1.0..1.0);
            // After a ReLU: a quarter of the values exactly zero.
            if nonnegative {
                v.max(-0.25) + 0.25
            } else {
                v
            }
        })
        .map(|v| if nonnegative && v < 0.25 { 0.0 } else { v })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn window(k: usize, stride: usize, pad: usize) -> Window {
    Window {
        kernel: vec![k, k],
        strides: vec![stride, stride],
        dilations: vec![1, 1],
        pads: vec![pad; 4],
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
    }
}

fn window3(k: usize, stride: usize, pad: usize) -> Window {
    Window {
        kernel: vec![k; 3],
        strides: vec![stride; 3],
        dilations: vec![1; 3],
        pads: vec![pad; 6],
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
    }
}

/// A linear layer to test: the node, its input shape, weight shape and bias shape.
struct Layer {
    op: Op,
    x: Vec<usize>,
    w: Vec<usize>,
    b: Vec<usize>,
}

fn layers() -> Vec<Layer> {
    vec![
        Layer {
            op: Op::Conv {
                window: window(3, 1, 1),
                group: 1,
            },
            x: vec![2, 3, 6, 5],
            w: vec![4, 3, 3, 3],
            b: vec![4],
        },
        Layer {
            op: Op::Conv {
                window: window(2, 2, 0),
                group: 2,
            },
            x: vec![2, 4, 6, 6],
            w: vec![6, 2, 2, 2],
            b: vec![6],
        },
        Layer {
            op: Op::ConvTranspose {
                window: window(2, 2, 0),
                group: 1,
                output_padding: vec![],
                output_shape: vec![],
            },
            x: vec![2, 3, 3, 3],
            w: vec![3, 2, 2, 2],
            b: vec![2],
        },
        // 3 spatial axes (medical and video volumes)
        Layer {
            op: Op::Conv {
                window: window3(3, 1, 1),
                group: 1,
            },
            x: vec![2, 3, 4, 5, 4],
            w: vec![4, 3, 3, 3, 3],
            b: vec![4],
        },
        Layer {
            op: Op::ConvTranspose {
                window: window3(2, 2, 0),
                group: 1,
                output_padding: vec![],
                output_shape: vec![],
            },
            x: vec![2, 3, 2, 3, 2],
            w: vec![3, 2, 2, 2, 2],
            b: vec![2],
        },
        Layer {
            op: Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            },
            x: vec![3, 7],
            w: vec![5, 7],
            b: vec![5],
        },
        Layer {
            op: Op::Gemm {
                alpha: 0.5,
                beta: 2.0,
                trans_a: false,
                trans_b: false,
            },
            x: vec![3, 7],
            w: vec![7, 5],
            b: vec![1, 5],
        },
        Layer {
            op: Op::MatMul,
            x: vec![2, 3, 7],
            w: vec![7, 4],
            b: vec![],
        },
    ]
}

fn rules() -> Vec<Rule> {
    let st = Stabilizer::eps(1e-2);
    let norm = Stabilizer {
        epsilon: 1e-2,
        clip: false,
        norm_scale: true,
    };
    let clip = Stabilizer {
        epsilon: 1e-2,
        clip: true,
        norm_scale: false,
    };
    let mut rules = Vec::new();
    for zero_bias in [false, true] {
        rules.extend([
            Rule::Epsilon {
                epsilon: st,
                zero_bias,
            },
            Rule::ZPlus {
                stabilizer: st,
                zero_bias,
            },
            Rule::AlphaBeta {
                alpha: 2.0,
                beta: 1.0,
                stabilizer: st,
                zero_bias,
            },
            Rule::AlphaBeta {
                alpha: 1.0,
                beta: 0.0,
                stabilizer: clip,
                zero_bias,
            },
            Rule::Gamma {
                gamma: 0.25,
                stabilizer: st,
                zero_bias,
            },
            Rule::Gamma {
                gamma: 0.25,
                stabilizer: clip,
                zero_bias,
            },
            // norm-scaled: Gamma's unfused fast path
            Rule::Gamma {
                gamma: 0.5,
                stabilizer: norm,
                zero_bias,
            },
            Rule::ZBox {
                low: Bound::Scalar(-1.0),
                high: Bound::Scalar(1.0),
                stabilizer: st,
                zero_bias,
            },
            Rule::WSquare {
                stabilizer: st,
                zero_bias,
            },
        ]);
    }
    rules.push(Rule::Flat { stabilizer: st });
    rules
}

fn assert_close(name: &str, fast: &Tensor<f64>, generic: &Tensor<f64>) {
    assert_eq!(fast.shape(), generic.shape(), "{name}: shapes");
    let scale = generic.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in fast.data().iter().zip(generic.data()).enumerate() {
        let tol = 1e-10 * a.abs().max(b.abs()) + 1e-12 * scale;
        assert!(
            (a - b).abs() <= tol,
            "{name}: element {i}: fast path {a} vs generic {b}"
        );
    }
}

#[test]
fn fast_paths_agree_with_the_generic_pass_executor() {
    let b = &Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for layer in layers() {
        for with_bias in [true, false] {
            if with_bias && layer.b.is_empty() {
                continue;
            }
            for nonnegative in [false, true] {
                let x = random(&mut rng, &layer.x, nonnegative);
                let w = random(&mut rng, &layer.w, false);
                let bias = random(&mut rng, &layer.b, false);
                let mut ins = vec![&x, &w];
                if with_bias {
                    ins.push(&bias);
                }
                let node = Node {
                    name: "layer".into(),
                    op: layer.op.clone(),
                    inputs: vec![],
                    outputs: vec![],
                };
                let lin = Linear::from_node(b, &node, &ins)
                    .unwrap()
                    .expect("a linear node");
                let y = lin
                    .forward(b, &x, &lin.weight, lin.bias.as_deref())
                    .unwrap();
                let r = random(&mut rng, b.shape(&y), false);
                for rule in rules() {
                    let name = format!(
                        "{:?} bias={with_bias} nonnegative={nonnegative} {rule:?}",
                        layer.op
                    );
                    let fast = linear::apply(b, &rule, &lin, &x, &y, &r).unwrap();
                    let generic = linear::apply_generic(b, &rule, &lin, &x, &y, &r).unwrap();
                    assert_close(&name, &fast, &generic);
                    if nonnegative {
                        if let Some(fast) =
                            linear::apply_nonnegative(b, &rule, &lin, &x, &y, &r).unwrap()
                        {
                            assert_close(&name, &fast, &generic);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    // Every layer × bias setting exercised ZPlus, both AlphaBetas and the three Gammas.
    assert!(
        checked >= 11 * 6 * 2,
        "only {checked} fast paths were checked"
    );
}

#[test]
fn generic_executor_matches_the_rule_formulas_on_a_dense_layer() {
    // z = W x + b for one sample and a 2 × 2 weight, by hand.
    let b = &Cpu;
    let x = Tensor::new(vec![1, 2], vec![1.0, -2.0]).unwrap();
    let w = Tensor::new(vec![2, 2], vec![1.0, -1.0, 2.0, 0.5]).unwrap(); // n × k (transB)
    let bias = Tensor::new(vec![2], vec![0.5, -0.25]).unwrap();
    let node = Node {
        name: "fc".into(),
        op: Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        },
        inputs: vec![],
        outputs: vec![],
    };
    let ins = [&x, &w, &bias];
    let lin = Linear::from_node(b, &node, &ins).unwrap().unwrap();
    let y = lin.forward(b, &x, &w, Some(&bias)).unwrap();
    assert_eq!(y.data(), &[3.5, 0.75]);
    let r = Tensor::new(vec![1, 2], vec![1.0, 1.0]).unwrap();
    let eps = 1e-9;
    let rule = Rule::Epsilon {
        epsilon: Stabilizer::eps(eps),
        zero_bias: false,
    };
    let got = linear::apply_generic(b, &rule, &lin, &x, &y, &r).unwrap();
    // R_i = x_i Σ_j W_ji R_j / z_j
    let s = [1.0 / (3.5 + eps), 1.0 / (0.75 + eps)];
    let want = [1.0 * (1.0 * s[0] + 2.0 * s[1]), -2.0 * (-s[0] + 0.5 * s[1])];
    for (g, w) in got.data().iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    // z⁺ rule: z = W⁺x⁺ + W⁻x⁻ + b⁺
    let rule = Rule::ZPlus {
        stabilizer: Stabilizer::eps(eps),
        zero_bias: false,
    };
    let got = linear::apply_generic(b, &rule, &lin, &x, &y, &r).unwrap();
    let z = [1.0 + (-1.0) * -2.0 + 0.5, 2.0]; // b⁺ = [0.5, 0]
    let s = [1.0 / (z[0] + eps), 1.0 / (z[1] + eps)];
    let want = [1.0 * (1.0 * s[0] + 2.0 * s[1]), -2.0 * (-s[0] + 0.0 * s[1])];
    for (g, w) in got.data().iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}
