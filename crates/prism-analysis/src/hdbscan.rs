//! HDBSCAN (Campello, Moulavi & Sander 2013) as the Python `hdbscan` package that CoRelAy calls
//! computes it with its defaults (`min_samples = min_cluster_size`, excess-of-mass selection,
//! no single cluster, ε = 0).
//!
//! * Core distance of a point: the distance to its `min_samples`-th nearest other point (the
//!   Python package's definition; scikit-learn's HDBSCAN and the `hdbscan` crate count the point
//!   itself, i.e. take the `(min_samples − 1)`-th).
//! * MST of the mutual-reachability graph d_mr(a, b) = max(core a, core b, ‖a − b‖) by Prim's
//!   algorithm over all pairs: O(N²·d) distance work, O(N·d) memory, each pass over the points
//!   not yet in the tree split into fixed chunks across threads. It runs on the spectral
//!   embedding (d = `n_eigval`, 32 by default), where space-partitioning searches prune
//!   poorly: an earlier Borůvka search over k-means cells spent over 35 minutes at N = 100 000
//!   that this loop does in well under one.
//! * Edges are ordered by (weight, smaller end, larger end): a strict order, so Borůvka never
//!   closes a cycle and the result is deterministic.
//! * Single-linkage tree, condensed tree, stabilities, excess-of-mass selection and labels as in
//!   `hdbscan/_hdbscan_tree.pyx` (a parent whose stability equals its children's sum is kept).

use rayon::prelude::*;

use crate::cluster::canonical_labels;
use crate::knn::{sq_dist_f64, sq_dist_f64_body, KnnGraph};

/// An MST edge ordered by (weight, a, b) with a < b.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Edge {
    w: f64,
    a: u32,
    b: u32,
}

impl Edge {
    fn new(w: f64, p: usize, q: usize) -> Self {
        let (a, b) = if p < q { (p, q) } else { (q, p) };
        Edge {
            w,
            a: a as u32,
            b: b as u32,
        }
    }
    fn less(&self, o: &Edge) -> bool {
        self.w
            .total_cmp(&o.w)
            .then(self.a.cmp(&o.a))
            .then(self.b.cmp(&o.b))
            .is_lt()
    }
}

fn find(p: &mut [u32], mut a: usize) -> usize {
    while p[a] as usize != a {
        let up = p[p[a] as usize];
        p[a] = up;
        a = up as usize;
    }
    a
}

/// Points per parallel task in a Prim pass (fixed, so that nothing depends on the threads).
const PRIM_CHUNK: usize = 2048;

/// One chunk of points outside the tree, relaxed against the point `v` just added.
struct PrimChunk<'a> {
    xv: &'a [f32],
    cv: f64,
    v: u32,
    d: usize,
    ids: &'a [u32],
    rows: &'a [f32],
    cores: &'a [f64],
}

impl PrimChunk<'_> {
    /// Lowers each point's cheapest edge into the tree by its edge to `v`; returns the position
    /// and edge of the chunk's cheapest point.
    fn relax(&self, best: &mut [Edge]) -> Option<(usize, Edge)> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { self.relax_avx2(best) };
            }
        }
        self.relax_with(best, sq_dist_f64_body)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn relax_avx2(&self, best: &mut [Edge]) -> Option<(usize, Edge)> {
        // SAFETY: this function only runs where AVX2 was detected.
        self.relax_with(best, |a, b| unsafe { crate::knn::sq_dist_f64_avx2(a, b) })
    }

    #[inline(always)]
    fn relax_with(
        &self,
        best: &mut [Edge],
        sq_dist: impl Fn(&[f32], &[f32]) -> f64,
    ) -> Option<(usize, Edge)> {
        let d = self.d;
        let mut local: Option<(usize, Edge)> = None;
        for (r, b) in best.iter_mut().enumerate() {
            let m = self.cv.max(self.cores[r]);
            // The weight is at least `m`: only a tie could still win, on the indices.
            if m <= b.w {
                let s = sq_dist(self.xv, &self.rows[r * d..(r + 1) * d]);
                // sqrt(s) > b.w for sure: skip the square root and the edge.
                if s <= b.w * b.w * (1.0 + 1e-12) || b.w.is_infinite() {
                    let e = Edge::new(m.max(s.sqrt()), self.v as usize, self.ids[r] as usize);
                    if e.less(b) {
                        *b = e;
                    }
                }
            }
            if local.is_none_or(|(_, l)| b.less(&l)) {
                local = Some((r, *b));
            }
        }
        local
    }
}

