//! Metrics for a cumulative-incidence risk under censoring. In: each row's predicted risk of
//! an outcome at horizon h and its time to event (the cohort's survival table). Out: inverse-
//! probability-of-censoring-weighted (IPCW) time-dependent AUROC (cumulative cases against
//! everyone known free of the outcome at h: the dead without it and those followed past h),
//! observed cumulative incidence against the mean predicted risk, and observed/expected per
//! decile of predicted risk. Why: the boolean label of a horizon is only known for people
//! followed to it or with an event before it, a selection that favours events; weighting each
//! known row by one over the probability of being still followed (Kaplan-Meier of the censoring)
//! stands it for the censored like it, so observed rates are what they would be without
//! censoring (when censoring is independent of the outcome given the time).

use crate::cohort::labels::Survival;
use serde::{Deserialize, Serialize};

/// How a row's follow-up for one outcome ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Event,
    /// Death without the outcome first.
    Competing,
    Censored,
}

/// The time (years) and kind of the end of follow-up of `s` for outcome `o`.
pub fn end_of(s: &Survival, o: usize) -> (f64, End) {
    match (s.events[o], s.death) {
        (Some(e), d) if d.is_none_or(|d| e <= d) => (e, End::Event),
        (_, Some(d)) => (d, End::Competing),
        _ => (s.followup, End::Censored),
    }
}

/// The Kaplan-Meier estimate of the probability of still being followed, G(t) = P(C > t).
pub struct CensoringKm {
    /// (censoring time, G just after it), increasing in time.
    steps: Vec<(f64, f64)>,
}

impl CensoringKm {
    pub fn fit(ends: &[(f64, End)]) -> CensoringKm {
        let mut times: Vec<(f64, bool)> =
            ends.iter().map(|&(t, e)| (t, e == End::Censored)).collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut at_risk = times.len() as f64;
        let (mut g, mut steps) = (1.0, Vec::new());
        let mut i = 0;
        while i < times.len() {
            let t = times[i].0;
            let (mut n, mut censored) = (0.0, 0.0);
            while i < times.len() && times[i].0 == t {
                n += 1.0;
                censored += times[i].1 as u8 as f64;
                i += 1;
            }
            if censored > 0.0 {
                g *= 1.0 - censored / at_risk;
                steps.push((t, g));
            }
            at_risk -= n;
        }
        CensoringKm { steps }
    }

    /// G(t-): the probability of being followed up to just before `t`.
    pub fn before(&self, t: f64) -> f64 {
        let k = self.steps.partition_point(|s| s.0 < t);
        if k == 0 { 1.0 } else { self.steps[k - 1].1 }
    }
}

/// IPCW weight and case status of each row at horizon `h`: cases (event by h) and controls
/// (dead without it by h, or followed to h) weighted by 1/G(their time-), the rest 0.
pub fn weights(ends: &[(f64, End)], h: f64) -> Vec<(f64, bool)> {
    let km = CensoringKm::fit(ends);
    ends.iter()
        .map(|&(t, e)| {
            let w = |at: f64| {
                let g = km.before(at);
                if g > 0.0 { 1.0 / g } else { 0.0 }
            };
            match e {
                End::Event if t <= h => (w(t), true),
                End::Competing if t <= h => (w(t), false),
                _ if t >= h => (w(h), false),
                _ => (0.0, false),
            }
        })
        .collect()
}

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

    #[test]
    fn censoring_km_steps_at_censoring_times_only() {
        let ends = [
            (1.0, End::Censored),
            (2.0, End::Event),
            (3.0, End::Censored),
            (4.0, End::Event),
        ];
        let km = CensoringKm::fit(&ends);
        assert_eq!(km.before(1.0), 1.0);
        assert!((km.before(1.5) - 0.75).abs() < 1e-12);
        // at 3: 2 at risk, one censored: 0.75 * 0.5
        assert!((km.before(3.5) - 0.375).abs() < 1e-12);
    }
}
