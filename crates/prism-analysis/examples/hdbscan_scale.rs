//! Times HDBSCAN alone on N row-normalised points in d dimensions (clustered, like a spectral
//! embedding): `cargo run --release -p prism-analysis --example hdbscan_scale -- [N] [d]`.

use std::time::Instant;

use prism_analysis::config::KnnConfig;
use rand::{Rng, SeedableRng};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let d: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<f32> = (0..8 * d).map(|_| rng.random::<f32>() - 0.5).collect();
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % 8;
        let row: Vec<f32> = (0..d)
            .map(|j| centres[c * d + j] + 0.3 * (rng.random::<f32>() - 0.5))
            .collect();
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        x.extend(row.iter().map(|v| v / norm));
    }
    let t = Instant::now();
    let labels = prism_analysis::cluster::hdbscan(&x, n, d, 5, &KnnConfig::default(), 0);
    let clusters = prism_analysis::cluster::n_clusters(&labels);
    let noise = labels.iter().filter(|&&l| l < 0).count();
    println!(
        "hdbscan n={n} d={d}: {:.2} s, {clusters} clusters, {noise} noise",
        t.elapsed().as_secs_f64()
    );
}
