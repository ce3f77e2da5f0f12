//! Features: a FeatureSet for the prediction times of a cohort. In: a lake, a cohort folder
//! (`cohort/shard-NNNN.parquet`, one per lake shard) and the task. Out, in the features folder:
//! `tabular/shard-NNNN.parquet` (one row per subject x prediction time: latest/mean/slope/count
//! per key measurement, age, sex, race, smoking, conditions, prior outcomes, treatment flags,
//! counts), `sequences/shard-NNNN.parquet` (monthly steps: codes through the vocabulary, values
//! normalised per code, time gaps, age), `vocab.parquet` and `norm.parquet` (learned on the train
//! split only) and `manifest.json` (task hash, feature-spec hash, lake fingerprint, columns).
//! Work is by lake shard, in parallel: memory is a shard per worker.

pub mod compute;
pub mod spec;

use crate::cohort::spec::Task;
use crate::cohort::{by_subject, key_fields, lake_fingerprint};
use crate::lake::{Lake, LakeError, write};
use arrow::array::{
    Array, ArrayRef, Float32Array, Float32Builder, Int32Array, Int32Builder, Int64Array,
    ListBuilder, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use compute::{Visibility, Vocab, VocabCounts, features_at, tabular_columns};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spec::{Compiled, FeatureSpec};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{0}")]
    Spec(String),
    #[error("features.toml: measurement {0:?} is not a concept of schemas/measurements.toml")]
    UnknownMeasurement(String),
    #[error("{path}: {message}")]
    Cohort { path: String, message: String },
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(transparent)]
    CohortMismatch(#[from] crate::cohort::CohortError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureManifest {
    pub task: String,
    pub task_hash: String,
    pub feature_spec_hash: String,
    pub lake_fingerprint: String,
    pub columns: Vec<String>,
    pub rows: u64,
    pub sequence_steps: u64,
    pub vocab_size: usize,
    pub vocab_learned_on: String,
}

/// Prediction times of one cohort shard: (subject, time, split).
pub fn read_cohort_shard(p: &Path) -> Result<Vec<(i64, i64, String)>, FeatureError> {
    let bad = |m: String| FeatureError::Cohort {
        path: p.display().to_string(),
        message: m,
    };
    if !p.exists() {
        return Ok(vec![]);
    }
    let f = std::fs::File::open(p).map_err(|err| FeatureError::Io {
        path: p.display().to_string(),
        err,
    })?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(e.to_string()))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for b in r {
        let b = b.map_err(|e| bad(e.to_string()))?;
        let s = b
            .column_by_name("subject_id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| bad("subject_id".into()))?;
        let t = b
            .column_by_name("prediction_time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| bad("prediction_time".into()))?;
        let sp = b
            .column_by_name("split")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad("split".into()))?;
        for i in 0..b.num_rows() {
            out.push((s.value(i), t.value(i), sp.value(i).to_string()));
        }
    }
    Ok(out)
}

fn seq_schema() -> Arc<Schema> {
    let mut f = key_fields();
    f.extend([
        Field::new("step", DataType::Int32, false),
        Field::new("days_before", DataType::Float32, false),
        Field::new("gap_days", DataType::Float32, false),
        Field::new("age", DataType::Float32, true),
        Field::new(
            "codes",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            false,
        ),
        Field::new(
            "values",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        ),
    ]);
    Arc::new(Schema::new(f))
}

/// Learn the vocabulary and normalisation from the train split of the lake.
pub fn learn_vocab(lake: &Lake, min_count: u64) -> Result<Vocab, FeatureError> {
    let splits: HashMap<i64, String> =
        write::read_splits(&lake.root.join("metadata/subject_splits.parquet"))?
            .into_iter()
            .collect();
    let parts: Vec<Result<VocabCounts, FeatureError>> = (0..lake.manifest.shards)
        .into_par_iter()
        .map(|i| {
            let mut acc = VocabCounts::default();
            for e in lake.read_shard_analytic(i)? {
                if splits.get(&e.subject_id).map(String::as_str) == Some("train") {
                    acc.add(&e);
                }
            }
            Ok(acc)
        })
        .collect();
    let mut all = VocabCounts::default();
    for p in parts {
        all.merge(p?);
    }
    Ok(Vocab::from_counts(all, min_count))
}

