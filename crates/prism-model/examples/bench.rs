//! Timing harness used by `bench/model_bench.py` (which runs PyTorch side by side).
//!
//! ```text
//! cargo run --release -p prism-model --example bench -- conv
//! cargo run --release -p prism-model --example bench -- model target/torchvision/vgg16.onnx 8
//! cargo run --release -p prism-model --example bench -- model bert.onnx 8 \
//!     --input input_ids=ids.npy --input attention_mask=mask.npy
//! ```
//! Without `--input`, the model is fed one random `BATCH × 3 × 224 × 224` image batch; with
//! it, the given arrays (every graph input; BATCH is then read from them).
//! Prints one JSON object per measurement. Threads: `RAYON_NUM_THREADS`.

use std::time::Instant;

use prism_model::kernels::conv::{conv2d, conv2d_input_grad, ConvGeom, Depth};
use prism_model::{Model, Tensor};

/// 1 warm-up, then repeat until 2 s have passed (at least 3, at most 20 runs).
fn time(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t = Vec::new();
    let start = Instant::now();
    while t.len() < 3 || (start.elapsed().as_secs_f64() < 2.0 && t.len() < 20) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conv") => {
            for batch in [1usize, 8] {
                for (c, h) in [
                    (64usize, 224usize),
                    (128, 112),
                    (256, 56),
                    (512, 28),
                    (512, 14),
                ] {
                    let g = ConvGeom {
                        batch,
                        c_in: c,
                        h,
                        w: h,
                        c_out: c,
                        kh: 3,
                        kw: 3,
                        sh: 1,
                        sw: 1,
                        dh: 1,
                        dw: 1,
                        pt: 1,
                        pl: 1,
                        ho: h,
                        wo: h,
                        group: 1,
                        depth: Depth::FLAT,
                    };
                    let x = random(batch * c * h * h, 1);
                    let w = random(c * c * 9, 2);
                    let b = random(c, 3);
                    let (med, min) = time(|| {
                        std::hint::black_box(conv2d(&x, &w, Some(&b), &g));
                    });
                    println!(
                        r#"{{"kind":"conv_fwd","batch":{batch},"c":{c},"h":{h},"median_ms":{med:.3},"min_ms":{min:.3}}}"#
                    );
                    let (med, min) = time(|| {
                        std::hint::black_box(conv2d_input_grad(&x, &w, &g));
                    });
                    println!(
                        r#"{{"kind":"conv_grad","batch":{batch},"c":{c},"h":{h},"median_ms":{med:.3},"min_ms":{min:.3}}}"#
                    );
                }
            }
        }
        Some("pointwise") => {
            // ResNet50's 1×1 convolutions (bottleneck in/out), batch 8
            for (ci, co, h) in [
                (256usize, 64usize, 56usize),
                (64, 256, 56),
                (512, 128, 28),
                (1024, 256, 14),
                (2048, 512, 7),
            ] {
                let g = ConvGeom {
                    batch: 8,
                    c_in: ci,
                    h,
                    w: h,
                    c_out: co,
                    kh: 1,
                    kw: 1,
                    sh: 1,
                    sw: 1,
                    dh: 1,
                    dw: 1,
                    pt: 0,
                    pl: 0,
                    ho: h,
                    wo: h,
                    group: 1,
                    depth: Depth::FLAT,
                };
                let x = random(8 * ci * h * h, 1);
                let w = random(co * ci, 2);
                let gy = random(8 * co * h * h, 3);
                let (f, _) = time(|| {
                    std::hint::black_box(conv2d(&x, &w, None, &g));
                });
                let (b, _) = time(|| {
                    std::hint::black_box(conv2d_input_grad(&gy, &w, &g));
                });
                println!(
                    r#"{{"kind":"pointwise","ci":{ci},"co":{co},"h":{h},"fwd_ms":{f:.2},"grad_ms":{b:.2}}}"#
                );
            }
        }
        Some(kind @ ("model" | "ops")) if args.len() >= 3 => {
            let path = std::path::Path::new(&args[1]);
            let model = Model::load(path).unwrap_or_else(|e| fail(e.to_string()));
            let x = inputs(&model, &args[2], &args[3..]);
            let batch = x[0].shape()[0];
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if kind == "ops" {
                return profile_ops(&model, x);
            }
            let (med, min) = time(|| {
                std::hint::black_box(model.forward(x.clone()).unwrap_or_else(|e| panic!("{e}")));
            });
            println!(
                r#"{{"kind":"model","model":"{name}","batch":{batch},"median_ms":{med:.3},"min_ms":{min:.3}}}"#
            );
        }
        _ => {
            eprintln!(
                "usage: bench conv | bench model|ops MODEL.onnx BATCH [--input NAME=FILE.npy ...]"
            );
            std::process::exit(2);
        }
    }
}

