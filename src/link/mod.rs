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
use std::collections::HashMap;
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
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
}

/// A decision on a pair of records (by index) made before the model: one person or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub a: u32,
    pub b: u32,
    pub same: bool,
    pub rule: Rule,
}

/// A clerical decision as stored: the two records' identities (system, value).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredDecision {
    pub a: (String, String),
    pub b: (String, String),
    pub same: bool,
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

/// Match weights ready for millions of pairs: log2(m/u) per comparison and level, and per
/// value for exact agreements adjusted by term frequency (log2(m/frequency)); the same numbers
/// [`terms`] explains, without building the explanation.
pub struct Scorer<'a> {
    prior: f64,
    bf: Vec<Vec<f64>>,
    /// Per comparison with term frequencies: its exact level's code and value -> weight.
    tf: Vec<Option<(u8, rustc_hash::FxHashMap<&'a str, f64>)>>,
    fields: Vec<crate::schema::identity::IdField>,
}

impl<'a> Scorer<'a> {
    pub fn new(spec: &LinkSpec, params: &Params, tf: &'a TermFrequencies) -> Scorer<'a> {
        let bf = params
            .m
            .iter()
            .zip(&params.u)
            .map(|(m, u)| {
                m.iter()
                    .zip(u)
                    .enumerate()
                    .map(|(k, (m, u))| if k == 0 { 0.0 } else { (m / u).log2() })
                    .collect()
            })
            .collect();
        let tf = spec
            .comparisons
            .iter()
            .enumerate()
            .map(|(c, cmp)| {
                let exact = cmp.levels.iter().position(|l| *l == Level::Exact)? as u8 + 1;
                let freq = tf[c].as_ref()?;
                let m = params.m[c][exact as usize];
                Some((
                    exact,
                    freq.iter()
                        .map(|(v, f)| (v.as_str(), (m / f.max(1e-12)).log2()))
                        .collect(),
                ))
            })
            .collect();
        Scorer {
            prior: prior_weight(params),
            bf,
            tf,
            fields: spec.comparisons.iter().map(|c| c.field).collect(),
        }
    }

    /// Match weight (log2 odds) and probability of a pair.
    /// `a` is either record of the pair (an exact agreement's value is the same in both).
    pub fn score(&self, a: &PersonRecord, levels: compare::Pattern) -> (f64, f64) {
        let mut w = self.prior;
        for (c, bf) in self.bf.iter().enumerate() {
            let code = levels.get(c);
            w += match &self.tf[c] {
                Some((exact, by_value)) if code == *exact => a
                    .get(self.fields[c])
                    .and_then(|v| by_value.get(v))
                    .copied()
                    .unwrap_or(bf[code as usize]),
                _ => bf[code as usize],
            };
        }
        (w, 1.0 / (1.0 + (-w).exp2()))
    }
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
    let weight = prior_weight(params) + terms.iter().map(|t| t.weight).sum::<f64>();
    let probability = 1.0 / (1.0 + (-weight).exp2());
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

/// Link `records` with a given model. Candidate pairs are scored as they are produced and only
/// those at or above the review threshold are kept; the chaining guard scores the pairs a merge
/// would join as it needs them.
pub fn link_with(
    spec: &LinkSpec,
    records: &[PersonRecord],
    params: Params,
    decisions: &[Decision],
) -> Linkage {
    let tf = train::term_frequencies(spec, records);
    // A clerical decision outranks an identifier rule on the same pair.
    let mut decided: HashMap<(u32, u32), (bool, Rule)> = HashMap::new();
    for d in decisions {
        let k = (d.a.min(d.b), d.a.max(d.b));
        match decided.get(&k) {
            Some((_, Rule::Clerical)) if d.rule != Rule::Clerical => {}
            _ => {
                decided.insert(k, (d.same, d.rule));
            }
        }
    }
    let scorer = Scorer::new(spec, &params, &tf);
    let model = |a: u32, b: u32| -> PairScore {
        let (ra, rb) = (&records[a as usize], &records[b as usize]);
        let levels = compare::pattern(spec, ra, rb);
        let (weight, probability) = scorer.score(ra, levels);
        PairScore {
            a,
            b,
            weight,
            probability,
            levels,
            rule: Rule::Probabilistic,
        }
    };
    let decide = |a: u32, b: u32| -> PairScore {
        let mut p = model(a, b);
        if let Some(&(same, rule)) = decided.get(&(a, b)) {
            p.probability = if same { 1.0 } else { 0.0 };
            p.rule = rule;
        }
        p
    };
    let candidates = std::sync::atomic::AtomicU64::new(0);
    let blocked = block::Candidates::new(&spec.blocking, records);
    let mut pairs: Vec<PairScore> = blocked
        .par_pairs()
        .filter(|p| !decided.contains_key(p))
        .map(|(a, b)| {
            candidates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            model(a, b)
        })
        .filter(|s| s.probability >= spec.thresholds.review)
        .collect();
    let mut decided_pairs: Vec<(u32, u32)> = decided.keys().copied().collect();
    decided_pairs.sort_unstable();
    pairs.extend(
        decided_pairs
            .par_iter()
            .map(|&(a, b)| decide(a, b))
            .filter(|s| s.probability >= spec.thresholds.review)
            .collect::<Vec<_>>(),
    );
    pairs.par_sort_unstable_by_key(|s| (s.a, s.b));
    let candidates = candidates.into_inner() + decided.len() as u64;
    let links: Vec<Scored> = pairs
        .iter()
        .map(|s| Scored {
            a: s.a,
            b: s.b,
            p: s.probability,
        })
        .collect();
    let c = cluster::cluster(
        records.len(),
        &links,
        spec.thresholds.link,
        spec.clusters.cannot_link,
        spec.clusters.max_size,
        &|a, b| decide(a, b).probability,
    );
    let refused: Vec<(u32, u32, Refused)> = c.refused.iter().map(|(s, r)| (s.a, s.b, *r)).collect();
    let review = pairs
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            c.cluster[s.a as usize] != c.cluster[s.b as usize] && s.rule == Rule::Probabilistic
        })
        .map(|(i, _)| i)
        .collect();
    drop(scorer);
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

/// Decisions made before the model: the same identity, a shared strong identifier, a
/// source's own link; and the clerical decisions on record.
pub fn rule_decisions(
    spec: &LinkSpec,
    records: &[PersonRecord],
    clerical: &[StoredDecision],
) -> Vec<Decision> {
    let mut by_key: HashMap<String, Vec<u32>> = HashMap::new();
    let mut by_identity: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
    let mut by_value: HashMap<&str, Vec<u32>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_identity
            .entry((&r.identity.system, &r.identity.value))
            .or_default()
            .push(i as u32);
        by_value
            .entry(&r.identity.value)
            .or_default()
            .push(i as u32);
        for id in &r.identifiers {
            if let Some((system, _)) = id.split_once('|')
                && spec.identifiers.strong.iter().any(|s| s == system)
            {
                by_key.entry(id.clone()).or_default().push(i as u32);
            }
        }
    }
    let mut out = Vec::new();
    let chain = |group: &[u32], out: &mut Vec<Decision>| {
        for w in group.windows(2) {
            out.push(Decision {
                a: w[0],
                b: w[1],
                same: true,
                rule: Rule::Identifier,
            });
        }
    };
    for g in by_identity.values().chain(by_key.values()) {
        chain(g, &mut out);
    }
    for (i, r) in records.iter().enumerate() {
        for id in &r.identifiers {
            if let Some(target) = id.strip_prefix("link|")
                && let Some(js) = by_value.get(target)
            {
                for &j in js {
                    if j != i as u32 {
                        out.push(Decision {
                            a: i as u32,
                            b: j,
                            same: true,
                            rule: Rule::Identifier,
                        });
                    }
                }
            }
        }
    }
    for d in clerical {
        let (Some(a), Some(b)) = (
            by_identity.get(&(d.a.0.as_str(), d.a.1.as_str())),
            by_identity.get(&(d.b.0.as_str(), d.b.1.as_str())),
        ) else {
            continue;
        };
        for &x in a {
            for &y in b {
                out.push(Decision {
                    a: x,
                    b: y,
                    same: d.same,
                    rule: Rule::Clerical,
                });
            }
        }
    }
    out.sort_by_key(|d| (d.a.min(d.b), d.a.max(d.b), d.rule == Rule::Clerical));
    out
}