/// Build the FeatureSet.
pub fn run(
    lake_dir: &Path,
    cohort_dir: &Path,
    task: &Task,
    spec: FeatureSpec,
    out: &Path,
) -> Result<FeatureManifest, FeatureError> {
    let lake = Lake::open(lake_dir)?;
    crate::cohort::check_made_from(cohort_dir, &lake_fingerprint(&lake), &task.hash)?;
    let codes = write::read_codes(&lake.root.join("metadata/codes.parquet"))?;
    let parents = write::read_code_parents(&lake.root.join("metadata/codes.parquet"))?;
    let spec_hash = spec.hash();
    let task = &task.with_descendants(&parents);
    let compiled = Compiled::new(spec.with_descendants(&parents), &codes)?;
    let vocab = learn_vocab(&lake, compiled.spec.sequence.min_code_count)?;
    let columns = tabular_columns(&compiled, task);
    for d in ["tabular", "sequences"] {
        let p = out.join(d);
        std::fs::create_dir_all(&p).map_err(|err| FeatureError::Io {
            path: p.display().to_string(),
            err,
        })?;
    }
    let mut tab_fields = key_fields();
    tab_fields.push(Field::new("split", DataType::Utf8, false));
    tab_fields.extend(
        columns
            .iter()
            .map(|c| Field::new(c, DataType::Float32, true)),
    );
    let tab_schema = Arc::new(Schema::new(tab_fields));
    let counts: Vec<Result<(u64, u64), FeatureError>> = (0..lake.manifest.shards)
        .into_par_iter()
        .map(|i| {
            let rows = read_cohort_shard(
                &cohort_dir
                    .join("cohort")
                    .join(format!("shard-{i:04}.parquet")),
            )?;
            if rows.is_empty() {
                return Ok((0, 0));
            }
            let events = lake.read_shard_analytic(i)?;
            let subjects: HashMap<i64, &[crate::schema::Event]> = by_subject(&events)
                .map(|ev| (ev[0].subject_id, ev))
                .collect();
            let mut cols: Vec<Vec<f32>> = vec![Vec::with_capacity(rows.len()); columns.len()];
            let (mut sid, mut pt, mut split) = (vec![], vec![], vec![]);
            let (mut s_sid, mut s_pt, mut s_step, mut s_days, mut s_gap, mut s_age) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            let mut s_codes = ListBuilder::new(Int32Builder::new());
            let mut s_vals = ListBuilder::new(Float32Builder::new());
            let mut cache: Option<(i64, Visibility)> = None;
            for (s, t, sp) in &rows {
                let Some(ev) = subjects.get(s) else { continue };
                if cache.as_ref().is_none_or(|c| c.0 != *s) {
                    cache = Some((*s, Visibility::new(ev)));
                }
                let vis = &cache.as_ref().expect("set").1;
                let (row, steps) = features_at(ev, vis, *t, &compiled, task, &vocab);
                for (c, v) in cols.iter_mut().zip(row) {
                    c.push(v);
                }
                sid.push(*s);
                pt.push(*t);
                split.push(sp.clone());
                for (k, st) in steps.into_iter().enumerate() {
                    s_sid.push(*s);
                    s_pt.push(*t);
                    s_step.push(k as i32);
                    s_days.push(st.days_before);
                    s_gap.push(st.gap_days);
                    s_age.push(st.age);
                    s_codes.append_value(st.codes.into_iter().map(Some));
                    s_vals.append_value(st.values.into_iter().map(Some));
                }
            }
            let n = sid.len() as u64;
            let mut arrays: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(sid)),
                Arc::new(TimestampMicrosecondArray::from(pt)),
                Arc::new(StringArray::from(split)),
            ];
            arrays.extend(
                cols.into_iter()
                    .map(|c| Arc::new(Float32Array::from(c)) as ArrayRef),
            );
            let b = RecordBatch::try_new(tab_schema.clone(), arrays).expect("schema matches");
            write::write_batches(
                &out.join("tabular").join(format!("shard-{i:04}.parquet")),
                tab_schema.clone(),
                &[b],
            )?;
            let steps = s_sid.len() as u64;
            let age: Float32Array = s_age
                .into_iter()
                .map(|a: f32| (!a.is_nan()).then_some(a))
                .collect();
            let sb = RecordBatch::try_new(
                seq_schema(),
                vec![
                    Arc::new(Int64Array::from(s_sid)),
                    Arc::new(TimestampMicrosecondArray::from(s_pt)),
                    Arc::new(Int32Array::from(s_step)),
                    Arc::new(Float32Array::from(s_days)),
                    Arc::new(Float32Array::from(s_gap)),
                    Arc::new(age),
                    Arc::new(s_codes.finish()),
                    Arc::new(s_vals.finish()),
                ],
            )
            .expect("schema matches");
            write::write_batches(
                &out.join("sequences").join(format!("shard-{i:04}.parquet")),
                seq_schema(),
                &[sb],
            )?;
            Ok((n, steps))
        })
        .collect();
    let (mut rows, mut steps) = (0, 0);
    for c in counts {
        let (a, b) = c?;
        rows += a;
        steps += b;
    }
    // vocabulary and normalisation
    let mut v: Vec<(&String, &i32)> = vocab.ids.iter().collect();
    v.sort_by_key(|x| *x.1);
    write_code_table(
        &out.join("vocab.parquet"),
        v.iter().map(|x| x.0.as_str()),
        vec![(
            Field::new("id", DataType::Int32, false),
            Arc::new(Int32Array::from_iter_values(v.iter().map(|x| *x.1))),
        )],
    )?;
    let mut nv: Vec<(&String, &(f32, f32))> = vocab.norm.iter().collect();
    nv.sort_by(|a, b| a.0.cmp(b.0));
    write_code_table(
        &out.join("norm.parquet"),
        nv.iter().map(|x| x.0.as_str()),
        vec![
            (
                Field::new("mean", DataType::Float32, false),
                Arc::new(Float32Array::from_iter_values(nv.iter().map(|x| x.1.0))),
            ),
            (
                Field::new("std", DataType::Float32, false),
                Arc::new(Float32Array::from_iter_values(nv.iter().map(|x| x.1.1))),
            ),
        ],
    )?;
    let m = FeatureManifest {
        task: task.spec.name.clone(),
        task_hash: task.hash.clone(),
        feature_spec_hash: spec_hash,
        lake_fingerprint: lake_fingerprint(&lake),
        columns,
        rows,
        sequence_steps: steps,
        vocab_size: vocab.ids.len() + 2,
        vocab_learned_on: "train".into(),
    };
    let mp = out.join("manifest.json");
    std::fs::write(&mp, serde_json::to_string_pretty(&m).expect("json")).map_err(|err| {
        FeatureError::Io {
            path: mp.display().to_string(),
            err,
        }
    })?;
    Ok(m)
}

