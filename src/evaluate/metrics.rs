//! Discrimination and calibration metrics for binary risk predictions: AUROC (Mann-Whitney, ties
//! counted half), AUPRC (average precision), Brier score, calibration intercept and slope (logistic
//! recalibration of logit(p) by Newton-Raphson), a binned calibration curve, and seeded
//! bootstrap 95 % intervals. In: predicted probabilities and outcomes. Out: numbers; `None`
//! when a metric is undefined (one class only).

use crate::rng::Rng;
use serde::Serialize;

/// AUROC; `None` without both classes.
pub fn auroc(p: &[f64], y: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut rank_sum, mut n_pos) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if y[k] {
                rank_sum += avg_rank;
                n_pos += 1.0;
            }
        }
        i = j + 1;
    }
    let n_neg = p.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Average precision (area under the precision-recall curve, step-wise); `None` without positives.
pub fn auprc(p: &[f64], y: &[bool]) -> Option<f64> {
    let n_pos = y.iter().filter(|v| **v).count() as f64;
    if n_pos == 0.0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let new_tp = idx[i..=j].iter().filter(|&&k| y[k]).count() as f64;
        tp += new_tp;
        fp += (j - i + 1) as f64 - new_tp;
        ap += new_tp / n_pos * (tp / (tp + fp));
        i = j + 1;
    }
    Some(ap)
}

pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    p.iter()
        .zip(y)
        .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / p.len().max(1) as f64
}

/// Calibration intercept and slope: fit y ~ a + b * logit(p) by logistic regression.
pub fn calibration(p: &[f64], y: &[bool]) -> Option<(f64, f64)> {
    let x: Vec<f64> = p
        .iter()
        .map(|p| {
            let q = p.clamp(1e-9, 1.0 - 1e-9);
            (q / (1.0 - q)).ln()
        })
        .collect();
    let (mut a, mut b) = (0.0, 1.0);
    for _ in 0..50 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (xi, yi) in x.iter().zip(y) {
            let m = 1.0 / (1.0 + (-(a + b * xi)).exp());
            let r = if *yi { 1.0 } else { 0.0 } - m;
            let w = m * (1.0 - m);
            g0 += r;
            g1 += r * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let det = h00 * h11 - h01 * h01;
        if det.abs() < 1e-12 {
            return None;
        }
        let da = (h11 * g0 - h01 * g1) / det;
        let db = (h00 * g1 - h01 * g0) / det;
        a += da;
        b += db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

/// Calibration curve: `bins` groups of equal size by predicted risk; (mean predicted, observed, n).
pub fn calibration_curve(p: &[f64], y: &[bool], bins: usize) -> Vec<(f64, f64, usize)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let size = idx.len().div_ceil(bins.max(1)).max(1);
    idx.chunks(size)
        .map(|c| {
            let n = c.len();
            (
                c.iter().map(|&k| p[k]).sum::<f64>() / n as f64,
                c.iter().filter(|&&k| y[k]).count() as f64 / n as f64,
                n,
            )
        })
        .collect()
}

/// A point estimate with a bootstrap 95 % interval.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Percentile bootstrap (resampling rows with replacement, `reps` times, seeded).
pub fn bootstrap(
    p: &[f64],
    y: &[bool],
    reps: usize,
    seed: u64,
    f: impl Fn(&[f64], &[bool]) -> Option<f64>,
) -> Option<Estimate> {
    let value = f(p, y)?;
    let mut rng = Rng::new(seed, 0, 5);
    let n = p.len() as u64;
    let mut stats: Vec<f64> = (0..reps)
        .filter_map(|_| {
            let (mut bp, mut by) = (Vec::with_capacity(p.len()), Vec::with_capacity(p.len()));
            for _ in 0..n {
                let k = rng.range(0, n) as usize;
                bp.push(p[k]);
                by.push(y[k]);
            }
            f(&bp, &by)
        })
        .collect();
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(|a, b| a.total_cmp(b));
    let q = |x: f64| stats[((stats.len() - 1) as f64 * x).round() as usize];
    Some(Estimate {
        value,
        lo: q(0.025),
        hi: q(0.975),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_matches_hand_counts() {
        // pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.4 > 0.3), (0.4 < 0.5) -> 3/4
        let p = [0.8, 0.4, 0.3, 0.5];
        let y = [true, true, false, false];
        assert_eq!(auroc(&p, &y), Some(0.75));
        assert_eq!(
            auroc(&[0.5, 0.5], &[true, false]),
            Some(0.5),
            "ties count half"
        );
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn auprc_brier_and_calibration() {
        let p = [0.9, 0.8, 0.3, 0.2];
        let y = [true, false, true, false];
        // precision at the two positives: 1/1 and 2/3 -> AP = (1 + 2/3) / 2
        assert!((auprc(&p, &y).unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((brier(&[1.0, 0.0], &[true, false])).abs() < 1e-12);
        // Outcomes drawn from the predicted probabilities: slope near 1, intercept near 0.
        let mut r = Rng::new(3, 0, 0);
        let p: Vec<f64> = (0..20000).map(|_| 0.02 + 0.5 * r.uniform()).collect();
        let y: Vec<bool> = p.iter().map(|&q| r.chance(q)).collect();
        let (a, b) = calibration(&p, &y).unwrap();
        assert!(a.abs() < 0.1 && (b - 1.0).abs() < 0.1, "{a} {b}");
        // Predictions twice as extreme on the logit scale: slope about 0.5.
        let sharp: Vec<f64> = p
            .iter()
            .map(|q| {
                let l = 2.0 * (q / (1.0 - q)).ln();
                1.0 / (1.0 + (-l).exp())
            })
            .collect();
        let (_, b2) = calibration(&sharp, &y).unwrap();
        assert!((b2 - 0.5).abs() < 0.08, "{b2}");
        let ci = bootstrap(&p, &y, 200, 1, auroc).unwrap();
        assert!(ci.lo < ci.value && ci.value < ci.hi);
        assert_eq!(calibration_curve(&p, &y, 10).len(), 10);
    }
}

/// ROC curve: (false-positive rate, true-positive rate) at up to `points` thresholds, from
/// (0, 0) to (1, 1); empty without both classes.
pub fn roc_curve(p: &[f64], y: &[bool], points: usize) -> Vec<(f64, f64)> {
    let n_pos = y.iter().filter(|v| **v).count() as f64;
    let n_neg = y.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return vec![];
    }
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let step = (idx.len() / points.max(1)).max(1);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for (k, &i) in idx.iter().enumerate() {
        if y[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let tie_next = idx.get(k + 1).is_some_and(|&j| p[j] == p[i]);
        if !tie_next && (k % step == step - 1 || k + 1 == idx.len()) {
            out.push((fp / n_neg, tp / n_pos));
        }
    }
    out
}

#[cfg(test)]
mod roc_tests {
    use super::*;

    #[test]
    fn roc_curve_ends_and_area_match_auroc() {
        let p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
        let y = [true, true, false, true, false, false, true, false];
        let c = roc_curve(&p, &y, 100);
        assert_eq!(c[0], (0.0, 0.0));
        assert_eq!(*c.last().unwrap(), (1.0, 1.0));
        let area: f64 = c
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((area - auroc(&p, &y).unwrap()).abs() < 1e-12);
    }
}
