//! Batch scoring and what users receive. In: a trained model directory and a features folder
//! built with the same spec, task and vocabulary (refused otherwise), the recommendation rules,
//! the trial effects and, for write-back, the lake's subject map. Out, in the output folder:
//! - `scores.parquet` (and `scores.csv` on request, [`table`]): one row per subject x prediction
//!   time x horizon;
//! - `worklist.csv` ([`worklist`]): subjects at the run's most recent prediction time at or
//!   above the worklist threshold, highest risk first, with the receiving system's patient id;
//! - `risk_assessments.ndjson` and `risk_assessments.bundle.json` ([`fhir`]): a FHIR R4
//!   RiskAssessment per subject (latest prediction time) and receiving system, and a
//!   transaction Bundle of conditional updates;
//! - `score_summary.json`: counts, tiers, recommendation counts.
//!
//! With the lake ([`WriteBack::from_lake`]), each RiskAssessment names the patient as the
//! receiving system knows them and its `basis` points at the source records behind the top
//! factors ([`basis`]).
//!
//! The assessment itself ([`assess`]) is pure and shared with the CDS Hooks service. Shards are
//! read, scored and appended one at a time: memory is one shard whatever the cohort.

pub mod assess;
pub mod basis;
pub mod fhir;
pub mod table;
pub mod worklist;

pub use assess::{Assessment, Assessor, Explain, TIERS, describe, latest_rows, tier};

use crate::model::bundle::{Model, ModelError};
use crate::model::data;
use crate::recommend::RuleSet;
use crate::recommend::effects::Effects;
use fhir::{SubjectRefs, TransactionWriter};
use parquet::arrow::ArrowWriter;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

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
    /// On the explained rows, also the network's response to each recommendation's change
    /// (an association, for analysts; the point of care does not show it).
    pub model_association: bool,
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
            model_association: true,
        }
    }
}

/// Where the written-back scores go: how each subject is known to the receiving systems and,
/// when the lake is given, the source records behind each score.
#[derive(Default)]
pub struct WriteBack {
    pub refs: SubjectRefs,
    pub basis: Option<basis::Basis>,
}

