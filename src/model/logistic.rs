//! The honest baseline: L2-regularised logistic regression (linfa) per outcome on the tabular
//! features. Hyper-parameters ([`LogisticParams`]) and the fitted model ([`LogisticModel`]) are
//! different types; the fitted model carries its own standardisation (train-split mean and
//! standard deviation per column; missing values become the train mean) and the hashes of the
//! task and feature spec it was trained for, so it can refuse a mismatched FeatureSet.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LogisticParams {
    /// L2 penalty on the standardised coefficients.
    pub alpha: f64,
    pub max_iterations: u64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            alpha: 1.0,
            max_iterations: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogisticModel {
    pub outcome: String,
    pub columns: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub params: LogisticParams,
    pub feature_spec_hash: String,
    pub task_hash: String,
}

fn standardise(rows: &[Vec<f32>], mean: &[f64], std: &[f64]) -> Array2<f64> {
    let mut x = Array2::<f64>::zeros((rows.len(), mean.len()));
    for (i, r) in rows.iter().enumerate() {
        for j in 0..mean.len() {
            let v = r[j] as f64;
            x[[i, j]] = if v.is_nan() {
                0.0
            } else {
                (v - mean[j]) / std[j]
            };
        }
    }
    x
}

/// Why a logistic baseline cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogisticError {
    #[error("alpha must be at least 0, got {0}")]
    NegativeAlpha(f64),
    #[error("{outcome}: training needs both outcomes among {rows} rows")]
    OneClass { outcome: String, rows: usize },
    #[error("{outcome}: logistic regression did not fit: {message}")]
    Fit { outcome: String, message: String },
    /// `trained` and `given` read `<spec> / task <task> (<n> columns)`.
    #[error(
        "model for {outcome} was trained on feature spec {trained}; these features are spec {given}"
    )]
    Mismatch {
        outcome: String,
        trained: String,
        given: String,
    },
}

impl LogisticModel {
    /// Fit on training rows (one Vec per row, columns in `columns` order).
    pub fn fit(
        outcome: &str,
        columns: &[String],
        rows: &[Vec<f32>],
        y: &[bool],
        params: LogisticParams,
        hashes: (&str, &str),
    ) -> Result<LogisticModel, LogisticError> {
        if params.alpha < 0.0 {
            return Err(LogisticError::NegativeAlpha(params.alpha));
        }
        if rows.is_empty() || !y.iter().any(|v| *v) || y.iter().all(|v| *v) {
            return Err(LogisticError::OneClass {
                outcome: outcome.to_string(),
                rows: rows.len(),
            });
        }
        let k = columns.len();
        let (mut mean, mut std) = (vec![0.0; k], vec![1.0; k]);
        for j in 0..k {
            let vals: Vec<f64> = rows
                .iter()
                .map(|r| r[j] as f64)
                .filter(|v| !v.is_nan())
                .collect();
            if vals.is_empty() {
                continue;
            }
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let sd = (vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
            mean[j] = m;
            std[j] = if sd > 1e-9 { sd } else { 1.0 };
        }
        let x = standardise(rows, &mean, &std);
        let ds = Dataset::new(x, Array1::from(y.to_vec()));
        let fitted = LogisticRegression::default()
            .alpha(params.alpha)
            .max_iterations(params.max_iterations)
            .fit(&ds)
            .map_err(|e| LogisticError::Fit {
                outcome: outcome.to_string(),
                message: e.to_string(),
            })?;
        // linfa models the more frequent class as "positive": with a rare outcome that is
        // `false`, so the sign is turned to give the probability of the outcome.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        Ok(LogisticModel {
            outcome: outcome.to_string(),
            columns: columns.to_vec(),
            mean,
            std,
            coef: fitted.params().iter().map(|c| sign * c).collect(),
            intercept: sign * fitted.intercept(),
            params,
            feature_spec_hash: hashes.0.to_string(),
            task_hash: hashes.1.to_string(),
        })
    }

    /// Probability of the outcome for each row.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Vec<f64> {
        let x = standardise(rows, &self.mean, &self.std);
        x.rows()
            .into_iter()
            .map(|r| {
                let z = self.intercept + r.iter().zip(&self.coef).map(|(a, b)| a * b).sum::<f64>();
                1.0 / (1.0 + (-z).exp())
            })
            .collect()
    }

    /// The intercept-only model (the training prevalence, Laplace-smoothed): what a label with
    /// a single class in the training rows gets, so one rare output does not stop training.
    pub fn constant(
        outcome: &str,
        columns: &[String],
        y: &[bool],
        params: LogisticParams,
        hashes: (&str, &str),
    ) -> LogisticModel {
        let k = columns.len();
        let p = (y.iter().filter(|v| **v).count() as f64 + 0.5) / (y.len() as f64 + 1.0);
        LogisticModel {
            outcome: outcome.to_string(),
            columns: columns.to_vec(),
            mean: vec![0.0; k],
            std: vec![1.0; k],
            coef: vec![0.0; k],
            intercept: (p / (1.0 - p)).ln(),
            params,
            feature_spec_hash: hashes.0.to_string(),
            task_hash: hashes.1.to_string(),
        }
    }

    /// Refuse features built for another spec or task.
    pub fn check(
        &self,
        columns: &[String],
        feature_spec_hash: &str,
        task_hash: &str,
    ) -> Result<(), LogisticError> {
        if self.feature_spec_hash != feature_spec_hash
            || self.task_hash != task_hash
            || self.columns != columns
        {
            return Err(LogisticError::Mismatch {
                outcome: self.outcome.clone(),
                trained: format!(
                    "{} / task {} ({} columns)",
                    self.feature_spec_hash,
                    self.task_hash,
                    self.columns.len()
                ),
                given: format!(
                    "{feature_spec_hash} / task {task_hash} ({} columns)",
                    columns.len()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn learns_a_planted_signal_and_refuses_other_features() {
        let mut r = Rng::new(9, 0, 0);
        let cols: Vec<String> = vec!["x".into(), "noise".into()];
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for _ in 0..3000 {
            let x = r.normal();
            let noise = if r.chance(0.1) {
                f32::NAN
            } else {
                r.normal() as f32
            };
            rows.push(vec![x as f32, noise]);
            // a rare outcome (about 15 %), as in the risk tasks
            y.push(r.chance(1.0 / (1.0 + (-(2.0 * x - 2.5)).exp())));
        }
        let m = LogisticModel::fit(
            "mi_5y",
            &cols,
            &rows,
            &y,
            LogisticParams::default(),
            ("spec", "task"),
        )
        .unwrap();
        assert!(m.coef[0] > 1.0 && m.coef[1].abs() < 0.2, "{:?}", m.coef);
        let p = m.predict(&rows);
        assert!(crate::evaluate::metrics::auroc(&p, &y).unwrap() > 0.8);
        assert!(m.check(&cols, "spec", "task").is_ok());
        assert!(
            m.check(&cols, "other", "task")
                .unwrap_err()
                .to_string()
                .contains("feature spec")
        );
        assert!(
            LogisticModel::fit(
                "x",
                &cols,
                &rows,
                &vec![false; rows.len()],
                LogisticParams::default(),
                ("", "")
            )
            .is_err()
        );
    }
}
