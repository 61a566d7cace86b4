//! The method as data: built-in composites from their TOML files assign exactly the rules the
//! hand-written composites assigned (a table recorded from the old code), `extends`, and the
//! method description's round trip.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prism_attribution::{canonize, Bound, Composite, CompositeParams, COMPOSITES};
use prism_model::{DType, Model, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

const MODELS: [&str; 11] = [
    "tiny_vgg",
    "tiny_vgg_bn",
    "tiny_resnet",
    "tiny_densenet",
    "tiny_mobilenetv2",
    "mlp",
    "conv1d",
    "ops_conv",
    "ops_pool",
    "ops_elementwise",
    "helper_matmul",
];

/// Parameter sets the table covers: Zennit's defaults (with a box), every parameter changed,
/// and per-channel bounds with zeroed biases.
fn parameter_sets() -> Vec<(&'static str, CompositeParams)> {
    vec![
        (
            "defaults",
            CompositeParams {
                low: Some(Bound::Scalar(-2.0)),
                high: Some(Bound::Scalar(2.0)),
                ..CompositeParams::default()
            },
        ),
        (
            "changed",
            CompositeParams {
                epsilon: 0.25,
                stabilizer: 1e-3,
                gamma: 0.5,
                alpha: 3.0,
                beta: 2.0,
                low: Some(Bound::Scalar(-1.5)),
                high: Some(Bound::Scalar(0.75)),
                beta_smooth: 4.0,
                zero_bias: false,
            },
        ),
        (
            "per-channel-zero-bias",
            CompositeParams {
                low: Some(Bound::PerChannel(vec![-1.0, -2.0, -3.0])),
                high: Some(Bound::PerChannel(vec![1.0, 2.0, 3.0])),
                zero_bias: true,
                ..CompositeParams::default()
            },
        ),
    ]
}

/// Every (model, canonized or not, parameters, composite) → each node's rule, in full.
fn rule_table() -> String {
    let mut out = String::new();
    for name in MODELS {
        let model = Model::load(&fixtures().join(format!("{name}.onnx"))).unwrap();
        let x: Tensor<f32> =
            prism_model::npy::read_float(&fixtures().join(format!("{name}.input.npy"))).unwrap();
        let spec = model.specialize(&[x.shape().to_vec()]).unwrap();
        let merged = canonize::merge_batchnorm(&spec, DType::F32).unwrap().0;
        for (canon, graph) in [(true, &merged), (false, &*spec)] {
            for (pname, p) in parameter_sets() {
                for comp in COMPOSITES {
                    let c = Composite::builtin(comp, &p).unwrap();
                    writeln!(
                        out,
                        "## {name} canonize={canon} {pname} {comp} ({})",
                        c.name
                    )
                    .unwrap();
                    for (node, rule) in graph.nodes.iter().zip(c.assign(graph, canon)) {
                        writeln!(out, "{}\t{rule:?}", node.name).unwrap();
                    }
                }
            }
        }
    }
    out
}

#[test]
fn builtin_composites_assign_the_recorded_rules() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/builtin_rules.txt");
    let table = rule_table();
    if std::env::var_os("PRISM_RECORD_RULES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &table).unwrap();
    }
    let recorded = std::fs::read_to_string(&path).unwrap();
    for (i, (now, then)) in table.lines().zip(recorded.lines()).enumerate() {
        assert_eq!(now, then, "line {}", i + 1);
    }
    assert_eq!(table.lines().count(), recorded.lines().count());
}

mod description {
    use prism_attribution::{
        Bound, CompositeSource, MethodSpec, SeedMode, ATTRIBUTORS, COMPOSITES,
    };
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            -10.0..10.0f64,
            Just(0.0),
            Just(1e-6),
        ]
    }

    fn bound() -> impl Strategy<Value = Option<Bound>> {
        prop_oneof![
            Just(None),
            finite().prop_map(|v| Some(Bound::Scalar(v))),
            prop::collection::vec(finite(), 2..5).prop_map(|v| Some(Bound::PerChannel(v))),
        ]
    }

    fn source() -> impl Strategy<Value = CompositeSource> {
        prop_oneof![
            Just(CompositeSource::None),
            prop::sample::select(COMPOSITES).prop_map(|n| CompositeSource::Builtin {
                name: n.to_string()
            }),
            ("[a-zA-Z0-9 /#=_.-]{0,30}", "[0-9a-f]{64}").prop_map(|(p, h)| {
                CompositeSource::File {
                    path: p.into(),
                    blake3: h,
                }
            }),
        ]
    }

    prop_compose! {
        fn spec()(
            composite in source(),
            attributor in prop::sample::select(ATTRIBUTORS),
            logit in any::<bool>(),
            flags in any::<(bool, bool, bool)>(),
            rules in (finite(), finite(), finite(), finite(), finite(), finite()),
            low in bound(),
            high in bound(),
            n_iter in prop::option::of(0usize..1000),
            noise_level in finite(),
            baseline in finite(),
            window in prop::collection::vec(0usize..64, 0..4),
            stride in prop::collection::vec(0usize..64, 0..4),
            seed in any::<u64>(),
        ) -> MethodSpec {
            MethodSpec {
                composite,
                attributor: attributor.to_string(),
                seed_mode: if logit { SeedMode::Logit } else { SeedMode::OneHot },
                canonize: flags.0,
                zero_bias: flags.1,
                epsilon: rules.0,
                stabilizer: rules.1,
                gamma: rules.2,
                alpha: rules.3,
                beta: rules.4,
                low,
                high,
                beta_smooth: rules.5,
                n_iter,
                noise_level,
                baseline,
                window,
                stride,
                invert_occlusion: flags.2,
                seed,
            }
        }
    }

    proptest! {
        #[test]
        fn description_reads_back_to_the_same_method(m in spec()) {
            let text = m.to_string();
            let back: MethodSpec = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.to_string(), text);
        }
    }

    /// JSON (serde) keeps every field; values whose decimal form is short, as real ones are
    /// (serde_json's default float parsing may differ from Rust's in the last bit otherwise).
    #[test]
    fn method_serialises_losslessly() {
        let specs = [
            MethodSpec::default(),
            MethodSpec {
                composite: CompositeSource::Builtin {
                    name: "epsilon-gamma-box".into(),
                },
                seed_mode: SeedMode::Logit,
                low: Some(Bound::PerChannel(vec![-2.118, -2.036, -1.804])),
                high: Some(Bound::Scalar(2.64)),
                n_iter: Some(50),
                window: vec![4, 4],
                seed: u64::MAX,
                ..MethodSpec::default()
            },
            MethodSpec {
                composite: CompositeSource::File {
                    path: "my composites/lrp.toml".into(),
                    blake3: "0f".repeat(32),
                },
                attributor: "smoothgrad".into(),
                canonize: false,
                zero_bias: true,
                epsilon: 0.25,
                ..MethodSpec::default()
            },
        ];
        for m in specs {
            let json = serde_json::to_string(&m).unwrap();
            let back: MethodSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m, "{json}");
        }
    }
}