/// A per-code table: a `code` column followed by `columns`.
fn write_code_table<'a>(
    path: &Path,
    codes: impl Iterator<Item = &'a str>,
    columns: Vec<(Field, ArrayRef)>,
) -> Result<(), FeatureError> {
    let (mut fields, mut arrays): (Vec<Field>, Vec<ArrayRef>) = (
        vec![Field::new("code", DataType::Utf8, false)],
        vec![Arc::new(StringArray::from_iter_values(codes))],
    );
    for (f, a) in columns {
        fields.push(f);
        arrays.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let b = RecordBatch::try_new(schema.clone(), arrays).expect("columns match the schema");
    write::write_batches(path, schema, &[b])?;
    Ok(())
}

/// Leakage audit: for up to `sample` prediction times, recompute the features after moving,
/// adding, deleting and altering every event available after the time; report mismatches.
pub fn audit(
    lake_dir: &Path,
    cohort_dir: &Path,
    task: &Task,
    spec: FeatureSpec,
    sample: usize,
    seed: u64,
) -> Result<Audit, FeatureError> {
    let lake = Lake::open(lake_dir)?;
    crate::cohort::check_made_from(cohort_dir, &lake_fingerprint(&lake), &task.hash)?;
    let codes = write::read_codes(&lake.root.join("metadata/codes.parquet"))?;
    let parents = write::read_code_parents(&lake.root.join("metadata/codes.parquet"))?;
    let task = &task.with_descendants(&parents);
    let compiled = Compiled::new(spec.with_descendants(&parents), &codes)?;
    let vocab = learn_vocab(&lake, compiled.spec.sequence.min_code_count)?;
    let mut checked = 0;
    let mut problems = Vec::new();
    let mut early = Vec::new();
    let mut rng = crate::rng::Rng::new(seed, 0, 77);
    let mut pick = crate::rng::Rng::new(seed, 0, 78);
    for i in 0..lake.manifest.shards {
        let events = lake.read_shard_analytic(i)?;
        early.extend(known_too_early(&events, i));
        if checked >= sample {
            continue;
        }
        let rows = read_cohort_shard(
            &cohort_dir
                .join("cohort")
                .join(format!("shard-{i:04}.parquet")),
        )?;
        if rows.is_empty() {
            continue;
        }
        let subjects: HashMap<i64, &[crate::schema::Event]> = by_subject(&events)
            .map(|ev| (ev[0].subject_id, ev))
            .collect();
        for (row, (s, t, _)) in rows.iter().enumerate().filter(|_| pick.chance(0.3)) {
            if checked >= sample {
                break;
            }
            let Some(ev) = subjects.get(s) else { continue };
            let before = features_at(ev, &Visibility::new(ev), *t, &compiled, task, &vocab);
            let perturbed = perturb_after(ev, *t, task.spec.window.same_time_is_future, &mut rng);
            let after = features_at(
                &perturbed,
                &Visibility::new(&perturbed),
                *t,
                &compiled,
                task,
                &vocab,
            );
            if !same_features(&before, &after) {
                // Where to look (cohort shard and row), never who or when.
                problems.push(format!(
                    "cohort shard {i} row {row}: features changed when only later events changed"
                ));
            }
            checked += 1;
        }
    }
    Ok(Audit {
        checked,
        changed: problems,
        early,
    })
}

/// What the leakage audit found.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Prediction times perturbed after the time.
    pub checked: usize,
    /// Where features changed when only later events changed (cohort shard and row).
    pub changed: Vec<String>,
    /// Where the lake's clock says an event was known earlier than the lake's own facts allow
    /// (a timed event without availability, or a diagnosis known before the discharge of the
    /// stay it was coded for): a lake written by another tool, or edited.
    pub early: Vec<String>,
}

