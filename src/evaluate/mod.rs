//! Evaluation: every model side by side on the same held-out split. In: a FeatureSet, the labels
//! of one outcome x horizon, and optionally the synthetic ground truth. Out: AUROC and AUPRC with
//! bootstrap 95 % intervals, Brier score, calibration intercept/slope and curve, for all rows and
//! per subgroup (sex, age band, race), for the logistic baseline (fitted on the train split),
//! the Pooled Cohort Equations (where they apply; a 10-year ASCVD risk, so compare its ranking,
//! not its calibration) and the oracle (the generator's exact risk) when the truth is given.

pub mod censored;
pub mod metrics;

/// Deciles of predicted risk with fewer events than this are shown but not judged.
pub const DECILE_MIN_EVENTS: usize = 20;
/// The band of observed/expected a decile is held to (issue #17's target).
pub const DECILE_BAND: (f64, f64) = (0.8, 1.25);

use crate::cohort::censoring;
use crate::model::logistic::{LogisticModel, LogisticParams};
use metrics::{Estimate, auprc, auroc, bootstrap, brier, calibration, calibration_curve};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ModelMetrics {
    pub n: usize,
    pub events: usize,
    pub auroc: Option<Estimate>,
    pub auprc: Option<Estimate>,
    pub brier: f64,
    pub calibration_intercept: Option<f64>,
    pub calibration_slope: Option<f64>,
    /// (mean predicted, observed, n) per decile of predicted risk
    pub calibration_curve: Vec<(f64, f64, usize)>,
    /// (false-positive rate, true-positive rate), up to 100 points
    pub roc_curve: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub outcome: String,
    pub split: String,
    /// model -> subgroup -> metrics
    pub models: BTreeMap<String, BTreeMap<String, ModelMetrics>>,
    /// model -> its risks against the generator's exact risks (synthetic data only).
    #[serde(default)]
    pub against_truth: BTreeMap<String, TruthCalibration>,
    /// model -> censoring-aware metrics on every row of the split with a time to event whose
    /// horizon ends inside the extract (IPCW; see [`censored`]).
    #[serde(default)]
    pub censoring_aware: BTreeMap<String, censored::Ipcw>,
    /// model -> rows whose risk at this horizon exceeds the risk at the next longer one.
    #[serde(default)]
    pub horizon_violations: BTreeMap<String, usize>,
}

/// Predicted against true risk on every row of the split the truth covers, labelled or not (a
/// comparison of probabilities: no censoring enters it).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TruthCalibration {
    pub n: usize,
    pub mean_predicted: f64,
    pub mean_true: f64,
    /// mean predicted / mean true
    pub ratio: f64,
    /// (mean predicted, mean true, n) per decile of predicted risk
    pub deciles: Vec<(f64, f64, usize)>,
}

impl TruthCalibration {
    /// `None` when no row has both.
    pub fn of(pred: &[Option<f64>], truth: &[Option<f64>]) -> Option<TruthCalibration> {
        let mut pairs: Vec<(f64, f64)> = pred
            .iter()
            .zip(truth)
            .filter_map(|(p, t)| Some(((*p)?, (*t)?)))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let n = pairs.len();
        let mp = pairs.iter().map(|x| x.0).sum::<f64>() / n as f64;
        let mt = pairs.iter().map(|x| x.1).sum::<f64>() / n as f64;
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let deciles = (0..10)
            .filter_map(|k| {
                let part = &pairs[k * n / 10..(k + 1) * n / 10];
                (!part.is_empty()).then(|| {
                    let m = part.len() as f64;
                    (
                        part.iter().map(|x| x.0).sum::<f64>() / m,
                        part.iter().map(|x| x.1).sum::<f64>() / m,
                        part.len(),
                    )
                })
            })
            .collect();
        Some(TruthCalibration {
            n,
            mean_predicted: mp,
            mean_true: mt,
            ratio: if mt > 0.0 { mp / mt } else { f64::NAN },
            deciles,
        })
    }
}

pub fn model_metrics(p: &[f64], y: &[bool], reps: usize, seed: u64) -> ModelMetrics {
    let cal = calibration(p, y);
    ModelMetrics {
        n: p.len(),
        events: y.iter().filter(|v| **v).count(),
        auroc: bootstrap(p, y, reps, seed, auroc),
        auprc: bootstrap(p, y, reps, seed, auprc),
        brier: brier(p, y),
        calibration_intercept: cal.map(|c| c.0),
        calibration_slope: cal.map(|c| c.1),
        calibration_curve: calibration_curve(p, y, 10),
        roc_curve: metrics::roc_curve(p, y, 100),
    }
}

