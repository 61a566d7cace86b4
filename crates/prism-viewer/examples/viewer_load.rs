//! Load test of a running `prism serve` on loopback: C concurrent clients (keep-alive HTTP/1.1)
//! ask for embeddings (binary) and heatmaps for a fixed time, bounded in count too; prints
//! p50/p90/p99 latency per route kind and the number of errors. Exits non-zero on any error.
//!
//! ```sh
//! prism serve project.yaml --port 8090 &
//! cargo run -p prism-viewer --example viewer_load -- http://127.0.0.1:8090 [--clients 50] [--seconds 30]
//! ```
//! Only loopback addresses are accepted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MAX_REQUESTS_PER_CLIENT: usize = 200_000;

struct Conn {
    addr: String,
    reader: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        for attempt in 0..2 {
            if self.reader.is_none() {
                let s = TcpStream::connect(&self.addr).map_err(|e| e.to_string())?;
                s.set_nodelay(true).ok();
                s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                self.reader = Some(BufReader::new(s));
            }
            match self.try_get(path) {
                Ok(r) => return Ok(r),
                // A keep-alive connection the server closed: reconnect once.
                Err(e) if attempt == 0 => {
                    self.reader = None;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err("unreachable".into())
    }

    fn try_get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let r = self.reader.as_mut().ok_or("no connection")?;
        write!(
            r.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.ok_or("no content-length")?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(base) = args.first() else {
        eprintln!("usage: viewer_load http://127.0.0.1:PORT [--clients N] [--seconds S]");
        return ExitCode::from(2);
    };
    let mut clients = 50usize;
    let mut seconds = 30u64;
    let mut it = args[1..].iter();
    while let Some(f) = it.next() {
        let v = it.next().and_then(|v| v.parse::<u64>().ok());
        match (f.as_str(), v) {
            ("--clients", Some(v)) => clients = (v as usize).clamp(1, 500),
            ("--seconds", Some(v)) => seconds = v.clamp(1, 300),
            _ => {
                eprintln!("bad argument {f}");
                return ExitCode::from(2);
            }
        }
    }
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&addr);
    if !(host == "localhost" || host == "[::1]" || host.starts_with("127.")) {
        eprintln!("refusing {host}: the load test only targets loopback addresses");
        return ExitCode::from(2);
    }

    // What to ask for: the first project's first analysis, every category.
    let mut setup = Conn {
        addr: addr.clone(),
        reader: None,
    };
    let project = match setup.get("/api/projects/0") {
        Ok((200, b)) => String::from_utf8_lossy(&b).to_string(),
        other => {
            eprintln!("cannot read project 0: {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let json: serde_json::Value = match serde_json::from_str(&project) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("project 0 is not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let method = json["analysisMethods"][0]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let cats: Vec<String> = json["analysisMethods"][0]["categories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let embedding = json["analysisMethods"][0]["embeddings"][0]
        .as_str()
        .unwrap_or("tsne")
        .to_string();
    let n = json["datasetSize"].as_u64().unwrap_or(1).max(1);
    if cats.is_empty() {
        eprintln!("project 0 has no categories");
        return ExitCode::FAILURE;
    }
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let method_enc = enc(&method);
    let maps = ["bwr", "coldnhot", "hot", "gray"];

    println!(
        "load test: {clients} clients, {seconds} s, {addr}, {} categories, {n} samples",
        cats.len()
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            let cats = cats.clone();
            let (method_enc, embedding) = (method_enc.clone(), enc(&embedding));
            std::thread::spawn(move || {
                let mut conn = Conn { addr, reader: None };
                let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
                let mut errors = Vec::new();
                let mut rng = 0x9E37_79B9u64 ^ (c as u64 * 0x1234_5678_9ABC);
                for k in 0..MAX_REQUESTS_PER_CLIENT {
                    if Instant::now() >= deadline {
                        break;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let kind = k % 2;
                    let path = if kind == 0 {
                        let cat = enc(&cats[(rng % cats.len() as u64) as usize]);
                        format!(
                            "/api/projects/0/analyses/{method_enc}/embedding.f32?category={cat}&embedding={embedding}"
                        )
                    } else {
                        let i = (rng >> 8) % n;
                        let map = maps[((rng >> 4) % 4) as usize];
                        let mode = if rng & 1 == 0 { "attribution" } else { "overlay" };
                        format!("/api/projects/0/attributions/{i}/image?mode={mode}&colorMap={map}")
                    };
                    let t = Instant::now();
                    match conn.get(&path) {
                        Ok((200, body)) if !body.is_empty() => {
                            lat[kind].push(t.elapsed().as_secs_f64() * 1e3)
                        }
                        Ok((s, body)) => errors.push(format!(
                            "{path}: {s} {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )),
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let start = Instant::now();
    let mut all: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok((lat, e)) => {
                for k in 0..2 {
                    all[k].extend(&lat[k]);
                }
                errors.extend(e);
            }
            Err(_) => errors.push("a client thread panicked".into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut total: Vec<f64> = all.iter().flatten().copied().collect();
    total.sort_by(f64::total_cmp);
    let [mut embeddings, mut heatmaps] = all;
    for (name, v) in [("embedding", &mut embeddings), ("heatmap", &mut heatmaps)] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:>9}: {:>7} requests  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "      all: {:>7} requests  p50 {:7.2} ms  p99 {:7.2} ms  {:.0} requests/s  errors {}",
        total.len(),
        percentile(&total, 0.5),
        percentile(&total, 0.99),
        total.len() as f64 / elapsed,
        errors.len()
    );
    for e in errors.iter().take(10) {
        println!("error: {e}");
    }
    if errors.is_empty() && !total.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
