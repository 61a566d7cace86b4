//! The viewer's HTTP API over generated projects: status codes, JSON keys, binary shapes,
//! path traversal and malformed requests. One server (two projects) is shared by the tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;

use prism_store::project::DatasetKind;
use prism_viewer::synthetic::SyntheticProject;
use prism_viewer::{ServeOptions, Workspace};
use serde_json::Value;

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn small(name: &str, kind: DatasetKind) -> SyntheticProject {
    SyntheticProject {
        name: name.into(),
        classes: 3,
        per_class: 20,
        size: 8,
        dataset: kind,
        ..SyntheticProject::demo()
    }
}

fn server() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let a = small("first", DatasetKind::Hdf5)
                .write(&dir.path().join("a"))
                .unwrap();
            let b = small("images", DatasetKind::ImageDirectory)
                .write(&dir.path().join("b"))
                .unwrap();
            let ws = Workspace::open(&[a, b]).unwrap();
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
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error_message(&self) -> String {
        self.json()["errorMessage"]
            .as_str()
            .unwrap_or_else(|| panic!("no errorMessage in {}", self.json()))
            .to_string()
    }
}

/// A raw HTTP/1.1 request: the target is sent exactly as given (no normalisation).
fn request(method: &str, target: &str) -> Reply {
    request_to(server(), method, target)
}

