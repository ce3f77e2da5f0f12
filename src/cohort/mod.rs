//! Cohort: a task (`schemas/tasks/*.toml`) applied to the lake gives labels, written once
//! against canonical events whatever export they came from. In: a lake and a task. Out, in the
//! cohort folder: `labels/<outcome>_<h>y/shard-NNNN.parquet` in the MEDS label schema
//! (`subject_id`, `prediction_time`, `boolean_value`), `cohort/shard-NNNN.parquet` (every
//! eligible prediction time with split, age, prior-outcome flags and censoring),
//! `survival/shard-NNNN.parquet` (each time's time to event: follow-up, death and the first of
//! each outcome, in years; what a time-to-event model trains on), `summary.json`
//! (counts, prevalence, censored, excluded by reason, per split) and `manifest.json` (task hash,
//! lake fingerprint). Shards are labelled in parallel, one lake shard per worker at a time.

pub mod availability;
pub mod censoring;
pub mod labels;
pub mod spec;

use crate::lake::{Lake, LakeError, write};
use crate::schema::Event;
use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use labels::{Exclusion, LabelValue, label_bool, label_subject_until};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spec::Task;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    /// A cohort used with another lake or task than the one it was made from.
    #[error(
        "cohort {path} was made from {what} {made}, not {given}: run `ehr-risk cohort` again on this lake and task"
    )]
    Mismatch {
        path: String,
        what: &'static str,
        made: String,
        given: String,
    },
}

/// Counts for one outcome x horizon x split.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LabelCounts {
    pub labelled: u64,
    pub positive: u64,
    pub censored: u64,
    /// Labelled false because death came first (the competing event).
    #[serde(default)]
    pub died_first: u64,
    pub excluded_prior: u64,
    pub prevalence: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CohortSummary {
    pub task: String,
    pub task_hash: String,
    pub lake_fingerprint: String,
    pub subjects: u64,
    pub prediction_times: u64,
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// "<outcome>_<h>y" -> split -> counts ("all" included)
    pub labels: BTreeMap<String, BTreeMap<String, LabelCounts>>,
    pub censoring: String,
    /// The last event time in the lake (RFC 3339): horizons past it are censored.
    pub data_end: String,
}

/// The last event time (or end time) of the whole lake.
pub fn data_end(lake: &Lake) -> Result<i64, CohortError> {
    let ends: Vec<Result<i64, CohortError>> = (0..lake.manifest.shards)
        .into_par_iter()
        .filter(|i| lake.shard_indices().contains(i))
        .map(|i| {
            Ok(lake
                .read_shard_analytic(i)?
                .iter()
                .filter_map(labels::observed_until)
                .max()
                .unwrap_or(i64::MIN))
        })
        .collect();
    let mut m = i64::MIN;
    for e in ends {
        m = m.max(e?);
    }
    Ok(m)
}

