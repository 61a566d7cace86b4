//! Writes a synthetic attribution file with planted structure (for benchmarks and the ViRelAy
//! compatibility check):
//!
//! ```text
//! cargo run --release -p prism-analysis --example synthetic_attribution -- \
//!     OUT.h5 CLASSES PER_CLASS CHANNELS SIZE [SEED]
//! ```
//!
//! Each class has 3 prototypes (Gaussian bumps) and 10 % "artifact" samples whose relevance
//! sits on a corner watermark; rows are written in blocks, so large files need little memory.

use prism_store::{AttributionLayout, AttributionWriter, BatchLabels, LabelLayout};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err(
            "usage: synthetic_attribution OUT.h5 CLASSES PER_CLASS CHANNELS SIZE [SEED]".into(),
        );
    }
    let out = &args[0];
    let classes: usize = args[1].parse()?;
    let per_class: usize = args[2].parse()?;
    let channels: usize = args[3].parse()?;
    let size: usize = args[4].parse()?;
    let seed: u64 = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let n = classes * per_class;
    let layout = AttributionLayout {
        n_samples: n,
        sample_shape: vec![channels, size, size],
        n_outputs: classes.max(2),
        labels: LabelLayout::Single,
        with_index: false,
        compression: None,
    };
    let mut w = AttributionWriter::create(out, layout)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let s = size as f64;
    let block = (4_000_000 / (channels * size * size)).clamp(1, 4096);
    let mut row = 0;
    while row < n {
        let rows = block.min(n - row);
        let mut data = Vec::with_capacity(rows * channels * size * size);
        let mut labels = Vec::with_capacity(rows);
        let mut pred = Vec::with_capacity(rows * classes.max(2));
        for r in row..row + rows {
            let class = r % classes;
            let within = r / classes;
            let artifact = within % 10 == 9;
            // Prototype positions differ per class.
            let p = (within + class) % 3;
            let (py, px) = [(0.25, 0.25), (0.25, 0.7), (0.7, 0.45)][p];
            let strength = if artifact { 0.15 } else { 1.0 };
            let sigma2 = (s / 8.0).powi(2) * 2.0;
            for _c in 0..channels {
                for y in 0..size {
                    for x in 0..size {
                        let d2 = (y as f64 - py * s).powi(2) + (x as f64 - px * s).powi(2);
                        let mut v = strength * (-d2 / sigma2).exp();
                        if artifact && y as f64 >= 0.85 * s && x as f64 >= 0.85 * s {
                            v += 3.0;
                        }
                        let noise: f64 = StandardNormal.sample(&mut rng);
                        data.push((v + 0.05 * noise) as f32);
                    }
                }
            }
            labels.push(class as u32);
            for c in 0..classes.max(2) {
                pred.push(if c == class { 1.0 } else { 0.0 });
            }
        }
        w.write_batch(row, &data, &pred, &BatchLabels::Single(&labels), None)?;
        row += rows;
    }
    prism_store::provenance::write_generator(&mut w, "synthetic_attribution example")?;
    w.finish()?;
    eprintln!("wrote {out}: {n} samples of {channels}×{size}×{size}");
    Ok(())
}