fn request_to(addr: SocketAddr, method: &str, target: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
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
        body = dechunk(&body);
    }
    Reply {
        status,
        content_type: header("content-type"),
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn get(target: &str) -> Reply {
    request("GET", target)
}

const CAT: &str = "n00000001";

#[test]
fn project_list_and_details_use_virelay_keys() {
    let r = get("/api/projects");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["name"], "first");
    assert_eq!(v[1]["id"], 1);
    let p = get("/api/projects/0").json();
    let m = &p["analysisMethods"][0];
    assert_eq!(m["name"], "spectral_analysis");
    assert_eq!(m["categories"].as_array().unwrap().len(), 3);
    assert_eq!(m["categories"][0]["name"], CAT);
    assert_eq!(m["categories"][0]["humanReadableName"], "airplane");
    assert!(m["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "tsne"));
    assert!(m["clusterings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "kmeans-02"));
    assert_eq!(p["datasetSize"], 60);
}

#[test]
fn binary_routes_send_one_value_per_point() {
    let base = "/api/projects/0/analyses/spectral_analysis";
    let meta = get(&format!("{base}/category?category={CAT}")).json();
    let n = meta["size"].as_u64().unwrap() as usize;
    assert_eq!(n, 20);
    assert_eq!(meta["eigengapSuggestedK"], 2);
    let spectral = meta["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "spectral")
        .unwrap();
    assert_eq!(spectral["dimensions"], 4);
    assert_eq!(spectral["eigenvalues"].as_array().unwrap().len(), 4);

    let ix = get(&format!("{base}/index.u32?category={CAT}"));
    assert_eq!(ix.status, 200);
    assert_eq!(ix.content_type, "application/octet-stream");
    assert_eq!(ix.body.len(), 4 * n);
    let first = u32::from_le_bytes(ix.body[..4].try_into().unwrap());
    assert_eq!(first, 0);
    let em = get(&format!(
        "{base}/embedding.f32?category={CAT}&embedding=spectral&dims=2,3"
    ));
    assert_eq!(em.status, 200);
    assert_eq!(em.body.len(), 8 * n);
    let y0 = f32::from_le_bytes(em.body[4..8].try_into().unwrap());
    assert!(
        (y0 - 0.3).abs() < 1e-6,
        "column 3 of the spectral embedding is 0.3"
    );
    let cl = get(&format!(
        "{base}/clustering.i32?category={CAT}&clustering=kmeans-02"
    ));
    assert_eq!(cl.body.len(), 4 * n);
    let labels: Vec<i32> = cl
        .body
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels[0], 0);
    assert!(labels.iter().all(|&l| l == 0 || l == 1));

    // ViRelAy's JSON route agrees.
    let v = get(&format!(
        "{base}?category={CAT}&clustering=kmeans-02&embedding=tsne"
    ))
    .json();
    assert_eq!(v["embedding"].as_array().unwrap().len(), n);
    assert_eq!(v["embedding"][0]["value"].as_array().unwrap().len(), 2);
    assert_eq!(v["humanReadableCategoryName"], "airplane");
}

#[test]
fn images_are_png_in_every_mode_and_colour_map() {
    let png = |r: &Reply| {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.content_type, "image/png");
        assert_eq!(&r.body[1..4], b"PNG");
    };
    for id in [0, 1] {
        png(&get(&format!("/api/projects/{id}/dataset/3/image")));
        for mode in ["input", "attribution", "overlay"] {
            png(&get(&format!(
                "/api/projects/{id}/attributions/3/image?mode={mode}&colorMap=coldnhot"
            )));
        }
    }
    let maps = get("/api/color-maps").json();
    assert_eq!(maps.as_array().unwrap().len(), 11);
    for m in maps.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        png(&get(&format!(
            "/api/projects/0/attributions/5/heatmap?colorMap={name}&superimpose=true"
        )));
        png(&get(&format!("/api/color-maps/{name}?width=64&height=8")));
    }
    let a = get("/api/projects/0/attributions/4/image?mode=attribution&colorMap=hot");
    let b = get("/api/projects/0/attributions/4/image?mode=attribution&colorMap=hot");
    assert_eq!(a.body, b.body, "the cached image is the rendered one");
    let c = get("/api/projects/0/attributions/4/image?mode=attribution&colorMap=hot&normalization=unaligned");
    assert_ne!(a.body, c.body);
}

#[test]
fn attribution_json_has_labels_and_predictions() {
    let v = get("/api/projects/0/attributions?indices=0,1,3&imageMode=overlay&colorMap=bwr").json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["index"], 0);
    assert_eq!(list[0]["labels"][0]["name"], "airplane");
    assert_eq!(list[0]["prediction"].as_array().unwrap().len(), 3);
    // Sample 3 is one of the deliberate mistakes (class 0 predicted as class 1).
    assert_eq!(list[2]["topPredictions"][0]["name"], "automobile");
    assert!(list[0]["url"].as_str().unwrap().contains("mode=overlay"));
    assert_eq!(list[0]["urls"].as_object().unwrap().len(), 11);
    let one = get("/api/projects/1/attributions/7").json();
    assert_eq!(one["index"], 7);
    let d = get("/api/projects/1/dataset/7").json();
    assert_eq!(d["labels"][0]["index"], 1);
    assert_eq!(d["width"], 8);
}

#[test]
fn bad_parameters_get_4xx_with_a_json_message() {
    let cases = [
        ("/api/projects/abc", 400),
        ("/api/projects/99", 404),
        ("/api/projects/-1/dataset/0", 400),
        ("/api/projects/0/dataset/99999", 404),
        ("/api/projects/0/dataset/1e3/image", 400),
        ("/api/projects/0/attributions/99999/image", 404),
        ("/api/projects/0/attributions/1/image?mode=xray", 400),
        ("/api/projects/0/attributions/1/image?colorMap=viridis", 400),
        ("/api/projects/0/attributions/1/image?normalization=odd", 400),
        ("/api/projects/0/attributions/1/heatmap?superimpose=maybe", 400),
        ("/api/projects/0/attributions", 400),
        ("/api/projects/0/attributions?indices=", 400),
        ("/api/projects/0/attributions?indices=1,,2", 400),
        ("/api/projects/0/attributions?indices=1,x", 400),
        ("/api/projects/0/attributions?indices=1,99999", 404),
        ("/api/projects/0/analyses/nope/category?category=n00000001", 404),
        ("/api/projects/0/analyses/spectral_analysis/category", 400),
        ("/api/projects/0/analyses/spectral_analysis/category?category=zzz", 404),
        ("/api/projects/0/analyses/spectral_analysis/embedding.f32?category=n00000001", 400),
        (
            "/api/projects/0/analyses/spectral_analysis/embedding.f32?category=n00000001&embedding=tsne&dims=0,2",
            400,
        ),
        (
            "/api/projects/0/analyses/spectral_analysis/embedding.f32?category=n00000001&embedding=tsne&dims=0",
            400,
        ),
        (
            "/api/projects/0/analyses/spectral_analysis/embedding.f32?category=n00000001&embedding=../cluster/kmeans-02",
            404,
        ),
        (
            "/api/projects/0/analyses/spectral_analysis/clustering.i32?category=n00000001&clustering=nope",
            404,
        ),
        ("/api/projects/0/analyses/spectral_analysis?category=n00000001", 400),
        ("/api/color-maps/viridis", 404),
        ("/api/color-maps/bwr?width=0", 400),
        ("/api/color-maps/bwr?width=100000", 400),
        ("/api/nothing", 404),
    ];
    for (target, status) in cases {
        let r = get(target);
        assert_eq!(
            r.status,
            status,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.content_type.starts_with("application/json"), "{target}");
        assert!(!r.error_message().is_empty(), "{target}");
    }
    let many: Vec<String> = (0..1001).map(|i| (i % 60).to_string()).collect();
    let r = get(&format!(
        "/api/projects/0/attributions?indices={}",
        many.join(",")
    ));
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("at most"));
}

