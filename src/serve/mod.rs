//! `ehr-risk serve`: a CDS Hooks 2.0 service scoring a patient when a clinician opens the chart.
//! In: a configuration (`serve.toml`: model, lake, address, trusted issuers and their keys,
//! limits) and HTTP requests. Out: `GET /cds-services` (discovery), `POST
//! /cds-services/ehr-risk-patient-view` (`patient-view`: one card), `POST
//! /cds-services/ehr-risk-patient-view/feedback` (accepted and counted).
//!
//! Every call carries a JWT checked as the specification requires ([`auth`]); a missing prefetch
//! is fetched from the request's `fhirServer` with its bearer token, and a server that cannot be
//! reached or does not answer gives 412. The patient is scored by [`engine`] with the batch
//! path's reader, features, model, rules and trial effects. Bodies are limited (413), each
//! request has a time limit (503) and a concurrency limit queues the rest. Logs carry counts,
//! statuses and durations: never a token, a patient id or a value. TLS: terminate it in front
//! (a reverse proxy), as the README shows; the service speaks plain HTTP on its address.

pub mod auth;
pub mod engine;
pub mod hooks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The service's configuration (`serve.toml`); paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub model: PathBuf,
    pub lake: PathBuf,
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0: any free port).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// The URL clients call (the base of every `aud`); default `http://<bound address>`.
    pub public_url: Option<String>,
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_ms: u64,
    /// Clock skew allowed on `exp` (seconds).
    #[serde(default = "default_leeway")]
    pub clock_skew_s: u64,
    /// Tokens expiring further ahead than this are refused (bounds the replay cache).
    #[serde(default = "default_lifetime")]
    pub max_token_lifetime_s: i64,
    /// Explanations (integrated gradients) on the card.
    #[serde(default = "default_true")]
    pub explain: bool,
    /// Integrated-gradients path points per explanation (as the batch path: 32; fewer is a
    /// little faster, with the factors' sum a coarser match of the risk).
    #[serde(default = "default_ig_steps")]
    pub ig_steps: usize,
    /// Models loaded side by side (requests scored at once; libtorch modules are not shared).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Lake events kept in memory for patients' history (whole shards, least recently used
    /// dropped first; about 200 bytes an event).
    #[serde(default = "default_cached_events")]
    pub cached_events: usize,
    /// Score as of this instant (RFC 3339) instead of the wall clock: replays and tests.
    pub now: Option<String>,
    pub issuer: Vec<auth::IssuerConfig>,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_body() -> usize {
    2 * 1024 * 1024
}
fn default_timeout() -> u64 {
    10_000
}
fn default_concurrency() -> usize {
    64
}
fn default_fetch_timeout() -> u64 {
    5_000
}
fn default_leeway() -> u64 {
    30
}
fn default_lifetime() -> i64 {
    3_600
}
fn default_true() -> bool {
    true
}
fn default_ig_steps() -> usize {
    32
}
fn default_workers() -> usize {
    2
}
fn default_cached_events() -> usize {
    5_000_000
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("{0}")]
    Io(String),
}

impl ServeConfig {
    pub fn load(p: &Path) -> Result<(ServeConfig, PathBuf), ServeError> {
        let bad = |message: String| ServeError::Config {
            path: p.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
        let c: ServeConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if c.issuer.is_empty() {
            return Err(bad(
                "no [[issuer]]: every call needs a JWT from a trusted issuer".into(),
            ));
        }
        if c.max_concurrent == 0
            || c.max_body_bytes == 0
            || c.request_timeout_ms == 0
            || c.workers == 0
            || c.ig_steps == 0
        {
            return Err(bad(
                "max_concurrent, max_body_bytes, request_timeout_ms, workers and ig_steps must be at least 1".into(),
            ));
        }
        if let Some(n) = &c.now {
            chrono::DateTime::parse_from_rfc3339(n)
                .map_err(|e| bad(format!("now = {n:?}: not an RFC 3339 instant ({e})")))?;
        }
        let base = p.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok((c, base))
    }
}

/// Counts of what the service did (reported at shutdown; no patient data).
#[derive(Default)]
struct Counters {
    discovery: AtomicU64,
    patient_view: AtomicU64,
    feedback: AtomicU64,
    unauthorized: AtomicU64,
    bad_request: AtomicU64,
    precondition_failed: AtomicU64,
    errors: AtomicU64,
}

struct AppState {
    engine: Arc<engine::Engine>,
    auth: auth::Authenticator,
    public_url: String,
    http: reqwest::Client,
    fetch_timeout: Duration,
    now: Option<i64>,
    limit: tokio::sync::Semaphore,
    request_timeout: Duration,
    counters: Counters,
    model_label: String,
}

type Shared = Arc<AppState>;

fn unauthorized(s: &AppState, e: &auth::AuthError) -> Response {
    s.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
    tracing::info!(kind = %e, "refused: 401");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

fn reason(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(json!({"error": why}))).into_response()
}

async fn check(s: &AppState, headers: &HeaderMap, path: &str) -> Result<(), Response> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let aud = format!("{}{path}", s.public_url);
    s.auth
        .verify(h, &aud)
        .await
        .map(|_| ())
        .map_err(|e| unauthorized(s, &e))
}