impl WriteBack {
    /// The lake's subject map (restricted to `target` when given) and its events.
    pub fn from_lake(
        lake: &Path,
        target: Option<&str>,
        model: &Model,
    ) -> Result<WriteBack, ModelError> {
        Ok(WriteBack {
            refs: SubjectRefs::from_lake(lake, target)?,
            basis: Some(basis::Basis::open(lake, model)?),
        })
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
    /// RiskAssessments written (one per subject and receiving system).
    #[serde(default)]
    pub risk_assessments: u64,
    /// Latest subjects the `--fhir-target` system does not know (no resource written).
    #[serde(default)]
    pub not_known_to_target: u64,
    /// Source records referenced in the RiskAssessments' `basis` (with the lake).
    #[serde(default)]
    pub basis_records: u64,
    pub reference_horizon_years: u32,
    pub tiers: BTreeMap<String, u64>,
    pub recommendations: BTreeMap<String, u64>,
    pub seconds: f64,
}

fn io(p: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Io {
        path: p.display().to_string(),
        message,
    }
}

/// Score every shard of `features` into `out`.
pub fn run(
    model: &Model,
    features: &Path,
    rules: &RuleSet,
    wb: &mut WriteBack,
    out: &Path,
    opts: &ScoreOptions,
    on_shard: &mut dyn FnMut(usize, usize),
) -> Result<ScoreSummary, ModelError> {
    let started = std::time::Instant::now();
    let fm = model.check_features(features)?;
    if let Some(b) = &wb.basis {
        b.check(features, &fm)?;
    }
    std::fs::create_dir_all(out).map_err(|e| io(out)(e.to_string()))?;
    let path = out.join("scores.parquet");
    let tmp = out.join("scores.parquet.partial");
    let f = std::fs::File::create(&tmp).map_err(|e| io(&tmp)(e.to_string()))?;
    let mut w =
        ArrowWriter::try_new(f, table::schema(model), None).map_err(|e| io(&tmp)(e.to_string()))?;
    let csv_path = out.join("scores.csv");
    let mut csv = if opts.csv {
        let mut c = csv::Writer::from_path(&csv_path).map_err(|e| io(&csv_path)(e.to_string()))?;
        c.write_record(table::schema(model).fields().iter().map(|f| f.name()))
            .map_err(|e| io(&csv_path)(e.to_string()))?;
        Some(c)
    } else {
        None
    };
    let fhir_path = out.join("risk_assessments.ndjson");
    let mut fhir_out = std::io::BufWriter::new(
        std::fs::File::create(&fhir_path).map_err(|e| io(&fhir_path)(e.to_string()))?,
    );
    let bundle_path = out.join("risk_assessments.bundle.json");
    let mut bundle = TransactionWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&bundle_path).map_err(|e| io(&bundle_path)(e.to_string()))?,
    ))
    .map_err(|e| io(&bundle_path)(e.to_string()))?;
    let effects = Effects::builtin();
    let assessor = Assessor::new(model, &fm.columns, rules, &effects, opts);
    let shards = data::shard_files(features)?;
    let mut s = ScoreSummary {
        shards: shards.len(),
        reference_horizon_years: assessor.horizon_years(),
        ..Default::default()
    };
    let mut worklist = worklist::Worklist::new(out, opts.worklist_threshold, opts.top_factors)?;
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
        let eqs = assessor.equations(&d);
        let explain: Vec<bool> = is_latest
            .iter()
            .map(|&l| match opts.explain {
                Explain::None => false,
                Explain::Latest => l,
                Explain::All => true,
            })
            .collect();
        let assessments = assessor.assess(&d, &risks, &eqs, &explain);
        let b = table::batch(model, &d, &risks, &eqs, &assessments, opts.top_factors);
        s.prediction_times += d.len() as u64;
        s.rows_written += b.num_rows() as u64;
        w.write(&b).map_err(|e| io(&tmp)(e.to_string()))?;
        // A row group per shard: the writer holds one shard's rows, not the whole file's.
        w.flush().map_err(|e| io(&tmp)(e.to_string()))?;
        if let Some(c) = csv.as_mut() {
            table::write_csv(c, &b).map_err(io(&csv_path))?;
        }
        for (r, mut a) in assessments.into_iter().enumerate() {
            s.explained += a.explained as u64;
            if !is_latest[r] {
                continue;
            }
            s.subjects += 1;
            *s.tiers.entry(a.tier.to_string()).or_default() += 1;
            for rec in &a.recommendations {
                *s.recommendations.entry(rec.id.clone()).or_default() += 1;
            }
            let targets = wb.refs.of(a.subject_id);
            if targets.is_empty() {
                s.not_known_to_target += 1;
            } else if let Some(b) = wb.basis.as_mut() {
                a.basis = b.records(&a, opts.top_factors)?;
                s.basis_records += a.basis.len() as u64;
            }
            for (system, value) in &targets {
                let r = fhir::risk_assessment(model, &a, opts.top_factors, system, value);
                writeln!(fhir_out, "{}", serde_json::to_string(&r).expect("json"))
                    .map_err(|e| io(&fhir_path)(e.to_string()))?;
                bundle
                    .add(&r)
                    .map_err(|e| io(&bundle_path)(e.to_string()))?;
                s.risk_assessments += 1;
            }
            worklist.push(model, &a, &wb.refs)?;
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
    bundle
        .finish()
        .map_err(|e| io(&bundle_path)(e.to_string()))?;
    s.worklist = worklist.finish(&out.join("worklist.csv"), model, &wb.refs)?;
    s.seconds = started.elapsed().as_secs_f64();
    let sp = out.join("score_summary.json");
    std::fs::write(&sp, serde_json::to_string_pretty(&s).expect("json"))
        .map_err(|e| io(&sp)(e.to_string()))?;
    Ok(s)
}