fn fail(e: String) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}

/// One random `BATCH × 3 × 224 × 224` image batch, or the `--input NAME=FILE.npy` arrays.
fn inputs(model: &Model, batch: &str, rest: &[String]) -> Vec<Tensor<f32>> {
    let g = model.graph();
    let batch: usize = batch
        .parse()
        .unwrap_or_else(|_| fail(format!("BATCH must be a number, got {batch:?}")));
    let named: Vec<&String> = rest.iter().filter(|a| *a != "--input").collect();
    if named.is_empty() {
        return vec![
            Tensor::new(vec![batch, 3, 224, 224], random(batch * 3 * 224 * 224, 4))
                .unwrap_or_else(|e| fail(e.to_string())),
        ];
    }
    // --input NAME=FILE.npy per graph input (token ids as int64 .npy)
    let mut feeds: Vec<Option<Tensor<f32>>> = vec![None; g.inputs.len()];
    for spec in named {
        let (name, file) = spec
            .split_once('=')
            .unwrap_or_else(|| fail(format!("expected NAME=FILE.npy, got {spec}")));
        let i = g
            .input_index(name)
            .unwrap_or_else(|| fail(format!("the model has no input '{name}'")));
        let file = std::path::Path::new(file);
        let t = if g.input_type(i).is_integer() {
            let ints = prism_store::npy::read_i64(file).unwrap_or_else(|e| fail(e.to_string()));
            Tensor::from_ints(ints.shape().to_vec(), ints.data())
        } else {
            prism_store::npy::read_float(file)
                .map_err(|e| prism_model::ModelError::Invalid(e.to_string()))
        };
        feeds[i] = Some(t.unwrap_or_else(|e| fail(e.to_string())));
    }
    feeds
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                fail(format!(
                    "missing --input for '{}'",
                    g.value(g.inputs[i]).name
                ))
            })
        })
        .collect()
}

/// Time per operator type over one forward pass (after a warm-up), node by node with the
/// executor's kernels: where a model's forward time goes.
fn profile_ops(model: &Model, x: Vec<Tensor<f32>>) {
    use std::collections::BTreeMap;
    let shapes: Vec<Vec<usize>> = x.iter().map(|t| t.shape().to_vec()).collect();
    let exec = model
        .executor::<f32>(&shapes)
        .unwrap_or_else(|e| fail(e.to_string()));
    let g = exec.graph().clone();
    let _ = model.forward(x.clone());
    let mut vals: Vec<Option<Tensor<f32>>> = vec![None; g.values.len()];
    for (id, t) in g.inputs.iter().zip(x) {
        vals[id.0] = Some(t);
    }
    let mut per: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let total = Instant::now();
    for node in &g.nodes {
        let ins: Vec<&Tensor<f32>> = node
            .inputs
            .iter()
            .flatten()
            .map(|v| {
                exec.constant(*v)
                    .map(|c| &**c)
                    .or(vals[v.0].as_ref())
                    .unwrap_or_else(|| fail(format!("{}: input not computed", node.name)))
            })
            .collect();
        let outs: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|o| g.shape(*o).unwrap_or_default().to_vec())
            .collect();
        let s = Instant::now();
        let ys = prism_model::exec::run_node(node, &node.op, &ins, &outs)
            .unwrap_or_else(|e| fail(e.to_string()));
        let dt = s.elapsed().as_secs_f64() * 1e3;
        let key = format!(
            "{} {:?}",
            node.op.type_name(),
            ins.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
        );
        let e = per.entry(key).or_default();
        e.0 += dt;
        e.1 += 1;
        for (o, y) in node.outputs.iter().zip(ys) {
            vals[o.0] = Some(y);
        }
    }
    let total = total.elapsed().as_secs_f64() * 1e3;
    let mut rows: Vec<_> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("total {total:.1} ms over {} nodes", g.nodes.len());
    for (k, (ms, n)) in rows {
        println!("{ms:9.1} ms {:5.1}% {n:4}x  {k}", 100.0 * ms / total);
    }
}
