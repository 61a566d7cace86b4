//! Timing harness for `bench/attribution_bench.py` (which runs Zennit side by side).
//!
//! ```text
//! cargo run --release -p prism-attribution --example bench_lrp -- MODEL.onnx COMPOSITE BATCH [REPS] [TOKENS]
//! ```
//! Prints one JSON line: forward and attribution times (median of REPS, default 3, after a warm-up).
//! Image models get N × 3 × 224 × 224 noise; token models (integer inputs) get TOKENS (default
//! 128) random ids below 1000 and an all-ones attention mask, explained at the embedding lookup
//! for the predicted class with the logit as seed (LXT's convention). ε takes the composite's
//! default (0 for attn-lrp and cp-lrp). Threads: `RAYON_NUM_THREADS`.

use std::time::Instant;

use prism_attribution::{
    default_epsilon, AttributeAt, Attributor, Bound, Composite, CompositeParams, Explainer,
    SeedMode, Target,
};
use prism_model::{Model, Tensor};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn median(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1)).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: bench_lrp MODEL.onnx COMPOSITE BATCH");
        std::process::exit(2);
    }
    let model = Model::load(args[0].as_ref())?;
    let batch: usize = args[2].parse()?;
    let reps: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let params = CompositeParams {
        low: Some(Bound::Scalar(-3.0)),
        high: Some(Bound::Scalar(3.0)),
        epsilon: default_epsilon(Some(&args[1]), None),
        ..Default::default()
    };
    let explainer = Explainer::new(&model).with_composite(Composite::builtin(&args[1], &params)?);
    let g = model.graph();
    if (0..g.inputs.len()).any(|i| g.input_type(i).is_integer()) {
        let tokens: usize = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(128);
        let inputs: Vec<Tensor<f32>> = (0..g.inputs.len())
            .map(|i| {
                let name = &g.value(g.inputs[i]).name;
                let data: Vec<f32> = if name.contains("mask") {
                    vec![1.0; batch * tokens]
                } else {
                    random(batch * tokens, 11 + i as u64)
                        .into_iter()
                        .map(|v| ((v + 2.0) * 250.0).floor())
                        .collect()
                };
                Tensor::new(vec![batch, tokens], data)
            })
            .collect::<Result<_, _>>()?;
        let fwd = median(reps, || {
            let t = Instant::now();
            std::hint::black_box(model.forward(inputs.clone()).expect("forward"));
            t.elapsed().as_secs_f64() * 1e3
        });
        let lrp = median(reps, || {
            let t = Instant::now();
            std::hint::black_box(
                explainer
                    .attribute_inputs(
                        inputs.clone(),
                        &AttributeAt::Auto,
                        &Target::Predicted,
                        SeedMode::Logit,
                        &Attributor::Gradient,
                    )
                    .expect("attribute"),
            );
            t.elapsed().as_secs_f64() * 1e3
        });
        println!(r#"{{"side":"prism","forward_ms":{fwd:.1},"lrp_ms":{lrp:.1}}}"#);
        return Ok(());
    }
    let x = Tensor::new(vec![batch, 3, 224, 224], random(batch * 3 * 224 * 224, 7))?;
    let fwd = median(reps, || {
        let t = Instant::now();
        std::hint::black_box(explainer.forward(&x).expect("forward"));
        t.elapsed().as_secs_f64() * 1e3
    });
    let lrp = median(reps, || {
        let t = Instant::now();
        std::hint::black_box(
            explainer
                .attribute(
                    &x,
                    &Target::Class(0),
                    if default_epsilon(Some(&args[1]), None) == 0.0 {
                        SeedMode::Logit
                    } else {
                        SeedMode::OneHot
                    },
                    &Attributor::Gradient,
                )
                .expect("attribute"),
        );
        t.elapsed().as_secs_f64() * 1e3
    });
    println!(r#"{{"side":"prism","forward_ms":{fwd:.1},"lrp_ms":{lrp:.1}}}"#);
    Ok(())
}