/// The MST of the mutual-reachability graph (n − 1 edges) by Prim's algorithm. Edges are
/// compared by (weight, a, b), a strict order, so the tree is unique and every reduction order
/// gives the same result.
fn mutual_reachability_mst(x: &[f32], n: usize, d: usize, core: &[f64]) -> Vec<Edge> {
    if n < 2 {
        return Vec::new();
    }
    let none = Edge {
        w: f64::INFINITY,
        a: u32::MAX,
        b: u32::MAX,
    };
    // The points outside the tree, compacted (swap-remove): ids, rows, core distances and the
    // cheapest edge from each into the tree so far.
    let mut ids: Vec<u32> = (1..n as u32).collect();
    let mut rows: Vec<f32> = x[d..n * d].to_vec();
    let mut cores: Vec<f64> = core[1..n].to_vec();
    let mut best: Vec<Edge> = vec![none; n - 1];
    let mut edges = Vec::with_capacity(n - 1);
    let mut v = 0usize; // the point added last
    while !ids.is_empty() {
        let (xv, cv) = (&x[v * d..(v + 1) * d], core[v]);
        let cheapest = ids
            .par_chunks(PRIM_CHUNK)
            .zip(rows.par_chunks(PRIM_CHUNK * d))
            .zip(cores.par_chunks(PRIM_CHUNK))
            .zip(best.par_chunks_mut(PRIM_CHUNK))
            .enumerate()
            .map(|(chunk, (((ids, rows), cores), best))| {
                let part = PrimChunk {
                    xv,
                    cv,
                    v: v as u32,
                    d,
                    ids,
                    rows,
                    cores,
                };
                part.relax(best).map(|(r, e)| (chunk * PRIM_CHUNK + r, e))
            })
            .reduce(
                || None,
                |p, q| match (p, q) {
                    (Some(a), Some(b)) => Some(if b.1.less(&a.1) { b } else { a }),
                    (a, None) => a,
                    (None, b) => b,
                },
            );
        let Some((at, e)) = cheapest else { break };
        edges.push(e);
        v = ids[at] as usize;
        ids.swap_remove(at);
        cores.swap_remove(at);
        best.swap_remove(at);
        let last = ids.len();
        if at != last {
            rows.copy_within(last * d..(last + 1) * d, at * d);
        }
        rows.truncate(last * d);
    }
    edges
}

/// HDBSCAN labels (noise −1, clusters renumbered by first appearance) from the points and
/// their kNN lists (at least `min_cluster_size` neighbours, ascending), which give the core
/// distances.
pub fn hdbscan_with_knn(
    x: &[f32],
    n: usize,
    d: usize,
    knn: &KnnGraph,
    min_cluster_size: usize,
) -> Vec<i32> {
    let m = min_cluster_size;
    if n <= m || m < 2 || knn.k < m || x.iter().any(|v| !v.is_finite()) {
        return vec![-1; n];
    }
    let core: Vec<f64> = (0..n)
        .map(|i| knn.distances[i * knn.k + m - 1] as f64)
        .collect();
    // Exact core distances from the f32 lists' indices (recomputed in f64).
    let core: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let j = knn.indices[i * knn.k + m - 1] as usize;
            let v = sq_dist_f64(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).sqrt();
            if v.is_finite() {
                v
            } else {
                core[i]
            }
        })
        .collect();
    let mst = mutual_reachability_mst(x, n, d, &core);
    if mst.len() + 1 != n {
        return vec![-1; n];
    }
    labels_from_mst(mst, n, m)
}

