//! One patient scored at the point of care. In: FHIR resources about one patient (a CDS Hooks
//! request's prefetch, or what was fetched from the EHR's FHIR server), the instant to score at,
//! and the lake the model was trained from. Out: the same [`Assessment`] the batch path makes:
//! the resources go through ingest's FHIR reader (codes, units, times, quarantine), are merged
//! with the patient's history in the lake when the patient id resolves to a lake subject (exact
//! duplicates dropped as at ingest), and become features at "now" by the same point-in-time
//! function, then the same model, rules and trial effects. So the same patient gives the same
//! risk through both paths (tested). Requests that arrive together are scored in one batch by a
//! worker (their risks then agree with the batch path to f32 precision, the batch's shape
//! changing the summation order; alone, bit for bit).

use crate::cohort::spec::Task;
use crate::features::compute::{Visibility, Vocab, features_at};
use crate::features::spec::Compiled;
use crate::ingest::fhir::{Medications, PATIENT_ID_SYSTEM, read_document};
use crate::ingest::time::TimeContext;
use crate::ingest::{Ctx, InputPolicy, SubjectSet};
use crate::lake::{Lake, shard_of, write};
use crate::model::bundle::Model;
use crate::model::data::{Dataset, MemoryRow};
use crate::recommend::RuleSet;
use crate::recommend::effects::Effects;
use crate::schema::{Event, subject_id_for};
use crate::score::{Assessment, Assessor, ScoreOptions};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

/// Provenance file id of events that came with a request (never an input file's).
const REQUEST_FILE_ID: u64 = 0xC0_5E_00_00_00_01;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

/// One lake shard's events by subject.
type ShardEvents = Arc<HashMap<i64, Vec<Event>>>;

/// What the engine made of one patient's resources.
#[derive(Debug, Clone)]
pub struct PatientResult {
    pub assessment: Assessment,
    /// Whether the patient id resolved to a subject in the lake (history merged).
    pub in_lake: bool,
    /// Resources read into events / quarantined (with their reasons) / skipped.
    pub accepted: u64,
    pub quarantined: Vec<String>,
    pub skipped: u64,
}

/// Rows scored together at most: requests that arrive while a worker is busy wait, and the
/// worker then takes up to this many in one batch (libtorch's per-operation cost, paid once).
const MAX_BATCH: usize = 32;

/// A patient's model inputs waiting to be scored, and where the assessment goes.
struct Job {
    row: MemoryRow,
    reply: mpsc::Sender<Option<Assessment>>,
}

/// What a scoring worker needs besides its model.
struct Scoring {
    columns: Vec<String>,
    rules: RuleSet,
    effects: Effects,
    opts: ScoreOptions,
}

/// One worker: its own model (libtorch modules are not `Sync`), taking the jobs waiting in the
/// queue in batches of up to [`MAX_BATCH`] rows.
fn worker(model: Model, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, s: Arc<Scoring>) {
    loop {
        let batch: Vec<Job> = {
            let rx = jobs.lock().expect("queue lock");
            let Ok(first) = rx.recv() else {
                return; // the engine is gone
            };
            let mut v = vec![first];
            while v.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => v.push(j),
                    Err(_) => break,
                }
            }
            v
        };
        let (rows, replies): (Vec<MemoryRow>, Vec<_>) =
            batch.into_iter().map(|j| (j.row, j.reply)).unzip();
        let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let d = Dataset::from_rows(s.columns.len(), rows);
            let risks = model.predict(&d);
            let assessor = Assessor::new(&model, &s.columns, &s.rules, &s.effects, &s.opts);
            let eqs = assessor.equations(&d);
            let explain = vec![s.opts.explain != crate::score::Explain::None; d.len()];
            assessor.assess(&d, &risks, &eqs, &explain)
        }));
        match scored {
            Ok(out) => {
                for (r, a) in replies.into_iter().zip(out) {
                    let _ = r.send(Some(a));
                }
            }
            Err(_) => {
                for r in replies {
                    let _ = r.send(None);
                }
            }
        }
    }
}

/// The loaded model, lake metadata and rules, shared by every request. Scoring runs on worker
/// threads, each with its own copy of the model; requests queue for them.
pub struct Engine {
    pub manifest: crate::model::bundle::ModelManifest,
    jobs: Mutex<mpsc::Sender<Job>>,
    scoring: Arc<Scoring>,
    lake: Lake,
    /// Source record id -> person (subject) id, from the lake's subject map.
    persons: HashMap<i64, i64>,
    task: Task,
    compiled: Compiled,
    vocab: Vocab,
    /// Shards of the lake read so far, most recently used last, holding at most
    /// `max_cached_events` events together (at least the last shard read).
    cache: Mutex<VecDeque<(usize, ShardEvents, usize)>>,
    max_cached_events: usize,
}

