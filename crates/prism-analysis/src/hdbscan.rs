//! HDBSCAN (Campello, Moulavi & Sander 2013) as the Python `hdbscan` package that CoRelAy calls
//! computes it with its defaults (`min_samples = min_cluster_size`, excess-of-mass selection,
//! no single cluster, ε = 0), on a minimum spanning tree built in about O(N·K) instead of the
//! O(N²) of a Prim's algorithm over the complete graph.
//!
//! * Core distance of a point: the distance to its `min_samples`-th nearest other point (the
//!   Python package's definition; scikit-learn's HDBSCAN and the `hdbscan` crate count the point
//!   itself, i.e. take the `(min_samples − 1)`-th).
//! * MST of the mutual-reachability graph d_mr(a, b) = max(core a, core b, ‖a − b‖) by Borůvka
//!   rounds. Each component's cheapest outgoing edge is first looked for among its points' K
//!   nearest neighbours; a point whose list holds no cheaper edge than
//!   max(core, distance to its K-th neighbour) — a lower bound on any edge to a point outside
//!   its list — cannot improve on what the lists give, so the search is exact. The remaining
//!   points are searched exactly over k-means cells (~√N, each with its radius), skipping cells
//!   whose lower bound max(core, ‖p − centre‖ − radius) is above the best edge so far and cells
//!   inside the point's own component. With exact kNN lists the MST is exact; with approximate
//!   lists (large N) the core distances and the lists' lower bounds are approximate.
//! * Edges are ordered by (weight, smaller end, larger end): a strict order, so Borůvka never
//!   closes a cycle and the result is deterministic.
//! * Single-linkage tree, condensed tree, stabilities, excess-of-mass selection and labels as in
//!   `hdbscan/_hdbscan_tree.pyx` (a parent whose stability equals its children's sum is kept).

use rayon::prelude::*;

use crate::cluster::canonical_labels;
use crate::knn::{nearest_rows, row_norms, sq_dist_f64, train_quantiser, KnnGraph};

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

