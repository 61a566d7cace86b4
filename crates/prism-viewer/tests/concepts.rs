//! The concept routes over a generated project with a concepts file: layers, a sample's
//! concepts (ranked by relevance, shares of Σ|R|), a selection's and a cluster's (mean shares),
//! a concept's references, reference crops and conditional heatmaps as PNG, and 4xx answers
//! naming the valid range. Values are compared with the file as `prism_store` reads it and with
//! the dataset's pictures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;

use prism_store::{ConceptsFile, ReferenceKind};
use prism_viewer::synthetic::{
    concept_run_covers, SyntheticProject, CONCEPT_DENSE_CROPS, CONCEPT_HEATMAPS, CONCEPT_LAYERS,
    CONCEPT_TOP_N,
};
use prism_viewer::{ServeOptions, Workspace};
use serde_json::Value;

struct Server {
    addr: SocketAddr,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

const CLASSES: usize = 3;
const PER_CLASS: usize = 20;
const SIZE: usize = 8;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let yaml = SyntheticProject {
            name: "concepts".into(),
            classes: CLASSES,
            per_class: PER_CLASS,
            size: SIZE,
            ..SyntheticProject::demo()
        }
        .write(&dir)
        .unwrap();
        let plain = SyntheticProject {
            name: "no concepts".into(),
            classes: 2,
            per_class: 5,
            size: 4,
            concepts: false,
            ..SyntheticProject::demo()
        }
        .write(&tmp.path().join("q"))
        .unwrap();
        let ws = Workspace::open(&[yaml, plain]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let opts = ServeOptions {
                port: 0,
                ..ServeOptions::default()
            };
            prism_viewer::serve(ws, &opts, move |addr| tx.send(addr).unwrap()).unwrap();
        });
        Server {
            addr: rx.recv().unwrap(),
            dir,
            _tmp: tmp,
        }
    })
}

fn file() -> ConceptsFile {
    ConceptsFile::open(server().dir.join("concepts.h5")).unwrap()
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn ok_json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }
    fn png(&self) -> image::RgbImage {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type, "image/png");
        image::load_from_memory(&self.body).unwrap().to_rgb8()
    }
    fn error_message(&self) -> String {
        self.json()["errorMessage"]
            .as_str()
            .unwrap_or_else(|| panic!("no errorMessage in {}", self.json()))
            .to_string()
    }
}

