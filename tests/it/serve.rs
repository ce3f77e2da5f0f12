//! The CDS Hooks service over real HTTP (issue 13): `ehr-risk serve` started as a process on a
//! loopback port with the shared pipeline's model and lake, called with signed JWTs. Discovery;
//! a patient-view with full prefetch (the card checked field by field, and its risk equal to the
//! batch score of the same patient at the same instant); with no prefetch and a local FHIR
//! endpoint serving the patient (bearer token forwarded); 412 when that endpoint is down or
//! absent; every bad-token case (401, no detail); malformed bodies (400 with a reason); an
//! oversized body (413); feedback counted; graceful shutdown on SIGTERM; no patient id or token
//! in the service's output.

use crate::common::*;
use crate::outputs::outputs;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

const ISS: &str = "https://ehr.example.org/cds-client";

fn b64(x: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x)
}

/// A fresh EC key pair: (PKCS#8 DER for signing, public JWK).
fn ec_key(
    alg: &'static ring::signature::EcdsaSigningAlgorithm,
    crv: &str,
    jalg: &str,
    kid: &str,
) -> (Vec<u8>, Value) {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let pk = kp.public_key().as_ref();
    let n = (pk.len() - 1) / 2;
    let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&pk[1..1 + n]), "y": b64(&pk[1 + n..]),
                     "kid": kid, "alg": jalg, "use": "sig"});
    (pkcs8.as_ref().to_vec(), jwk)
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(aud: &str, jti: &str) -> Value {
    json!({"iss": ISS, "sub": "test-client", "aud": aud, "iat": now_s(), "exp": now_s() + 300, "jti": jti})
}

fn sign(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    jku: Option<&str>,
    c: &Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(String::from);
    h.jku = jku.map(String::from);
    jsonwebtoken::encode(&h, c, key).unwrap()
}

/// A tiny HTTP/1.1 server on a loopback port: `routes` maps a path prefix to a body; every
/// request's Authorization header is recorded.
struct Fixture {
    url: String,
    auth_seen: Arc<Mutex<Vec<String>>>,
}

fn fixture_server(routes: Vec<(String, String)>) -> Fixture {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let auth_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = auth_seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    seen.lock().unwrap().push(v.trim().to_string());
                }
            }
            let body = routes
                .iter()
                .find(|(p, _)| path.starts_with(p.as_str()))
                .map(|(_, b)| b.clone());
            let resp = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    Fixture { url, auth_seen }
}

/// The service as a child process; killed if the test fails before it stops it.
struct Service {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start(config: &Path) -> Service {
    let mut child = bin()
        // -v: the info logs too must hold no patient id and no token.
        .args(["-v", "serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(u) = l.strip_prefix("ready: ") {
                let _ = tx.send(u.trim_end_matches("/cds-services").to_string());
            }
            keep.lock().unwrap().push(l);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| panic!("no readiness line: {:?}", lines.lock().unwrap()));
    Service {
        child,
        url,
        stderr: lines,
    }
}

/// The patient's resources in the pipeline's hospital FHIR export, by resource type.
fn fhir_of(dir: &Path, patient: &str) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    let reference = format!("\"Patient/{patient}\"");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        for l in text.lines() {
            if !(l.contains(&reference) || l.contains(&format!("\"id\":\"{patient}\""))) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let t = v["resourceType"].as_str().unwrap_or("").to_string();
            out.entry(t).or_default().push(v);
        }
    }
    out
}

fn searchset(rs: &[Value]) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "total": rs.len(),
           "entry": rs.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