fn better(a: Option<Edge>, b: Option<Edge>) -> Option<Edge> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.less(&x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
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

/// k-means cells over the points, with each cell's members (contiguous in `order`) and radius.
struct Cells {
    centres: Vec<f32>,
    starts: Vec<usize>,
    order: Vec<u32>,
    radius: Vec<f64>,
}

impl Cells {
    fn new(x: &[f32], n: usize, d: usize) -> Self {
        let nlist = ((n as f64).sqrt().round() as usize).clamp(1, n);
        // A fixed, evenly spread training sample (no randomness needed here).
        let s = (64 * nlist).min(n);
        let sample: Vec<usize> = (0..s).map(|i| i * n / s).collect();
        let centres = train_quantiser(x, d, &sample, nlist, 10);
        let cn = row_norms(&centres, d);
        let cell = nearest_rows(x, n, &centres, &cn, d, 1);
        let mut starts = vec![0usize; nlist + 1];
        for &c in &cell {
            starts[c as usize + 1] += 1;
        }
        for c in 0..nlist {
            starts[c + 1] += starts[c];
        }
        let mut fill = starts[..nlist].to_vec();
        let mut order = vec![0u32; n];
        for (i, &c) in cell.iter().enumerate() {
            order[fill[c as usize]] = i as u32;
            fill[c as usize] += 1;
        }
        let radius: Vec<f64> = (0..nlist)
            .into_par_iter()
            .map(|c| {
                let mu = &centres[c * d..(c + 1) * d];
                order[starts[c]..starts[c + 1]]
                    .iter()
                    .map(|&i| sq_dist_f64(mu, &x[i as usize * d..(i as usize + 1) * d]).sqrt())
                    .fold(0.0, f64::max)
            })
            .collect();
        Cells {
            centres,
            starts,
            order,
            radius,
        }
    }
}

/// The MST of the mutual-reachability graph (n − 1 edges), by certified Borůvka rounds.
fn mutual_reachability_mst(
    x: &[f32],
    n: usize,
    d: usize,
    core: &[f64],
    knn: &KnnGraph,
) -> Vec<Edge> {
    let k = knn.k;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let dmr = |p: usize, q: usize| core[p].max(core[q]).max(sq_dist_f64(row(p), row(q)).sqrt());
    // Lower bound on d_mr(p, q) for any q outside p's list.
    let list_bound: Vec<f64> = (0..n)
        .map(|p| {
            let kth = if k > 0 {
                knn.distances[p * k + k - 1] as f64
            } else {
                0.0
            };
            // f32-stored distances: shave a relative 1e-6 to stay a lower bound.
            core[p].max(kth * (1.0 - 1e-6))
        })
        .collect();
    let mut cells: Option<Cells> = None;
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut edges: Vec<Edge> = Vec::with_capacity(n.saturating_sub(1));
    while edges.len() + 1 < n {
        let comp: Vec<u32> = {
            let mut p = parent.clone();
            (0..n).map(|i| find(&mut p, i) as u32).collect()
        };
        // Best edge of each point from its list.
        let from_list: Vec<Option<Edge>> = (0..n)
            .into_par_iter()
            .map(|p| {
                let mut best: Option<Edge> = None;
                for &q in &knn.indices[p * k..(p + 1) * k] {
                    let q = q as usize;
                    if comp[q] != comp[p] {
                        best = better(best, Some(Edge::new(dmr(p, q), p, q)));
                    }
                }
                best
            })
            .collect();
        let mut best: Vec<Option<Edge>> = vec![None; n];
        for p in 0..n {
            let c = comp[p] as usize;
            best[c] = better(best[c], from_list[p]);
        }
        // Points whose bound does not exclude a cheaper edge than their component's best.
        let mut open: Vec<(f64, u32)> = (0..n)
            .filter(|&p| best[comp[p] as usize].is_none_or(|e| list_bound[p] <= e.w))
            .map(|p| (list_bound[p], p as u32))
            .collect();
        if !open.is_empty() {
            let cells = cells.get_or_insert_with(|| Cells::new(x, n, d));
            let nlist = cells.radius.len();
            // A cell lying inside one component is skipped by that component's points.
            let cell_comp: Vec<Option<u32>> = (0..nlist)
                .map(|c| {
                    let m = &cells.order[cells.starts[c]..cells.starts[c + 1]];
                    let first = m.first().map(|&i| comp[i as usize]);
                    first.filter(|&f| m.iter().all(|&i| comp[i as usize] == f))
                })
                .collect();
            // By component, then by bound, in fixed-size chunks (each chunk searched in
            // parallel against the bound reached before it), so the result is deterministic.
            open.sort_by(|a, b| {
                comp[a.1 as usize]
                    .cmp(&comp[b.1 as usize])
                    .then(a.0.total_cmp(&b.0))
                    .then(a.1.cmp(&b.1))
            });
            let groups: Vec<&[(f64, u32)]> = open
                .chunk_by(|a, b| comp[a.1 as usize] == comp[b.1 as usize])
                .collect();
            let found: Vec<(usize, Option<Edge>)> = groups
                .par_iter()
                .map(|g| {
                    let c = comp[g[0].1 as usize] as usize;
                    let mut cur = best[c];
                    for chunk in g.chunks(64) {
                        if cur.is_some_and(|e| chunk[0].0 > e.w) {
                            break;
                        }
                        let bound = cur;
                        let r = chunk
                            .par_iter()
                            .filter(|&&(lb, _)| bound.is_none_or(|e| lb <= e.w))
                            .map(|&(_, p)| search(x, d, core, &comp, cells, &cell_comp, p, bound))
                            .reduce(|| None, better);
                        cur = better(cur, r);
                    }
                    (c, cur)
                })
                .collect();
            for (c, e) in found {
                best[c] = better(best[c], e);
            }
        }
        let mut chosen: Vec<Edge> = best.into_iter().flatten().collect();
        chosen.sort_by(|a, b| a.w.total_cmp(&b.w).then(a.a.cmp(&b.a)).then(a.b.cmp(&b.b)));
        chosen.dedup();
        let before = edges.len();
        for e in chosen {
            let (ra, rb) = (
                find(&mut parent, e.a as usize),
                find(&mut parent, e.b as usize),
            );
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb) as u32;
                edges.push(e);
            }
        }
        if edges.len() == before {
            break; // cannot happen with finite data; guards against an endless loop
        }
    }
    edges
}

