//! Fellegi-Sunter parameters from the records themselves, without labels. In: records and the
//! spec. Out: [`Params`]: the prior probability that two random records are one person (from the
//! deterministic rules and their assumed recall), u per level (random pairs: almost all are
//! different people) and m per level (expectation-maximisation over the pairs of each training
//! block, u held fixed, the block's own comparisons left out), and the term frequencies of the
//! values of the comparisons that adjust for them.

use super::block;
use super::compare::{Pattern, codes, pattern};
use super::spec::LinkSpec;
use crate::rng::Rng;
use crate::schema::identity::PersonRecord;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The estimated model. `m[c][code]` and `u[c][code]` per comparison and level code (code 0,
/// missing, is 1 in both: it weighs nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// P(two random records are one person).
    pub lambda: f64,
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    /// Pairs behind each estimate: deterministic matches, random pairs, pairs per EM block.
    pub deterministic_pairs: u64,
    pub u_pairs: u64,
    pub em_pairs: Vec<u64>,
}

/// Relative frequency of each value of the comparisons with `tf = true` (`None` for others).
pub type TermFrequencies = Vec<Option<rustc_hash::FxHashMap<String, f64>>>;

pub fn term_frequencies(spec: &LinkSpec, records: &[PersonRecord]) -> TermFrequencies {
    spec.comparisons
        .iter()
        .map(|c| {
            c.tf.then(|| {
                let mut n: HashMap<String, u64> = HashMap::new();
                let mut total = 0u64;
                for r in records {
                    if let Some(v) = r.get(c.field) {
                        *n.entry(v.to_string()).or_default() += 1;
                        total += 1;
                    }
                }
                n.into_iter()
                    .map(|(k, v)| (k, v as f64 / total.max(1) as f64))
                    .collect()
            })
        })
        .collect()
}

/// All pairs when there are at most `max` of them, else `max` random ones (seeded).
fn sample_pairs(n: usize, max: u64, seed: u64) -> Vec<(u32, u32)> {
    let all = (n as u64) * (n as u64).saturating_sub(1) / 2;
    if all <= max {
        let mut v = Vec::with_capacity(all as usize);
        for a in 0..n as u32 {
            for b in a + 1..n as u32 {
                v.push((a, b));
            }
        }
        return v;
    }
    let mut rng = Rng::new(seed, 0, 0x11);
    let mut v = Vec::with_capacity(max as usize);
    while (v.len() as u64) < max {
        let a = (rng.next_u64() % n as u64) as u32;
        let b = (rng.next_u64() % n as u64) as u32;
        if a != b {
            v.push((a.min(b), a.max(b)));
        }
    }
    v
}

/// Count the level-code vectors of pairs (patterns), in parallel.
type Patterns = rustc_hash::FxHashMap<Pattern, u64>;

fn add(mut x: Patterns, y: Patterns) -> Patterns {
    for (k, v) in y {
        *x.entry(k).or_default() += v;
    }
    x
}

/// Count the level-code vectors (patterns) of pairs, in parallel.
fn patterns(
    spec: &LinkSpec,
    records: &[PersonRecord],
    pairs: impl ParallelIterator<Item = (u32, u32)>,
) -> Patterns {
    pairs
        .fold(Patterns::default, |mut m, (a, b)| {
            *m.entry(pattern(spec, &records[a as usize], &records[b as usize]))
                .or_default() += 1;
            m
        })
        .reduce(Patterns::default, add)
}

/// u per level: the share of random pairs at each level (a pseudo-count of one per level, so
/// a level never seen among random pairs is rare, not impossible).
fn estimate_u(spec: &LinkSpec, pats: &Patterns) -> Vec<Vec<f64>> {
    spec.comparisons
        .iter()
        .enumerate()
        .map(|(c, cmp)| {
            let k = codes(cmp);
            let mut n = vec![1.0f64; k];
            for (p, &cnt) in pats {
                n[p.get(c) as usize] += cnt as f64;
            }
            let total: f64 = n[1..].iter().sum();
            let mut u: Vec<f64> = n.iter().map(|x| x / total).collect();
            u[0] = 1.0;
            u
        })
        .collect()
}

/// Starting m: most matches agree exactly, the rest spread over the other levels.
fn initial_m(k: usize) -> Vec<f64> {
    let mut m = vec![0.0; k];
    m[0] = 1.0;
    let rest = k - 2;
    m[1] = 0.7;
    for x in m.iter_mut().skip(2) {
        *x = 0.3 / rest.max(1) as f64;
    }
    if rest == 0 {
        m[1] = 0.9;
        m[k - 1] = 0.1;
    }
    m
}

