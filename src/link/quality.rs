//! Linkage quality against a known truth. In: a predicted cluster and a true person per record.
//! Out: pairwise true/false positives and negatives, precision, recall and F1 (the measure
//! Splink and the FEBRL literature report), counted from the contingency of the two partitions.

use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pairwise {
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn pair_count<K: Hash + Eq>(keys: impl Iterator<Item = K>) -> u64 {
    let mut n: HashMap<K, u64> = HashMap::new();
    for k in keys {
        *n.entry(k).or_default() += 1;
    }
    n.values().map(|&c| pairs(c)).sum()
}

/// Pairwise scores of `predicted` against `truth` (one entry per record in each).
pub fn pairwise<P: Hash + Eq + Clone, T: Hash + Eq + Clone>(
    predicted: &[P],
    truth: &[T],
) -> Pairwise {
    assert_eq!(
        predicted.len(),
        truth.len(),
        "one cluster and one person per record"
    );
    let predicted_pairs = pair_count(predicted.iter().cloned());
    let true_pairs = pair_count(truth.iter().cloned());
    let tp = pair_count(predicted.iter().cloned().zip(truth.iter().cloned()));
    let (fp, fn_) = (predicted_pairs - tp, true_pairs - tp);
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp, predicted_pairs), ratio(tp, true_pairs));
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Pairwise {
        true_pairs,
        predicted_pairs,
        tp,
        fp,
        fn_,
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_counts_from_the_contingency() {
        // truth: {0,1,2} {3,4}; predicted: {0,1} {2,3,4}
        let q = pairwise(&[0, 0, 2, 2, 2], &["a", "a", "a", "b", "b"]);
        assert_eq!((q.true_pairs, q.predicted_pairs, q.tp), (4, 4, 2));
        assert_eq!((q.fp, q.fn_), (2, 2));
        assert!((q.f1 - 0.5).abs() < 1e-12);
        let q = pairwise(&[1, 1, 3], &[7, 7, 9]);
        assert_eq!(q.f1, 1.0);
    }
}