/// The cheapest edge from `p` to another component that beats `bound`, over the cells.
#[allow(clippy::too_many_arguments)]
fn search(
    x: &[f32],
    d: usize,
    core: &[f64],
    comp: &[u32],
    cells: &Cells,
    cell_comp: &[Option<u32>],
    p: u32,
    bound: Option<Edge>,
) -> Option<Edge> {
    let p = p as usize;
    let xp = &x[p * d..(p + 1) * d];
    let nlist = cells.radius.len();
    let mut order: Vec<(f64, usize)> = (0..nlist)
        .filter(|&c| cell_comp[c] != Some(comp[p]))
        .map(|c| {
            let dc = sq_dist_f64(xp, &cells.centres[c * d..(c + 1) * d]).sqrt();
            let lb = (dc - cells.radius[c]) * (1.0 - 1e-9) - 1e-12;
            (core[p].max(lb), c)
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut best = bound;
    let mut found: Option<Edge> = None;
    for (lb, c) in order {
        if best.is_some_and(|e| lb > e.w) {
            break;
        }
        for &q in &cells.order[cells.starts[c]..cells.starts[c + 1]] {
            let q = q as usize;
            if comp[q] == comp[p] {
                continue;
            }
            let w = core[p]
                .max(core[q])
                .max(sq_dist_f64(xp, &x[q * d..(q + 1) * d]).sqrt());
            let e = Edge::new(w, p, q);
            if best.is_none_or(|b| e.less(&b)) {
                best = Some(e);
                found = Some(e);
            }
        }
    }
    found
}

/// HDBSCAN labels (noise −1, clusters renumbered by first appearance) from the points and
/// their kNN lists (at least `min_cluster_size` neighbours, ascending; more make the MST
/// faster).
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
    let mst = mutual_reachability_mst(x, n, d, &core, knn);
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

    #[test]
    fn mst_is_exact_for_short_lists() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (n, d) = (400, 2);
        let x: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() * 10.0).collect();
        let total = |k: usize| -> f64 {
            let g = exact_knn(&x, n, d, k);
            let core: Vec<f64> = (0..n).map(|i| g.distances[i * k + 3] as f64).collect();
            assert!(k >= 4);
            mutual_reachability_mst(&x, n, d, &core, &g)
                .iter()
                .map(|e| e.w)
                .sum()
        };
        // Prim over all pairs for reference.
        let g = exact_knn(&x, n, d, 4);
        let core: Vec<f64> = (0..n).map(|i| g.distances[i * 4 + 3] as f64).collect();
        let w = |a: usize, b: usize| {
            core[a]
                .max(core[b])
                .max(sq_dist_f64(&x[a * d..a * d + d], &x[b * d..b * d + d]).sqrt())
        };
        let (mut inside, mut dist, mut sum) = (vec![false; n], vec![f64::INFINITY; n], 0.0);
        let mut cur = 0;
        for _ in 1..n {
            inside[cur] = true;
            let mut next = None;
            for j in 0..n {
                if !inside[j] {
                    dist[j] = dist[j].min(w(cur, j));
                    if next.is_none_or(|b: usize| dist[j] < dist[b]) {
                        next = Some(j);
                    }
                }
            }
            let j = next.unwrap();
            sum += dist[j];
            cur = j;
        }
        let mine = total(4);
        assert!((mine - sum).abs() < 1e-9 * sum, "{mine} vs {sum}");
    }
}
