//! The honest baseline: L2-regularised logistic regression per output on the tabular features,
//! fitted by weighted maximum likelihood (L-BFGS with a More-Thuente line search, argmin: the
//! solver linfa's logistic regression runs, which takes no row weights). The weights are each
//! labelled row's inverse probability of censoring ([`crate::cohort::censoring`]), so the
//! fitted risk at a horizon is the risk without censoring, not the risk among those whose
//! status happened to be known (which over-states it, events being always known).
//! Hyper-parameters ([`LogisticParams`]) and the fitted model ([`LogisticModel`]) are
//! different types; the fitted model carries its own standardisation (train-split mean and
//! standard deviation per column; missing values become the train mean) and the hashes of the
//! task and feature spec it was trained for, so it can refuse a mismatched FeatureSet.

use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array1, Array2, s};
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

fn standardise<R: AsRef<[f32]>>(rows: &[R], mean: &[f64], std: &[f64]) -> Array2<f64> {
    let mut x = Array2::<f64>::zeros((rows.len(), mean.len()));
    for (i, r) in rows.iter().enumerate() {
        let r = r.as_ref();
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

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

/// The weighted, L2-penalised negative log-likelihood, as linfa writes the unweighted one:
/// sum_i w_i log(1 + exp(-y_i z_i)) + alpha/2 |beta|^2 with y in {-1, 1}, z = x beta + c,
/// the intercept c (the last parameter) unpenalised.
struct Likelihood {
    x: Array2<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    alpha: f64,
}

impl Likelihood {
    fn margins(&self, p: &Array1<f64>) -> Array1<f64> {
        let k = self.x.ncols();
        let mut z = self.x.dot(&p.slice(s![..k]));
        z += p[k];
        z.iter_mut().zip(&self.y).for_each(|(z, y)| *z *= y);
        z
    }
}

impl CostFunction for Likelihood {
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, p: &Array1<f64>) -> Result<f64, argmin::core::Error> {
        let k = self.x.ncols();
        let beta = p.slice(s![..k]);
        let loss: f64 = self
            .margins(p)
            .iter()
            .zip(&self.w)
            .map(|(m, w)| w * softplus(-m))
            .sum();
        Ok(loss + 0.5 * self.alpha * beta.dot(&beta))
    }
}

impl Gradient for Likelihood {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, p: &Array1<f64>) -> Result<Array1<f64>, argmin::core::Error> {
        let k = self.x.ncols();
        // d/dz_i = -w_i y_i sigmoid(-y_i z_i)
        let dz: Array1<f64> = self
            .margins(p)
            .iter()
            .zip(&self.y)
            .zip(&self.w)
            .map(|((m, y), w)| -w * y * sigmoid(-m))
            .collect();
        let mut g = Array1::zeros(k + 1);
        let gb = self.x.t().dot(&dz) + &p.slice(s![..k]) * self.alpha;
        g.slice_mut(s![..k]).assign(&gb);
        g[k] = dz.sum();
        Ok(g)
    }
}

