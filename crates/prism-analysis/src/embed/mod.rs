//! 2-D embeddings of the spectral embedding, one file per family: [`tsne`](mod@tsne)
//! (Barnes–Hut, the `bhtsne` crate, seeded initialisation) and [`umap`](mod@umap) (Prism's own
//! implementation of McInnes et al. 2018). Both are deterministic for a given seed. Each file
//! holds the algorithm and its [`EmbeddingFamily`](crate::family::EmbeddingFamily) entry; the
//! table that lists them is [`AnalysisConfig::embeddings`](crate::AnalysisConfig::embeddings).

pub mod tsne;
pub mod umap;

pub use tsne::tsne;
pub use umap::{fit_ab, umap};

/// For tiny inputs: the first two columns (zero-padded).
pub(crate) fn trivial_2d(x: &[f32], n: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * 2];
    for i in 0..n {
        for c in 0..d.min(2) {
            out[i * 2 + c] = x[i * d + c];
        }
    }
    out
}
