//! Load test of the CDS Hooks service (issue 13): `ehr-risk serve` on the demo's model and lake,
//! `CLIENTS` concurrent clients for `SECONDS`, each call a `patient-view` with full prefetch for
//! one of the demo's FHIR patients, a freshly signed ES256 JWT (unique `jti`), explanations on
//! (`noexplain` as a fourth argument turns them off; `IG_STEPS` sets their path points, 32).
//! Prints requests, throughput, latency percentiles and errors.
//!
//! ```text
//! cargo run -q -- demo                       # out/demo: model, lake, exports
//! cargo bench --bench cds_hooks_load -- [DEMO_DIR] [SECONDS] [CLIENTS]
//! ```

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn b64(x: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x)
}

/// Full prefetch bodies for up to `n` patients of the hospital FHIR export.
fn bodies(dir: &std::path::Path, n: usize) -> Vec<Value> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let patients: Vec<Value> = read("Patient.ndjson")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(n)
        .collect();
    let mut by: std::collections::HashMap<String, std::collections::HashMap<String, Vec<Value>>> =
        Default::default();
    for f in ["Condition", "Observation", "MedicationRequest", "Encounter"] {
        for l in read(&format!("{f}.ndjson")).lines() {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            if let Some(r) = v["subject"]["reference"].as_str() {
                let id = r.trim_start_matches("Patient/").to_string();
                by.entry(id)
                    .or_default()
                    .entry(f.into())
                    .or_default()
                    .push(v);
            }
        }
    }
    let bundle = |rs: Option<&Vec<Value>>| {
        let rs = rs.cloned().unwrap_or_default();
        json!({"resourceType": "Bundle", "type": "searchset", "total": rs.len(),
               "entry": rs.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
    };
    patients
        .into_iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap_or("").to_string();
            let r = by.get(&id);
            let get = |k: &str| bundle(r.and_then(|m| m.get(k)));
            json!({"hook": "patient-view", "hookInstance": format!("load-{id}"),
                   "context": {"userId": "Practitioner/load", "patientId": id},
                   "prefetch": {"patient": p, "conditions": get("Condition"),
                                "observations": get("Observation"),
                                "medicationRequests": get("MedicationRequest"),
                                "encounters": get("Encounter")}})
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let demo = PathBuf::from(args.first().map(String::as_str).unwrap_or("out/demo"));
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    // A fourth argument `noexplain` turns explanations off (to see what they cost).
    let explain = args.get(3).map(String::as_str) != Some("noexplain");
    let ig_steps: usize = std::env::var("IG_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let demo = std::fs::canonicalize(&demo)
        .unwrap_or_else(|_| panic!("{}: run `cargo run -- demo` first", demo.display()));
    let bodies: Arc<Vec<String>> = Arc::new(
        bodies(&demo.join("input/hospital_fhir"), 200)
            .iter()
            .map(Value::to_string)
            .collect(),
    );
    assert!(!bodies.is_empty(), "no FHIR patients in the demo's exports");

    // A signing key and the service's configuration.
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let pk = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&pk[1..33]), "y": b64(&pk[33..]),
                     "kid": "load-1", "alg": "ES256", "use": "sig"});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.json"),
        json!({"keys": [jwk]}).to_string(),
    )
    .unwrap();
    let iss = "https://load.example/client";
    std::fs::write(
        dir.path().join("serve.toml"),
        format!(
            "model = \"{}\"\nlake = \"{}\"\nbind = \"127.0.0.1:0\"\nmax_concurrent = 64\nexplain = {explain}\nig_steps = {ig_steps}\n\n[[issuer]]\niss = \"{iss}\"\njwks_file = \"keys.json\"\n",
            demo.join("model").display(),
            demo.join("lake").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehr-risk"))
        .args(["serve", "--config"])
        .arg(dir.path().join("serve.toml"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let l = lines
            .next()
            .expect("the service printed its readiness line")
            .unwrap();
        if let Some(u) = l.strip_prefix("ready: ") {
            break u.trim_end_matches("/cds-services").to_string();
        }
    };
    let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let url = Arc::new(format!("{base}/cds-services/ehr-risk-patient-view"));
    let key = Arc::new(jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let results: Vec<(Vec<f64>, u64)> = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, url, key, bodies) = (http.clone(), url.clone(), key.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, c);
                while Instant::now() < deadline {
                    let now = chrono::Utc::now().timestamp();
                    let claims = json!({"iss": iss, "sub": "load", "aud": url.as_str(), "iat": now,
                                        "exp": now + 300, "jti": format!("{c}-{i}")});
                    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                    h.kid = Some("load-1".into());
                    let tok = jsonwebtoken::encode(&h, &claims, &key).unwrap();
                    let body = bodies[i % bodies.len()].clone();
                    let t = Instant::now();
                    let r = http
                        .post(url.as_str())
                        .bearer_auth(tok)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    errors += (!ok) as u64;
                    i += clients;
                }
                (lat, errors)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let wall = started.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "cds-hooks patient-view (explanations {explain}, {ig_steps} IG steps), {clients} clients, {wall:.0} s: {} requests ({:.1}/s), {errors} errors; latency ms p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
        lat.len(),
        lat.len() as f64 / wall,
        q(0.50),
        q(0.95),
        q(0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    for l in stderr.join().unwrap() {
        println!("service: {l}");
    }
}
