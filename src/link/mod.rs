//! Identity resolution: which source records are one person. In: the identity facts of source
//! records ([`PersonRecord`], normalised at ingest) and the linkage spec (`schemas/linkage.toml`).
//! Out: a [`Linkage`]: the estimated Fellegi-Sunter model, every candidate pair's match
//! probability, clusters (one per person), the review queue of uncertain pairs, and per pair an
//! explanation of its weight. Clerical decisions (accepted or rejected pairs) override the model.
//! Nothing here logs or prints identity facts.

pub mod block;
pub mod cluster;
pub mod compare;
pub mod quality;
pub mod spec;
pub mod store;
pub mod train;

use crate::schema::identity::PersonRecord;
use cluster::{Refused, Scored};
use rayon::prelude::*;
use serde::Serialize;
use spec::{Level, LinkSpec};
use std::path::PathBuf;
pub use train::{Params, TermFrequencies};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{origin}: invalid linkage spec: {message}")]
    Spec { origin: String, message: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
}

/// A decision on a pair of records (by index) made before the model: one person or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub a: u32,
    pub b: u32,
    pub same: bool,
    pub rule: Rule,
}

/// How a pair came to its probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Fellegi-Sunter from the estimated model.
    Probabilistic,
    /// The same identity, a shared strong identifier, or the source's own link.
    Identifier,
    /// A reviewer said so.
    Clerical,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Probabilistic => "probabilistic",
            Rule::Identifier => "identifier",
            Rule::Clerical => "clerical",
        }
    }
}

/// A scored candidate pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScore {
    pub a: u32,
    pub b: u32,
    pub weight: f64,
    pub probability: f64,
    pub levels: compare::Pattern,
    pub rule: Rule,
}

/// The result of linking a set of records.
pub struct Linkage {
    pub params: Params,
    pub tf: TermFrequencies,
    /// Pairs at or above the review threshold (the rest are apart), in (a, b) order.
    pub pairs: Vec<PairScore>,
    /// Cluster of each record: the smallest record index in it.
    pub cluster: Vec<u32>,
    /// Uncertain pairs (indices into `pairs`): between the thresholds and in different clusters,
    /// or linked but refused by a chaining guard.
    pub review: Vec<usize>,
    pub refused: Vec<(u32, u32, Refused)>,
    pub candidates: u64,
}

/// One comparison's part in a pair's weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub comparison: String,
    pub level: String,
    /// log2(m/u), with the term-frequency adjustment when there is one.
    pub weight: f64,
    pub m: f64,
    pub u: f64,
    /// log2(u / term frequency of the value), in `weight` already.
    pub tf_adjustment: Option<f64>,
}

fn prior_weight(p: &Params) -> f64 {
    (p.lambda / (1.0 - p.lambda)).log2()
}

/// The terms of a pair's match weight (the prior is [`prior_weight`]).
pub fn terms(
    spec: &LinkSpec,
    params: &Params,
    tf: &TermFrequencies,
    a: &PersonRecord,
    b: &PersonRecord,
    levels: compare::Pattern,
) -> Vec<Term> {
    spec.comparisons
        .iter()
        .enumerate()
        .map(|(c, cmp)| {
            let code = levels.get(c) as usize;
            let (m, u) = (params.m[c][code], params.u[c][code]);
            let mut weight = if code == 0 { 0.0 } else { (m / u).log2() };
            let exact =
                code >= 1 && code <= cmp.levels.len() && cmp.levels[code - 1] == Level::Exact;
            let tf_adjustment = match (&tf[c], exact) {
                (Some(freq), true) => {
                    let v = a.get(cmp.field).or_else(|| b.get(cmp.field));
                    v.and_then(|v| freq.get(v))
                        .map(|&f| (u / f.max(1e-12)).log2())
                }
                _ => None,
            };
            weight += tf_adjustment.unwrap_or(0.0);
            Term {
                comparison: cmp.field.name().to_string(),
                level: compare::code_label(cmp, code as u8),
                weight,
                m,
                u,
                tf_adjustment,
            }
        })
        .collect()
}

