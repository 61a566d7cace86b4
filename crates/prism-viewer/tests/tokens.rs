//! Token projects in the viewer: a project whose dataset is a token dataset (`type: tokens`)
//! shows each sample as its text coloured by relevance, the HTML `prism heatmap --tokens`
//! writes. The project is built from the BERT parity fixtures (`tests/fixtures/transformers/`:
//! token ids, attention mask, LXT's AttnLRP relevance summed over the hidden axis, logits) with
//! a vocabulary full of markup, so escaping is tested on real rows.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prism_heatmap::{
    align_tokens, render_tokens_html, BuiltinColorMap, HeatmapOptions, Normalization,
    TokenHeatmapOptions, TokenRelevance,
};
use prism_store::project::{AttributionsSpec, DatasetKind, DatasetSpec, DownSampling, UpSampling};
use prism_store::{
    AttributionLayout, AttributionWriter, BatchLabels, LabelLayout, NpyArray, Project,
};
use prism_viewer::synthetic::SyntheticProject;
use prism_viewer::{ServeOptions, Workspace};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/transformers")
        .join(name)
}

fn read(name: &str) -> (Vec<f64>, Vec<usize>) {
    let a = NpyArray::open(fixture(name)).unwrap();
    (a.read_all().unwrap(), a.shape().to_vec())
}

/// The vocabulary: `w{i}`, with markup and quotes at the ids sample 0 and 1 use.
fn vocab() -> Vec<String> {
    let mut v: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    v[0] = "[PAD]".into();
    v[52] = "<script>alert(1)</script>".into();
    v[39] = "a&b".into();
    v[41] = "\"quoted\"".into();
    v[21] = "##ing".into();
    v[58] = "it's".into();
    v
}

/// Relevance per token of the fixture: LXT's [N, T, H] summed over H.
fn relevance() -> Vec<f32> {
    let (r, shape) = read("bert.attn-lrp.relevance.npy");
    assert_eq!(shape, [2, 8, 16]);
    r.chunks(16).map(|h| h.iter().sum::<f64>() as f32).collect()
}