/// Subgroups a row belongs to, from its tabular features.
fn subgroups(columns: &[String], row: &[f32]) -> Vec<String> {
    let r = crate::model::equations::Row {
        columns,
        values: row,
    };
    let get = |n: &str| r.get(n);
    let mut g = vec!["all".to_string()];
    let female = get("sex_female");
    if female == 1.0 {
        g.push("sex=F".into());
    } else if female == 0.0 {
        g.push("sex=M".into());
    }
    let age = get("age_years");
    if !age.is_nan() {
        g.push(format!(
            "age={}",
            if age < 50.0 {
                "<50"
            } else if age < 65.0 {
                "50-64"
            } else {
                "65+"
            }
        ));
    }
    if get("race_black") == 1.0 {
        g.push("race=black".into());
    } else if get("race_white") == 1.0 {
        g.push("race=white".into());
    } else if get("race_other") == 1.0 {
        g.push("race=other".into());
    }
    g
}

/// Evaluate on `split` (usually held_out): rows are (keys, features), labels by (subject, time),
/// each row's inverse probability of censoring at the label's horizon (the baseline's training
/// weight), oracle risks by (subject, time) when known.
#[allow(clippy::too_many_arguments)]
pub fn run(
    outcome: &str,
    columns: &[String],
    keys: &[(i64, i64, String)],
    rows: &[Vec<f32>],
    labels: &std::collections::HashMap<(i64, i64), bool>,
    ipcw: &[f64],
    oracle: Option<&std::collections::HashMap<(i64, i64), f64>>,
    split: &str,
    hashes: (&str, &str),
    bootstrap_reps: usize,
    seed: u64,
) -> Result<Evaluation, crate::model::logistic::LogisticError> {
    let (mut tx, mut ty, mut tw) = (vec![], vec![], vec![]);
    let mut test: Vec<(usize, bool)> = vec![];
    for (i, k) in keys.iter().enumerate() {
        let Some(&y) = labels.get(&(k.0, k.1)) else {
            continue;
        };
        if k.2 == "train" {
            tx.push(rows[i].clone());
            ty.push(y);
            tw.push(ipcw[i]);
        } else if k.2 == split && oracle.is_none_or(|o| o.contains_key(&(k.0, k.1))) {
            test.push((i, y));
        }
    }
    let model = LogisticModel::fit(
        outcome,
        columns,
        &tx,
        &ty,
        &tw,
        LogisticParams::default(),
        hashes,
    )?;
    let test_rows: Vec<Vec<f32>> = test.iter().map(|(i, _)| rows[*i].clone()).collect();
    let mut preds: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    preds.insert(
        "logistic".into(),
        model.predict(&test_rows).into_iter().map(Some).collect(),
    );
    preds.insert(
        "pce".into(),
        test_rows
            .iter()
            .map(|r| {
                crate::model::equations::pce_on(&crate::model::equations::Row {
                    columns,
                    values: r,
                })
                .ok()
            })
            .collect(),
    );
    if let Some(o) = oracle {
        preds.insert(
            "oracle".into(),
            test.iter()
                .map(|(i, _)| o.get(&(keys[*i].0, keys[*i].1)).copied())
                .collect(),
        );
    }
    let y: Vec<bool> = test.iter().map(|t| t.1).collect();
    Ok(compare(
        outcome,
        split,
        columns,
        &test_rows,
        &y,
        preds,
        bootstrap_reps,
        seed,
    ))
}

/// Every model's predictions side by side on the same rows: metrics for all rows and per
/// subgroup. A `None` prediction means the model does not apply to that row (it is left out of
/// that model's metrics, and `n` says how many it covered).
#[allow(clippy::too_many_arguments)]
pub fn compare(
    outcome: &str,
    split: &str,
    columns: &[String],
    rows: &[Vec<f32>],
    y: &[bool],
    preds: BTreeMap<String, Vec<Option<f64>>>,
    bootstrap_reps: usize,
    seed: u64,
) -> Evaluation {
    let groups: Vec<Vec<String>> = rows.iter().map(|r| subgroups(columns, r)).collect();
    let mut models = BTreeMap::new();
    for (name, p) in preds {
        let mut by: BTreeMap<String, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((pi, yi), gs) in p.iter().zip(y).zip(&groups) {
            let Some(pi) = pi else { continue };
            for g in gs {
                let e = by.entry(g.clone()).or_default();
                e.0.push(*pi);
                e.1.push(*yi);
            }
        }
        models.insert(
            name,
            by.into_iter()
                .map(|(g, (p, y))| (g, model_metrics(&p, &y, bootstrap_reps, seed)))
                .collect(),
        );
    }
    Evaluation {
        outcome: outcome.to_string(),
        split: split.to_string(),
        models,
        censoring_aware: BTreeMap::new(),
        against_truth: BTreeMap::new(),
        horizon_violations: BTreeMap::new(),
    }
}