/// Single linkage → condensed tree → excess of mass → labels (`_hdbscan_tree.pyx`).
fn labels_from_mst(mut mst: Vec<Edge>, n: usize, m: usize) -> Vec<i32> {
    mst.sort_by(|a, b| a.w.total_cmp(&b.w).then(a.a.cmp(&b.a)).then(a.b.cmp(&b.b)));
    // Single-linkage tree: node n + i merges (left, right) at distance w.
    let mut uf: Vec<u32> = (0..2 * n as u32).collect();
    let mut size = vec![1usize; 2 * n];
    let mut slt: Vec<(usize, usize, f64, usize)> = Vec::with_capacity(n - 1);
    for (i, e) in mst.iter().enumerate() {
        let (a, b) = (find(&mut uf, e.a as usize), find(&mut uf, e.b as usize));
        let node = n + i;
        size[node] = size[a] + size[b];
        slt.push((a, b, e.w, size[node]));
        uf[a] = node as u32;
        uf[b] = node as u32;
    }
    let count = |node: usize| if node < n { 1 } else { slt[node - n].3 };
    let children = |node: usize| -> Vec<usize> {
        // Breadth-first order below `node`, `node` included.
        let mut out = vec![node];
        let mut i = 0;
        while i < out.len() {
            let v = out[i];
            if v >= n {
                out.push(slt[v - n].0);
                out.push(slt[v - n].1);
            }
            i += 1;
        }
        out
    };
    // Condensed tree: (parent, child, λ, child size).
    let root = 2 * n - 2;
    let mut relabel = vec![0usize; root + 1];
    relabel[root] = n;
    let mut next = n + 1;
    let mut ignore = vec![false; root + 1];
    let mut tree: Vec<(usize, usize, f64, usize)> = Vec::new();
    for node in children(root) {
        if ignore[node] || node < n {
            continue;
        }
        let (left, right, dist, _) = slt[node - n];
        let lambda = if dist > 0.0 {
            1.0 / dist
        } else {
            f64::INFINITY
        };
        let (lc, rc) = (count(left), count(right));
        let here = relabel[node];
        let fall_out =
            |sub: usize, tree: &mut Vec<(usize, usize, f64, usize)>, ignore: &mut [bool]| {
                for s in children(sub) {
                    if s < n {
                        tree.push((here, s, lambda, 1));
                    }
                    ignore[s] = true;
                }
            };
        if lc >= m && rc >= m {
            for (child, c) in [(left, lc), (right, rc)] {
                relabel[child] = next;
                next += 1;
                tree.push((here, relabel[child], lambda, c));
            }
        } else if lc < m && rc < m {
            fall_out(left, &mut tree, &mut ignore);
            fall_out(right, &mut tree, &mut ignore);
        } else if lc < m {
            relabel[right] = here;
            fall_out(left, &mut tree, &mut ignore);
        } else {
            relabel[left] = here;
            fall_out(right, &mut tree, &mut ignore);
        }
    }
    // Stabilities: Σ over each cluster's children (λ − λ_birth(cluster)) · size.
    let n_clusters = next - n;
    let mut birth = vec![0f64; n_clusters];
    for &(_, child, lambda, _) in &tree {
        if child >= n {
            birth[child - n] = lambda;
        }
    }
    birth[0] = 0.0;
    let mut stability = vec![0f64; n_clusters];
    for &(parent, _, lambda, s) in &tree {
        stability[parent - n] += (lambda - birth[parent - n]) * s as f64;
    }
    // Excess of mass, leaves first (children have larger ids); the root is never selected.
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); n_clusters];
    let mut up: Vec<usize> = vec![0; n_clusters];
    for &(parent, child, _, _) in &tree {
        if child >= n {
            kids[parent - n].push(child - n);
            up[child - n] = parent - n;
        }
    }
    let mut selected = vec![false; n_clusters];
    for c in (1..n_clusters).rev() {
        let sub: f64 = kids[c].iter().map(|&k| stability[k]).sum();
        if sub > stability[c] {
            stability[c] = sub;
        } else {
            selected[c] = true;
            let mut stack = kids[c].clone();
            while let Some(s) = stack.pop() {
                selected[s] = false;
                stack.extend_from_slice(&kids[s]);
            }
        }
    }
    // Each cluster's selected ancestor (itself included); parents come before children.
    let mut owner: Vec<Option<usize>> = vec![None; n_clusters];
    for c in 1..n_clusters {
        owner[c] = if selected[c] { Some(c) } else { owner[up[c]] };
    }
    let mut labels = vec![-1i32; n];
    for &(parent, child, _, _) in &tree {
        if child < n {
            if let Some(o) = owner[parent - n] {
                labels[child] = o as i32;
            }
        }
    }
    canonical_labels(&labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::exact_knn;
    use rand::{Rng, SeedableRng};

    fn same_partition(a: &[i32], b: &[i32]) -> bool {
        let mut ab = std::collections::HashMap::new();
        let mut ba = std::collections::HashMap::new();
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                (x < 0) == (y < 0)
                    && *ab.entry(x).or_insert(y) == y
                    && *ba.entry(y).or_insert(x) == x
            })
    }

    /// Agrees with the `hdbscan` crate (exact Prim MST over all pairs) on blobs with noise; the
    /// crate counts the point itself among its `min_samples` neighbours, hence `m + 1`. Equal
    /// mutual-reachability weights may be broken differently (a point equally reachable from two
    /// clusters) and the crate keeps children on equal stability, so ≥ 97 % must agree.
    #[test]
    fn matches_the_hdbscan_crate_on_random_blobs() {
        for seed in 0..3u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (n, d) = (700, 3);
            let mut x = Vec::with_capacity(n * d);
            for i in 0..n {
                let c = i % 7;
                for j in 0..d {
                    let centre = if c < 6 && j == c % 3 {
                        3.0 * (c / 3 + 1) as f32
                    } else {
                        0.0
                    };
                    let spread = if c == 6 {
                        8.0
                    } else {
                        0.4 + 0.2 * (c % 2) as f32
                    };
                    x.push(centre + spread * (rng.random::<f32>() - 0.5));
                }
            }
            for m in [5usize, 12] {
                let rows: Vec<Vec<f64>> = x
                    .chunks(d)
                    .map(|r| r.iter().map(|&v| v as f64).collect())
                    .collect();
                let hp = ::hdbscan::HdbscanHyperParams::builder()
                    .min_cluster_size(m)
                    .min_samples(m + 1)
                    .build();
                let want = ::hdbscan::Hdbscan::new(&rows, hp).cluster().unwrap();
                let g = exact_knn(&x, n, d, 16);
                let got = hdbscan_with_knn(&x, n, d, &g, m);
                let mut conf = std::collections::BTreeMap::new();
                for (&g, &w) in got.iter().zip(&want) {
                    *conf.entry((g, w)).or_insert(0usize) += 1;
                }
                let mut best = std::collections::BTreeMap::new();
                for (&(g, w), &c) in &conf {
                    let e = best.entry(g).or_insert(0usize);
                    if (g < 0) == (w < 0) {
                        *e = (*e).max(c);
                    }
                }
                let share = best.values().sum::<usize>() as f64 / n as f64;
                assert!(share >= 0.97, "seed {seed}, m {m}: {share}");
                if share == 1.0 {
                    assert!(same_partition(&got, &want));
                }
            }
        }
    }

    /// Prim's tree equals Kruskal's over all pairs under the same strict edge order, edge for
    /// edge, including on data with many equal distances (a grid).
    #[test]
    fn mst_equals_kruskal_over_all_pairs() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (n, d, grid) in [(400usize, 2usize, false), (300, 3, true), (5000, 2, false)] {
            let x: Vec<f32> = (0..n * d)
                .map(|_| {
                    if grid {
                        rng.random_range(0..6) as f32
                    } else {
                        rng.random::<f32>() * 10.0
                    }
                })
                .collect();
            let g = exact_knn(&x, n, d, 4);
            let core: Vec<f64> = (0..n).map(|i| g.distances[i * 4 + 3] as f64).collect();
            let mut all = Vec::with_capacity(n * (n - 1) / 2);
            for a in 0..n {
                for b in a + 1..n {
                    let dist = sq_dist_f64(&x[a * d..a * d + d], &x[b * d..b * d + d]).sqrt();
                    all.push(Edge::new(core[a].max(core[b]).max(dist), a, b));
                }
            }
            all.sort_by(|p, q| p.w.total_cmp(&q.w).then(p.a.cmp(&q.a)).then(p.b.cmp(&q.b)));
            let mut uf: Vec<u32> = (0..n as u32).collect();
            let mut want = Vec::new();
            for e in all {
                let (ra, rb) = (find(&mut uf, e.a as usize), find(&mut uf, e.b as usize));
                if ra != rb {
                    uf[ra.max(rb)] = ra.min(rb) as u32;
                    want.push(e);
                }
            }
            let mut got = mutual_reachability_mst(&x, n, d, &core);
            got.sort_by(|p, q| p.w.total_cmp(&q.w).then(p.a.cmp(&q.a)).then(p.b.cmp(&q.b)));
            assert_eq!(got.len(), n - 1);
            assert_eq!(got, want, "n {n}, d {d}, grid {grid}");
        }
    }
}