impl Audit {
    pub fn ok(&self) -> bool {
        self.changed.is_empty() && self.early.is_empty()
    }
}

/// Events of one shard (lake order) whose stored availability is earlier than resolving the
/// shard again gives, by shard and row (never who or when).
fn known_too_early(events: &[crate::schema::Event], shard: usize) -> Vec<String> {
    let mut resolved = events.to_vec();
    crate::schema::availability::resolve(&mut resolved);
    events
        .iter()
        .zip(&resolved)
        .enumerate()
        .filter(|(_, (a, b))| a.available_time != b.available_time)
        .map(|(row, _)| {
            format!("lake shard {shard} row {row}: known before what the lake's own facts allow")
        })
        .collect()
}

/// Perturb every event not visible at `t` (moved later, known later, altered, some deleted, new
/// ones added after `t`), give visible events a later end or none where their end was still
/// ahead at `t` (stays under way at `t` included), and return the events in lake order with
/// availability resolved as ingest would.
pub fn perturb_after(
    events: &[crate::schema::Event],
    t: i64,
    same_time_is_future: bool,
    rng: &mut crate::rng::Rng,
) -> Vec<crate::schema::Event> {
    let vis = Visibility::new(events);
    let visible: std::collections::HashSet<usize> =
        vis.visible(t, same_time_is_future).into_iter().collect();
    let mut out = Vec::new();
    let day = crate::cohort::labels::MICROS_PER_DAY;
    for (i, e) in events.iter().enumerate() {
        if visible.contains(&i) {
            let mut x = e.clone();
            // An end still ahead at `t` was written later: another one, or none yet. A stay
            // open at `t` keeps an end after `t` (it is still open), anything else may lose it.
            if let Some(end) = x.end_time {
                let later = t + 1 + rng.range(0, 400) as i64 * day;
                if x.code.starts_with("ENCOUNTER//") {
                    if end > t {
                        x.end_time = Some(later);
                    }
                } else if end >= t {
                    x.end_time = if rng.chance(0.5) { None } else { Some(later) };
                }
            }
            out.push(x);
            continue;
        }
        if rng.chance(0.3) {
            continue; // deleted
        }
        let mut x = e.clone();
        if let Some(tt) = x.time {
            if rng.chance(0.3) {
                // Same time, coarser precision: known later still (never before `t`).
                let known = x.known_at().unwrap_or(tt).max(t + 1);
                x.available_time = Some(known + rng.range(0, 40) as i64 * day);
            } else {
                let moved = tt.max(t) + rng.range(0, 400) as i64 * day + 1;
                x.time = Some(moved);
                x.available_time = Some(moved + rng.range(0, 2) as i64 * day);
            }
        }
        if let Some(v) = x.numeric_value {
            x.numeric_value = Some(v * 1.7 + 3.0);
        }
        out.push(x);
    }
    for k in 0..5 {
        let tmpl = &events[rng.range(0, events.len() as u64) as usize];
        let mut x = tmpl.clone();
        x.time = Some(t + (k + 1) * 30 * day + if same_time_is_future { 0 } else { 1 });
        x.available_time = x.time;
        x.provenance.row += 1_000_000;
        out.push(x);
    }
    out.sort_by(|a, b| a.lake_cmp(b));
    // What ingest would make of the later export (availability only ever moves later).
    crate::schema::availability::resolve(&mut out);
    out
}