/// A fingerprint of the lake's content: the hash of its manifest's run ids and input hashes.
pub fn lake_fingerprint(lake: &Lake) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for i in &lake.manifest.inputs {
        h.update(i.blake3.as_bytes());
    }
    h.update(lake.manifest.shards.to_le_bytes());
    // A run that read nothing new relinked identities (`ehr-risk link run`): events may have
    // moved between subjects, so what was built from the lake before is stale.
    for r in lake.manifest.runs.iter().filter(|r| r.files_read == 0) {
        h.update(r.run_id.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Split each subject into its contiguous run of events.
pub fn by_subject(events: &[Event]) -> impl Iterator<Item = &[Event]> {
    events.chunk_by(|a, b| a.subject_id == b.subject_id)
}

/// The key every per-prediction-time table starts with: subject and prediction time.
pub fn key_fields() -> Vec<Field> {
    vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new(
            "prediction_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]
}

/// The MEDS label schema (no extra columns allowed).
pub fn label_schema() -> Arc<Schema> {
    let mut f = key_fields();
    f.push(Field::new("boolean_value", DataType::Boolean, false));
    Arc::new(Schema::new(f))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CohortError + '_ {
    move |err| CohortError::Io {
        path: path.display().to_string(),
        err,
    }
}

struct ShardResult {
    subjects: u64,
    times: u64,
    excluded: HashMap<Exclusion, u64>,
    counts: BTreeMap<String, BTreeMap<String, LabelCounts>>,
}

/// Label the whole lake into `out`.
pub fn run(lake_dir: &Path, task: &Task, out: &Path) -> Result<CohortSummary, CohortError> {
    let lake = Lake::open(lake_dir)?;
    // Code sets reach the descendants the lake's own vocabulary knows (OMOP CONCEPT_ANCESTOR).
    let parents = write::read_code_parents(&lake.root.join("metadata/codes.parquet"))?;
    let task = &task.with_descendants(&parents);
    let splits: HashMap<i64, String> =
        write::read_splits(&lake.root.join("metadata/subject_splits.parquet"))?
            .into_iter()
            .collect();
    std::fs::create_dir_all(out).map_err(io(out))?;
    let names: Vec<(usize, usize, String)> = task
        .outcomes
        .iter()
        .enumerate()
        .flat_map(|(oi, o)| {
            task.spec
                .window
                .horizons_years
                .iter()
                .enumerate()
                .map(move |(hi, h)| (oi, hi, format!("{}_{h}y", o.name)))
        })
        .collect();
    for (_, _, n) in &names {
        let d = out.join("labels").join(n);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    std::fs::create_dir_all(out.join("cohort")).map_err(io(out))?;
    std::fs::create_dir_all(out.join("survival")).map_err(io(out))?;
    let censoring = task.spec.window.censoring;
    let data_end = data_end(&lake)?;
    let results: Vec<Result<ShardResult, CohortError>> = (0..lake.manifest.shards)
        .into_par_iter()
        .filter(|i| lake.shard_indices().contains(i))
        .map(|i| -> Result<ShardResult, CohortError> {
            let events = lake.read_shard_analytic(i)?;
            let mut r = ShardResult {
                subjects: 0,
                times: 0,
                excluded: HashMap::new(),
                counts: BTreeMap::new(),
            };
            let mut all_rows = Vec::new();
            for ev in by_subject(&events) {
                r.subjects += 1;
                let (rows, ex) = label_subject_until(task, ev, Some(data_end));
                for x in ex {
                    *r.excluded.entry(x).or_default() += 1;
                }
                all_rows.extend(rows);
            }
            r.times = all_rows.len() as u64;
            let split_of = |s: i64| {
                splits
                    .get(&s)
                    .cloned()
                    .unwrap_or_else(|| crate::lake::split_of(s).to_string())
            };
            for (oi, hi, name) in &names {
                let (mut sid, mut pt, mut val) = (vec![], vec![], vec![]);
                for row in &all_rows {
                    let v = row.values[*oi][*hi];
                    let split = split_of(row.subject_id);
                    for key in ["all", split.as_str()] {
                        let c = r
                            .counts
                            .entry(name.clone())
                            .or_default()
                            .entry(key.to_string())
                            .or_default();
                        match v {
                            LabelValue::Censored => c.censored += 1,
                            LabelValue::ExcludedPrior => c.excluded_prior += 1,
                            _ => {}
                        }
                        if let Some(b) = label_bool(v, censoring) {
                            c.labelled += 1;
                            c.positive += b as u64;
                        }
                        let h = task.spec.window.horizons_years[*hi] as f64;
                        if v == LabelValue::False && row.survival.death.is_some_and(|d| d <= h) {
                            c.died_first += 1;
                        }
                    }
                    if let Some(b) = label_bool(v, censoring) {
                        sid.push(row.subject_id);
                        pt.push(row.prediction_time);
                        val.push(b);
                    }
                }
                let b = RecordBatch::try_new(
                    label_schema(),
                    vec![
                        Arc::new(Int64Array::from(sid)),
                        Arc::new(TimestampMicrosecondArray::from(pt)),
                        Arc::new(BooleanArray::from(val)),
                    ],
                )
                .expect("schema matches");
                write::write_batches(
                    &out.join("labels")
                        .join(name)
                        .join(format!("shard-{i:04}.parquet")),
                    label_schema(),
                    &[b],
                )?;
            }
            // cohort table: one row per eligible prediction time.
            let mut fields = key_fields();
            fields.extend([
                Field::new("split", DataType::Utf8, false),
                Field::new("age_years", DataType::Float32, false),
            ]);
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(
                    all_rows.iter().map(|r| r.subject_id),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    all_rows.iter().map(|r| r.prediction_time),
                )),
                Arc::new(StringArray::from_iter_values(
                    all_rows.iter().map(|r| split_of(r.subject_id)),
                )),
                Arc::new(Float32Array::from_iter_values(
                    all_rows.iter().map(|r| r.age_years as f32),
                )),
            ];
            for (oi, o) in task.outcomes.iter().enumerate() {
                fields.push(Field::new(
                    format!("prior_{}", o.name),
                    DataType::Boolean,
                    false,
                ));
                cols.push(Arc::new(BooleanArray::from(
                    all_rows.iter().map(|r| r.prior[oi]).collect::<Vec<_>>(),
                )));
            }
            for (oi, hi, name) in &names {
                fields.push(Field::new(
                    format!("censored_{name}"),
                    DataType::Boolean,
                    false,
                ));
                cols.push(Arc::new(BooleanArray::from(
                    all_rows
                        .iter()
                        .map(|r| r.values[*oi][*hi] == LabelValue::Censored)
                        .collect::<Vec<_>>(),
                )));
            }
            let schema = Arc::new(Schema::new(fields));
            let b = RecordBatch::try_new(schema.clone(), cols).expect("schema matches");
            write::write_batches(
                &out.join("cohort").join(format!("shard-{i:04}.parquet")),
                schema,
                &[b],
            )?;
            let b = survival_batch(task, &all_rows);
            write::write_batches(
                &out.join("survival").join(format!("shard-{i:04}.parquet")),
                b.schema(),
                &[b],
            )?;
            Ok(r)
        })
        .collect();
    let mut s = CohortSummary {
        task: task.spec.name.clone(),
        task_hash: task.hash.clone(),
        lake_fingerprint: lake_fingerprint(&lake),
        censoring: format!("{censoring:?}").to_lowercase(),
        data_end: chrono::DateTime::from_timestamp_micros(data_end)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default(),
        ..Default::default()
    };
    for r in results {
        let r = r?;
        s.subjects += r.subjects;
        s.prediction_times += r.times;
        for (x, n) in r.excluded {
            *s.excluded_by_reason
                .entry(x.name().to_string())
                .or_default() += n;
        }
        for (name, by_split) in r.counts {
            for (split, c) in by_split {
                let t = s
                    .labels
                    .entry(name.clone())
                    .or_default()
                    .entry(split)
                    .or_default();
                t.labelled += c.labelled;
                t.positive += c.positive;
                t.censored += c.censored;
                t.died_first += c.died_first;
                t.excluded_prior += c.excluded_prior;
            }
        }
    }
    for by_split in s.labels.values_mut() {
        for c in by_split.values_mut() {
            c.prevalence = if c.labelled == 0 {
                0.0
            } else {
                c.positive as f64 / c.labelled as f64
            };
        }
    }
    let sp = out.join("summary.json");
    std::fs::write(&sp, serde_json::to_string_pretty(&s).expect("json")).map_err(io(&sp))?;
    Ok(s)
}

/// A cohort's `summary.json`.
pub fn read_summary(dir: &Path) -> Result<CohortSummary, CohortError> {
    let p = dir.join("summary.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    serde_json::from_str(&text).map_err(|e| CohortError::Io {
        path: p.display().to_string(),
        err: std::io::Error::other(e),
    })
}

/// Refuse a cohort made from another lake (content fingerprint) or another task (hash).
pub fn check_made_from(
    dir: &Path,
    lake_fingerprint: &str,
    task_hash: &str,
) -> Result<CohortSummary, CohortError> {
    let s = read_summary(dir)?;
    let path = dir.display().to_string();
    if s.lake_fingerprint != lake_fingerprint {
        return Err(CohortError::Mismatch {
            path,
            what: "the lake with fingerprint",
            made: s.lake_fingerprint,
            given: lake_fingerprint.to_string(),
        });
    }
    if s.task_hash != task_hash {
        return Err(CohortError::Mismatch {
            path,
            what: "the task with hash",
            made: format!("{} ({})", s.task_hash, s.task),
            given: task_hash.to_string(),
        });
    }
    Ok(s)
}

/// Read one outcome x horizon label folder (`labels/<name>/shard-*.parquet`).
pub fn read_labels(dir: &Path) -> Result<HashMap<(i64, i64), bool>, CohortError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |m: String| CohortError::Io {
        path: dir.display().to_string(),
        err: std::io::Error::other(m),
    };
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let f = std::fs::File::open(e.path()).map_err(io(dir))?;
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| bad(e.to_string()))?
            .build()
            .map_err(|e| bad(e.to_string()))?;
        for b in r {
            let b = b.map_err(|e| bad(e.to_string()))?;
            let s = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| bad("subject_id".into()))?;
            let t = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| bad("prediction_time".into()))?;
            let v = b
                .column(2)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| bad("boolean_value".into()))?;
            for i in 0..b.num_rows() {
                out.insert((s.value(i), t.value(i)), v.value(i));
            }
        }
    }
    Ok(out)
}

