//! Batch scoring and what users receive. In: a trained model directory and a features folder
//! built with the same spec, task and vocabulary (refused otherwise), the recommendation rules.
//! Out, in the output folder:
//! - `scores.parquet` (and `scores.csv` on request): one row per subject x prediction time x
//!   horizon: the network's calibrated risk per outcome, the baseline's, the clinical equations
//!   (or why each does not apply), the risk tier, the top factors and the recommendations (with
//!   their what-if risk changes) at the reference horizon (the longest, 10 years by default);
//! - `worklist.csv`: subjects whose latest prediction time is the run's most recent one and whose
//!   risk is at or above the worklist threshold, highest risk first;
//! - `risk_assessments.ndjson`: a FHIR R4 RiskAssessment per subject (latest prediction time);
//! - `score_summary.json`: counts, tiers, recommendation counts.
//!
//! Shards are read, scored and appended one at a time: memory is one shard whatever the cohort.

pub mod fhir;

use crate::explain::{Factor, Namer, factors};
use crate::model::bundle::{Model, ModelError, RowRisks};
use crate::model::data::{self, Dataset};
use crate::model::equations::{EquationRisks, Row, on_features};
use crate::model::gru::{Batch, integrated_gradients};
use crate::recommend::whatif::{self, SequenceValues};
use crate::recommend::{Recommendation, RuleSet};
use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Which rows get explanations and what-if risks (the costly part: integrated gradients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
pub enum Explain {
    None,
    /// Each subject's latest prediction time.
    #[default]
    Latest,
    All,
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Only each subject's latest prediction time (a worklist "as of now").
    pub latest_only: bool,
    /// Also write scores.csv.
    pub csv: bool,
    pub explain: Explain,
    /// Lower bounds of the tiers above "low", on the reference-horizon risk of any outcome:
    /// borderline, intermediate, high.
    pub tiers: [f64; 3],
    /// Worklist: latest rows with a reference-horizon risk at or above this.
    pub worklist_threshold: f64,
    /// Factors listed per outcome.
    pub top_factors: usize,
    /// Integrated-gradients path points.
    pub ig_steps: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            latest_only: false,
            csv: false,
            explain: Explain::Latest,
            tiers: [0.05, 0.075, 0.20],
            worklist_threshold: 0.20,
            top_factors: 5,
            ig_steps: 32,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ScoreSummary {
    pub shards: usize,
    pub prediction_times: u64,
    pub rows_written: u64,
    pub subjects: u64,
    pub explained: u64,
    pub worklist: u64,
    pub reference_horizon_years: u32,
    pub tiers: BTreeMap<String, u64>,
    pub recommendations: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// Everything computed for one prediction time.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub subject_id: i64,
    pub prediction_time: i64,
    pub age: f64,
    /// outcome -> calibrated risk at the reference horizon
    pub risk: BTreeMap<String, f64>,
    /// risk of any outcome at the reference horizon
    pub any_risk: f64,
    pub tier: &'static str,
    /// outcome -> factors (largest first), empty when not explained
    pub factors: BTreeMap<String, Vec<Factor>>,
    pub recommendations: Vec<Recommendation>,
    pub explained: bool,
}

pub const TIERS: [&str; 4] = ["low", "borderline", "intermediate", "high"];

fn tier(r: f64, bounds: &[f64; 3]) -> &'static str {
    TIERS[bounds.iter().filter(|b| r >= **b).count()]
}

/// The rows of one shard to score.
fn latest_rows(d: &Dataset) -> Vec<usize> {
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
    f.push(Field::new("tier", DataType::Utf8, false));
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    f.push(Field::new("top_factors", list(), false));
    f.push(Field::new("recommendation_ids", list(), false));
    f.push(Field::new("recommendations", list(), false));
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

/// A recommendation as one line: strength, text, triggering values, what-if.
pub fn describe(r: &Recommendation) -> String {
    let trig: Vec<String> = r
        .triggered_by
        .iter()
        .map(|(k, v)| format!("{k}={}", fmt_value(*v)))
        .collect();
    let mut s = format!("[{}] {} (because {})", r.strength, r.text, trig.join(", "));
    if let Some(w) = r.what_if
        && !r.risk_change.is_empty()
    {
        let ch: Vec<String> = r
            .risk_change
            .iter()
            .map(|(k, v)| format!("{k} {:+.1} pp", v * 100.0))
            .collect();
        s.push_str(&format!("; what if {}: {}", w.name(), ch.join(", ")));
    }
    s
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// Scores one shard's rows `d` (already chosen) into assessments.
struct ShardScorer<'a> {
    model: &'a Model,
    columns: &'a [String],
    rules: &'a RuleSet,
    namer: &'a Namer,
    seq: &'a SequenceValues,
    opts: &'a ScoreOptions,
}

impl ShardScorer<'_> {
    fn out_index(&self, outcome: usize, h: usize) -> usize {
        outcome * self.model.manifest.horizons_years.len() + h
    }

    fn ref_h(&self) -> usize {
        let hs = &self.model.manifest.horizons_years;
        (0..hs.len()).max_by_key(|&i| hs[i]).unwrap_or(0)
    }

    fn assess(
        &self,
        d: &Dataset,
        risks: &[RowRisks],
        eqs: &[EquationRisks],
        latest: &[bool],
    ) -> Vec<Assessment> {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        let ten_year = m.horizons_years[hr] == 10;
        let mut out: Vec<Assessment> = (0..d.len())
            .map(|r| {
                let risk: BTreeMap<String, f64> = m
                    .outcomes
                    .iter()
                    .enumerate()
                    .map(|(oi, o)| (o.clone(), risks[r].gru[self.out_index(oi, hr)]))
                    .collect();
                let any = 1.0 - risk.values().map(|p| 1.0 - p).product::<f64>();
                let tab = d.tab_row(r);
                let row = Row {
                    columns: self.columns,
                    values: tab,
                };
                let get = |n: &str| row.get(n);
                let e = &eqs[r];
                let q = |n: &str| -> f64 {
                    match n {
                        // PCE where it applies; else the network's risk of MI or stroke,
                        // and only when it is a 10-year risk (the guidelines' thresholds are).
                        "ascvd_10y" => match &e.pce_ascvd_10y {
                            Ok(p) => *p,
                            Err(_) if ten_year => any,
                            Err(_) => f64::NAN,
                        },
                        "mi_10y" => risk.get("mi").copied().unwrap_or(f64::NAN),
                        "stroke_10y" => risk.get("stroke").copied().unwrap_or(f64::NAN),
                        "cha2ds2vasc" => {
                            e.cha2ds2vasc.as_ref().map_or(f64::NAN, |(s, _)| *s as f64)
                        }
                        "cha2ds2vasc_beyond_sex" => {
                            e.cha2ds2vasc.as_ref().map_or(f64::NAN, |(s, _)| {
                                *s as f64 - if get("sex_female") == 1.0 { 1.0 } else { 0.0 }
                            })
                        }
                        "prior_ascvd" => {
                            let (a, b) = (get("prior_mi"), get("prior_stroke"));
                            if a.is_nan() && b.is_nan() {
                                f64::NAN
                            } else {
                                (a == 1.0 || b == 1.0) as u8 as f64
                            }
                        }
                        n => get(n),
                    }
                };
                let mut recommendations = self.rules.recommend(&q);
                if let Err(why) = &e.pce_ascvd_10y {
                    // Say where a guideline's 10-year ASCVD threshold met the network's risk.
                    for rec in recommendations
                        .iter_mut()
                        .filter(|x| x.triggered_by.contains_key("ascvd_10y"))
                    {
                        rec.text.push_str(&format!(
                            " [10-year ASCVD risk from the network (MI or stroke): the Pooled Cohort Equations do not apply ({why})]"
                        ));
                    }
                }
                Assessment {
                    subject_id: d.keys[r].0,
                    prediction_time: d.keys[r].1,
                    age: get("age_years"),
                    any_risk: any,
                    tier: tier(any, &self.opts.tiers),
                    recommendations,
                    risk,
                    factors: BTreeMap::new(),
                    explained: false,
                }
            })
            .collect();
        let scope: Vec<usize> = (0..d.len())
            .filter(|&r| match self.opts.explain {
                Explain::None => false,
                Explain::Latest => latest[r],
                Explain::All => true,
            })
            .collect();
        self.what_ifs(d, &scope, &mut out);
        self.explain(d, &scope, &mut out);
        out
    }

    /// Risk changes of every recommendation's what-if, for the rows in scope.
    fn what_ifs(&self, d: &Dataset, scope: &[usize], out: &mut [Assessment]) {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        let mut variants: Vec<(usize, usize)> = Vec::new(); // (row, recommendation)
        let mut rows = Vec::new();
        for &r in scope {
            for (k, rec) in out[r].recommendations.iter().enumerate() {
                if rec.what_if.is_some() {
                    variants.push((r, k));
                    rows.push(r);
                }
            }
        }
        if variants.is_empty() {
            return;
        }
        let mut vd = d.select(&rows);
        let mut applies = vec![false; variants.len()];
        for (i, (r, k)) in variants.iter().enumerate() {
            let change = out[*r].recommendations[*k].what_if.expect("filtered");
            applies[i] = whatif::apply(change, &mut vd, i, self.columns, self.seq);
        }
        let vr = self.model.predict(&vd);
        for (i, (r, k)) in variants.iter().enumerate() {
            if !applies[i] {
                continue;
            }
            let mut ch = BTreeMap::new();
            for (oi, o) in m.outcomes.iter().enumerate() {
                let j = self.out_index(oi, hr);
                ch.insert(
                    format!("{o}_{}y", m.horizons_years[hr]),
                    vr[i].gru[j] - out[*r].risk[o],
                );
            }
            let before = crate::model::equations::pce_on(&Row {
                columns: self.columns,
                values: d.tab_row(*r),
            });
            let after = crate::model::equations::pce_on(&Row {
                columns: self.columns,
                values: vd.tab_row(i),
            });
            if let (Ok(b), Ok(a)) = (before, after) {
                ch.insert("pce_ascvd_10y".into(), a - b);
            }
            out[*r].recommendations[*k].risk_change = ch;
        }
    }

    /// Integrated-gradients factors per outcome at the reference horizon.
    fn explain(&self, d: &Dataset, scope: &[usize], out: &mut [Assessment]) {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        for chunk in scope.chunks(256) {
            let b = Batch::new(d, chunk, &self.model.norm, self.model.device);
            for (oi, o) in m.outcomes.iter().enumerate() {
                let j = self.out_index(oi, hr);
                let att = integrated_gradients(
                    &self.model.net,
                    &b,
                    j as i64,
                    &self.model.calibration.hazard_scale,
                    &self.model.manifest.horizons_years,
                    self.opts.ig_steps,
                );
                for (a, &r) in att.iter().zip(chunk) {
                    let f = factors(a, d, r, self.columns, self.namer);
                    out[r].factors.insert(o.clone(), f);
                    out[r].explained = true;
                }
            }
        }
    }
}

/// The scores of rows of `d` (long by horizon).
fn batch(
    model: &Model,
    d: &Dataset,
    risks: &[RowRisks],
    eqs: &[EquationRisks],
    assessments: &[Assessment],
    top: usize,
) -> RecordBatch {
    let m = &model.manifest;
    let nh = m.horizons_years.len();
    let (mut sid, mut pt, mut sp, mut hz) = (vec![], vec![], vec![], vec![]);
    let mut per_outcome: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); m.outcomes.len()];
    let (mut pce, mut pa, mut pc, mut cr, mut cs, mut why, mut tiers) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut f_b = ListBuilder::new(StringBuilder::new());
    let mut id_b = ListBuilder::new(StringBuilder::new());
    let mut rec_b = ListBuilder::new(StringBuilder::new());
    for r in 0..d.len() {
        let a = &assessments[r];
        let factor_lines: Vec<String> = a
            .factors
            .iter()
            .flat_map(|(o, fs)| {
                fs.iter()
                    .take(top)
                    .map(move |f| format!("{o}: {}", f.describe()))
            })
            .collect();
        let rec_lines: Vec<String> = a.recommendations.iter().map(describe).collect();
        for (hi, h) in m.horizons_years.iter().enumerate() {
            sid.push(d.keys[r].0);
            pt.push(d.keys[r].1);
            sp.push(d.split[r].clone());
            hz.push(*h as i32);
            for (oi, v) in per_outcome.iter_mut().enumerate() {
                v.0.push(risks[r].gru[oi * nh + hi]);
                v.1.push(risks[r].logistic[oi * nh + hi]);
            }
            let e = &eqs[r];
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
            tiers.push(a.tier);
            f_b.append_value(factor_lines.iter().map(Some));
            id_b.append_value(a.recommendations.iter().map(|x| Some(x.id.as_str())));
            rec_b.append_value(rec_lines.iter().map(Some));
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
    cols.push(Arc::new(StringArray::from(tiers)));
    cols.push(Arc::new(f_b.finish()));
    cols.push(Arc::new(id_b.finish()));
    cols.push(Arc::new(rec_b.finish()));
    RecordBatch::try_new(schema(model), cols).expect("columns match the schema")
}

fn io(p: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Io {
        path: p.display().to_string(),
        message,
    }
}

/// The rows of the scores as CSV: list columns joined with " | ".
fn write_csv(w: &mut csv::Writer<std::fs::File>, b: &RecordBatch) -> Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("");
    let fmts: Vec<Option<ArrayFormatter>> = b
        .columns()
        .iter()
        .map(|c| {
            (!matches!(c.data_type(), DataType::List(_)))
                .then(|| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
        })
        .collect();
    for i in 0..b.num_rows() {
        let mut rec = Vec::with_capacity(b.num_columns());
        for (c, f) in b.columns().iter().zip(&fmts) {
            rec.push(match f {
                Some(f) => f.value(i).to_string(),
                None => {
                    let l = c.as_list::<i32>().value(i);
                    let s = l.as_string::<i32>();
                    (0..s.len())
                        .map(|k| s.value(k).to_string())
                        .collect::<Vec<_>>()
                        .join(" | ")
                }
            });
        }
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Score every shard of `features` into `out`.
pub fn run(
    model: &Model,
    features: &Path,
    rules: &RuleSet,
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
    let csv_path = out.join("scores.csv");
    let mut csv = if opts.csv {
        let mut c = csv::Writer::from_path(&csv_path).map_err(|e| io(&csv_path)(e.to_string()))?;
        c.write_record(schema(model).fields().iter().map(|f| f.name()))
            .map_err(|e| io(&csv_path)(e.to_string()))?;
        Some(c)
    } else {
        None
    };
    let fhir_path = out.join("risk_assessments.ndjson");
    let mut fhir_out = std::io::BufWriter::new(
        std::fs::File::create(&fhir_path).map_err(|e| io(&fhir_path)(e.to_string()))?,
    );
    let namer = Namer::new(&model.vocab);
    let seq = SequenceValues::new(&model.vocab, &model.value_norm);
    let scorer = ShardScorer {
        model,
        columns: &fm.columns,
        rules,
        namer: &namer,
        seq: &seq,
        opts,
    };
    let shards = data::shard_files(features)?;
    let mut s = ScoreSummary {
        shards: shards.len(),
        reference_horizon_years: model.manifest.horizons_years[scorer.ref_h()],
        ..Default::default()
    };
    // Worklist candidates are spilled as rendered records; memory keeps a small index only.
    let spill_path = out.join("worklist.partial");
    let mut spill = std::io::BufWriter::new(
        std::fs::File::create(&spill_path).map_err(|e| io(&spill_path)(e.to_string()))?,
    );
    let (mut spilled, mut index): (u64, Vec<WorkItem>) = (0, Vec::new());
    for (i, (t, sf)) in shards.iter().enumerate() {
        let d = data::read_shard(t, sf, &fm.columns, &|_, _, _| true)?;
        let latest = latest_rows(&d);
        let d = if opts.latest_only {
            d.select(&latest)
        } else {
            d
        };
        let mut is_latest = vec![false; d.len()];
        for r in latest_rows(&d) {
            is_latest[r] = true;
        }
        let risks = model.predict(&d);
        let eqs: Vec<EquationRisks> = (0..d.len())
            .map(|r| {
                on_features(&Row {
                    columns: &fm.columns,
                    values: d.tab_row(r),
                })
            })
            .collect();
        let assessments = scorer.assess(&d, &risks, &eqs, &is_latest);
        let b = batch(model, &d, &risks, &eqs, &assessments, opts.top_factors);
        s.prediction_times += d.len() as u64;
        s.rows_written += b.num_rows() as u64;
        w.write(&b).map_err(|e| io(&tmp)(e.to_string()))?;
        // A row group per shard: the writer holds one shard's rows, not the whole file's.
        w.flush().map_err(|e| io(&tmp)(e.to_string()))?;
        if let Some(c) = csv.as_mut() {
            write_csv(c, &b).map_err(io(&csv_path))?;
        }
        for (r, a) in assessments.into_iter().enumerate() {
            s.explained += a.explained as u64;
            if !is_latest[r] {
                continue;
            }
            s.subjects += 1;
            *s.tiers.entry(a.tier.to_string()).or_default() += 1;
            for rec in &a.recommendations {
                *s.recommendations.entry(rec.id.clone()).or_default() += 1;
            }
            let line = serde_json::to_string(&fhir::risk_assessment(model, &a, opts.top_factors))
                .expect("json");
            writeln!(fhir_out, "{line}").map_err(|e| io(&fhir_path)(e.to_string()))?;
            if a.any_risk >= opts.worklist_threshold {
                let line = serde_json::to_string(&worklist_fields(model, &a, opts.top_factors))
                    .expect("json")
                    + "\n";
                spill
                    .write_all(line.as_bytes())
                    .map_err(|e| io(&spill_path)(e.to_string()))?;
                index.push(WorkItem {
                    any_risk: a.any_risk,
                    subject_id: a.subject_id,
                    prediction_time: a.prediction_time,
                    offset: spilled,
                    len: line.len() as u32,
                });
                spilled += line.len() as u64;
            }
        }
        on_shard(i + 1, shards.len());
    }
    w.close().map_err(|e| io(&tmp)(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path)(e.to_string()))?;
    if let Some(mut c) = csv {
        c.flush().map_err(|e| io(&csv_path)(e.to_string()))?;
    }
    fhir_out
        .flush()
        .map_err(|e| io(&fhir_path)(e.to_string()))?;
    spill.flush().map_err(|e| io(&spill_path)(e.to_string()))?;
    drop(spill);
    // The worklist is for now: the most recent prediction time of the run.
    let now = index.iter().map(|a| a.prediction_time).max();
    index.retain(|a| Some(a.prediction_time) == now);
    index.sort_by(|a, b| {
        b.any_risk
            .total_cmp(&a.any_risk)
            .then(a.subject_id.cmp(&b.subject_id))
    });
    s.worklist = index.len() as u64;
    write_worklist(&out.join("worklist.csv"), model, &spill_path, &index)?;
    std::fs::remove_file(&spill_path).map_err(|e| io(&spill_path)(e.to_string()))?;
    s.seconds = started.elapsed().as_secs_f64();
    let sp = out.join("score_summary.json");
    std::fs::write(&sp, serde_json::to_string_pretty(&s).expect("json"))
        .map_err(|e| io(&sp)(e.to_string()))?;
    Ok(s)
}

/// Where a worklist candidate's rendered record lies in the spill file.
struct WorkItem {
    any_risk: f64,
    subject_id: i64,
    prediction_time: i64,
    offset: u64,
    len: u32,
}

/// A worklist record without its rank.
fn worklist_fields(model: &Model, a: &Assessment, top: usize) -> Vec<String> {
    let t = chrono::DateTime::from_timestamp_micros(a.prediction_time)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let mut rec = vec![a.subject_id.to_string(), t, format!("{:.4}", a.any_risk)];
    rec.extend(
        model
            .manifest
            .outcomes
            .iter()
            .map(|o| format!("{:.4}", a.risk[o])),
    );
    rec.push(a.tier.to_string());
    rec.push(
        a.factors
            .iter()
            .flat_map(|(o, fs)| {
                fs.iter()
                    .take(top)
                    .map(move |f| format!("{o}: {}", f.describe()))
            })
            .collect::<Vec<_>>()
            .join(" | "),
    );
    rec.push(
        a.recommendations
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(" | "),
    );
    rec
}

fn write_worklist(
    p: &Path,
    model: &Model,
    spill: &Path,
    list: &[WorkItem],
) -> Result<(), ModelError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut w = csv::Writer::from_path(p).map_err(|e| io(p)(e.to_string()))?;
    let h = model
        .manifest
        .horizons_years
        .iter()
        .max()
        .copied()
        .unwrap_or(0);
    let mut header = vec![
        "rank".to_string(),
        "subject_id".into(),
        "prediction_time".into(),
        format!("any_risk_{h}y"),
    ];
    header.extend(
        model
            .manifest
            .outcomes
            .iter()
            .map(|o| format!("{o}_risk_{h}y")),
    );
    header.extend(["tier", "top_factors", "recommendations"].map(String::from));
    w.write_record(&header).map_err(|e| io(p)(e.to_string()))?;
    let mut f = std::fs::File::open(spill).map_err(|e| io(spill)(e.to_string()))?;
    let mut buf = Vec::new();
    for (i, item) in list.iter().enumerate() {
        buf.resize(item.len as usize, 0);
        f.seek(SeekFrom::Start(item.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| io(spill)(e.to_string()))?;
        let fields: Vec<String> =
            serde_json::from_slice(&buf).map_err(|e| io(spill)(e.to_string()))?;
        let mut rec = vec![(i + 1).to_string()];
        rec.extend(fields);
        w.write_record(&rec).map_err(|e| io(p)(e.to_string()))?;
    }
    w.flush().map_err(|e| io(p)(e.to_string()))
}
