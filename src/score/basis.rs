//! The source records that drove each written-back score. In: the lake the features were built
//! from (refused if it is another one), the model's task and compiled feature spec, and an
//! explained [`Assessment`]. Out: [`BasisRecord`]s, the lake events behind the assessment's
//! top factors (`explain::basis::Behind` selects them with the features' own visibility
//! rule), each with the source's id of the record it came from, for `RiskAssessment.basis`.
//! The lake is read one shard at a time, the shard of the subjects being written.

use super::assess::Assessment;
use crate::cohort::spec::Task;
use crate::explain::basis::Behind;
use crate::features::FeatureManifest;
use crate::features::spec::Compiled;
use crate::lake::{Lake, shard_of};
use crate::model::bundle::{Model, ModelError};
use crate::schema::Event;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

/// Records listed per factor (the most recently known first).
pub const RECORDS_PER_FACTOR: usize = 3;

/// One source record behind a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasisRecord {
    /// The explanation factor it fed ("systolic_bp", "statin treatment").
    pub factor: String,
    /// Format and table or resource type (`fhir:Observation`, `omop:measurement`).
    pub source: String,
    /// The source's id of the record; `None` where the source row has none of its own.
    pub record_id: Option<String>,
    pub code: String,
    /// When the record became known (microseconds; `None` for static facts).
    pub known_at: Option<i64>,
}

/// Finds the records behind assessments in one lake.
pub struct Basis {
    lake: Lake,
    task: Task,
    compiled: Compiled,
    /// The shard read last and its events.
    shard: Option<(usize, Vec<Event>)>,
}

impl Basis {
    /// The lake at `lake_dir`, resolved for `model`'s task and feature spec.
    pub fn open(lake_dir: &Path, model: &Model) -> Result<Basis, ModelError> {
        let lake = Lake::open(lake_dir).map_err(|e| ModelError::Io {
            path: lake_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let (task, compiled) = model.inputs_for(&lake)?;
        Ok(Basis {
            lake,
            task,
            compiled,
            shard: None,
        })
    }

    /// Refuse features built from another lake (or another version of it): their rows would
    /// not be the lake's events.
    pub fn check(&self, features: &Path, fm: &FeatureManifest) -> Result<(), ModelError> {
        let here = crate::cohort::lake_fingerprint(&self.lake);
        if here != fm.lake_fingerprint {
            return Err(ModelError::Mismatch {
                dir: features.display().to_string(),
                message: format!(
                    "the features were built from lake fingerprint {}, --lake {} is {here}; rebuild the features from it or pass the lake they came from",
                    fm.lake_fingerprint,
                    self.lake.root.display()
                ),
            });
        }
        Ok(())
    }

    /// The records behind `a`'s top `top` factors per outcome, in factor order, each once.
    pub fn records(&mut self, a: &Assessment, top: usize) -> Result<Vec<BasisRecord>, ModelError> {
        if !a.explained {
            return Ok(vec![]);
        }
        self.read_shard_of(a.subject_id)?;
        let all = &self.shard.as_ref().expect("read above").1;
        let lo = all.partition_point(|e| e.subject_id < a.subject_id);
        let hi = all.partition_point(|e| e.subject_id <= a.subject_id);
        let events = &all[lo..hi];
        let behind = Behind::new(events, a.prediction_time, &self.compiled, &self.task);
        let mut factors: Vec<&crate::explain::Factor> = a
            .factors
            .values()
            .flat_map(|f| f.iter().take(top))
            .collect();
        factors.sort_by(|x, y| crate::explain::largest_first(x, y));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for f in factors {
            for i in behind.of(&f.factor, RECORDS_PER_FACTOR) {
                let e = &events[i];
                // one entry per source record (a BP Observation holds two events)
                let key = match &e.source_record_id {
                    Some(id) => format!("{}|{id}", e.source),
                    None => format!("{}#{i}", e.source),
                };
                if seen.insert(key) {
                    out.push(BasisRecord {
                        factor: f.factor.clone(),
                        source: e.source.to_string(),
                        record_id: e.source_record_id.clone(),
                        code: e.code.clone(),
                        known_at: e.known_at(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Read the subject's shard unless it is the one read last.
    fn read_shard_of(&mut self, subject_id: i64) -> Result<(), ModelError> {
        let s = shard_of(subject_id, self.lake.manifest.shards);
        if self.shard.as_ref().is_none_or(|(i, _)| *i != s) {
            let events = self.lake.read_shard(s).map_err(|e| ModelError::Io {
                path: self.lake.shard_path(s).display().to_string(),
                message: e.to_string(),
            })?;
            self.shard = Some((s, events));
        }
        Ok(())
    }
}