/// Bitwise equality of two feature results (NaN equals NaN).
pub fn same_features(
    a: &(Vec<f32>, Vec<compute::Step>),
    b: &(Vec<f32>, Vec<compute::Step>),
) -> bool {
    let bits = |v: &Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    bits(&a.0) == bits(&b.0)
        && a.1.len() == b.1.len()
        && a.1.iter().zip(&b.1).all(|(x, y)| {
            x.codes == y.codes
                && bits(&x.values) == bits(&y.values)
                && x.days_before.to_bits() == y.days_before.to_bits()
                && x.gap_days.to_bits() == y.gap_days.to_bits()
                && x.age.to_bits() == y.age.to_bits()
        })
}

/// The tabular FeatureSet, read back: column names, keys (subject, time, split) and rows.
pub type Tabular = (Vec<String>, Vec<(i64, i64, String)>, Vec<Vec<f32>>);

/// The `tabular/*.parquet` files of a features folder, in shard order.
pub fn tabular_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, FeatureError> {
    let t = dir.join("tabular");
    let mut files: Vec<_> = std::fs::read_dir(&t)
        .map_err(|err| FeatureError::Io {
            path: t.display().to_string(),
            err,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

/// Read every `tabular/shard-*.parquet` of a features folder, in shard order.
pub fn read_tabular(dir: &Path) -> Result<Tabular, FeatureError> {
    let bad = |p: &Path, m: String| FeatureError::Cohort {
        path: p.display().to_string(),
        message: m,
    };
    let files = tabular_files(dir)?;
    let (mut columns, mut keys, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for p in files {
        let f = std::fs::File::open(&p).map_err(|err| FeatureError::Io {
            path: p.display().to_string(),
            err,
        })?;
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| bad(&p, e.to_string()))?
            .build()
            .map_err(|e| bad(&p, e.to_string()))?;
        for b in r {
            let b = b.map_err(|e| bad(&p, e.to_string()))?;
            if columns.is_empty() {
                columns = b
                    .schema()
                    .fields()
                    .iter()
                    .skip(3)
                    .map(|f| f.name().clone())
                    .collect();
            }
            let s = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| bad(&p, "subject_id".into()))?;
            let t = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| bad(&p, "prediction_time".into()))?;
            let sp = b
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad(&p, "split".into()))?;
            let cols: Vec<&Float32Array> = (3..b.num_columns())
                .map(|j| {
                    b.column(j)
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .ok_or_else(|| bad(&p, format!("column {j}")))
                })
                .collect::<Result<_, _>>()?;
            for i in 0..b.num_rows() {
                keys.push((s.value(i), t.value(i), sp.value(i).to_string()));
                rows.push(
                    cols.iter()
                        .map(|c| if c.is_null(i) { f32::NAN } else { c.value(i) })
                        .collect(),
                );
            }
        }
    }
    Ok((columns, keys, rows))
}
