//! Metrics for a cumulative-incidence risk under censoring. In: each row's predicted risk of
//! an outcome at horizon h and its time to event (the cohort's survival table). Out: inverse-
//! probability-of-censoring-weighted (IPCW) time-dependent AUROC (cumulative cases against
//! everyone known free of the outcome at h: the dead without it and those followed past h),
//! observed cumulative incidence against the mean predicted risk, and observed/expected per
//! decile of predicted risk, each known row weighted as [`crate::cohort::censoring`] says.

use crate::cohort::censoring::{End, weights};
use serde::{Deserialize, Serialize};

/// Weighted AUROC: the weighted share of (case, control) pairs the risk orders right, ties
/// half. `None` without weight on both sides.
pub fn weighted_auroc(p: &[f64], w: &[(f64, bool)]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| w[i].0 > 0.0).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut below, mut sum, mut cases, mut controls) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let (mut wc, mut wn) = (0.0, 0.0);
        for &k in &idx[i..=j] {
            if w[k].1 { wc += w[k].0 } else { wn += w[k].0 }
        }
        sum += wc * (below + wn / 2.0);
        below += wn;
        cases += wc;
        controls += wn;
        i = j + 1;
    }
    (cases > 0.0 && controls > 0.0).then(|| sum / (cases * controls))
}

/// One model's censoring-aware metrics at one horizon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ipcw {
    pub n: usize,
    /// Events seen by the horizon (unweighted).
    pub events: usize,
    pub auroc: Option<f64>,
    /// IPCW cumulative incidence at the horizon.
    pub observed: f64,
    /// Mean predicted risk.
    pub expected: f64,
    pub observed_over_expected: f64,
    /// (expected, observed, n, events) per decile of predicted risk.
    pub deciles: Vec<(f64, f64, usize, usize)>,
}

/// Censoring-aware metrics of risks `p` at `h` years for rows ending as `ends`.
pub fn ipcw(p: &[f64], ends: &[(f64, End)], h: f64) -> Option<Ipcw> {
    if p.is_empty() {
        return None;
    }
    let w = weights(ends, h);
    let n = p.len();
    let observed = w.iter().filter(|x| x.1).map(|x| x.0).sum::<f64>() / n as f64;
    let expected = p.iter().sum::<f64>() / n as f64;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let deciles = (0..10)
        .filter_map(|k| {
            let part = &idx[k * n / 10..(k + 1) * n / 10];
            (!part.is_empty()).then(|| {
                let m = part.len() as f64;
                (
                    part.iter().map(|&i| p[i]).sum::<f64>() / m,
                    part.iter()
                        .filter(|&&i| w[i].1)
                        .map(|&i| w[i].0)
                        .sum::<f64>()
                        / m,
                    part.len(),
                    part.iter().filter(|&&i| w[i].1).count(),
                )
            })
        })
        .collect();
    Some(Ipcw {
        n,
        events: w.iter().filter(|x| x.1).count(),
        auroc: weighted_auroc(p, &w),
        observed,
        expected,
        observed_over_expected: if expected > 0.0 {
            observed / expected
        } else {
            f64::NAN
        },
        deciles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Without censoring the weights are all 1 and the metrics are the plain ones.
    #[test]
    fn without_censoring_it_is_the_plain_metric() {
        let ends = [
            (0.5, End::Event),
            (3.0, End::Censored),
            (1.5, End::Competing),
            (0.2, End::Event),
        ];
        let p = [0.3, 0.1, 0.2, 0.05];
        let w = weights(&ends, 1.0);
        assert!(w.iter().all(|x| x.0 == 1.0));
        let y: Vec<bool> = w.iter().map(|x| x.1).collect();
        assert_eq!(y, vec![true, false, false, true]);
        assert_eq!(weighted_auroc(&p, &w), super::super::metrics::auroc(&p, &y));
    }

    /// A population with a known 30 % two-year incidence and heavy independent censoring: the
    /// naive rate among the rows whose status is known is inflated (events end follow-up, so
    /// they are always known); the weighted rate finds the truth.
    #[test]
    fn weighting_undoes_the_selection_that_censoring_makes() {
        let mut rng = Rng::new(5, 0, 1);
        let ends: Vec<(f64, End)> = (0..40_000)
            .map(|_| {
                // Event time: exponential with P(T <= 2) = 0.3; censoring uniform on (0, 4).
                let t = -(1.0 - rng.uniform()).ln() * 2.0 / -(0.7f64).ln();
                let c = rng.uniform() * 4.0;
                if t <= c {
                    (t, End::Event)
                } else {
                    (c, End::Censored)
                }
            })
            .collect();
        let h = 2.0;
        let known: Vec<&(f64, End)> = ends
            .iter()
            .filter(|e| e.0 >= h || e.1 == End::Event)
            .collect();
        let naive = known
            .iter()
            .filter(|e| e.1 == End::Event && e.0 <= h)
            .count() as f64
            / known.len() as f64;
        let p = vec![0.3; ends.len()];
        let m = ipcw(&p, &ends, h).unwrap();
        assert!(naive > 0.4, "naive {naive}");
        assert!((m.observed - 0.3).abs() < 0.015, "IPCW {}", m.observed);
        assert!((m.observed_over_expected - 1.0).abs() < 0.05);
    }
}
