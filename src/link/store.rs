//! Linkage over a lake's identity store. In: `identity/persons.parquet` (written by ingest),
//! the spec, and the clerical decisions in `identity/decisions.json`. Out, in one atomic commit
//! into `identity/` (owner-only, PHI): `links.parquet` (every pair at or above the review
//! threshold, with its probability, weight, rule and whether it waits for review),
//! `clusters.parquet` (each record's person), `model.json` (the estimated model), and a
//! [`LinkReport`] of counts only. Records are shown to people by keyed hashes
//! ([`Keyring::record_hash`]) with the lake's own secret, never by their identifiers.

use super::spec::LinkSpec;
use super::{Decision, LinkError, Linkage, Rule};
use crate::lake::commit::Transaction;
use crate::lake::write::{owner_only, read_persons, write_batches};
use crate::lake::{Lake, LakeError};
use crate::schema::identity::{IdField, PersonRecord};
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SECRET: &str = "identity/secret";
const DECISIONS: &str = "identity/decisions.json";
const LINKS: &str = "identity/links.parquet";
const CLUSTERS: &str = "identity/clusters.parquet";
const MODEL: &str = "identity/model.json";

impl From<LakeError> for LinkError {
    fn from(e: LakeError) -> Self {
        LinkError::Bad {
            path: PathBuf::from("lake"),
            message: e.to_string(),
        }
    }
}

/// The lake's secret for keyed record hashes (created on first use, owner-only).
pub struct Keyring {
    key: [u8; 32],
}

impl Keyring {
    pub fn open(lake: &Path) -> Result<Keyring, LinkError> {
        let p = lake.join(SECRET);
        let ioe = |err| LinkError::Io {
            path: p.clone(),
            err,
        };
        if !p.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| LinkError::Bad {
                path: p.clone(),
                message: format!("no randomness for the lake's secret: {e}"),
            })?;
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(ioe)?;
                owner_only(d)?;
            }
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, hex::encode(key)).map_err(ioe)?;
            owner_only(&tmp)?;
            std::fs::rename(&tmp, &p).map_err(ioe)?;
        }
        let text = std::fs::read_to_string(&p).map_err(ioe)?;
        let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
        let key = bytes.ok_or_else(|| LinkError::Bad {
            path: p.clone(),
            message: "expected 64 hex digits".into(),
        })?;
        Ok(Keyring {
            key: key.try_into().expect("32 bytes"),
        })
    }

    /// A record's public handle: 16 hex digits of a keyed BLAKE3 of its identity. Without
    /// the lake's secret it cannot be recomputed from a guessed MRN.
    pub fn record_hash(&self, r: &PersonRecord) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(r.identity.system.as_bytes());
        h.update(&[0x1f]);
        h.update(r.identity.value.as_bytes());
        h.finalize().to_hex()[..16].to_string()
    }
}

/// A clerical decision as stored: the two records' identities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDecision {
    pub a: (String, String),
    pub b: (String, String),
    pub same: bool,
}

pub fn read_decisions(lake: &Path) -> Result<Vec<StoredDecision>, LinkError> {
    let p = lake.join(DECISIONS);
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p).map_err(|err| LinkError::Io {
        path: p.clone(),
        err,
    })?;
    serde_json::from_str(&text).map_err(|e| LinkError::Bad {
        path: p,
        message: e.to_string(),
    })
}

/// Record a clerical decision (replacing an earlier one on the same pair), atomically.
pub fn decide(lake_dir: &Path, d: StoredDecision) -> Result<(), LinkError> {
    let mut all = read_decisions(lake_dir)?;
    let key = |x: &StoredDecision| {
        let (p, q) = (x.a.clone(), x.b.clone());
        if p <= q { (p, q) } else { (q, p) }
    };
    all.retain(|x| key(x) != key(&d));
    all.push(d);
    all.sort_by_key(key);
    let mut txn = Transaction::begin(lake_dir)?;
    let p = txn.path(DECISIONS)?;
    std::fs::write(&p, serde_json::to_string_pretty(&all).expect("json")).map_err(|err| {
        LinkError::Io {
            path: p.clone(),
            err,
        }
    })?;
    owner_only(&p)?;
    txn.commit()?;
    Ok(())
}

/// Counts of one linkage run (no identity facts).
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub records: u64,
    /// Distinct source identities (system, value) among the records.
    pub identities: u64,
    /// Subjects the identities make today (one per identity).
    pub subjects: u64,
    /// People the linkage finds (clusters of identities).
    pub persons: u64,
    pub candidate_pairs: u64,
    pub linked_pairs: u64,
    pub identifier_links: u64,
    pub clerical_decisions: u64,
    pub review_pairs: u64,
    pub refused_links: u64,
    /// Identities whose records disagree on birth date or sex.
    pub conflicts: u64,
    pub prior: f64,
    pub spec_hash: String,
}

/// Everything a linkage of the store yields, for the CLI.
pub struct StoreLinkage {
    pub records: Vec<PersonRecord>,
    pub linkage: Linkage,
    pub report: LinkReport,
    pub keyring: Keyring,
}

