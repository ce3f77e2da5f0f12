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

/// An approximate 95 % interval of a Poisson mean from `k` observed events (Byar's: within a
/// few percent of the exact interval from 5 events up).
pub fn poisson_interval(k: usize) -> (f64, f64) {
    const Z: f64 = 1.959_964;
    if k == 0 {
        return (0.0, 3.689);
    }
    let (k, k1) = (k as f64, k as f64 + 1.0);
    let lo = k * (1.0 - 1.0 / (9.0 * k) - Z / (3.0 * k.sqrt())).powi(3);
    let hi = k1 * (1.0 - 1.0 / (9.0 * k1) + Z / (3.0 * k1.sqrt())).powi(3);
    (lo, hi)
}

/// How the deciles with at least `min_events` events sit against a band of O/E: how many
/// there are, how many fall inside `band`, and how many have a 95 % interval (Poisson on the
/// decile's events) that excludes 1, i.e. are miscalibrated beyond what their events' own
/// sampling explains. Why both: with 20-60 events a decile's O/E wanders ±25-45 % around 1
/// for the true risks themselves (measured: the oracle's own deciles at 100,000 people), so a
/// band alone cannot tell a model's error from the sample's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecileCheck {
    pub deciles: usize,
    pub in_band: usize,
    pub beyond_noise: usize,
}

impl Ipcw {
    pub fn decile_check(&self, min_events: usize, band: (f64, f64)) -> DecileCheck {
        let mut c = DecileCheck::default();
        for &(expected, observed, _, events) in &self.deciles {
            if events < min_events || expected <= 0.0 {
                continue;
            }
            let oe = observed / expected;
            c.deciles += 1;
            c.in_band += (band.0..=band.1).contains(&oe) as usize;
            c.beyond_noise += beyond_noise(oe, events) as usize;
        }
        c
    }
}

/// Whether an O/E of `oe` seen on `events` events has a 95 % interval that excludes 1.
pub fn beyond_noise(oe: f64, events: usize) -> bool {
    if events == 0 {
        return false;
    }
    let (lo, hi) = poisson_interval(events);
    oe * lo / events as f64 > 1.0 || oe * hi / (events as f64) < 1.0
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

    /// Byar's interval against exact Poisson quantiles (20 events: 12.22-30.89; 100:
    /// 81.36-121.63), and the decile check counting a decile as beyond noise only when its
    /// interval leaves 1.
    #[test]
    fn decile_check_separates_noise_from_error() {
        let (lo, hi) = poisson_interval(20);
        assert!(
            (lo - 12.22).abs() < 0.05 && (hi - 30.89).abs() < 0.05,
            "{lo} {hi}"
        );
        let (lo, hi) = poisson_interval(100);
        assert!(
            (lo - 81.36).abs() < 0.05 && (hi - 121.63).abs() < 0.05,
            "{lo} {hi}"
        );
        let ipcw = Ipcw {
            n: 0,
            events: 0,
            auroc: None,
            observed: 0.0,
            expected: 0.0,
            observed_over_expected: 1.0,
            // O/E 1.4 on 20 events (noise), 1.4 on 200 (error), 1.0 on 50, 2.0 on 5 (too few)
            deciles: vec![
                (0.01, 0.014, 1000, 20),
                (0.01, 0.014, 1000, 200),
                (0.01, 0.010, 1000, 50),
                (0.01, 0.020, 1000, 5),
            ],
        };
        let c = ipcw.decile_check(20, (0.8, 1.25));
        assert_eq!(
            c,
            DecileCheck {
                deciles: 3,
                in_band: 1,
                beyond_noise: 1
            }
        );
    }

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