/// A token project from the BERT fixtures in `dir`; returns the YAML.
fn bert_project(dir: &Path) -> PathBuf {
    let data = dir.join("tokens");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture("bert.in0.npy"), data.join("input_ids.npy")).unwrap();
    std::fs::copy(fixture("bert.in1.npy"), data.join("attention_mask.npy")).unwrap();
    std::fs::write(data.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
    let (logits, _) = read("bert.dynamo.out0.npy");
    let logits: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let predicted: Vec<u32> = logits
        .chunks(3)
        .map(|row| (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32)
        .collect();
    let mut w = AttributionWriter::create(
        dir.join("attribution.h5"),
        AttributionLayout {
            n_samples: 2,
            sample_shape: vec![8],
            n_outputs: 3,
            labels: LabelLayout::Single,
            with_index: false,
            compression: None,
        },
    )
    .unwrap();
    w.write_batch(
        0,
        &relevance(),
        &logits,
        &BatchLabels::Single(&predicted),
        None,
    )
    .unwrap();
    w.finish().unwrap();
    std::fs::write(
        dir.join("label-map.json"),
        r#"[{"index": 0, "word_net_id": "neg", "name": "negative"},
            {"index": 1, "word_net_id": "neu", "name": "neutral"},
            {"index": 2, "word_net_id": "pos", "name": "positive"}]"#,
    )
    .unwrap();
    let project = Project {
        name: "bert tokens".into(),
        model: "bert".into(),
        label_map: "label-map.json".into(),
        dataset: DatasetSpec {
            name: "tokens".into(),
            kind: DatasetKind::Tokens,
            path: "tokens".into(),
            input_width: 8,
            input_height: 1,
            up_sampling: UpSampling::None,
            down_sampling: DownSampling::None,
            label_index_regex: None,
            label_word_net_id_regex: None,
        },
        attributions: AttributionsSpec {
            method: "attn-lrp".into(),
            strategy: "predicted_label".into(),
            sources: vec!["attribution.h5".into()],
        },
        analyses: vec![],
        concepts: None,
    };
    let yaml = dir.join("project.yaml");
    project.write(&yaml).unwrap();
    yaml
}

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Project 0: the BERT token project; 1: a generated token project with an analysis; 2: an
/// image project.
fn server() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let a = bert_project(&dir.path().join("bert"));
            let b = SyntheticProject {
                name: "generated tokens".into(),
                classes: 2,
                per_class: 12,
                size: 9,
                dataset: DatasetKind::Tokens,
                ..SyntheticProject::demo()
            }
            .write(&dir.path().join("gen"))
            .unwrap();
            let c = SyntheticProject {
                name: "images".into(),
                classes: 2,
                per_class: 6,
                size: 8,
                ..SyntheticProject::demo()
            }
            .write(&dir.path().join("img"))
            .unwrap();
            let ws = Workspace::open(&[a, b, c]).unwrap();
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
                _dir: dir,
            }
        })
        .addr
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn get(target: &str) -> Reply {
    let mut s = TcpStream::connect(server()).unwrap();
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
    let reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    if reply
        .header("transfer-encoding")
        .eq_ignore_ascii_case("chunked")
    {
        body = dechunk(&body);
    }
    Reply { body, ..reply }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        b = &b[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[test]
fn a_token_sample_is_its_text_coloured_as_the_cli_renders_it() {
    let r = get("/api/projects/0/attributions/1/tokens?colorMap=coldnhot");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("content-type").starts_with("text/html"));
    let csp = r.header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = r.text();
    // every token escaped; the mask leaves out the two padding positions
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains(">a&amp;b</span>"), "{html}");
    assert!(html.contains(">&quot;quoted&quot;</span>"), "{html}");
    assert!(html.contains(">it&#39;s</span>"), "{html}");
    assert!(!html.contains("[PAD]"), "{html}");
    assert!(html.contains("sample 1 · 6 tokens"), "{html}");
    assert_eq!(html.matches("class=\"t\"").count(), 6);
    let r0 = get("/api/projects/0/attributions/0/tokens?colorMap=coldnhot").text();
    assert!(
        r0.contains(">&lt;script&gt;alert(1)&lt;/script&gt;</span>"),
        "{r0}"
    );
    assert!(r0.contains("sample 0 · 8 tokens"), "{r0}");

    // the same page as `prism heatmap --tokens` for that sample
    let rel = relevance();
    let relevance = TokenRelevance::new(&rel[8..], &[1, 8]).unwrap();
    let ids = [39usize, 41, 21, 58, 47, 58, 0, 0];
    let v = vocab();
    let tokens = vec![ids.iter().map(|&i| v[i].clone()).collect::<Vec<_>>()];
    let mask = vec![vec![true, true, true, true, true, true, false, false]];
    let mut samples = align_tokens(&relevance, &tokens, Some(&mask), None).unwrap();
    samples[0].index = 1;
    let map = BuiltinColorMap::by_name("coldnhot").unwrap();
    let expected = render_tokens_html(
        &samples,
        &TokenHeatmapOptions {
            heatmap: HeatmapOptions {
                color_map: map.color_map(),
                normalization: Normalization::Symmetric,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(html, expected);

    // the colour map and the normalisation follow the query
    let bwr = get("/api/projects/0/attributions/1/tokens?colorMap=bwr").text();
    assert_ne!(bwr, html);
    let abs = get("/api/projects/0/attributions/1/tokens?colorMap=coldnhot&normalization=absolute");
    assert_eq!(abs.status, 200);
    assert!(abs.text().contains("|R|"));
}

#[test]
fn token_projects_say_so_and_have_no_pictures() {
    let p = get("/api/projects/0").json();
    assert_eq!(p["datasetKind"], "tokens");
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(8), Some(1))
    );
    assert_eq!(get("/api/projects/2").json()["datasetKind"], "hdf5");

    let a = get("/api/projects/0/attributions/1?colorMap=bwr").json();
    assert_eq!(
        a["url"],
        "/api/projects/0/attributions/1/tokens?colorMap=bwr"
    );
    assert!(a["labels"][0]["name"].as_str().is_some());
    let d = get("/api/projects/0/dataset/1").json();
    assert_eq!(d["url"], "/api/projects/0/dataset/1/tokens");
    let t = get("/api/projects/0/dataset/1/tokens").json();
    assert_eq!(t["tokens"][0], "a&b");
    assert_eq!(t["tokens"].as_array().unwrap().len(), 8);
    assert_eq!(t["attentionMask"][6], false);

    for target in [
        "/api/projects/0/dataset/1/image",
        "/api/projects/0/attributions/1/image",
        "/api/projects/0/attributions/1/image?mode=input",
        "/api/projects/0/attributions/1/heatmap",
    ] {
        let r = get(target);
        assert_eq!(r.status, 404, "{target}");
        let m = r.json()["errorMessage"].as_str().unwrap().to_string();
        assert!(m.contains("/tokens"), "{target}: {m}");
    }
    // image projects have no tokens
    assert_eq!(get("/api/projects/2/attributions/0/tokens").status, 404);
    assert_eq!(get("/api/projects/2/dataset/0/tokens").status, 404);
}

#[test]
fn bad_token_requests_get_4xx_with_a_json_message() {
    for (target, status) in [
        ("/api/projects/0/attributions/2/tokens", 404),
        ("/api/projects/0/attributions/99999/tokens", 404),
        ("/api/projects/0/attributions/-1/tokens", 400),
        ("/api/projects/0/attributions/x/tokens", 400),
        (
            "/api/projects/0/attributions/1/tokens?colorMap=viridis",
            400,
        ),
        (
            "/api/projects/0/attributions/1/tokens?normalization=odd",
            400,
        ),
        ("/api/projects/0/dataset/2/tokens", 404),
        ("/api/projects/9/attributions/0/tokens", 404),
    ] {
        let r = get(target);
        assert_eq!(
            r.status,
            status,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.header("content-type").starts_with("application/json"),
            "{target}"
        );
        assert!(
            !r.json()["errorMessage"].as_str().unwrap_or("").is_empty(),
            "{target}"
        );
    }
}

#[test]
fn a_generated_token_project_has_an_analysis_and_escapes_its_watermark() {
    let p = get("/api/projects/1").json();
    assert_eq!(p["datasetKind"], "tokens");
    assert_eq!(p["analysisMethods"][0]["name"], "spectral_analysis");
    // sample 0 carries the watermark token `<b>&amp;</b>`
    let html = get("/api/projects/1/attributions/0/tokens").text();
    assert!(html.contains("&lt;b&gt;&amp;amp;&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
}

#[test]
fn token_projects_with_mismatched_or_escaping_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = bert_project(&dir.path().join("p"));
    assert!(Workspace::open(&[&yaml]).is_ok());

    // relevance of another length than the token positions
    let other = SyntheticProject {
        name: "x".into(),
        classes: 2,
        per_class: 2,
        size: 7,
        dataset: DatasetKind::Tokens,
        ..SyntheticProject::demo()
    }
    .write(&dir.path().join("q"))
    .unwrap();
    std::fs::copy(
        dir.path().join("q/attribution.h5"),
        dir.path().join("p/attribution.h5"),
    )
    .unwrap();
    let e = Workspace::open(&[&yaml])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("7 value(s) per sample") && e.contains("8 token position(s)"),
        "{e}"
    );
    assert!(Workspace::open(&[&other]).is_ok());

    // a file of the token directory linking outside the project
    #[cfg(unix)]
    {
        let data = dir.path().join("q/tokens");
        std::fs::rename(data.join("labels.npy"), dir.path().join("labels.npy")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("labels.npy"), data.join("labels.npy")).unwrap();
        let e = Workspace::open(&[&other])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("outside"), "{e}");
    }
}
