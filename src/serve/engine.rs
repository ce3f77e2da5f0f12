//! One patient scored at the point of care. In: FHIR resources about one patient (a CDS Hooks
//! request's prefetch, or what was fetched from the EHR's FHIR server), the instant to score at,
//! and the lake the model was trained from. Out: the same [`Assessment`] the batch path makes:
//! the resources go through ingest's FHIR reader (codes, units, times, quarantine), are merged
//! with the patient's history in the lake when the patient id resolves to a lake subject (exact
//! duplicates dropped as at ingest), and become features at "now" by the same point-in-time
//! function, then the same model, rules and trial effects. So the same patient gives the same
//! risk through both paths (tested).

use crate::cohort::spec::Task;
use crate::features::compute::{Visibility, Vocab, features_at};
use crate::features::spec::{Compiled, FeatureSpec};
use crate::ingest::fhir::{Medications, PATIENT_ID_SYSTEM, read_document};
use crate::ingest::time::TimeContext;
use crate::ingest::{Ctx, InputPolicy, SubjectSet};
use crate::lake::{Lake, shard_of, write};
use crate::model::bundle::Model;
use crate::model::data::Dataset;
use crate::recommend::RuleSet;
use crate::recommend::effects::Effects;
use crate::schema::{Event, subject_id_for};
use crate::score::{Assessment, Assessor, ScoreOptions};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

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

/// The loaded model, lake metadata and rules, shared by every request. libtorch modules are not
/// `Sync`, so the model is loaded once per worker and requests check one out of the pool.
pub struct Engine {
    pub manifest: crate::model::bundle::ModelManifest,
    pool: Mutex<Vec<Model>>,
    returned: Condvar,
    lake: Lake,
    known: SubjectSet,
    task: Task,
    compiled: Compiled,
    vocab: Vocab,
    rules: RuleSet,
    effects: Effects,
    pub opts: ScoreOptions,
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
        let task = Task::load(&model.manifest.task)
            .map_err(|e| EngineError::Setup(format!("task {:?}: {e}", model.manifest.task)))?;
        if task.hash != model.manifest.task_hash {
            return Err(EngineError::Setup(format!(
                "the model was trained for task {:?} with hash {}, this build's is {}",
                model.manifest.task, model.manifest.task_hash, task.hash
            )));
        }
        let spec = FeatureSpec::builtin();
        if spec.hash() != model.manifest.feature_spec_hash {
            return Err(EngineError::Setup(format!(
                "the model's feature spec hash is {}, this build's is {}",
                model.manifest.feature_spec_hash,
                spec.hash()
            )));
        }
        let codes = write::read_codes(&lake.root.join("metadata/codes.parquet"))?;
        let parents = write::read_code_parents(&lake.root.join("metadata/codes.parquet"))?;
        let task = task.with_descendants(&parents);
        let compiled = Compiled::new(spec.with_descendants(&parents), &codes)
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        let known: SubjectSet =
            write::read_subject_map(&lake.root.join("metadata/subject_map.parquet"))?
                .into_iter()
                .map(|i| i.subject_id)
                .collect();
        let vocab = Vocab {
            ids: model.vocab.clone(),
            norm: model.value_norm.clone(),
        };
        let mut pool = Vec::with_capacity(workers.max(1));
        for _ in 1..workers.max(1) {
            pool.push(load()?);
        }
        let manifest = model.manifest.clone();
        pool.push(model);
        Ok(Engine {
            manifest,
            pool: Mutex::new(pool),
            returned: Condvar::new(),
            lake,
            known,
            task,
            compiled,
            vocab,
            rules: RuleSet::builtin(),
            effects: Effects::builtin(),
            opts,
            cache: Mutex::new(VecDeque::new()),
            max_cached_events,
        })
    }

    /// The lake subject of a FHIR Patient id, when the lake knows it.
    pub fn subject_of(&self, patient_id: &str) -> Option<i64> {
        let s = subject_id_for(PATIENT_ID_SYSTEM, patient_id);
        self.known.contains(&s).then_some(s)
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
                let events = self.lake.read_shard(shard)?;
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
        let subject = subject_id_for(PATIENT_ID_SYSTEM, patient_id);
        let in_lake = self.known.contains(&subject);
        let known: SubjectSet = [subject].into_iter().collect();
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
            .filter(|e| e.subject_id == subject)
            .collect();
        let mut compiled = self.compiled.clone();
        let new_codes: std::collections::BTreeMap<String, Option<String>> = chunk
            .descriptions
            .into_iter()
            .map(|(c, d)| (c, Some(d)))
            .collect();
        compiled.add_codes(&new_codes);
        if in_lake {
            events.extend(self.history(subject)?);
        }
        let new_ids: HashSet<u64> = [REQUEST_FILE_ID].into_iter().collect();
        crate::ingest::driver::merge_dedupe(&mut events, &new_ids);
        let vis = Visibility::new(&events);
        let (tab, steps) = features_at(&events, &vis, now, &compiled, &self.task, &self.vocab);
        let d = Dataset::from_rows(
            self.manifest.columns.len(),
            vec![((subject, now), tab, steps)],
        );
        let model = {
            let mut pool = self.pool.lock().expect("pool lock");
            loop {
                match pool.pop() {
                    Some(m) => break m,
                    None => pool = self.returned.wait(pool).expect("pool lock"),
                }
            }
        };
        let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let risks = model.predict(&d);
            let assessor = Assessor::new(
                &model,
                &self.manifest.columns,
                &self.rules,
                &self.effects,
                &self.opts,
            );
            let eqs = assessor.equations(&d);
            let explain = vec![self.opts.explain != crate::score::Explain::None];
            assessor
                .assess(&d, &risks, &eqs, &explain)
                .pop()
                .expect("one row in, one assessment out")
        }));
        self.pool.lock().expect("pool lock").push(model);
        self.returned.notify_one();
        let assessment = scored.map_err(|_| EngineError::Setup("scoring panicked".into()))?;
        Ok(PatientResult {
            assessment,
            in_lake,
            accepted: chunk.tally.rows_accepted,
            quarantined,
            skipped: chunk.tally.rows_skipped,
        })
    }
}