/// Match weight (log2 odds) and probability of a pair.
pub fn score(
    spec: &LinkSpec,
    params: &Params,
    tf: &TermFrequencies,
    a: &PersonRecord,
    b: &PersonRecord,
    levels: compare::Pattern,
) -> (f64, f64) {
    let w = prior_weight(params)
        + terms(spec, params, tf, a, b, levels)
            .iter()
            .map(|t| t.weight)
            .sum::<f64>();
    (w, 1.0 / (1.0 + (-w).exp2()))
}

/// A pair's explanation: the prior and each comparison's term.
pub struct Explanation {
    pub prior_weight: f64,
    pub terms: Vec<Term>,
    pub weight: f64,
    pub probability: f64,
}

pub fn explain(
    spec: &LinkSpec,
    params: &Params,
    tf: &TermFrequencies,
    a: &PersonRecord,
    b: &PersonRecord,
) -> Explanation {
    let levels = compare::pattern(spec, a, b);
    let terms = terms(spec, params, tf, a, b, levels);
    let (weight, probability) = score(spec, params, tf, a, b, levels);
    Explanation {
        prior_weight: prior_weight(params),
        terms,
        weight,
        probability,
    }
}

/// Link `records` (estimating the model from them), honouring clerical decisions.
pub fn link(spec: &LinkSpec, records: &[PersonRecord], decisions: &[Decision]) -> Linkage {
    let params = train::estimate(spec, records);
    link_with(spec, records, params, decisions)
}

/// Link `records` with a given model.
pub fn link_with(
    spec: &LinkSpec,
    records: &[PersonRecord],
    params: Params,
    decisions: &[Decision],
) -> Linkage {
    let tf = train::term_frequencies(spec, records);
    let mut cands = block::candidates(&spec.blocking, records);
    for d in decisions {
        cands.push((d.a.min(d.b), d.a.max(d.b)));
    }
    cands.par_sort_unstable();
    cands.dedup();
    // A clerical decision outranks an identifier rule on the same pair.
    let mut decided: std::collections::HashMap<(u32, u32), (bool, Rule)> = Default::default();
    for d in decisions {
        let k = (d.a.min(d.b), d.a.max(d.b));
        match decided.get(&k) {
            Some((_, Rule::Clerical)) if d.rule != Rule::Clerical => {}
            _ => {
                decided.insert(k, (d.same, d.rule));
            }
        }
    }
    let scored: Vec<PairScore> = cands
        .par_iter()
        .map(|&(a, b)| {
            let (ra, rb) = (&records[a as usize], &records[b as usize]);
            let levels = compare::pattern(spec, ra, rb);
            let (weight, probability) = score(spec, &params, &tf, ra, rb, levels);
            let (probability, rule) = match decided.get(&(a, b)) {
                Some(&(true, rule)) => (1.0, rule),
                Some(&(false, rule)) => (0.0, rule),
                None => (probability, Rule::Probabilistic),
            };
            PairScore {
                a,
                b,
                weight,
                probability,
                levels,
                rule,
            }
        })
        .collect();
    let edges: Vec<Scored> = scored
        .iter()
        .filter(|s| {
            s.probability >= spec.thresholds.link || s.probability < spec.clusters.cannot_link
        })
        .map(|s| Scored {
            a: s.a,
            b: s.b,
            p: s.probability,
        })
        .collect();
    let c = cluster::cluster(
        records.len(),
        &edges,
        spec.thresholds.link,
        spec.clusters.cannot_link,
        spec.clusters.max_size,
    );
    let candidates = scored.len() as u64;
    let pairs: Vec<PairScore> = scored
        .into_iter()
        .filter(|s| s.probability >= spec.thresholds.review)
        .collect();
    let refused: Vec<(u32, u32, Refused)> = c.refused.iter().map(|(s, r)| (s.a, s.b, *r)).collect();
    let review = pairs
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            c.cluster[s.a as usize] != c.cluster[s.b as usize] && s.rule == Rule::Probabilistic
        })
        .map(|(i, _)| i)
        .collect();
    Linkage {
        params,
        tf,
        pairs,
        cluster: c.cluster,
        review,
        refused,
        candidates,
    }
}
