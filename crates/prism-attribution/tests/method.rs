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
            prism_store::npy::read_float(&fixtures().join(format!("{name}.input.npy"))).unwrap();
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
        BaselineSource, Bound, CompositeSource, Fill, MethodSpec, SeedMode, ATTRIBUTORS, COMPOSITES,
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

    fn baseline_source() -> impl Strategy<Value = Option<BaselineSource>> {
        prop_oneof![
            Just(None),
            finite().prop_map(|sigma| Some(BaselineSource::Blur { sigma })),
            (0usize..100).prop_map(|count| Some(BaselineSource::Uniform { count })),
            ("[a-zA-Z0-9 /#=_.-]{0,30}", "[0-9a-f]{64}").prop_map(|(p, h)| {
                Some(BaselineSource::File {
                    path: format!("{p}.npy").into(),
                    blake3: h,
                })
            }),
        ]
    }

    fn fill() -> impl Strategy<Value = Option<Fill>> {
        prop_oneof![
            Just(None),
            finite()
                .prop_filter("not zero", |v| *v != 0.0)
                .prop_map(|v| Some(Fill::Value(v))),
            finite().prop_map(|sigma| Some(Fill::Blur { sigma })),
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
            layer in prop::option::of("/[a-z_.0-9/]{1,20}"),
            absolute_noise in any::<bool>(),
            baseline_source in baseline_source(),
            occlusion_fill in fill(),
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
                layer,
                absolute_noise,
                baseline_source,
                occlusion_fill,
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
                attributor: "integrated-gradients".into(),
                baseline_source: Some(BaselineSource::File {
                    path: "baselines/blurred images.npy".into(),
                    blake3: "ab".repeat(32),
                }),
                ..MethodSpec::default()
            },
            MethodSpec {
                attributor: "occlusion".into(),
                occlusion_fill: Some(Fill::Blur { sigma: 2.5 }),
                ..MethodSpec::default()
            },
            MethodSpec {
                composite: CompositeSource::File {
                    path: "my composites/lrp.toml".into(),
                    blake3: "0f".repeat(32),
                },
                absolute_noise: true,
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

mod composite_files {
    use prism_attribution::{
        AttributionError, Bound, Composite, CompositeParams, Matcher, Rule, Stabilizer,
    };

    use super::fixtures;

    const EXTENDS_PLUS: &str = r#"
name = "plus-with-gamma-head"
extends = "epsilon-plus"

[[rule]]
match = { op = "Gemm" }
rule = "gamma"
gamma = 0.5
"#;

    #[test]
    fn extends_puts_the_files_entries_before_the_builtins() {
        let c = Composite::from_toml(EXTENDS_PLUS).unwrap();
        let base = Composite::builtin("epsilon-plus", &CompositeParams::default()).unwrap();
        assert_eq!(c.name, "plus-with-gamma-head");
        assert_eq!(c.entries.len(), base.entries.len() + 1);
        assert!(
            matches!(&c.entries[0], (Matcher::OpType(op), Rule::Gamma { gamma, .. })
            if op == "Gemm" && *gamma == 0.5)
        );
        for ((_, a), (_, b)) in c.entries[1..].iter().zip(&base.entries) {
            assert_eq!(a, b);
        }
        // on a model: the Gemm nodes get gamma, every other node what epsilon-plus gives it
        let model = prism_model::Model::load(&fixtures().join("mlp.onnx")).unwrap();
        let x: prism_model::Tensor<f32> =
            prism_store::npy::read_float(&fixtures().join("mlp.input.npy")).unwrap();
        let graph = model.specialize(&[x.shape().to_vec()]).unwrap();
        let (mine, theirs) = (c.assign(&graph, true), base.assign(&graph, true));
        let mut overridden = 0;
        for ((node, a), b) in graph.nodes.iter().zip(&mine).zip(&theirs) {
            if node.op.type_name() == "Gemm" {
                overridden += 1;
                assert!(matches!(a, Some(Rule::Gamma { .. })), "{}", node.name);
            } else {
                assert_eq!(a, b, "{}", node.name);
            }
        }
        assert!(overridden > 0, "mlp has Gemm nodes");
    }

    #[test]
    fn an_extended_builtin_gets_the_methods_parameters() {
        let text = "extends = \"epsilon-gamma-box\"\n";
        let e = Composite::from_toml(text).unwrap_err();
        assert!(e.to_string().contains("--low"), "{e}");
        let p = CompositeParams {
            gamma: 0.75,
            low: Some(Bound::Scalar(-1.0)),
            high: Some(Bound::PerChannel(vec![1.0, 2.0])),
            ..CompositeParams::default()
        };
        let c = Composite::from_toml_with(text, &p).unwrap();
        assert_eq!(c.name, "custom");
        assert_eq!(
            c.entries.iter().map(|(_, r)| r).collect::<Vec<_>>(),
            Composite::builtin("epsilon-gamma-box", &p)
                .unwrap()
                .entries
                .iter()
                .map(|(_, r)| r)
                .collect::<Vec<_>>()
        );
        let e = Composite::from_toml("extends = \"epsilon-magic\"\n").unwrap_err();
        assert!(
            matches!(e, AttributionError::UnknownComposite { .. }),
            "{e}"
        );
    }

    #[test]
    fn rules_deserialise_with_zennits_defaults() {
        let r: Rule = toml::from_str("rule = \"gamma\"\n").unwrap();
        assert_eq!(
            r,
            Rule::Gamma {
                gamma: 0.25,
                stabilizer: Stabilizer::eps(1e-6),
                zero_bias: false,
            }
        );
        let r: Rule =
            toml::from_str("rule = \"zbox\"\nlow = [-1.0, -2.0]\nhigh = 3.0\nzero_bias = true\n")
                .unwrap();
        assert_eq!(
            r,
            Rule::ZBox {
                low: Bound::PerChannel(vec![-1.0, -2.0]),
                high: Bound::Scalar(3.0),
                stabilizer: Stabilizer::eps(1e-6),
                zero_bias: true,
            }
        );
        for bad in [
            "rule = \"magic\"\n",
            "rule = \"zbox\"\nhigh = 1.0\n",
            "rule = \"alpha-beta\"\nalpha = 3.0\n",
            "rule = \"pass\"\ncolour = 1\n",
        ] {
            assert!(toml::from_str::<Rule>(bad).is_err(), "{bad}");
        }
    }
}