impl Engine {
    /// Load a model and the lake it was trained from; the model's task and feature spec must be
    /// the built-in ones this build computes (else refused: the features would differ).
    pub fn load(
        model_dir: &Path,
        lake_dir: &Path,
        opts: ScoreOptions,
        max_cached_events: usize,
        workers: usize,
    ) -> Result<Engine, EngineError> {
        let load = || Model::load(model_dir).map_err(|e| EngineError::Setup(e.to_string()));
        let model = load()?;
        let lake = Lake::open(lake_dir)?;
        let (task, compiled) = model
            .inputs_for(&lake)
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        // A chart's patient id is one source record; linkage may have joined it to a person
        // known under another id.
        let persons: HashMap<i64, i64> =
            write::read_subject_rows(&lake.root.join("metadata/subject_map.parquet"))?
                .into_iter()
                .map(|r| (r.identity.subject_id, r.person))
                .collect();
        let vocab = Vocab {
            ids: model.vocab.clone(),
            norm: model.value_norm.clone(),
        };
        let manifest = model.manifest.clone();
        let scoring = Arc::new(Scoring {
            columns: manifest.columns.clone(),
            rules: RuleSet::builtin(),
            effects: Effects::builtin(),
            opts,
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut models = vec![model];
        for _ in 1..workers.max(1) {
            models.push(load()?);
        }
        for m in models {
            let (rx, s) = (rx.clone(), scoring.clone());
            std::thread::Builder::new()
                .name("ehr-risk-scorer".into())
                .spawn(move || worker(m, rx, s))
                .map_err(|e| EngineError::Setup(format!("scoring thread: {e}")))?;
        }
        Ok(Engine {
            manifest,
            jobs: Mutex::new(tx),
            scoring,
            lake,
            persons,
            task,
            compiled,
            vocab,
            cache: Mutex::new(VecDeque::new()),
            max_cached_events,
        })
    }

    /// Factors listed per outcome on a card.
    pub fn top_factors(&self) -> usize {
        self.scoring.opts.top_factors
    }

    /// A subject's events in the lake.
    fn history(&self, subject: i64) -> Result<Vec<Event>, EngineError> {
        let shard = shard_of(subject, self.lake.manifest.shards);
        let cached = {
            let mut c = self.cache.lock().expect("cache lock");
            let hit = c.iter().position(|(i, _, _)| *i == shard);
            hit.map(|k| {
                let e = c.remove(k).expect("found");
                let m = e.1.clone();
                c.push_back(e);
                m
            })
        };
        let by = match cached {
            Some(m) => m,
            None => {
                let events = self.lake.read_shard_analytic(shard)?;
                let n = events.len();
                let mut by: HashMap<i64, Vec<Event>> = HashMap::new();
                for e in events {
                    by.entry(e.subject_id).or_default().push(e);
                }
                let by = Arc::new(by);
                let mut c = self.cache.lock().expect("cache lock");
                if !c.iter().any(|(i, _, _)| *i == shard) {
                    c.push_back((shard, by.clone(), n));
                    let mut total: usize = c.iter().map(|x| x.2).sum();
                    while total > self.max_cached_events && c.len() > 1 {
                        total -= c.pop_front().expect("non-empty").2;
                    }
                }
                by
            }
        };
        Ok(by.get(&subject).cloned().unwrap_or_default())
    }

    /// Score one patient at `now` from `resources` (JSON texts: resources or Bundles).
    pub fn assess(
        &self,
        patient_id: &str,
        resources: &[String],
        now: i64,
    ) -> Result<PatientResult, EngineError> {
        let record = subject_id_for(PATIENT_ID_SYSTEM, patient_id);
        let person = self.persons.get(&record).copied();
        let subject = person.unwrap_or(record);
        let in_lake = person.is_some();
        let known: SubjectSet = [record].into_iter().collect();
        let policy = InputPolicy::default();
        let ctx = Ctx {
            time: TimeContext::default(),
            max_event_time: now + 86_400_000_000,
            min_event_time: -3_786_825_600_000_000,
            known: &known,
            policy: &policy,
            file_id: REQUEST_FILE_ID,
            file: "cds-hooks request",
        };
        let meds = Medications::default();
        let mut chunk = crate::ingest::Chunk::default();
        for text in resources {
            chunk.merge(read_document(text, &ctx, &meds));
        }
        let quarantined: Vec<String> = chunk
            .quarantine
            .iter()
            .map(|q| format!("{}: {}", q.field, q.reason))
            .collect();
        // Events about another patient than the one in context are not this patient's.
        let mut events: Vec<Event> = chunk
            .events
            .into_iter()
            .filter(|e| e.subject_id == record)
            .map(|mut e| {
                e.assign_person(subject);
                e
            })
            .collect();
        // Medications the lake has not seen join their treatments for this request only; the
        // common case (no descriptions) borrows the engine's compiled spec.
        let compiled = if chunk.descriptions.is_empty() {
            std::borrow::Cow::Borrowed(&self.compiled)
        } else {
            let new_codes: std::collections::BTreeMap<String, Option<String>> = chunk
                .descriptions
                .into_iter()
                .map(|(c, d)| (c, Some(d)))
                .collect();
            let mut c = self.compiled.clone();
            c.add_codes(&new_codes);
            std::borrow::Cow::Owned(c)
        };
        if in_lake {
            events.extend(self.history(subject)?);
        }
        let new_ids: HashSet<u64> = [REQUEST_FILE_ID].into_iter().collect();
        crate::ingest::driver::merge_dedupe(&mut events, &new_ids);
        let vis = Visibility::new(&events);
        let (tab, steps) = features_at(&events, &vis, now, &compiled, &self.task, &self.vocab);
        let (reply, answer) = mpsc::channel();
        self.jobs
            .lock()
            .expect("queue lock")
            .send(Job {
                row: ((subject, now), tab, steps),
                reply,
            })
            .map_err(|_| EngineError::Setup("no scoring worker is running".into()))?;
        let assessment = answer
            .recv()
            .ok()
            .flatten()
            .ok_or_else(|| EngineError::Setup("scoring failed".into()))?;
        Ok(PatientResult {
            assessment,
            in_lake,
            accepted: chunk.tally.rows_accepted,
            quarantined,
            skipped: chunk.tally.rows_skipped,
        })
    }
}