#[test]
fn path_traversal_is_refused() {
    for target in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/api/projects/0/..%2f..%2f..%2fetc%2fpasswd",
        "/api/color-maps/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/projects/0/dataset/..%2f..%2fproject.yaml/image",
        "/api/projects/0/analyses/..%2f..%2fanalysis.h5/category?category=n00000001",
        "/project.yaml",
        "/attribution.h5",
        "//etc/passwd",
    ] {
        let r = get(target);
        assert!(
            (400..500).contains(&r.status),
            "{target} answered {}",
            r.status
        );
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("root:") && !text.contains("HDF"), "{target}");
    }
}

#[test]
fn the_server_is_read_only() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(method, "/api/projects");
        assert_eq!(r.status, 405, "{method}");
    }
}

#[test]
fn the_ui_is_served_from_the_binary() {
    let r = get("/");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("app.js"));
    for f in ["/app.js", "/scatter.js", "/plots.js", "/style.css"] {
        assert_eq!(get(f).status, 200, "{f}");
    }
}

#[test]
fn projects_naming_files_outside_their_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = small("x", DatasetKind::Hdf5)
        .write(&dir.path().join("p"))
        .unwrap();
    std::fs::rename(
        dir.path().join("p/attribution.h5"),
        dir.path().join("attribution.h5"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("- attribution.h5", "- ../attribution.h5");
    std::fs::write(&yaml, text).unwrap();
    let err = Workspace::open(&[yaml]).err().expect("refused").to_string();
    assert!(err.contains("outside"), "{err}");
    let missing = Workspace::open(&[PathBuf::from("/nonexistent/project.yaml")])
        .err()
        .expect("missing");
    assert!(missing.to_string().contains("nonexistent"), "{missing}");
}

#[test]
fn virelay_typed_analysis_files_are_read() {
    // ViRelAy's meta_analysis.py writes int64 index and labels and may write float64 embeddings.
    let dir = tempfile::tempdir().unwrap();
    let yaml = small("v", DatasetKind::Hdf5)
        .write(&dir.path().join("p"))
        .unwrap();
    let path = dir.path().join("p/analysis.h5");
    std::fs::remove_file(&path).unwrap();
    {
        let f = hdf5::File::create(&path).unwrap();
        let g = f.create_group("00000000").unwrap();
        let index: Vec<i64> = vec![0, 3, 6, 9];
        g.new_dataset_builder()
            .with_data(&index)
            .create("index")
            .unwrap();
        let e = g.create_group("embedding").unwrap();
        let values =
            ndarray::Array2::from_shape_vec((4, 3), (0..12).map(f64::from).collect()).unwrap();
        let ds = e
            .new_dataset_builder()
            .with_data(&values)
            .create("spectral")
            .unwrap();
        ds.new_attr_builder()
            .with_data(&[0.9f64, 0.5, 0.0])
            .create("eigenvalue")
            .unwrap();
        let c = g.create_group("cluster").unwrap();
        c.new_dataset_builder()
            .with_data(&[1i64, 0, 1, -1])
            .create("kmeans-02")
            .unwrap();
    }
    let ws = Workspace::open(&[yaml]).unwrap();
    let p = &ws.projects[0];
    assert_eq!(p.category_display_name("00000000"), "airplane");
    let a = p.analysis("spectral_analysis").unwrap();
    let meta = a.category_meta("00000000").unwrap().unwrap();
    assert_eq!(meta.n, 4);
    assert_eq!(meta.embeddings[0].1, 3);
    assert_eq!(
        meta.embeddings[0].2.as_deref(),
        Some(&[0.9f32, 0.5, 0.0][..])
    );
    assert_eq!(a.index("00000000").unwrap().unwrap(), [0, 3, 6, 9]);
    assert_eq!(
        a.embedding_xy("00000000", "spectral", (2, 0))
            .unwrap()
            .unwrap()[..4],
        [2.0, 0.0, 5.0, 3.0]
    );
    assert_eq!(
        a.clustering("00000000", "kmeans-02").unwrap().unwrap(),
        [1, 0, 1, -1]
    );
}

#[test]
fn categories_and_clusterings_are_listed_in_natural_order() {
    use prism_store::{AnalysisWriter, Category, Clustering, Embedding};
    let dir = tempfile::tempdir().unwrap();
    let yaml = SyntheticProject {
        classes: 10,
        per_class: 2,
        ..small("natural", DatasetKind::Hdf5)
    }
    .write(&dir.path().join("p"))
    .unwrap();
    // Categories and clusterings written in an order that is neither natural nor plain string
    // order (HDF5 lists groups in string order: digit-10 before digit-2).
    let path = dir.path().join("p/analysis.h5");
    std::fs::remove_file(&path).unwrap();
    let mut w = AnalysisWriter::create(&path).unwrap();
    let written = [10, 2, 1, 0, 9, 3, 11];
    for k in written {
        let labels = vec![0, 1];
        let clustering = |name: &str| Clustering {
            name: name.into(),
            labels: labels.clone(),
            attrs: vec![],
        };
        w.write_category(&Category {
            name: format!("digit-{k}"),
            index: vec![0, 1],
            embeddings: vec![Embedding {
                name: "tsne".into(),
                dim: 2,
                values: vec![0.0, 1.0, 2.0, 3.0],
                eigenvalue: None,
                attrs: vec![],
            }],
            clusterings: vec![
                clustering("kmeans-10"),
                clustering("kmeans-02"),
                clustering("dbscan-eps=0.5"),
                clustering("kmeans-03"),
                clustering("agglomerative-10"),
                clustering("kmeans-2"),
            ],
            attrs: vec![],
        })
        .unwrap();
    }
    w.finish().unwrap();
    let server = prism_viewer::spawn(
        Workspace::open(&[yaml]).unwrap(),
        &ServeOptions {
            port: 0,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let p = request_to(server.addr(), "GET", "/api/projects/0").json();
    let m = &p["analysisMethods"][0];
    let names: Vec<&str> = m["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["digit-0", "digit-1", "digit-2", "digit-3", "digit-9", "digit-10", "digit-11"]
    );
    let want = [
        "agglomerative-10",
        "dbscan-eps=0.5",
        "kmeans-02",
        "kmeans-2",
        "kmeans-03",
        "kmeans-10",
    ];
    assert_eq!(m["clusterings"], serde_json::json!(want));
    let meta = request_to(
        server.addr(),
        "GET",
        "/api/projects/0/analyses/spectral_analysis/category?category=digit-10",
    )
    .json();
    assert_eq!(meta["clusterings"], serde_json::json!(want));
}