fn get(target: &str) -> Reply {
    let mut s = TcpStream::connect(server().addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        let mut out = Vec::new();
        let mut b = &body[..];
        loop {
            let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
            b = &b[end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&b[..size]);
            b = &b[size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        content_type: header("content-type"),
        body,
    }
}

const P: &str = "/api/projects/0/concepts";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

/// Shares `R_c / (Σ|R| + ε)` of one row, as the API computes them.
fn shares(r: &[f32]) -> Vec<f64> {
    let total: f64 = r.iter().map(|v| f64::from(v.abs())).sum();
    r.iter().map(|&v| f64::from(v) / (total + 1e-10)).collect()
}

#[test]
fn layers_are_listed_with_their_shapes_and_tables() {
    let n = CLASSES * PER_CLASS;
    let covered = (0..n).filter(|&i| concept_run_covers(i)).count();
    assert_eq!(covered, n - 2, "samples 24 and 49 are left out");
    let v = get(P).ok_json();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["index"], 0);
    assert_eq!(layers[0]["node"], CONCEPT_LAYERS[0]);
    assert_eq!(layers[0]["channels"], 6);
    assert_eq!(
        layers[0]["shape"],
        serde_json::json!([6, SIZE / 4, SIZE / 4])
    );
    assert_eq!(layers[0]["samples"], covered);
    assert_eq!(layers[0]["topN"], CONCEPT_TOP_N);
    assert_eq!(layers[0]["heatmaps"], CONCEPT_HEATMAPS);
    assert_eq!(layers[0]["heatmapSize"]["width"], SIZE);
    assert_eq!(layers[0]["crops"]["relmax"], CONCEPT_TOP_N);
    assert_eq!(layers[1]["node"], CONCEPT_LAYERS[1]);
    assert_eq!(layers[1]["channels"], CLASSES + 1);
    assert_eq!(layers[1]["shape"], serde_json::json!([CLASSES + 1]));
    assert_eq!(layers[1]["heatmaps"], 0);
    assert_eq!(layers[1]["crops"]["actmax"], CONCEPT_DENSE_CROPS);
    assert_eq!(get("/api/projects/0").ok_json()["conceptLayers"], 2);
    // a project without concepts files: no layers
    assert_eq!(get("/api/projects/1").ok_json()["conceptLayers"], 0);
    assert_eq!(
        get("/api/projects/1/concepts").ok_json()["layers"],
        serde_json::json!([])
    );
}

#[test]
fn a_samples_concepts_are_ranked_by_relevance_with_their_shares() {
    let f = file();
    for (layer, sample) in [(0usize, 3u32), (0, 0), (1, 7), (1, 59)] {
        let row = f.row_of(sample).unwrap();
        let r = f.relevance(layer, row).unwrap();
        let want_share = shares(&r);
        let mut order: Vec<usize> = (0..r.len()).collect();
        order.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
        let with_heatmap = f.heatmap_channels_of(layer, row).unwrap();
        let v = get(&format!("{P}/{layer}/samples/{sample}?count=3")).ok_json();
        assert_eq!(v["sample"], sample);
        assert_eq!(v["row"], row);
        assert_eq!(v["target"]["index"], f.target()[row]);
        let total: f64 = r.iter().map(|x| f64::from(x.abs())).sum();
        assert!(close(v["total"].as_f64().unwrap(), total));
        let got = v["concepts"].as_array().unwrap();
        assert_eq!(got.len(), 3);
        for (k, c) in got.iter().enumerate() {
            let ch = order[k];
            assert_eq!(c["channel"], ch, "layer {layer}, sample {sample}, rank {k}");
            assert_eq!(c["relevance"].as_f64().unwrap() as f32, r[ch]);
            assert!(close(c["share"].as_f64().unwrap(), want_share[ch]));
            assert_eq!(c["heatmap"], with_heatmap.contains(&(ch as u32)));
        }
        // all channels without a count that large
        let all = get(&format!("{P}/{layer}/samples/{sample}?count=100")).ok_json();
        assert_eq!(all["concepts"].as_array().unwrap().len(), r.len());
    }
    // What the generator planted: sample 3 (class 0, an object) is explained by the class's
    // concept, sample 0 (class 0, watermarked) by the watermark's.
    let top = |layer: usize, sample: u32| {
        get(&format!("{P}/{layer}/samples/{sample}")).ok_json()["concepts"][0]["channel"].clone()
    };
    assert_eq!(top(1, 3), 0);
    assert_eq!(top(1, 0), CLASSES);
    assert_eq!(top(0, 3), 1);
    assert_eq!(top(0, 0), 5);
    // the two most relevant channels have heatmaps (the conv layer keeps M = 2)
    let v = get(&format!("{P}/0/samples/3?count=6")).ok_json();
    let flags: Vec<bool> = v["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["heatmap"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, vec![true, true, false, false, false, false]);
}

#[test]
fn a_selections_and_a_clusters_concepts_are_mean_shares() {
    let f = file();
    let samples = [3u32, 6, 24, 9];
    let v = get(&format!("{P}/0/selection?samples=3,6,24,9,6&count=6")).ok_json();
    assert_eq!(v["samples"], 3, "24 is not in the run; 6 counts once");
    assert_eq!(v["missing"], 1);
    assert_eq!(v["missingSamples"], serde_json::json!([24]));
    let rows: Vec<usize> = samples.iter().filter_map(|&s| f.row_of(s)).collect();
    let mut mean = [0f64; 6];
    for &row in &rows {
        for (m, s) in mean.iter_mut().zip(shares(&f.relevance(0, row).unwrap())) {
            *m += s / rows.len() as f64;
        }
    }
    let got = v["concepts"].as_array().unwrap();
    assert_eq!(got.len(), 6);
    for w in got.windows(2) {
        assert!(w[0]["share"].as_f64().unwrap() >= w[1]["share"].as_f64().unwrap());
    }
    for c in got {
        let ch = c["channel"].as_u64().unwrap() as usize;
        assert!(
            close(c["share"].as_f64().unwrap(), mean[ch]),
            "channel {ch}"
        );
    }

    // A cluster of the analysis: the same as the selection of its members.
    let base = "/api/projects/0/analyses/spectral_analysis";
    let cat = "n00000001";
    let index: Vec<u32> = get(&format!("{base}/index.u32?category={cat}"))
        .body
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let labels: Vec<i32> = get(&format!(
        "{base}/clustering.i32?category={cat}&clustering=kmeans-02"
    ))
    .body
    .chunks(4)
    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
    .collect();
    for cluster in [0, 1] {
        let members: Vec<String> = index
            .iter()
            .zip(&labels)
            .filter(|(_, l)| **l == cluster)
            .map(|(i, _)| i.to_string())
            .collect();
        let c = get(&format!(
            "{P}/1/cluster?analysis=spectral_analysis&category={cat}&clustering=kmeans-02&cluster={cluster}&count=4"
        ))
        .ok_json();
        let s = get(&format!(
            "{P}/1/selection?samples={}&count=4",
            members.join(",")
        ))
        .ok_json();
        assert_eq!(c["concepts"], s["concepts"], "cluster {cluster}");
        assert_eq!(c["cluster"]["size"], members.len());
        assert_eq!(
            c["samples"].as_u64().unwrap() + c["missing"].as_u64().unwrap(),
            members.len() as u64
        );
    }
    // Class 0's clusters: the watermarked one is explained by the watermark concept.
    let top: Vec<u64> = [0, 1]
        .iter()
        .map(|k| {
            get(&format!(
                "{P}/1/cluster?analysis=spectral_analysis&category={cat}&clustering=kmeans-02&cluster={k}"
            ))
            .ok_json()["concepts"][0]["channel"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, CLASSES as u64], "{top:?}");
}

#[test]
fn a_concepts_references_are_the_files_with_their_boxes() {
    let f = file();
    for (layer, channel) in [(0usize, 5usize), (0, 1), (1, 3), (1, 0)] {
        for kind in ReferenceKind::ALL {
            let want = f.references(layer, kind, channel).unwrap();
            let v = get(&format!(
                "{P}/{layer}/channels/{channel}?mode={}",
                kind.name()
            ))
            .ok_json();
            assert_eq!(v["mode"], kind.name());
            assert_eq!(v["topN"], CONCEPT_TOP_N);
            let got = v["references"].as_array().unwrap();
            assert_eq!(got.len(), want.len());
            assert_eq!(got.len(), CONCEPT_TOP_N);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g["rank"], w.rank);
                assert_eq!(g["sample"], w.sample);
                assert_eq!(g["score"].as_f64().unwrap() as f32, w.score);
                match w.crop {
                    Some(b) => assert_eq!(g["box"], serde_json::json!(b.to_array())),
                    None => assert!(g["box"].is_null()),
                }
            }
            // the dense layer has boxes for the first CONCEPT_DENSE_CROPS references only
            let boxes = got.iter().filter(|g| !g["box"].is_null()).count();
            assert_eq!(
                boxes,
                if layer == 0 {
                    CONCEPT_TOP_N
                } else {
                    CONCEPT_DENSE_CROPS
                }
            );
        }
    }
    // RelMax of the watermark concept: watermarked samples (every third of a class), best first.
    let v = get(&format!("{P}/1/channels/{CLASSES}")).ok_json();
    let scores: Vec<f64> = v["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for r in v["references"].as_array().unwrap() {
        let s = r["sample"].as_u64().unwrap() as usize;
        assert_eq!((s / CLASSES) % 3, 0, "sample {s} is watermarked");
    }
}

#[test]
fn reference_crops_are_the_pictures_cut_to_their_boxes() {
    let f = file();
    let refs = f.references(0, ReferenceKind::RelMax, 1).unwrap();
    for r in refs.iter().take(3) {
        let b = r.crop.unwrap();
        let whole = get(&format!("/api/projects/0/dataset/{}/image", r.sample)).png();
        let url =
            |frame: &str| format!("{P}/0/channels/1/references/{}/image?frame={frame}", r.rank);
        let crop = get(&url("crop")).png();
        assert_eq!(
            (crop.width(), crop.height()),
            (b.x1 - b.x0, b.y1 - b.y0),
            "{b:?}"
        );
        for y in 0..crop.height() {
            for x in 0..crop.width() {
                assert_eq!(crop.get_pixel(x, y), whole.get_pixel(b.x0 + x, b.y0 + y));
            }
        }
        // the default frame is the crop
        assert_eq!(
            get(&format!("{P}/0/channels/1/references/{}/image", r.rank)).body,
            get(&url("crop")).body
        );
        let boxed = get(&url("box")).png();
        assert_eq!(boxed.dimensions(), whole.dimensions());
        assert_eq!(
            boxed.get_pixel(b.x0, b.y0).0,
            [255, 214, 0],
            "the box is drawn"
        );
        assert_eq!(boxed.get_pixel(b.x1 - 1, b.y1 - 1).0, [255, 214, 0]);
        assert_eq!(get(&url("whole")).png(), whole);
    }
    // ActMax references have crops too
    let act = f.references(0, ReferenceKind::ActMax, 2).unwrap();
    let b = act[0].crop.unwrap();
    let crop = get(&format!("{P}/0/channels/2/references/0/image?mode=actmax")).png();
    assert_eq!((crop.width(), crop.height()), (b.x1 - b.x0, b.y1 - b.y0));
    // a dense-layer reference beyond the computed boxes: whole only
    let r = get(&format!(
        "{P}/1/channels/0/references/{CONCEPT_DENSE_CROPS}/image"
    ));
    assert_eq!(r.status, 404);
    assert!(
        r.error_message().contains("frame=whole"),
        "{}",
        r.error_message()
    );
    let dense = f.references(1, ReferenceKind::RelMax, 0).unwrap();
    let whole = get(&format!(
        "/api/projects/0/dataset/{}/image",
        dense[CONCEPT_DENSE_CROPS].sample
    ))
    .png();
    assert_eq!(
        get(&format!(
            "{P}/1/channels/0/references/{CONCEPT_DENSE_CROPS}/image?frame=whole"
        ))
        .png(),
        whole
    );
}

#[test]
fn conditional_heatmaps_are_rendered_like_attribution_heatmaps() {
    let f = file();
    let row = f.row_of(3).unwrap();
    let channels = f.heatmap_channels_of(0, row).unwrap();
    assert_eq!(channels.len(), CONCEPT_HEATMAPS);
    let url = |ch: u32, q: &str| format!("{P}/0/samples/3/heatmaps/{ch}/image{q}");
    let a = get(&url(channels[0], "")).png();
    assert_eq!(a.dimensions(), (SIZE as u32, SIZE as u32));
    // bwr, symmetric: the largest |value| is the map's end (a positive heatmap: red), zero white
    let values = f.heatmap(0, row, channels[0]).unwrap().unwrap();
    let (at, _) = values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    let px = a.get_pixel((at % SIZE) as u32, (at / SIZE) as u32).0;
    assert!(
        px[0] > 200 && px[2] < 60,
        "the strongest pixel is red: {px:?}"
    );
    let overlay = get(&url(channels[0], "?mode=overlay&colorMap=coldnhot")).png();
    assert_eq!(overlay.dimensions(), a.dimensions());
    assert_ne!(overlay, a);
    // Sample 0 is watermarked: its watermark concept looks at the corner, its class concept at
    // the object, and their heatmaps differ.
    let c0 = f.heatmap_channels_of(0, f.row_of(0).unwrap()).unwrap();
    assert_eq!(c0[0], 5);
    let h = |ch: u32| get(&format!("{P}/0/samples/0/heatmaps/{ch}/image")).png();
    let corner = h(c0[0]);
    assert!(
        corner.get_pixel(0, 0).0[0] > 200,
        "the watermark concept is red at the corner"
    );
    assert_ne!(h(c0[1]), corner, "another concept, another heatmap");
    // a channel without a heatmap in this sample names those it has
    let other = (0..6).find(|c| !channels.contains(c)).unwrap();
    let r = get(&url(other, ""));
    assert_eq!(r.status, 404);
    assert!(
        r.error_message().contains(&format!("{channels:?}")),
        "{}",
        r.error_message()
    );
    // the dense layer has none
    assert_eq!(
        get(&format!("{P}/1/samples/3/heatmaps/0/image")).status,
        404
    );
}

#[test]
fn bad_concept_parameters_get_4xx_naming_the_valid_range() {
    let cases: [(&str, u16, &str); 20] = [
        ("/api/projects/0/concepts/2/samples/3", 404, "0..=1"),
        ("/api/projects/0/concepts/x/samples/3", 400, "0..=1"),
        ("/api/projects/0/concepts/-1/channels/0", 400, "0..=1"),
        ("/api/projects/1/concepts/0/samples/3", 404, "no concepts files"),
        ("/api/projects/0/concepts/0/channels/6", 404, "0..=5"),
        ("/api/projects/0/concepts/1/channels/4", 404, "0..=3"),
        ("/api/projects/0/concepts/0/channels/ch1", 400, "0..=5"),
        ("/api/projects/0/concepts/0/channels/1?mode=maxmax", 400, "relmax or actmax"),
        ("/api/projects/0/concepts/0/samples/24", 404, "not in the concepts run"),
        ("/api/projects/0/concepts/0/samples/99999", 404, "not in the concepts run"),
        ("/api/projects/0/concepts/0/samples/3?count=0", 400, "at least 1"),
        ("/api/projects/0/concepts/0/samples/3?count=many", 400, "count"),
        ("/api/projects/0/concepts/0/selection", 400, "samples"),
        ("/api/projects/0/concepts/0/selection?samples=24,49", 404, "none of the 2"),
        ("/api/projects/0/concepts/0/selection?samples=1,x", 400, "x"),
        ("/api/projects/0/concepts/0/channels/1/references/8/image", 404, "ranks 0..=7"),
        ("/api/projects/0/concepts/0/channels/1/references/0/image?frame=all", 400, "crop, box or whole"),
        ("/api/projects/0/concepts/0/samples/3/heatmaps/9/image", 404, "0..=5"),
        (
            "/api/projects/0/concepts/0/cluster?analysis=spectral_analysis&category=n00000001&clustering=kmeans-02&cluster=7",
            404,
            "no cluster 7",
        ),
        (
            "/api/projects/0/concepts/0/cluster?analysis=spectral_analysis&category=n00000001&clustering=nope&cluster=0",
            404,
            "no clustering `nope`",
        ),
    ];
    for (target, status, words) in cases {
        let r = get(target);
        assert_eq!(
            r.status,
            status,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.content_type.starts_with("application/json"), "{target}");
        let m = r.error_message();
        assert!(m.contains(words), "{target}: `{words}` not in {m}");
    }
    let many: Vec<String> = (0..1001).map(|i| (i % 60).to_string()).collect();
    let r = get(&format!("{P}/0/selection?samples={}", many.join(",")));
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("at most 1000"));
    // the server is read-only here too
    let mut s = TcpStream::connect(server().addr).unwrap();
    write!(
        s,
        "POST {P} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
}