fn survival_schema(task: &Task) -> Arc<Schema> {
    let mut f = key_fields();
    f.extend([
        Field::new("followup_years", DataType::Float64, false),
        Field::new("death_years", DataType::Float64, true),
        Field::new("extract_end_years", DataType::Float64, true),
    ]);
    for o in &task.outcomes {
        f.push(Field::new(
            format!("{}_years", o.name),
            DataType::Float64,
            true,
        ));
        f.push(Field::new(
            format!("{}_at_risk", o.name),
            DataType::Boolean,
            false,
        ));
    }
    Arc::new(Schema::new(f))
}

/// The survival table of labelled rows (`survival/shard-*.parquet`).
fn survival_batch(task: &Task, rows: &[labels::LabelRow]) -> RecordBatch {
    use arrow::array::Float64Array;
    let s = |f: &dyn Fn(&labels::Survival) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            rows.iter().map(|r| f(&r.survival)).collect::<Vec<_>>(),
        ))
    };
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.subject_id),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.prediction_time),
        )),
        s(&|v| Some(v.followup)),
        s(&|v| v.death),
        s(&|v| v.extract_end.is_finite().then_some(v.extract_end)),
    ];
    for o in 0..task.outcomes.len() {
        cols.push(s(&|v| v.events[o]));
        cols.push(Arc::new(BooleanArray::from(
            rows.iter()
                .map(|r| r.survival.at_risk[o])
                .collect::<Vec<_>>(),
        )));
    }
    RecordBatch::try_new(survival_schema(task), cols).expect("schema matches")
}