/// Why a logistic baseline cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogisticError {
    #[error("alpha must be at least 0, got {0}")]
    NegativeAlpha(f64),
    #[error("{outcome}: training needs both outcomes among {rows} rows")]
    OneClass { outcome: String, rows: usize },
    #[error("{outcome}: {weights} weights for {rows} rows; each weight must be finite and >= 0")]
    Weights {
        outcome: String,
        rows: usize,
        weights: usize,
    },
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
    /// Fit on training rows (one Vec per row, columns in `columns` order), row `i` weighing
    /// `w[i]` in the likelihood (rows of weight 0 take no part, standardisation included).
    pub fn fit(
        outcome: &str,
        columns: &[String],
        rows: &[Vec<f32>],
        y: &[bool],
        w: &[f64],
        params: LogisticParams,
        hashes: (&str, &str),
    ) -> Result<LogisticModel, LogisticError> {
        if params.alpha < 0.0 {
            return Err(LogisticError::NegativeAlpha(params.alpha));
        }
        if w.len() != rows.len()
            || y.len() != rows.len()
            || w.iter().any(|v| !(*v >= 0.0 && v.is_finite()))
        {
            return Err(LogisticError::Weights {
                outcome: outcome.to_string(),
                rows: rows.len(),
                weights: w.len(),
            });
        }
        let keep: Vec<usize> = (0..rows.len()).filter(|&i| w[i] > 0.0).collect();
        if keep.is_empty() || !keep.iter().any(|&i| y[i]) || keep.iter().all(|&i| y[i]) {
            return Err(LogisticError::OneClass {
                outcome: outcome.to_string(),
                rows: keep.len(),
            });
        }
        let rows: Vec<&[f32]> = keep.iter().map(|&i| rows[i].as_slice()).collect();
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
        let problem = Likelihood {
            x: standardise(&rows, &mean, &std),
            y: keep
                .iter()
                .map(|&i| if y[i] { 1.0 } else { -1.0 })
                .collect(),
            w: keep.iter().map(|&i| w[i]).collect(),
            alpha: params.alpha,
        };
        let fit_error = |e: argmin::core::Error| LogisticError::Fit {
            outcome: outcome.to_string(),
            message: e.to_string(),
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-4)
            .map_err(fit_error)?;
        let result = Executor::new(problem, solver)
            .configure(|s| {
                s.param(Array1::zeros(k + 1))
                    .max_iters(params.max_iterations)
            })
            .run()
            .map_err(fit_error)?;
        let p = result.state.best_param.ok_or_else(|| LogisticError::Fit {
            outcome: outcome.to_string(),
            message: "the solver returned no parameters".into(),
        })?;
        Ok(LogisticModel {
            outcome: outcome.to_string(),
            columns: columns.to_vec(),
            mean,
            std,
            coef: p.slice(s![..k]).to_vec(),
            intercept: p[k],
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
                sigmoid(self.intercept + r.iter().zip(&self.coef).map(|(a, b)| a * b).sum::<f64>())
            })
            .collect()
    }

    /// The intercept-only model (the weighted training prevalence, Laplace-smoothed): what a
    /// label with a single class in the training rows gets, so one rare output does not stop
    /// training.
    pub fn constant(
        outcome: &str,
        columns: &[String],
        y: &[bool],
        w: &[f64],
        params: LogisticParams,
        hashes: (&str, &str),
    ) -> LogisticModel {
        let k = columns.len();
        let cases: f64 = y.iter().zip(w).filter(|(y, _)| **y).map(|(_, w)| w).sum();
        let p = (cases + 0.5) / (w.iter().sum::<f64>() + 1.0);
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
            &vec![1.0; rows.len()],
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
                &vec![1.0; rows.len()],
                LogisticParams::default(),
                ("", "")
            )
            .is_err()
        );
    }

    /// A weight is a count: weight 2 on a row is that row twice, weight 0 is no row.
    #[test]
    fn a_weight_counts_like_repeated_rows() {
        let mut r = Rng::new(3, 0, 0);
        let cols: Vec<String> = vec!["x".into()];
        let (mut rows, mut y) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            let x = r.normal();
            rows.push(vec![x as f32]);
            y.push(r.chance(sigmoid(1.5 * x - 1.0)));
        }
        let w: Vec<f64> = (0..rows.len()).map(|i| (i % 3) as f64).collect();
        let (mut rr, mut yr) = (Vec::new(), Vec::new());
        for i in 0..rows.len() {
            for _ in 0..(i % 3) {
                rr.push(rows[i].clone());
                yr.push(y[i]);
            }
        }
        let p = LogisticParams::default();
        let a = LogisticModel::fit("o", &cols, &rows, &y, &w, p, ("", "")).unwrap();
        let b =
            LogisticModel::fit("o", &cols, &rr, &yr, &vec![1.0; rr.len()], p, ("", "")).unwrap();
        // The standardisation differs (weight 0 rows are out, repeated rows counted once in
        // a's), so compare the fitted risks, not the coefficients.
        let (pa, pb) = (a.predict(&rows), b.predict(&rows));
        let gap = pa
            .iter()
            .zip(&pb)
            .map(|(x, z)| (x - z).abs())
            .fold(0.0, f64::max);
        assert!(gap < 0.02, "largest difference {gap}");
        let unweighted = LogisticModel::fit("o", &cols, &rows, &y, &vec![1.0; 400], p, ("", ""))
            .unwrap()
            .predict(&rows);
        let moved = pa
            .iter()
            .zip(&unweighted)
            .map(|(x, z)| (x - z).abs())
            .fold(0.0, f64::max);
        assert!(moved > gap, "weights changed nothing ({moved})");
        assert!(LogisticModel::fit("o", &cols, &rows, &y, &[1.0], p, ("", "")).is_err());
    }

    /// Events end follow-up, so among the rows whose 5-year status is known they are over-
    /// represented: fitted on those rows alone the risk comes out too high; weighted by the
    /// inverse probability of censoring it is the risk the population has.
    #[test]
    fn censoring_weights_give_the_uncensored_risk() {
        use crate::cohort::censoring::{End, weights};
        let mut r = Rng::new(11, 0, 0);
        let cols: Vec<String> = vec!["x".into()];
        let (mut rows, mut ends, mut truth) = (Vec::new(), Vec::new(), 0.0);
        let n = 20_000;
        for _ in 0..n {
            let x = r.normal();
            // exponential event time with a yearly hazard rising with x; censoring uniform
            // over 0-8 years, independent of x and of the event.
            let rate = 0.03 * (0.8 * x).exp();
            let t = -(1.0 - r.uniform()).ln() / rate;
            let c = r.uniform() * 8.0;
            truth += 1.0 - (-rate * 5.0).exp();
            rows.push(vec![x as f32]);
            ends.push(if t <= c {
                (t, End::Event)
            } else {
                (c, End::Censored)
            });
        }
        truth /= n as f64;
        let w = weights(&ends, 5.0);
        let y: Vec<bool> = w.iter().map(|x| x.1).collect();
        let ipcw: Vec<f64> = w.iter().map(|x| x.0).collect();
        let known: Vec<f64> = w.iter().map(|x| (x.0 > 0.0) as u8 as f64).collect();
        let p = LogisticParams::default();
        let mean = |m: &LogisticModel| m.predict(&rows).iter().sum::<f64>() / n as f64;
        let naive = mean(&LogisticModel::fit("o", &cols, &rows, &y, &known, p, ("", "")).unwrap());
        let weighted =
            mean(&LogisticModel::fit("o", &cols, &rows, &y, &ipcw, p, ("", "")).unwrap());
        assert!(naive > 1.2 * truth, "naive {naive} vs truth {truth}");
        assert!(
            (weighted / truth - 1.0).abs() < 0.06,
            "weighted {weighted} vs truth {truth}"
        );
    }
}