async fn discovery(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = check(&s, &headers, "/cds-services").await {
        return r;
    }
    s.counters.discovery.fetch_add(1, Ordering::Relaxed);
    axum::Json(hooks::discovery()).into_response()
}

async fn feedback(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&s, &headers, &format!("/cds-services/{id}/feedback")).await {
        return r;
    }
    if id != hooks::SERVICE_ID {
        return reason(StatusCode::NOT_FOUND, "no such service");
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            s.counters.bad_request.fetch_add(1, Ordering::Relaxed);
            return reason(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}"));
        }
    };
    let Some(items) = v.get("feedback").and_then(|f| f.as_array()) else {
        s.counters.bad_request.fetch_add(1, Ordering::Relaxed);
        return reason(StatusCode::BAD_REQUEST, "feedback: expected an array");
    };
    s.counters
        .feedback
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    StatusCode::OK.into_response()
}

/// The prefetched resources, fetching what is missing from the FHIR server (412 when it
/// cannot be done).
async fn gather(s: &AppState, pv: &hooks::PatientView) -> Result<Vec<String>, Response> {
    let mut texts = Vec::new();
    for (key, template) in hooks::PREFETCH {
        if let Some(v) = pv.prefetch.get(key) {
            texts.push(v.clone());
            continue;
        }
        let Some(base) = &pv.fhir_server else {
            s.counters
                .precondition_failed
                .fetch_add(1, Ordering::Relaxed);
            return Err(reason(
                StatusCode::PRECONDITION_FAILED,
                &format!("prefetch.{key} is missing and the request names no fhirServer"),
            ));
        };
        let mut url = format!("{base}/{}", pv.query(template));
        // Follow a searchset's `next` pages, a bounded number of them.
        for _ in 0..50 {
            let mut rq = s
                .http
                .get(&url)
                .header(header::ACCEPT, "application/fhir+json")
                .timeout(s.fetch_timeout);
            if let Some(a) = &pv.fhir_authorization {
                rq = rq.bearer_auth(&a.access_token);
            }
            let fetched = async {
                let r = rq.send().await?.error_for_status()?;
                r.text().await
            }
            .await;
            let text = match fetched {
                Ok(t) => t,
                Err(e) => {
                    s.counters
                        .precondition_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        prefetch = key,
                        status = ?e.status(),
                        "412: the FHIR server did not give a prefetch"
                    );
                    return Err(reason(
                        StatusCode::PRECONDITION_FAILED,
                        &format!("prefetch.{key} could not be fetched from fhirServer"),
                    ));
                }
            };
            let doc = serde_json::from_str::<Value>(&text).ok();
            // What came back must be what was asked: the patient in context, or a Bundle.
            let fits = doc.as_ref().is_some_and(|v| {
                if key == "patient" {
                    v["resourceType"] == "Patient"
                        && v["id"].as_str() == Some(pv.patient_id.as_str())
                } else {
                    v["resourceType"] == "Bundle"
                }
            });
            if !fits {
                s.counters
                    .precondition_failed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    &format!(
                        "prefetch.{key}: the fhirServer's answer is not the resource asked for"
                    ),
                ));
            }
            let next = doc.as_ref().and_then(|v| {
                v["link"].as_array().and_then(|l| {
                    l.iter()
                        .find(|x| x["relation"] == "next")
                        .and_then(|x| x["url"].as_str().map(String::from))
                })
            });
            texts.push(text);
            match next {
                Some(n) if n.starts_with(base.as_str()) => url = n,
                _ => break,
            }
        }
    }
    Ok(texts)
}

async fn patient_view(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if let Err(r) = check(&s, &headers, &format!("/cds-services/{id}")).await {
        return r;
    }
    if id != hooks::SERVICE_ID {
        return reason(StatusCode::NOT_FOUND, "no such service");
    }
    let pv = match hooks::PatientView::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            s.counters.bad_request.fetch_add(1, Ordering::Relaxed);
            return reason(StatusCode::BAD_REQUEST, &e.0);
        }
    };
    let texts = match gather(&s, &pv).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = s
        .now
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let engine = s.engine.clone();
    let patient = pv.patient_id.clone();
    let scored = tokio::task::spawn_blocking(move || engine.assess(&patient, &texts, now)).await;
    let result = match scored {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            s.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "patient-view failed");
            return reason(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed");
        }
        Err(_) => {
            s.counters.errors.fetch_add(1, Ordering::Relaxed);
            return reason(StatusCode::INTERNAL_SERVER_ERROR, "scoring failed");
        }
    };
    let mut card = hooks::card(
        &result.assessment,
        &pv.hook_instance,
        &s.model_label,
        s.engine.top_factors(),
    );
    let mut notes = Vec::new();
    if !result.in_lake {
        notes.push("This patient has no history in the model's record store: the risk uses the EHR's resources alone.".to_string());
    }
    if !result.quarantined.is_empty() {
        notes.push(format!(
            "{} of the EHR's resources could not be read and were left out ({}).",
            result.quarantined.len(),
            {
                let mut r = result.quarantined.clone();
                r.sort();
                r.dedup();
                r.join("; ")
            }
        ));
    }
    if !notes.is_empty() {
        let d = card["detail"].as_str().unwrap_or("").to_string();
        card["detail"] = Value::String(format!("{d}\n_{}_", notes.join(" ")));
    }
    s.counters.patient_view.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        resources = result.accepted,
        quarantined = result.quarantined.len(),
        in_lake = result.in_lake,
        ms = started.elapsed().as_millis() as u64,
        "patient-view: 200"
    );
    axum::Json(json!({"cards": [card]})).into_response()
}

