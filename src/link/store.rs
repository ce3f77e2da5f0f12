//! The linkage's files in a lake's identity store. In: `identity/persons.parquet` (written by
//! ingest), the spec, the clerical decisions in `identity/decisions.json`. Out, staged in the
//! ingest's atomic commit into `identity/` (owner-only, PHI): `links.parquet` (every pair at or
//! above the review threshold, with its probability, weight, rule and whether it waits for
//! review), `clusters.parquet` (each identity's person), `model.json` (the estimated model and
//! a [`LinkReport`] of counts only). Records are shown to people by keyed hashes
//! ([`Keyring::record_hash`]) with the lake's own secret, never by their identifiers.

use super::spec::LinkSpec;
use super::{LinkError, Resolution, Rule, StoredDecision};
use crate::lake::Lake;
use crate::lake::commit::Transaction;
use crate::lake::write::{owner_only, read_persons, write_batches};
use crate::schema::identity::{IdField, PersonRecord};
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const SECRET: &str = "identity/secret";
const DECISIONS: &str = "identity/decisions.json";
const LINKS: &str = "identity/links.parquet";
const CLUSTERS: &str = "identity/clusters.parquet";
const MODEL: &str = "identity/model.json";

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

/// Counts of one linkage (no identity facts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    pub records: u64,
    /// Distinct source identities (system, value) among the records.
    pub identities: u64,
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
    /// Records with no usable identity fact (no name, birth date, national id or address):
    /// each is its own person.
    #[serde(default)]
    pub without_identity_facts: u64,
    /// Person ids merged into another by this linkage.
    pub replaced: u64,
    pub prior: f64,
    pub spec_hash: String,
}

impl LinkReport {
    pub fn new(
        spec: &LinkSpec,
        records: &[PersonRecord],
        r: &Resolution,
        clerical: usize,
    ) -> LinkReport {
        let mut idents: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, rec) in records.iter().enumerate() {
            idents
                .entry((&rec.identity.system, &rec.identity.value))
                .or_default()
                .push(i);
        }
        let conflicts = idents
            .values()
            .filter(|rows| {
                [IdField::BirthDate, IdField::Sex].iter().any(|&f| {
                    let mut vals: Vec<&str> =
                        rows.iter().filter_map(|&i| records[i].get(f)).collect();
                    vals.sort_unstable();
                    vals.dedup();
                    vals.len() > 1
                })
            })
            .count() as u64;
        let persons: std::collections::HashSet<i64> = r.person.iter().copied().collect();
        let l = &r.linkage;
        LinkReport {
            records: records.len() as u64,
            identities: idents.len() as u64,
            persons: persons.len() as u64,
            candidate_pairs: l.candidates,
            linked_pairs: l
                .pairs
                .iter()
                .filter(|p| p.probability >= spec.thresholds.link)
                .count() as u64,
            identifier_links: r
                .decisions
                .iter()
                .filter(|d| d.rule == Rule::Identifier)
                .count() as u64,
            clerical_decisions: clerical as u64,
            review_pairs: l.review.len() as u64,
            refused_links: l.refused.len() as u64,
            conflicts,
            without_identity_facts: records
                .iter()
                .filter(|rec| {
                    [
                        IdField::GivenName,
                        IdField::FamilyName,
                        IdField::BirthDate,
                        IdField::NationalId,
                        IdField::Address,
                        IdField::Postcode,
                    ]
                    .iter()
                    .all(|&f| rec.get(f).is_none())
                })
                .count() as u64,
            replaced: r.replaced.len() as u64,
            prior: l.params.lambda,
            spec_hash: format!("{:016x}", spec.hash),
        }
    }
}

/// A linkage of the store, for the review commands (nothing is written).
pub struct StoreLinkage {
    pub records: Vec<PersonRecord>,
    pub resolution: Resolution,
    pub keyring: Keyring,
}

/// The lake's identity records and what it said of them before: each identity's person
/// (from the subject map).
pub fn previous_persons(lake: &Lake) -> Result<HashMap<(String, String), i64>, LinkError> {
    Ok(
        crate::lake::write::read_subject_map(&lake.root.join("metadata/subject_map.parquet"))?
            .into_iter()
            .map(|i| ((i.system, i.value), i.subject_id))
            .collect(),
    )
}

/// Link the lake's identity store as the lake now stands (without writing anything).
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
    let resolution = super::resolve(spec, &records, &clerical, &previous_persons(&lake)?);
    let keyring = Keyring::open(lake_dir)?;
    Ok(StoreLinkage {
        records,
        resolution,
        keyring,
    })
}

/// Stage the linkage's files into an ingest's transaction.
pub fn stage(
    txn: &mut Transaction,
    records: &[PersonRecord],
    r: &Resolution,
    report: &LinkReport,
) -> Result<(), LinkError> {
    let p = txn.path(LINKS)?;
    write_links(&p, records, r)?;
    owner_only(&p)?;
    let p = txn.path(CLUSTERS)?;
    write_clusters(&p, records, r)?;
    owner_only(&p)?;
    let model = serde_json::json!({
        "spec_hash": report.spec_hash,
        "params": r.linkage.params,
        "report": report,
    });
    let p = txn.path(MODEL)?;
    std::fs::write(&p, serde_json::to_string_pretty(&model).expect("json")).map_err(|err| {
        LinkError::Io {
            path: p.clone(),
            err,
        }
    })?;
    owner_only(&p)?;
    Ok(())
}

fn write_links(p: &Path, r: &[PersonRecord], res: &Resolution) -> Result<(), LinkError> {
    let review: std::collections::HashSet<usize> = res.linkage.review.iter().copied().collect();
    let pairs = &res.linkage.pairs;
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

fn write_clusters(p: &Path, records: &[PersonRecord], r: &Resolution) -> Result<(), LinkError> {
    let mut rows: Vec<(&str, &str, i64, i64)> = records
        .iter()
        .zip(&r.person)
        .map(|(rec, &pid)| {
            (
                rec.identity.system.as_str(),
                rec.identity.value.as_str(),
                rec.identity.subject_id,
                pid,
            )
        })
        .collect();
    rows.sort();
    rows.dedup();
    let schema = Arc::new(Schema::new(vec![
        Field::new("system", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("record_subject_id", DataType::Int64, false),
        Field::new("subject_id", DataType::Int64, false),
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