/// (subject, FHIR patient id, latest prediction time, batch 10-year risks) of the highest-risk
/// scored subject whose Patient is in the hospital FHIR export.
fn chosen(p: &Path) -> (i64, String, i64, HashMap<String, f64>) {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
    let patients: std::collections::HashSet<String> =
        std::fs::read_to_string(p.join("in/hospital_fhir/Patient.ndjson"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_str().map(String::from))
            .collect();
    let ids = LakeView::load(&p.join("lake")).identities;
    let f = std::fs::File::open(p.join("scores/scores.parquet")).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    // subject -> (latest time, mi, stroke)
    let mut latest: HashMap<i64, (i64, f64, f64)> = HashMap::new();
    for b in r {
        let b = b.unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (s, t, h) = (
            col("subject_id"),
            col("prediction_time"),
            col("horizon_years"),
        );
        let (mi, st) = (col("mi_risk"), col("stroke_risk"));
        let s = s.as_primitive::<Int64Type>();
        let t = t.as_primitive::<TimestampMicrosecondType>();
        let h = h.as_primitive::<Int32Type>();
        let (mi, st) = (
            mi.as_primitive::<Float64Type>(),
            st.as_primitive::<Float64Type>(),
        );
        for i in 0..b.num_rows() {
            if h.value(i) != 10 {
                continue;
            }
            let e = latest.entry(s.value(i)).or_insert((i64::MIN, 0.0, 0.0));
            if t.value(i) > e.0 {
                *e = (t.value(i), mi.value(i), st.value(i));
            }
        }
    }
    let mut best: Option<(f64, i64, String)> = None;
    for id in &ids {
        if !patients.contains(&id.value) {
            continue;
        }
        if let Some((_, mi, st)) = latest.get(&id.subject_id) {
            let any = 1.0 - (1.0 - mi) * (1.0 - st);
            if best.as_ref().is_none_or(|b| any > b.0) {
                best = Some((any, id.subject_id, id.value.clone()));
            }
        }
    }
    let (_, s, pid) = best.expect("a scored patient with a FHIR Patient");
    let (t, mi, st) = latest[&s];
    (
        s,
        pid,
        t,
        [("mi".to_string(), mi), ("stroke".to_string(), st)].into(),
    )
}

/// The batch model's 10-year risks for one row of the features folder, scored on its own.
fn alone_risks(p: &Path, subject: i64, t: i64) -> HashMap<String, f64> {
    let m = ehr_risk::model::bundle::Model::load(&p.join("model")).unwrap();
    let d =
        ehr_risk::model::data::read_all(&p.join("features"), &m.manifest.columns, &|s, pt, _| {
            s == subject && pt == t
        })
        .unwrap();
    assert_eq!(d.len(), 1);
    let r = m.predict(&d);
    ["mi", "stroke"]
        .iter()
        .map(|o| {
            (
                o.to_string(),
                r[0].gru[m.output_index(&format!("{o}_10y")).unwrap()],
            )
        })
        .collect()
}

#[test]
fn cds_hooks_service_over_http() {
    let p = outputs();
    let (subject, pid, t, batch) = chosen(p);
    let res = fhir_of(&p.join("in/hospital_fhir"), &pid);
    let patient = res["Patient"][0].clone();
    let empty = vec![];
    let bundle_of = |ty: &str| searchset(res.get(ty).unwrap_or(&empty));
    let full_prefetch = json!({
        "patient": patient,
        "conditions": bundle_of("Condition"),
        "observations": bundle_of("Observation"),
        "medicationRequests": bundle_of("MedicationRequest"),
        "encounters": bundle_of("Encounter"),
    });

    // Keys: ES256 and ES384 generated here, RS384 from the test key pair, ES256 behind a jku.
    let (es256, es256_jwk) = ec_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        "P-256",
        "ES256",
        "es256-1",
    );
    let (es384, es384_jwk) = ec_key(
        &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        "P-384",
        "ES384",
        "es384-1",
    );
    let (jku_key, jku_jwk) = ec_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        "P-256",
        "ES256",
        "jku-1",
    );
    let rsa_jwk: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/data/serve/rsa-test.jwk.json")).unwrap(),
    )
    .unwrap();
    let rsa = EncodingKey::from_rsa_pem(
        &std::fs::read(repo().join("tests/data/serve/rsa-test-key.pem")).unwrap(),
    )
    .unwrap();
    let (k256, k384, kjku) = (
        EncodingKey::from_ec_der(&es256),
        EncodingKey::from_ec_der(&es384),
        EncodingKey::from_ec_der(&jku_key),
    );

    let es256 = |c: &Value| sign(Algorithm::ES256, &k256, Some("es256-1"), None, c);

    // The EHR's FHIR server: the patient's resources, and the jku key set.
    let q = |ty: &str| format!("/fhir/{ty}?patient={pid}");
    let ehr = fixture_server(vec![
        (
            format!("/fhir/Patient/{pid}"),
            res["Patient"][0].to_string(),
        ),
        (q("Condition"), bundle_of("Condition").to_string()),
        (q("Observation"), bundle_of("Observation").to_string()),
        (
            q("MedicationRequest"),
            bundle_of("MedicationRequest").to_string(),
        ),
        (q("Encounter"), bundle_of("Encounter").to_string()),
        ("/jwks.json".into(), json!({"keys": [jku_jwk]}).to_string()),
        // A server that answers with another patient than the one asked for.
        (
            "/fhir/Patient/someone-else".into(),
            res["Patient"][0].to_string(),
        ),
    ]);
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = format!("http://{}/fhir", l.local_addr().unwrap());
        drop(l);
        u
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.jwks.json"),
        json!({"keys": [es256_jwk, es384_jwk, rsa_jwk]}).to_string(),
    )
    .unwrap();
    let when = chrono::DateTime::from_timestamp_micros(t)
        .unwrap()
        .to_rfc3339();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"model = "{}"