/// One output's risk from a 10-year equation or an annual rate, for a horizon of `h` years.
fn annual_to_horizon(rate: f64, h: u32) -> f64 {
    1.0 - (1.0 - rate).powi(h as i32)
}

/// Every model side by side on `split`: the network and baseline of a trained model, PCE and
/// PREVENT (10-year ASCVD: compare their ranking at other horizons, not their calibration),
/// CHA2DS2-VASc for the stroke outputs (people with atrial fibrillation; the annual rate over
/// the horizon) and the oracle when the synthetic truth is given. One [`Evaluation`] per output.
#[allow(clippy::too_many_arguments)]
pub fn with_model(
    model: &crate::model::bundle::Model,
    features: &std::path::Path,
    cohort: &std::path::Path,
    truth: Option<&crate::synth::Truth>,
    split: &str,
    only: Option<&str>,
    bootstrap_reps: usize,
    seed: u64,
) -> Result<Vec<Evaluation>, crate::model::bundle::ModelError> {
    use crate::model::equations::{Row, on_features};
    let fm = model.check_features(features)?;
    crate::cohort::check_made_from(cohort, &fm.lake_fingerprint, &fm.task_hash)?;
    let split_owned = split.to_string();
    let d =
        crate::model::data::read_all(features, &fm.columns, &move |_, _, sp| sp == split_owned)?;
    let risks = model.predict(&d);
    let eqs: Vec<_> = (0..d.len())
        .map(|r| {
            on_features(&Row {
                columns: &fm.columns,
                values: d.tab_row(r),
            })
        })
        .collect();
    let m = &model.manifest;
    let survival = crate::cohort::read_survival(cohort, &m.outcomes)?;
    if let Some(o) = only
        && !m.outputs.iter().any(|x| x == o)
    {
        return Err(crate::model::bundle::ModelError::Mismatch {
            dir: model.dir.display().to_string(),
            message: format!("no output {o:?}; the model's outputs are {:?}", m.outputs),
        });
    }
    let mut out = Vec::new();
    for (j, name) in m.outputs.iter().enumerate() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let labels = crate::cohort::read_labels(&cohort.join("labels").join(name))?;
        let hi = j % m.horizons_years.len();
        let h = m.horizons_years[hi];
        let outcome = &m.outcomes[j / m.horizons_years.len()];
        let rows: Vec<usize> = (0..d.len())
            .filter(|&r| labels.contains_key(&d.keys[r]))
            .filter(|&r| {
                truth.is_none_or(|t| t.contains_key(&(d.keys[r].0, d.keys[r].1, h as i32)))
            })
            .collect();
        let y: Vec<bool> = rows.iter().map(|r| labels[&d.keys[*r]]).collect();
        let mut preds: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        preds.insert(
            "gru".into(),
            rows.iter().map(|&r| Some(risks[r].gru[j])).collect(),
        );
        preds.insert(
            "logistic".into(),
            rows.iter().map(|&r| Some(risks[r].logistic[j])).collect(),
        );
        preds.insert(
            "pce_ascvd_10y".into(),
            rows.iter()
                .map(|&r| eqs[r].pce_ascvd_10y.clone().ok())
                .collect(),
        );
        preds.insert(
            "prevent_ascvd_10y".into(),
            rows.iter()
                .map(|&r| eqs[r].prevent_ascvd_10y.clone().ok())
                .collect(),
        );
        if outcome == "stroke" {
            preds.insert(
                "cha2ds2vasc".into(),
                rows.iter()
                    .map(|&r| {
                        eqs[r]
                            .cha2ds2vasc
                            .clone()
                            .ok()
                            .map(|(_, rate)| annual_to_horizon(rate, h))
                    })
                    .collect(),
            );
        }
        if let Some(t) = truth {
            preds.insert(
                "oracle".into(),
                rows.iter()
                    .map(|&r| {
                        t.get(&(d.keys[r].0, d.keys[r].1, h as i32))
                            .and_then(|v| v.of(outcome))
                    })
                    .collect(),
            );
        }
        let tab: Vec<Vec<f32>> = rows.iter().map(|&r| d.tab_row(r).to_vec()).collect();
        let mut e = compare(
            name,
            split,
            &fm.columns,
            &tab,
            &y,
            preds,
            bootstrap_reps,
            seed,
        );
        // Every model's risk on every row of the split (None where it does not apply), for
        // the comparisons that do not need a label.
        let mut every: Vec<(&str, Vec<Option<f64>>)> = vec![
            ("gru", risks.iter().map(|x| Some(x.gru[j])).collect()),
            (
                "logistic",
                risks.iter().map(|x| Some(x.logistic[j])).collect(),
            ),
            (
                "pce_ascvd_10y",
                eqs.iter().map(|x| x.pce_ascvd_10y.clone().ok()).collect(),
            ),
            (
                "prevent_ascvd_10y",
                eqs.iter()
                    .map(|x| x.prevent_ascvd_10y.clone().ok())
                    .collect(),
            ),
        ];
        let true_of = |name: &str| -> Option<Vec<Option<f64>>> {
            truth.map(|t| {
                d.keys
                    .iter()
                    .map(|k| t.get(&(k.0, k.1, h as i32)).and_then(|v| v.of(name)))
                    .collect()
            })
        };
        let true_risk = true_of(outcome);
        if let Some(tv) = &true_risk {
            // Every row the truth covers, whether or not censoring left it a label. The
            // equations predict 10-year ASCVD (MI or stroke, whichever first): they are held
            // against that joint truth, at 10 years only.
            let ascvd = true_of("ascvd").unwrap_or_default();
            for (model, p) in &every {
                let equation = model.ends_with("_ascvd_10y");
                if equation && h != 10 {
                    continue;
                }
                if let Some(c) = TruthCalibration::of(p, if equation { &ascvd } else { tv }) {
                    e.against_truth.insert(model.to_string(), c);
                }
            }
            every.push(("oracle", tv.clone()));
        }
        // Censoring-aware: every row with a time to event whose horizon the extract covers.
        let oi = j / m.horizons_years.len();
        let ends: Vec<Option<(f64, censoring::End)>> = d
            .keys
            .iter()
            .map(|k| censoring::eligible_end(survival.get(k)?, oi, h as f64))
            .collect();
        for (model, p) in &every {
            let (pv, ev): (Vec<f64>, Vec<(f64, censoring::End)>) = p
                .iter()
                .zip(&ends)
                .filter_map(|(p, end)| Some(((*p)?, (*end)?)))
                .unzip();
            if let Some(x) = censored::ipcw(&pv, &ev, h as f64) {
                e.censoring_aware.insert(model.to_string(), x);
            }
        }
        // Monotone in the horizon: the risk at this horizon against the next longer one.
        if hi + 1 < m.horizons_years.len() {
            for (model, get) in [
                (
                    "gru",
                    (|x: &crate::model::bundle::RowRisks| &x.gru) as fn(&_) -> &Vec<f64>,
                ),
                ("logistic", |x| &x.logistic),
            ] {
                let v = (0..d.len())
                    .filter(|&r| get(&risks[r])[j] > get(&risks[r])[j + 1] + 1e-9)
                    .count();
                e.horizon_violations.insert(model.to_string(), v);
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// The evaluations as one long table (output, model, subgroup, metrics) for Parquet/polars.
pub fn metrics_table(evals: &[Evaluation]) -> arrow::array::RecordBatch {
    use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let (mut o, mut m, mut g) = (vec![], vec![], vec![]);
    let (mut n, mut ev) = (vec![], vec![]);
    let mut f: Vec<Vec<Option<f64>>> = vec![vec![]; 9];
    for e in evals {
        for (model, groups) in &e.models {
            for (grp, x) in groups {
                o.push(e.outcome.clone());
                m.push(model.clone());
                g.push(grp.clone());
                n.push(x.n as u64);
                ev.push(x.events as u64);
                let vals = [
                    x.auroc.map(|a| a.value),
                    x.auroc.map(|a| a.lo),
                    x.auroc.map(|a| a.hi),
                    x.auprc.map(|a| a.value),
                    x.auprc.map(|a| a.lo),
                    x.auprc.map(|a| a.hi),
                    Some(x.brier),
                    x.calibration_intercept,
                    x.calibration_slope,
                ];
                for (c, v) in f.iter_mut().zip(vals) {
                    c.push(v);
                }
            }
        }
    }
    let names = [
        "auroc",
        "auroc_lo",
        "auroc_hi",
        "auprc",
        "auprc_lo",
        "auprc_hi",
        "brier",
        "calibration_intercept",
        "calibration_slope",
    ];
    let mut fields = vec![
        Field::new("output", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("subgroup", DataType::Utf8, false),
        Field::new("n", DataType::UInt64, false),
        Field::new("events", DataType::UInt64, false),
    ];
    fields.extend(
        names
            .iter()
            .map(|c| Field::new(*c, DataType::Float64, true)),
    );
    let mut cols: Vec<ArrayRef> = vec![
        std::sync::Arc::new(StringArray::from(o)),
        std::sync::Arc::new(StringArray::from(m)),
        std::sync::Arc::new(StringArray::from(g)),
        std::sync::Arc::new(UInt64Array::from(n)),
        std::sync::Arc::new(UInt64Array::from(ev)),
    ];
    cols.extend(
        f.into_iter()
            .map(|c| std::sync::Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols)
        .expect("columns match the schema")
}
