//! Evaluation: every model side by side on the same held-out split. In: a FeatureSet, the labels
//! of one outcome x horizon, and optionally the synthetic ground truth. Out: AUROC and AUPRC with
//! bootstrap 95 % intervals, Brier score, calibration intercept/slope and curve, for all rows and
//! per subgroup (sex, age band, race), for the logistic baseline (fitted on the train split),
//! the Pooled Cohort Equations (where they apply; a 10-year ASCVD risk, so compare its ranking,
//! not its calibration) and the oracle (the generator's exact risk) when the truth is given.

pub mod metrics;

use crate::model::equations::pce;
use crate::model::logistic::{LogisticModel, LogisticParams};
use metrics::{Estimate, auprc, auroc, bootstrap, brier, calibration, calibration_curve};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub outcome: String,
    pub split: String,
    /// model -> subgroup -> metrics
    pub models: BTreeMap<String, BTreeMap<String, ModelMetrics>>,
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
    }
}

/// Subgroups a row belongs to, from its tabular features.
fn subgroups(columns: &[String], row: &[f32]) -> Vec<String> {
    let get = |n: &str| {
        columns
            .iter()
            .position(|c| c == n)
            .map(|i| row[i])
            .unwrap_or(f32::NAN)
    };
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

/// PCE 10-year ASCVD risk from a tabular feature row, `None` where the equation does not apply.
pub fn pce_risk(columns: &[String], r: &[f32]) -> Option<f64> {
    let get = |n: &str| {
        columns
            .iter()
            .position(|c| c == n)
            .map(|i| r[i] as f64)
            .unwrap_or(f64::NAN)
    };
    let x = pce::Inputs {
        age: get("age_years"),
        sex: if get("sex_female") == 1.0 {
            pce::Sex::Female
        } else {
            pce::Sex::Male
        },
        race: if get("race_black") == 1.0 {
            pce::Race::AfricanAmerican
        } else {
            pce::Race::White
        },
        total_chol: get("total_cholesterol_last"),
        hdl: get("hdl_cholesterol_last"),
        sbp: get("systolic_bp_last"),
        bp_treated: get("rx_antihypertensive") == 1.0,
        smoker: get("smoking_current") == 1.0,
        diabetes: get("dx_diabetes") == 1.0,
    };
    pce::risk(&x).ok()
}

/// Evaluate on `split` (usually held_out): rows are (keys, features), labels by (subject, time),
/// oracle risks by (subject, time) when known.
#[allow(clippy::too_many_arguments)]
pub fn run(
    outcome: &str,
    columns: &[String],
    keys: &[(i64, i64, String)],
    rows: &[Vec<f32>],
    labels: &std::collections::HashMap<(i64, i64), bool>,
    oracle: Option<&std::collections::HashMap<(i64, i64), f64>>,
    split: &str,
    hashes: (&str, &str),
    bootstrap_reps: usize,
    seed: u64,
) -> Result<Evaluation, String> {
    let (mut tx, mut ty) = (vec![], vec![]);
    let mut test: Vec<(usize, bool)> = vec![];
    for (i, k) in keys.iter().enumerate() {
        let Some(&y) = labels.get(&(k.0, k.1)) else {
            continue;
        };
        if k.2 == "train" {
            tx.push(rows[i].clone());
            ty.push(y);
        } else if k.2 == split && oracle.is_none_or(|o| o.contains_key(&(k.0, k.1))) {
            test.push((i, y));
        }
    }
    let model = LogisticModel::fit(
        outcome,
        columns,
        &tx,
        &ty,
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
        test.iter()
            .map(|(i, _)| pce_risk(columns, &rows[*i]))
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
    let groups: Vec<Vec<String>> = test
        .iter()
        .map(|(i, _)| subgroups(columns, &rows[*i]))
        .collect();
    let mut models = BTreeMap::new();
    for (name, p) in preds {
        let mut by: BTreeMap<String, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((pi, (_, y)), gs) in p.iter().zip(&test).zip(&groups) {
            let Some(pi) = pi else { continue };
            for g in gs {
                let e = by.entry(g.clone()).or_default();
                e.0.push(*pi);
                e.1.push(*y);
            }
        }
        models.insert(
            name,
            by.into_iter()
                .map(|(g, (p, y))| (g, model_metrics(&p, &y, bootstrap_reps, seed)))
                .collect(),
        );
    }
    Ok(Evaluation {
        outcome: outcome.to_string(),
        split: split.to_string(),
        models,
    })
}