lake = "{}"
bind = "127.0.0.1:0"
max_body_bytes = 400000
now = "{when}"

[[issuer]]
iss = "{ISS}"
jwks_file = "keys.jwks.json"
jku = ["{}/jwks.json"]
"#,
            p.join("model").display(),
            p.join("lake").display(),
            ehr.url
        ),
    )
    .unwrap();
    let svc = start(&config);
    let base = svc.url.clone();
    let disc = format!("{base}/cds-services");
    let hook = format!("{base}/cds-services/ehr-risk-patient-view");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let call = |url: &str, token: Option<String>, body: Option<Vec<u8>>| {
        let rq = match &body {
            Some(b) => http
                .post(url)
                .header("content-type", "application/json")
                .body(b.clone()),
            None => http.get(url),
        };
        let rq = match token {
            Some(t) => rq.bearer_auth(t),
            None => rq,
        };
        rt.block_on(async {
            let r = rq.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, text)
        })
    };
    let mut n = 0;
    let mut jti = || {
        n += 1;
        format!("jti-{n}")
    };
    let request = |prefetch: Value, server: Option<&str>| -> Vec<u8> {
        let mut v = json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                           "context": {"userId": "Practitioner/example", "patientId": pid},
                           "prefetch": prefetch});
        if let Some(s) = server {
            v["fhirServer"] = json!(s);
            v["fhirAuthorization"] = json!({"access_token": "fhir-access-token-xyz", "token_type": "Bearer",
                                             "expires_in": 300, "scope": "patient/*.read", "subject": "ehr-risk"});
        }
        serde_json::to_vec(&v).unwrap()
    };

    // Discovery: no token, then a valid ES384 token.
    let (s, body) = call(&disc, None, None);
    assert_eq!(
        (s, body.as_str()),
        (401, ""),
        "no token: 401 with no detail"
    );
    let tok = sign(
        Algorithm::ES384,
        &k384,
        Some("es384-1"),
        None,
        &claims(&disc, &jti()),
    );
    let (s, body) = call(&disc, Some(tok.clone()), None);
    assert_eq!(s, 200, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["services"][0]["id"], "ehr-risk-patient-view");
    assert_eq!(d["services"][0]["hook"], "patient-view");
    // The same token again is a replay.
    assert_eq!(call(&disc, Some(tok), None).0, 401, "replayed jti");

    // patient-view with full prefetch: the card, and the batch path's risk.
    let tok = es256(&claims(&hook, &jti()));
    let (s, body) = call(&hook, Some(tok), Some(request(full_prefetch.clone(), None)));
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let card = &v["cards"][0];
    let summary = card["summary"].as_str().unwrap();
    assert!(summary.chars().count() < 140, "{summary}");
    let x = &card["extension"]["ehr-risk"];
    let tier = x["tier"].as_str().unwrap();
    assert!(
        summary.to_lowercase().starts_with(tier),
        "{summary} / {tier}"
    );
    assert_eq!(
        card["indicator"],
        match tier {
            "high" => "critical",
            "intermediate" => "warning",
            _ => "info",
        }
    );
    // The features folder's row of this patient at this instant, scored alone by the batch
    // model: the point-of-care path computed the same inputs, so the risk is the same bit for
    // bit. Scored inside its shard the batch's shape changes the f32 summation order, so the
    // scores file agrees to f32 precision.
    let alone = alone_risks(p, subject, t);
    for o in ["mi", "stroke"] {
        let served = x["risk"][o].as_f64().unwrap();
        assert_eq!(
            served, alone[o],
            "{o}: the same inputs as the features stage"
        );
        assert!(
            (served - batch[o]).abs() < 1e-6,
            "{o}: served {served} vs batch {}: the same patient at the same instant",
            batch[o]
        );
    }
    assert_eq!(x["horizon_years"], 10);
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("**10-year risk**"), "{detail}");
    assert!(detail.contains("What drives the risk"), "{detail}");
    assert!(
        card["source"]["label"]
            .as_str()
            .unwrap()
            .contains("ehr-risk")
    );
    assert!(card["uuid"].as_str().unwrap().len() == 36);
    if detail.contains("**Recommended**") {
        assert!(
            !card["links"].as_array().unwrap().is_empty(),
            "guideline links"
        );
        for l in card["links"].as_array().unwrap() {
            assert!(l["url"].as_str().unwrap().starts_with("https://doi.org/"));
        }
    }
    assert!(
        !detail.contains("If done") || detail.contains("Effect measured in trials"),
        "a what-if names its trial source: {detail}"
    );

    // Requests that arrive together are scored in one batch: each still gets its own card, with
    // the same risk to f32 precision.
    let together: Vec<(u16, String)> = {
        let bodies: Vec<(String, Vec<u8>)> = (0..12)
            .map(|_| {
                (
                    es256(&claims(&hook, &jti())),
                    request(full_prefetch.clone(), None),
                )
            })
            .collect();
        rt.block_on(async {
            let calls = bodies.into_iter().map(|(tok, body)| {
                let rq = http
                    .post(&hook)
                    .header("content-type", "application/json")
                    .bearer_auth(tok)
                    .body(body);
                tokio::spawn(async move {
                    let r = rq.send().await.unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                })
            });
            let mut out = Vec::new();
            for c in calls.collect::<Vec<_>>() {
                out.push(c.await.unwrap());
            }
            out
        })
    };
    for (s, body) in &together {
        assert_eq!(*s, 200, "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        for o in ["mi", "stroke"] {
            let served = v["cards"][0]["extension"]["ehr-risk"]["risk"][o]
                .as_f64()
                .unwrap();
            assert!((served - alone[o]).abs() < 1e-6, "{o}: {served} in a batch");
        }
    }

    // No prefetch but the patient: fetched from the EHR's FHIR server with its bearer token.
    let only_patient = json!({"patient": full_prefetch["patient"]});
    let tok = sign(
        Algorithm::RS384,
        &rsa,
        Some("rsa-test-1"),
        None,
        &claims(&hook, &jti()),
    );
    let fhir_base = format!("{}/fhir", ehr.url);
    let (s, body) = call(
        &hook,
        Some(tok),
        Some(request(only_patient.clone(), Some(&fhir_base))),
    );
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for o in ["mi", "stroke"] {
        let served = v["cards"][0]["extension"]["ehr-risk"]["risk"][o]
            .as_f64()
            .unwrap();
        assert_eq!(served, alone[o], "{o} through the FHIR fetch");
    }
    assert!(
        ehr.auth_seen
            .lock()
            .unwrap()
            .iter()
            .any(|a| a == "Bearer fhir-access-token-xyz"),
        "the FHIR fetch carries the request's access token"
    );
    // Nothing prefetched and no FHIR server, or a server that is down: 412.
    let tok = es256(&claims(&hook, &jti()));
    assert_eq!(
        call(&hook, Some(tok), Some(request(json!({}), None))).0,
        412
    );
    let tok = es256(&claims(&hook, &jti()));
    assert_eq!(
        call(&hook, Some(tok), Some(request(only_patient, Some(&down)))).0,
        412
    );

    // A FHIR server whose answer is not the resource asked for: 412 too.
    let other = json!({"hook": "patient-view", "hookInstance": "x2",
                       "context": {"patientId": "someone-else"}, "fhirServer": fhir_base});
    let (s, text) = call(
        &hook,
        Some(es256(&claims(&hook, &jti()))),
        Some(other.to_string().into_bytes()),
    );
    assert_eq!(s, 412, "{text}");
    assert!(text.contains("not the resource asked for"), "{text}");

    // Every bad token: 401 with no detail.
    let body = request(full_prefetch.clone(), None);
    let header_b64 = |h: Value| b64(h.to_string().as_bytes());
    let none = format!(
        "{}.{}.",
        header_b64(json!({"alg": "none", "kid": "es256-1"})),
        header_b64(claims(&hook, &jti()))
    );
    let hs = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"secret"),
        Some("es256-1"),
        None,
        &claims(&hook, &jti()),
    );
    let mut expired = claims(&hook, &jti());
    expired["exp"] = json!(now_s() - 600);
    expired["iat"] = json!(now_s() - 900);
    let mut other_iss = claims(&hook, &jti());
    other_iss["iss"] = json!("https://attacker.example");
    let mut far = claims(&hook, &jti());
    far["exp"] = json!(now_s() + 86_400 * 30);
    let mut no_jti = claims(&hook, "");
    no_jti.as_object_mut().unwrap().remove("jti");
    let (stranger, _) = ec_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        "P-256",
        "ES256",
        "es256-1",
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("alg none", Some(none)),
        ("HMAC", Some(hs)),
        (
            "no kid",
            Some(sign(
                Algorithm::ES256,
                &k256,
                None,
                None,
                &claims(&hook, &jti()),
            )),
        ),
        (
            "unknown kid",
            Some(sign(
                Algorithm::ES256,
                &k256,
                Some("nobody"),
                None,
                &claims(&hook, &jti()),
            )),
        ),
        (
            "wrong key for the kid",
            Some(sign(
                Algorithm::ES256,
                &EncodingKey::from_ec_der(&stranger),
                Some("es256-1"),
                None,
                &claims(&hook, &jti()),
            )),
        ),
        (
            "aud of another endpoint",
            Some(es256(&claims(&disc, &jti()))),
        ),
        ("expired", Some(es256(&expired))),
        ("untrusted issuer", Some(es256(&other_iss))),
        ("expiry a month ahead", Some(es256(&far))),
        ("no jti", Some(es256(&no_jti))),
        (
            "jku off the allow-list",
            Some(sign(
                Algorithm::ES256,
                &kjku,
                Some("jku-1"),
                Some("https://attacker.example/jwks.json"),
                &claims(&hook, &jti()),
            )),
        ),
        ("garbage", Some("not.a.jwt".into())),
        ("no token", None),
    ];
    for (what, tok) in cases {
        let (s, text) = call(&hook, tok, Some(body.clone()));
        assert_eq!((s, text.as_str()), (401, ""), "{what}");
    }
    // A key fetched from an allowed jku is trusted.
    let jku = format!("{}/jwks.json", ehr.url);
    let tok = sign(
        Algorithm::ES256,
        &kjku,
        Some("jku-1"),
        Some(&jku),
        &claims(&hook, &jti()),
    );
    assert_eq!(
        call(&hook, Some(tok), Some(body.clone())).0,
        200,
        "allowed jku"
    );

    // Malformed and oversized bodies.
    for (bad, why) in [
        (b"{not json".to_vec(), "not JSON"),
        (
            br#"{"hook": "order-sign", "hookInstance": "x", "context": {"patientId": "a"}}"#
                .to_vec(),
            "patient-view",
        ),
        (
            br#"{"hook": "patient-view", "hookInstance": "x", "context": {}}"#.to_vec(),
            "context.patientId",
        ),
    ] {
        let tok = es256(&claims(&hook, &jti()));
        let (s, text) = call(&hook, Some(tok), Some(bad));
        assert_eq!(s, 400, "{text}");
        assert!(text.contains(why), "{text} should say {why}");
    }
    let tok = es256(&claims(&hook, &jti()));
    let big = vec![b' '; 500_000];
    assert_eq!(
        call(&hook, Some(tok), Some(big)).0,
        413,
        "body over max_body_bytes"
    );

    // Feedback is accepted and counted.
    let fb = format!("{hook}/feedback");
    let tok = es256(&claims(&fb, &jti()));
    let fbody = json!({"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]});
    assert_eq!(
        call(&fb, Some(tok), Some(fbody.to_string().into_bytes())).0,
        200
    );

    // Graceful shutdown on SIGTERM, with the counts; nothing identifying in the output.
    let mut svc = svc;
    let st = std::process::Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let code = svc.child.wait().unwrap();
    assert!(code.success(), "exit {code:?}");
    std::thread::sleep(Duration::from_millis(200));
    let err = svc.stderr.lock().unwrap().join("\n");
    assert!(err.contains("feedback 1"), "{err}");
    assert!(err.contains("patient-view 15"), "{err}");
    assert!(
        err.contains("patient-view: 200") && err.contains("refused: 401"),
        "the info logs are there to check: {err}"
    );
    assert!(!err.contains(&pid), "no patient id in the service's output");
    assert!(
        !err.contains("fhir-access-token-xyz"),
        "no token in the service's output"
    );
}