/// Read a cohort's survival table: (subject, time) -> time to event, outcomes in `outcomes`
/// order.
pub fn read_survival(
    dir: &Path,
    outcomes: &[String],
) -> Result<HashMap<(i64, i64), labels::Survival>, CohortError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let sdir = dir.join("survival");
    let bad = |p: &Path, m: String| CohortError::Io {
        path: p.display().to_string(),
        err: std::io::Error::other(m),
    };
    let mut files: Vec<_> = std::fs::read_dir(&sdir)
        .map_err(|e| {
            let hint = std::io::Error::new(
                e.kind(),
                format!(
                    "{e} (a cohort made before time-to-event labels: run `ehr-risk cohort` again)"
                ),
            );
            io(&sdir)(hint)
        })?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = HashMap::new();
    for p in files {
        let f = std::fs::File::open(&p).map_err(io(&p))?;
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| bad(&p, e.to_string()))?
            .build()
            .map_err(|e| bad(&p, e.to_string()))?;
        for b in r {
            let b = b.map_err(|e| bad(&p, e.to_string()))?;
            let f64col = |n: &str| {
                b.column_by_name(n)
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .ok_or_else(|| bad(&p, format!("column {n} missing or not float64")))
            };
            let s = b
                .column_by_name("subject_id")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| bad(&p, "subject_id".into()))?;
            let t = b
                .column_by_name("prediction_time")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .ok_or_else(|| bad(&p, "prediction_time".into()))?;
            let (fu, death, end) = (
                f64col("followup_years")?,
                f64col("death_years")?,
                f64col("extract_end_years")?,
            );
            let ev: Vec<_> = outcomes
                .iter()
                .map(|o| f64col(&format!("{o}_years")))
                .collect::<Result<_, _>>()?;
            let risk: Vec<&BooleanArray> = outcomes
                .iter()
                .map(|o| {
                    b.column_by_name(&format!("{o}_at_risk"))
                        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
                        .ok_or_else(|| bad(&p, format!("column {o}_at_risk missing")))
                })
                .collect::<Result<_, _>>()?;
            let opt = |a: &arrow::array::Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
            for i in 0..b.num_rows() {
                out.insert(
                    (s.value(i), t.value(i)),
                    labels::Survival {
                        followup: fu.value(i),
                        death: opt(death, i),
                        events: ev.iter().map(|a| opt(a, i)).collect(),
                        at_risk: risk.iter().map(|a| a.value(i)).collect(),
                        extract_end: opt(end, i).unwrap_or(f64::INFINITY),
                    },
                );
            }
        }
    }
    Ok(out)
}