/// The concurrency limit (queued, within the request's time) and the request's time limit.
async fn guard(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let work = async {
        let _permit = s.limit.acquire().await.expect("semaphore open");
        next.run(req).await
    };
    match tokio::time::timeout(s.request_timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            s.counters.errors.fetch_add(1, Ordering::Relaxed);
            reason(StatusCode::SERVICE_UNAVAILABLE, "request timed out")
        }
    }
}

/// The router of a loaded service.
fn router(state: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/cds-services", get(discovery))
        .route("/cds-services/{id}", post(patient_view))
        .route("/cds-services/{id}/feedback", post(feedback))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Tell a service manager we are ready (systemd's `NOTIFY_SOCKET`), if one listens.
fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let s = std::os::unix::net::UnixDatagram::unbound();
        if let Ok(s) = s {
            let _ = s.send_to(state.as_bytes(), path);
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// What the service did, reported when it stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServeSummary {
    pub discovery: u64,
    pub patient_view: u64,
    pub feedback: u64,
    pub unauthorized: u64,
    pub bad_request: u64,
    pub precondition_failed: u64,
    pub errors: u64,
}

/// Load, bind, announce readiness through `ready(url)`, serve until SIGTERM or Ctrl-C, drain
/// the requests in flight, and return the counts.
pub fn run(
    config: &ServeConfig,
    base: &Path,
    ready: &mut dyn FnMut(&str),
) -> Result<ServeSummary, ServeError> {
    let opts = crate::score::ScoreOptions {
        explain: if config.explain {
            crate::score::Explain::All
        } else {
            crate::score::Explain::None
        },
        ig_steps: config.ig_steps,
        // The card shows the trials' effects; the network's association is for analysts.
        model_association: false,
        ..Default::default()
    };
    // One row per request: one libtorch thread per worker, the workers run side by side.
    crate::model::gru::intra_op_threads(1);
    let engine = engine::Engine::load(
        &base.join(&config.model),
        &base.join(&config.lake),
        opts,
        config.cached_events,
        config.workers,
    )?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.fetch_timeout_ms))
        .build()
        .map_err(|e| ServeError::Io(format!("HTTP client: {e}")))?;
    let auth = auth::Authenticator::new(
        &config.issuer,
        base,
        config.clock_skew_s,
        config.max_token_lifetime_s,
        http.clone(),
    )
    .map_err(|message| ServeError::Config {
        path: "issuer".into(),
        message,
    })?;
    let now = config.now.as_deref().map(|n| {
        chrono::DateTime::parse_from_rfc3339(n)
            .expect("checked at load")
            .timestamp_micros()
    });
    let m = &engine.manifest;
    let model_label = format!(
        "ehr-risk {} (model {}, weights {})",
        m.ehr_risk_version,
        m.task,
        &m.weights_hash[..12]
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Io(format!("runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .map_err(|e| ServeError::Io(format!("bind {}: {e}", config.bind)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let state = Arc::new(AppState {
            engine: Arc::new(engine),
            auth,
            public_url: public_url.clone(),
            http,
            fetch_timeout: Duration::from_millis(config.fetch_timeout_ms),
            now,
            limit: tokio::sync::Semaphore::new(config.max_concurrent),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            counters: Counters::default(),
            model_label,
        });
        ready(&format!("http://{addr}"));
        notify("READY=1");
        axum::serve(listener, router(state.clone(), config.max_body_bytes))
            .with_graceful_shutdown(async {
                shutdown_signal().await;
                notify("STOPPING=1");
            })
            .await
            .map_err(|e| ServeError::Io(e.to_string()))?;
        let c = &state.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(ServeSummary {
            discovery: g(&c.discovery),
            patient_view: g(&c.patient_view),
            feedback: g(&c.feedback),
            unauthorized: g(&c.unauthorized),
            bad_request: g(&c.bad_request),
            precondition_failed: g(&c.precondition_failed),
            errors: g(&c.errors),
        })
    })
}