/// Decisions the records make themselves: the same identity, a shared strong identifier, a
/// source's own link; and the clerical decisions on record.
fn fixed_decisions(
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

/// Link the lake's identity store (without writing anything).
pub fn link_store(lake_dir: &Path, spec: &LinkSpec) -> Result<StoreLinkage, LinkError> {
    let lake = Lake::open(lake_dir)?;
    let records = read_persons(&lake.root.join(Lake::persons_rel()))?;
    if records.is_empty() {
        return Err(LinkError::Bad {
            path: lake.root.join(Lake::persons_rel()),
            message: "the identity store holds no records (ingest exports with patients first)"
                .into(),
        });
    }
    let clerical = read_decisions(lake_dir)?;
    let decisions = fixed_decisions(spec, &records, &clerical);
    let linkage = super::link(spec, &records, &decisions);
    let mut idents: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        idents
            .entry((&r.identity.system, &r.identity.value))
            .or_default()
            .push(i);
    }
    let conflicts = idents
        .values()
        .filter(|rows| {
            [IdField::BirthDate, IdField::Sex].iter().any(|&f| {
                let mut vals: Vec<&str> = rows.iter().filter_map(|&i| records[i].get(f)).collect();
                vals.sort_unstable();
                vals.dedup();
                vals.len() > 1
            })
        })
        .count() as u64;
    let subjects: std::collections::HashSet<i64> =
        records.iter().map(|r| r.identity.subject_id).collect();
    let persons: std::collections::HashSet<u32> = linkage.cluster.iter().copied().collect();
    let report = LinkReport {
        records: records.len() as u64,
        identities: idents.len() as u64,
        subjects: subjects.len() as u64,
        persons: persons.len() as u64,
        candidate_pairs: linkage.candidates,
        linked_pairs: linkage
            .pairs
            .iter()
            .filter(|p| p.probability >= spec.thresholds.link)
            .count() as u64,
        identifier_links: decisions
            .iter()
            .filter(|d| d.rule == Rule::Identifier)
            .count() as u64,
        clerical_decisions: clerical.len() as u64,
        review_pairs: linkage.review.len() as u64,
        refused_links: linkage.refused.len() as u64,
        conflicts,
        prior: linkage.params.lambda,
        spec_hash: format!("{:016x}", spec.hash),
    };
    let keyring = Keyring::open(lake_dir)?;
    Ok(StoreLinkage {
        records,
        linkage,
        report,
        keyring,
    })
}

/// Link the store and commit the results into `identity/`.
pub fn run(lake_dir: &Path, spec: &LinkSpec) -> Result<StoreLinkage, LinkError> {
    let s = link_store(lake_dir, spec)?;
    let mut txn = Transaction::begin(lake_dir)?;
    let p = txn.path(LINKS)?;
    write_links(&p, &s)?;
    owner_only(&p)?;
    let p = txn.path(CLUSTERS)?;
    write_clusters(&p, &s)?;
    owner_only(&p)?;
    let model = serde_json::json!({
        "spec_hash": s.report.spec_hash,
        "params": s.linkage.params,
        "report": s.report,
    });
    let p = txn.path(MODEL)?;
    std::fs::write(&p, serde_json::to_string_pretty(&model).expect("json")).map_err(|err| {
        LinkError::Io {
            path: p.clone(),
            err,
        }
    })?;
    owner_only(&p)?;
    txn.commit()?;
    Ok(s)
}

fn write_links(p: &Path, s: &StoreLinkage) -> Result<(), LinkError> {
    let r = &s.records;
    let review: std::collections::HashSet<usize> = s.linkage.review.iter().copied().collect();
    let pairs = &s.linkage.pairs;
    let schema = Arc::new(Schema::new(vec![
        Field::new("a_system", DataType::Utf8, false),
        Field::new("a_value", DataType::Utf8, false),
        Field::new("b_system", DataType::Utf8, false),
        Field::new("b_value", DataType::Utf8, false),
        Field::new("probability", DataType::Float64, false),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("review", DataType::Boolean, false),
    ]));
    let side = |f: &dyn Fn(&PersonRecord) -> &str, a: bool| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            pairs
                .iter()
                .map(|x| f(&r[if a { x.a } else { x.b } as usize])),
        ))
    };
    let cols: Vec<ArrayRef> = vec![
        side(&|x| &x.identity.system, true),
        side(&|x| &x.identity.value, true),
        side(&|x| &x.identity.system, false),
        side(&|x| &x.identity.value, false),
        Arc::new(Float64Array::from_iter_values(
            pairs.iter().map(|x| x.probability),
        )),
        Arc::new(Float64Array::from_iter_values(
            pairs.iter().map(|x| x.weight),
        )),
        Arc::new(StringArray::from_iter_values(
            pairs.iter().map(|x| x.rule.name()),
        )),
        Arc::new(BooleanArray::from_iter(
            (0..pairs.len()).map(|i| Some(review.contains(&i))),
        )),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).expect("schema matches");
    Ok(write_batches(p, schema, &[b])?)
}

/// Each identity's person: the smallest subject id among the identities of its cluster.
pub fn person_of(s: &StoreLinkage) -> Vec<i64> {
    let mut min: HashMap<u32, i64> = HashMap::new();
    for (i, &c) in s.linkage.cluster.iter().enumerate() {
        let sid = s.records[i].identity.subject_id;
        min.entry(c)
            .and_modify(|m| *m = (*m).min(sid))
            .or_insert(sid);
    }
    s.linkage.cluster.iter().map(|c| min[c]).collect()
}

fn write_clusters(p: &Path, s: &StoreLinkage) -> Result<(), LinkError> {
    let person = person_of(s);
    let mut rows: Vec<(&str, &str, i64, i64)> = s
        .records
        .iter()
        .zip(&person)
        .map(|(r, &pid)| {
            (
                r.identity.system.as_str(),
                r.identity.value.as_str(),
                r.identity.subject_id,
                pid,
            )
        })
        .collect();
    rows.sort();
    rows.dedup();
    let schema = Arc::new(Schema::new(vec![
        Field::new("system", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("subject_id", DataType::Int64, false),
        Field::new("person_id", DataType::Int64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|x| x.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|x| x.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|x| x.2))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|x| x.3))),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).expect("schema matches");
    Ok(write_batches(p, schema, &[b])?)
}
