//! Blocking: which pairs of records are compared at all. In: records and blocking rules. Out:
//! candidate pairs `(i, j)`, `i < j`, each found once (a pair an earlier rule finds is not found
//! again by a later one, as Splink does), in a deterministic order.

use super::spec::Blocking;
use crate::schema::identity::{IdField, PersonRecord};
use rayon::prelude::*;

/// A rule's key of one record: a hash of its values on the rule's fields (as a set when the
/// rule is unordered); `None` when any of them is missing (a missing value blocks nothing).
pub fn key(rule: &Blocking, r: &PersonRecord) -> Option<u64> {
    let mut vals: Vec<&str> = rule.on.iter().map(|f| r.get(*f)).collect::<Option<_>>()?;
    if rule.unordered {
        vals.sort_unstable();
    }
    let mut bytes = Vec::with_capacity(64);
    for v in vals {
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0x1f);
    }
    Some(crate::schema::fnv1a(&bytes))
}

/// Rules on plain field lists (EM training blocks, deterministic rules).
pub fn on(fields: &[IdField]) -> Blocking {
    Blocking {
        on: fields.to_vec(),
        unordered: false,
    }
}

/// Every rule's key of every record: `keys[rule][record]`.
pub fn keys(rules: &[Blocking], records: &[PersonRecord]) -> Vec<Vec<Option<u64>>> {
    rules
        .iter()
        .map(|rule| records.par_iter().map(|r| key(rule, r)).collect())
        .collect()
}

/// Groups of record indices that share a key (groups of one left out), in key order.
fn groups(keys: &[Option<u64>]) -> Vec<Vec<u32>> {
    let mut k: Vec<(u64, u32)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.map(|k| (k, i as u32)))
        .collect();
    k.par_sort_unstable();
    let mut out = Vec::new();
    let mut i = 0;
    while i < k.len() {
        let mut j = i + 1;
        while j < k.len() && k[j].0 == k[i].0 {
            j += 1;
        }
        if j - i > 1 {
            out.push(k[i..j].iter().map(|x| x.1).collect());
        }
        i = j;
    }
    out
}

/// The candidate pairs of a list of rules, each pair once (by the first rule that finds it),
/// streamed: the keys and groups are held, the pairs are produced in parallel as they are
/// consumed, so a million records need not hold their tens of millions of pairs at once.
pub struct Candidates {
    keys: Vec<Vec<Option<u64>>>,
    /// (rule, records sharing a key), rules in order.
    groups: Vec<(usize, Vec<u32>)>,
}

impl Candidates {
    pub fn new(rules: &[Blocking], records: &[PersonRecord]) -> Candidates {
        let keys = keys(rules, records);
        let groups = keys
            .iter()
            .enumerate()
            .flat_map(|(r, k)| groups(k).into_iter().map(move |g| (r, g)))
            .collect();
        Candidates { keys, groups }
    }

    /// Every candidate pair, in parallel (the order is not fixed: collect and sort when it
    /// matters).
    pub fn par_pairs(&self) -> impl ParallelIterator<Item = (u32, u32)> + '_ {
        self.groups.par_iter().flat_map_iter(move |(r, g)| {
            let earlier = &self.keys[..*r];
            g.iter().enumerate().flat_map(move |(x, &a)| {
                g[x + 1..].iter().filter_map(move |&b| {
                    let seen = earlier
                        .iter()
                        .any(|e| e[a as usize].is_some() && e[a as usize] == e[b as usize]);
                    (!seen).then_some((a.min(b), a.max(b)))
                })
            })
        })
    }
}

/// The candidate pairs of a list of rules, each once, sorted.
pub fn candidates(rules: &[Blocking], records: &[PersonRecord]) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = Candidates::new(rules, records).par_pairs().collect();
    v.par_sort_unstable();
    v
}

/// How many distinct pairs agree on every field of at least one of the rules.
pub fn count_pairs(rules: &[Blocking], records: &[PersonRecord]) -> u64 {
    Candidates::new(rules, records).par_pairs().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::identity::Identity;

    fn rec(i: usize, given: &str, family: &str, pc: &str) -> PersonRecord {
        let mut r = PersonRecord::new(Identity::new("t", &i.to_string()));
        r.set(IdField::GivenName, given);
        r.set(IdField::FamilyName, family);
        r.set(IdField::Postcode, pc);
        r
    }

    #[test]
    fn each_pair_is_found_once_and_swapped_names_meet() {
        let rs = vec![
            rec(0, "ann", "lee", "2000"),
            rec(1, "lee", "ann", "2000"),
            rec(2, "ann", "lee", "3000"),
            rec(3, "bob", "", "3000"),
            rec(4, "cy", "dee", ""),
        ];
        let rules = vec![
            Blocking {
                on: vec![IdField::GivenName, IdField::FamilyName],
                unordered: true,
            },
            on(&[IdField::Postcode]),
        ];
        let c = candidates(&rules, &rs);
        // names: 0-1, 0-2, 1-2; postcode adds only 2-3 (0-1 already found).
        assert_eq!(c, vec![(0, 1), (0, 2), (1, 2), (2, 3)]);
        // Ordered names do not meet when swapped.
        let c = candidates(&[on(&[IdField::GivenName, IdField::FamilyName])], &rs);
        assert_eq!(c, vec![(0, 2)]);
    }
}
