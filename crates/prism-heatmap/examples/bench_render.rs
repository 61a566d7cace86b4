//! Renders every sample of a relevance .npy to PNG files and prints the throughput.
//! Used by bench/heatmap/run.sh; the .npy is read before the clock starts.
//!
//! ```text
//! cargo run --release -p prism-heatmap --example bench_render -- RELEVANCE.npy OUT_DIR [CMAP] [--symmetric]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use prism_heatmap::{color_map, Batch, HeatmapOptions, Normalization, Renderer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: bench_render RELEVANCE.npy OUT_DIR [CMAP] [--symmetric]".into());
    };
    let cmap = args
        .get(2)
        .filter(|a| !a.starts_with("--"))
        .map_or("bwr", |s| s);
    let symmetric = args.iter().any(|a| a == "--symmetric");
    let bytes = std::fs::read(input)?;
    let npy = npyz::NpyFile::new(&bytes[..])?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = npy.into_vec()?;
    let batch = Batch::new(&data, &shape)?;
    std::fs::create_dir_all(out)?;
    let out = PathBuf::from(out);

    let start = Instant::now();
    let renderer = Renderer::new(&HeatmapOptions {
        color_map: color_map(cmap)?,
        normalization: if symmetric {
            Normalization::Symmetric
        } else {
            Normalization::Unaligned
        },
        ..Default::default()
    })?;
    renderer.save_all(&batch, |n| out.join(format!("{n:04}.png")))?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "prism: {} heatmaps of {}x{} in {seconds:.3} s = {:.1} images/s ({} threads)",
        batch.len(),
        batch.height(),
        batch.width(),
        batch.len() as f64 / seconds,
        rayon::current_num_threads()
    );
    Ok(())
}
