//! Region perturbation alone, for `bench/eval/bench.py`: one order over given relevance maps.
//!
//! ```text
//! bench_perturbation MODEL INPUT.npy RELEVANCE.npy LABELS.npy PATCH STEPS BATCH ORDER OUT.npy
//! ```
//!
//! Prints `{"seconds": …, "forwards": …}` (the perturbation loop only, the unperturbed forward
//! included) and writes the curves (samples × (STEPS + 1)) to OUT.npy as float64.

use std::path::Path;
use std::time::Instant;

use prism_eval::{forward_batched, target_scores, Baseline, Order, Quiet, RegionPerturbation};
use prism_model::{Model, Tensor};
use prism_store::npy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 9 {
        return Err(
            "usage: bench_perturbation MODEL INPUT RELEVANCE LABELS PATCH STEPS BATCH ORDER OUT"
                .into(),
        );
    }
    let model = Model::load(Path::new(&a[0]))?;
    let x: Tensor<f32> = npy::read_float(Path::new(&a[1]))?;
    let r: Tensor<f32> = npy::read_float(Path::new(&a[2]))?;
    let labels = npy::read_i64(Path::new(&a[3]))?;
    let targets: Vec<usize> = labels.data().iter().map(|&v| v as usize).collect();
    let rp = RegionPerturbation {
        patch: a[4].parse()?,
        steps: a[5].parse()?,
        baseline: Baseline::Zero,
        batch_size: a[6].parse()?,
        seed: 0,
    };
    let order = match a[7].as_str() {
        "morf" => Order::Morf,
        "lerf" => Order::Lerf,
        _ => Order::Random,
    };
    let t0 = Instant::now();
    let out = forward_batched(&model, &x, rp.batch_size)?;
    let original = target_scores(&out, &targets)?;
    let jobs = rp.jobs(&x, Some(&r), order)?;
    let curves = rp.curves(&model, &x, &targets, &original, &jobs, &Quiet)?;
    let secs = t0.elapsed().as_secs_f64();
    let n = curves.len();
    let len = curves.first().map_or(0, Vec::len);
    let flat: Vec<f64> = curves.into_iter().flatten().collect();
    npy::write_float(Path::new(&a[8]), &Tensor::new(vec![n, len], flat)?)?;
    println!(
        "{{\"seconds\": {secs}, \"forwards\": {}}}",
        n * len.saturating_sub(1) + n
    );
    Ok(())
}