/// One EM session over the patterns of a training block; `free[c]` says which comparisons it
/// estimates (the others are not used: the block made them agree).
fn em(
    pats: &Patterns,
    free: &[bool],
    u: &[Vec<f64>],
    m0: &[Vec<f64>],
    iterations: usize,
) -> Vec<Vec<f64>> {
    let mut m = m0.to_vec();
    let mut lambda = 0.3f64;
    // In pattern order, so that the sums (and the model) do not depend on hashing.
    let mut pats: Vec<(Vec<u8>, f64)> = pats
        .iter()
        .map(|(p, &n)| ((0..free.len()).map(|c| p.get(c)).collect(), n as f64))
        .collect();
    pats.sort_by(|a, b| a.0.cmp(&b.0));
    for _ in 0..iterations {
        let mut num: Vec<Vec<f64>> = m.iter().map(|x| vec![0.0; x.len()]).collect();
        let mut w_total = 0.0;
        let mut n_total = 0.0;
        for (p, n) in &pats {
            let (mut pm, mut pu) = (lambda, 1.0 - lambda);
            for (c, &code) in p.iter().enumerate() {
                if free[c] && code != 0 {
                    pm *= m[c][code as usize];
                    pu *= u[c][code as usize];
                }
            }
            let w = pm / (pm + pu);
            w_total += w * n;
            n_total += n;
            for (c, &code) in p.iter().enumerate() {
                if free[c] {
                    num[c][code as usize] += w * n;
                }
            }
        }
        lambda = (w_total / n_total).clamp(1e-9, 1.0 - 1e-9);
        for (c, row) in num.iter().enumerate() {
            if !free[c] {
                continue;
            }
            let total: f64 = row[1..].iter().sum();
            if total <= 0.0 {
                continue;
            }
            let last = row.len() - 1;
            for k in 1..row.len() {
                // An intermediate level (almost) no match reached has no evidence for m: it
                // weighs nothing (m = u) rather than counting as proof of a non-match. That
                // matches never disagree outright (`else`) is evidence: m stays small, half a
                // pair at least.
                m[c][k] = if k == last {
                    row[k].max(0.5) / total
                } else if row[k] < 0.5 {
                    u[c][k]
                } else {
                    row[k] / total
                };
            }
        }
    }
    m
}

/// Estimate the model from the records.
pub fn estimate(spec: &LinkSpec, records: &[PersonRecord]) -> Params {
    let n = records.len() as u64;
    let all_pairs = (n * n.saturating_sub(1) / 2).max(1) as f64;
    let det_rules: Vec<_> = spec
        .prior
        .deterministic
        .iter()
        .map(|r| block::on(r))
        .collect();
    let det = block::count_pairs(&det_rules, records);
    let lambda = ((det as f64 / spec.prior.recall) / all_pairs).clamp(1e-12, 0.5);

    let sample = sample_pairs(records.len(), spec.training.u_pairs, spec.training.seed);
    let u = estimate_u(spec, &patterns(spec, records, sample.par_iter().copied()));

    let m0: Vec<Vec<f64>> = spec
        .comparisons
        .iter()
        .map(|c| initial_m(codes(c)))
        .collect();
    let mut sum: Vec<Vec<f64>> = m0.iter().map(|x| vec![0.0; x.len()]).collect();
    let mut sessions = vec![0usize; spec.comparisons.len()];
    let mut em_pairs = Vec::new();
    for fields in &spec.training.em_blocks {
        let blocked = block::Candidates::new(&[block::on(fields)], records);
        let pats = patterns(spec, records, blocked.par_pairs());
        let n_pairs: u64 = pats.values().sum();
        em_pairs.push(n_pairs);
        let free: Vec<bool> = spec
            .comparisons
            .iter()
            .map(|c| !LinkSpec::fields_of(c).iter().any(|f| fields.contains(f)))
            .collect();
        if n_pairs == 0 {
            continue;
        }
        let m = em(&pats, &free, &u, &m0, spec.training.em_iterations);
        for c in 0..m.len() {
            if free[c] {
                sessions[c] += 1;
                for k in 0..m[c].len() {
                    sum[c][k] += m[c][k];
                }
            }
        }
    }
    let m = sum
        .into_iter()
        .zip(sessions)
        .zip(m0)
        .map(|((s, k), init)| {
            if k == 0 {
                init
            } else {
                let mut v: Vec<f64> = s.iter().map(|x| x / k as f64).collect();
                v[0] = 1.0;
                v
            }
        })
        .collect();
    Params {
        lambda,
        m,
        u,
        deterministic_pairs: det,
        u_pairs: sample.len() as u64,
        em_pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn em_recovers_m_from_a_mixture_it_was_not_told() {
        // Two comparisons, codes null/agree/disagree: matches agree 90 % and 80 %, non-matches
        // 5 % and 10 %; 30 % matches. EM with the true u must find m near the truth.
        let (m1, m2, u1, u2, lam) = (0.9, 0.8, 0.05, 0.1, 0.3);
        let mut pats = Patterns::default();
        for (a, b) in [(1u64, 1u64), (1, 2), (2, 1), (2, 2)] {
            let pm = |x: u64, m: f64| if x == 1 { m } else { 1.0 - m };
            let p = lam * pm(a, m1) * pm(b, m2) + (1.0 - lam) * pm(a, u1) * pm(b, u2);
            pats.insert(Pattern(a | b << 5), (p * 1e6).round() as u64);
        }
        let u = vec![vec![1.0, u1, 1.0 - u1], vec![1.0, u2, 1.0 - u2]];
        let m0 = vec![initial_m(3), initial_m(3)];
        let m = em(&pats, &[true, true], &u, &m0, 200);
        assert!((m[0][1] - m1).abs() < 0.01, "{m:?}");
        assert!((m[1][1] - m2).abs() < 0.01, "{m:?}");
        // A comparison that is not free keeps its starting m.
        let m = em(&pats, &[true, false], &u, &m0, 50);
        assert_eq!(m[1], m0[1]);
    }

    #[test]
    fn random_pairs_are_all_pairs_when_few_and_seeded_when_many() {
        assert_eq!(sample_pairs(4, 100, 1).len(), 6);
        let a = sample_pairs(1000, 500, 7);
        assert_eq!(a, sample_pairs(1000, 500, 7));
        assert_ne!(a, sample_pairs(1000, 500, 8));
        assert!(a.iter().all(|&(x, y)| x < y));
    }
}