/// Who each record is, after linkage: a person id per record, kept stable across runs.
pub struct Resolution {
    pub linkage: Linkage,
    /// Person (subject id) of each record.
    pub person: Vec<i64>,
    /// Per record: the rule and probability of its strongest link into its person (`None`
    /// for a person of one record).
    pub evidence: Vec<Option<(Rule, f64)>>,
    /// Person ids that no longer exist and the person each now is (merges): as FHIR's
    /// `replaced-by`.
    pub replaced: Vec<(i64, i64)>,
    pub decisions: Vec<Decision>,
}

/// Link `records` and give every cluster a person id. A record's own id is
/// `identity.subject_id`; `previous` is the person each identity had before (absent for new
/// ones). A cluster keeps the smallest earlier person id whose founding record (the record
/// whose own id it is) it still holds; else it is named after its smallest record id. So a new
/// record joins its person's id, a merge keeps the older id, and ids never collide.
pub fn resolve(
    spec: &LinkSpec,
    records: &[PersonRecord],
    clerical: &[StoredDecision],
    previous: &HashMap<(String, String), i64>,
) -> Resolution {
    let decisions = rule_decisions(spec, records, clerical);
    let linkage = link(spec, records, &decisions);
    let mut members: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &c) in linkage.cluster.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let prev = |r: &PersonRecord| {
        previous
            .get(&(r.identity.system.clone(), r.identity.value.clone()))
            .copied()
    };
    let mut person = vec![0i64; records.len()];
    let mut replaced = Vec::new();
    let mut clusters: Vec<&Vec<usize>> = members.values().collect();
    clusters.sort_by_key(|m| m[0]);
    for m in clusters {
        let own: std::collections::HashSet<i64> =
            m.iter().map(|&i| records[i].identity.subject_id).collect();
        let founded: Vec<i64> = m
            .iter()
            .filter_map(|&i| prev(&records[i]))
            .filter(|p| own.contains(p))
            .collect();
        let pid = founded
            .iter()
            .copied()
            .min()
            .unwrap_or_else(|| *own.iter().min().expect("a cluster has a record"));
        for &i in m {
            person[i] = pid;
            if let Some(p) = prev(&records[i])
                && p != pid
                && own.contains(&p)
            {
                replaced.push((p, pid));
            }
        }
    }
    replaced.sort_unstable();
    replaced.dedup();
    let mut evidence: Vec<Option<(Rule, f64)>> = vec![None; records.len()];
    for p in &linkage.pairs {
        if linkage.cluster[p.a as usize] != linkage.cluster[p.b as usize]
            || p.probability < spec.thresholds.link
        {
            continue;
        }
        for i in [p.a as usize, p.b as usize] {
            if evidence[i].is_none_or(|(_, q)| p.probability > q) {
                evidence[i] = Some((p.rule, p.probability));
            }
        }
    }
    Resolution {
        linkage,
        person,
        evidence,
        replaced,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::identity::{IdField, Identity};

    #[test]
    fn the_fast_scorer_gives_the_explained_weights() {
        let spec = LinkSpec::default_spec();
        let mut rng = crate::rng::Rng::new(3, 0, 0);
        let names = [
            "ann", "anne", "bob", "smith", "smyth", "lee", "2000", "2001", "1960",
        ];
        let records: Vec<PersonRecord> = (0..300)
            .map(|i| {
                let mut r = PersonRecord::new(Identity::new("t", &i.to_string()));
                let mut pick = |f: IdField| {
                    if !rng.chance(0.1) {
                        r.set(f, names[(rng.next_u64() % names.len() as u64) as usize]);
                    }
                };
                for f in [
                    IdField::GivenName,
                    IdField::FamilyName,
                    IdField::Postcode,
                    IdField::Address,
                ] {
                    pick(f);
                }
                r.set(
                    IdField::BirthDate,
                    &format!("19600{}0{}", 1 + i % 3, 1 + i % 7),
                );
                r
            })
            .collect();
        let params = train::estimate(&spec, &records);
        let tf = train::term_frequencies(&spec, &records);
        let scorer = Scorer::new(&spec, &params, &tf);
        for i in 0..300 {
            let (a, b) = (&records[i], &records[(i * 7 + 1) % 300]);
            let levels = compare::pattern(&spec, a, b);
            let e = explain(&spec, &params, &tf, a, b);
            let (w, p) = scorer.score(a, levels);
            assert!(
                (e.weight - w).abs() < 1e-9 && (e.probability - p).abs() < 1e-12,
                "{} {w}",
                e.weight
            );
        }
    }
}
