//! Batch scoring. In: a trained model directory and a features folder built with the same
//! spec, task and vocabulary (refused otherwise). Out: `scores.parquet`, one row per subject x
//! prediction time x horizon with the network's calibrated risk per outcome, the baseline's,
//! and the clinical equations (or why each does not apply); `scores.csv` on request. Shards
//! are read, scored and appended one at a time, so memory is one shard whatever the cohort.

use crate::model::bundle::{Model, ModelError, RowRisks};
use crate::model::data::{self, Dataset};
use crate::model::equations::{EquationRisks, Row, on_features};
use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct ScoreOptions {
    /// Only each subject's latest prediction time (a worklist "as of now").
    pub latest_only: bool,
    /// Also write scores.csv.
    pub csv: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreSummary {
    pub shards: usize,
    pub prediction_times: u64,
    pub rows_written: u64,
    pub seconds: f64,
}

/// The rows of one shard to score.
fn chosen(d: &Dataset, latest_only: bool) -> Vec<usize> {
    if !latest_only {
        return (0..d.len()).collect();
    }
    let mut best: HashMap<i64, usize> = HashMap::new();
    for (r, k) in d.keys.iter().enumerate() {
        let e = best.entry(k.0).or_insert(r);
        if d.keys[*e].1 < k.1 {
            *e = r;
        }
    }
    let mut v: Vec<usize> = best.into_values().collect();
    v.sort_unstable();
    v
}

pub fn schema(model: &Model) -> Arc<Schema> {
    let mut f = vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new(
            "prediction_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("split", DataType::Utf8, false),
        Field::new("horizon_years", DataType::Int32, false),
    ];
    for o in &model.manifest.outcomes {
        f.push(Field::new(format!("{o}_risk"), DataType::Float64, false));
        f.push(Field::new(
            format!("{o}_risk_logistic"),
            DataType::Float64,
            false,
        ));
    }
    for c in [
        "pce_ascvd_10y",
        "prevent_ascvd_10y",
        "prevent_cvd_10y",
        "cha2ds2vasc_stroke_risk",
    ] {
        f.push(Field::new(c, DataType::Float64, true));
    }
    f.push(Field::new("cha2ds2vasc_score", DataType::Int32, true));
    f.push(Field::new("equations_not_applicable", DataType::Utf8, true));
    Arc::new(Schema::new(f))
}

/// Why each equation does not apply, or None when all apply.
fn reasons(e: &EquationRisks) -> Option<String> {
    let mut v = vec![];
    if let Err(m) = &e.pce_ascvd_10y {
        v.push(format!("pce: {m}"));
    }
    if let Err(m) = &e.prevent_ascvd_10y {
        v.push(format!("prevent: {m}"));
    }
    if let Err(m) = &e.cha2ds2vasc {
        v.push(format!("cha2ds2vasc: {m}"));
    }
    (!v.is_empty()).then(|| v.join("; "))
}

/// One batch of scores for rows `rows` of `d` (long by horizon).
pub fn batch(
    model: &Model,
    d: &Dataset,
    rows: &[usize],
    risks: &[RowRisks],
    eqs: &[EquationRisks],
) -> RecordBatch {
    let m = &model.manifest;
    let nh = m.horizons_years.len();
    let (mut sid, mut pt, mut sp, mut hz) = (vec![], vec![], vec![], vec![]);
    let mut per_outcome: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); m.outcomes.len()];
    let (mut pce, mut pa, mut pc, mut cr, mut cs, mut why) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, &r) in rows.iter().enumerate() {
        for (hi, h) in m.horizons_years.iter().enumerate() {
            sid.push(d.keys[r].0);
            pt.push(d.keys[r].1);
            sp.push(d.split[r].clone());
            hz.push(*h as i32);
            for (oi, v) in per_outcome.iter_mut().enumerate() {
                v.0.push(risks[i].gru[oi * nh + hi]);
                v.1.push(risks[i].logistic[oi * nh + hi]);
            }
            let e = &eqs[i];
            pce.push(e.pce_ascvd_10y.clone().ok());
            pa.push(e.prevent_ascvd_10y.clone().ok());
            pc.push(e.prevent_cvd_10y.clone().ok());
            cr.push(
                e.cha2ds2vasc
                    .as_ref()
                    .ok()
                    .map(|(_, rate)| 1.0 - (1.0 - rate).powi(*h as i32)),
            );
            cs.push(e.cha2ds2vasc.as_ref().ok().map(|(s, _)| *s as i32));
            why.push(reasons(e));
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(sid)),
        Arc::new(TimestampMicrosecondArray::from(pt)),
        Arc::new(StringArray::from(sp)),
        Arc::new(Int32Array::from(hz)),
    ];
    for (g, l) in per_outcome {
        cols.push(Arc::new(Float64Array::from(g)));
        cols.push(Arc::new(Float64Array::from(l)));
    }
    for c in [pce, pa, pc, cr] {
        cols.push(Arc::new(Float64Array::from(c)));
    }
    cols.push(Arc::new(Int32Array::from(cs)));
    cols.push(Arc::new(StringArray::from(why)));
    RecordBatch::try_new(schema(model), cols).expect("columns match the schema")
}

fn io(p: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Io {
        path: p.display().to_string(),
        message,
    }
}

/// Score every shard of `features` into `out/scores.parquet`.
pub fn run(
    model: &Model,
    features: &Path,
    out: &Path,
    opts: &ScoreOptions,
    on_shard: &mut dyn FnMut(usize, usize),
) -> Result<ScoreSummary, ModelError> {
    let started = std::time::Instant::now();
    let fm = model.check_features(features)?;
    std::fs::create_dir_all(out).map_err(|e| io(out)(e.to_string()))?;
    let path = out.join("scores.parquet");
    let tmp = out.join("scores.parquet.partial");
    let f = std::fs::File::create(&tmp).map_err(|e| io(&tmp)(e.to_string()))?;
    let mut w =
        ArrowWriter::try_new(f, schema(model), None).map_err(|e| io(&tmp)(e.to_string()))?;
    let mut csv = if opts.csv {
        let p = out.join("scores.csv");
        Some(arrow::csv::Writer::new(
            std::fs::File::create(&p).map_err(|e| io(&p)(e.to_string()))?,
        ))
    } else {
        None
    };
    let shards = data::shard_files(features)?;
    let (mut times, mut rows_written) = (0u64, 0u64);
    for (i, (t, s)) in shards.iter().enumerate() {
        let d = data::read_shard(t, s, &fm.columns, &|_, _, _| true)?;
        let rows = chosen(&d, opts.latest_only);
        let d = d.select(&rows);
        let risks = model.predict(&d);
        let eqs: Vec<EquationRisks> = (0..d.len())
            .map(|r| {
                on_features(&Row {
                    columns: &fm.columns,
                    values: d.tab_row(r),
                })
            })
            .collect();
        let all: Vec<usize> = (0..d.len()).collect();
        let b = batch(model, &d, &all, &risks, &eqs);
        times += d.len() as u64;
        rows_written += b.num_rows() as u64;
        w.write(&b).map_err(|e| io(&tmp)(e.to_string()))?;
        if let Some(c) = csv.as_mut() {
            c.write(&b)
                .map_err(|e| io(&out.join("scores.csv"))(e.to_string()))?;
        }
        on_shard(i + 1, shards.len());
    }
    w.close().map_err(|e| io(&tmp)(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path)(e.to_string()))?;
    Ok(ScoreSummary {
        shards: shards.len(),
        prediction_times: times,
        rows_written,
        seconds: started.elapsed().as_secs_f64(),
    })
}
