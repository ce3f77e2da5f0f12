//! `ehr-risk link run|review|explain|accept|reject`: identity resolution over a lake's
//! identity store. Terminal output names records by keyed hashes; identity facts are printed
//! only when asked with `--show-identity`.

use super::ExitStatus;
use crate::cli::link::{LinkArgs, LinkCommand};
use crate::link::StoredDecision;
use crate::link::spec::LinkSpec;
use crate::link::store::{self, StoreLinkage};
use crate::link::{compare, explain, quality};
use crate::schema::identity::{IdField, PersonRecord};
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;

fn spec(p: &Option<std::path::PathBuf>) -> anyhow::Result<LinkSpec> {
    Ok(LinkSpec::load(p.as_deref())?)
}

fn facts(r: &PersonRecord) -> String {
    IdField::ALL
        .iter()
        .filter_map(|f| r.get(*f).map(|v| format!("{}={v}", f.name())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The record index of a keyed hash.
fn find(s: &StoreLinkage, hash: &str) -> anyhow::Result<usize> {
    s.records
        .iter()
        .position(|r| s.keyring.record_hash(r) == hash)
        .with_context(|| format!("no record with hash {hash} in this lake's identity store"))
}

/// Truth as `system,value,person` rows.
fn read_truth(p: &Path) -> anyhow::Result<HashMap<(String, String), String>> {
    let mut rd = csv::Reader::from_path(p).with_context(|| format!("{}", p.display()))?;
    let mut out = HashMap::new();
    for (i, row) in rd.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", p.display(), i + 2))?;
        if row.len() != 3 {
            anyhow::bail!(
                "{}: row {}: expected 3 fields (system,value,person), found {}",
                p.display(),
                i + 2,
                row.len()
            );
        }
        out.insert((row[0].to_string(), row[1].to_string()), row[2].to_string());
    }
    Ok(out)
}

pub fn run(a: LinkArgs) -> anyhow::Result<ExitStatus> {
    match a.command {
        LinkCommand::Run {
            lake,
            spec: sp,
            truth,
            json,
        } => {
            // Linking again is an ingest with nothing new to read: the same transaction moves
            // the events of records whose person changed and rewrites the subject map.
            let opts = crate::ingest::driver::IngestOptions {
                link: Some(spec(&sp)?),
                relink: true,
                ..Default::default()
            };
            let out =
                crate::ingest::driver::run(&lake, &[], &opts, &crate::ingest::driver::Silent)?;
            let r = out.report.linkage.context(
                "the identity store holds no records (ingest exports with patients first)",
            )?;
            let q = match truth {
                Some(t) => {
                    let truth = read_truth(&t)?;
                    let rows = crate::lake::write::read_subject_rows(
                        &lake.join("metadata/subject_map.parquet"),
                    )?;
                    let (mut pred, mut real) = (Vec::new(), Vec::new());
                    for row in rows {
                        if let Some(t) = truth.get(&(row.identity.system, row.identity.value)) {
                            pred.push(row.person);
                            real.push(t.clone());
                        }
                    }
                    if pred.is_empty() {
                        anyhow::bail!("{}: names none of the lake's identities", t.display());
                    }
                    Some(quality::pairwise(&pred, &real))
                }
                None => None,
            };
            if json {
                let v = serde_json::json!({"report": r, "events_moved": out.report.events_moved, "quality": q});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} records, {} identities -> {} persons; {} events moved to their person",
                    r.records, r.identities, r.persons, out.report.events_moved
                );
                println!(
                    "{} candidate pairs, {} linked ({} by identifier), {} for review, {} links refused by the chaining guards",
                    r.candidate_pairs,
                    r.linked_pairs,
                    r.identifier_links,
                    r.review_pairs,
                    r.refused_links
                );
                if r.without_identity_facts > 0 {
                    println!(
                        "{} records carry no usable identity fact: each is its own person",
                        r.without_identity_facts
                    );
                }
                if r.conflicts > 0 {
                    println!(
                        "{} identities have records that disagree on birth date or sex",
                        r.conflicts
                    );
                }
                if let Some(q) = q {
                    println!(
                        "against the truth: precision {:.4}, recall {:.4}, F1 {:.4} ({} true pairs, {} predicted, {} right)",
                        q.precision, q.recall, q.f1, q.true_pairs, q.predicted_pairs, q.tp
                    );
                }
            }
            Ok(ExitStatus::Success)
        }
        LinkCommand::Review {
            lake,
            spec: sp,
            show_identity,
            limit,
        } => {
            let spec = spec(&sp)?;
            let s = store::link_store(&lake, &spec)?;
            let mut queue: Vec<&crate::link::PairScore> = s
                .resolution
                .linkage
                .review
                .iter()
                .map(|&i| &s.resolution.linkage.pairs[i])
                .collect();
            queue.sort_by(|x, y| {
                x.weight
                    .abs()
                    .total_cmp(&y.weight.abs())
                    .then((x.a, x.b).cmp(&(y.a, y.b)))
            });
            println!(
                "{} pairs for review (showing {})",
                queue.len(),
                queue.len().min(limit)
            );
            for p in queue.into_iter().take(limit) {
                let (ra, rb) = (&s.records[p.a as usize], &s.records[p.b as usize]);
                let levels: Vec<String> = spec
                    .comparisons
                    .iter()
                    .enumerate()
                    .map(|(c, cmp)| {
                        format!(
                            "{}: {}",
                            cmp.field.name(),
                            compare::code_label(cmp, p.levels.get(c))
                        )
                    })
                    .collect();
                println!(
                    "{} {} p={:.3} | {}",
                    s.keyring.record_hash(ra),
                    s.keyring.record_hash(rb),
                    p.probability,
                    levels.join(", ")
                );
                if show_identity {
                    println!("    a: {}\n    b: {}", facts(ra), facts(rb));
                }
            }
            Ok(ExitStatus::Success)
        }
        LinkCommand::Explain {
            lake,
            a,
            b,
            spec: sp,
            show_identity,
        } => {
            let spec = spec(&sp)?;
            let s = store::link_store(&lake, &spec)?;
            let (i, j) = (find(&s, &a)?, find(&s, &b)?);
            let (ra, rb) = (&s.records[i], &s.records[j]);
            let e = explain(
                &spec,
                &s.resolution.linkage.params,
                &s.resolution.linkage.tf,
                ra,
                rb,
            );
            println!("{a} {b}");
            if show_identity {
                println!("  a: {}\n  b: {}", facts(ra), facts(rb));
            }
            println!("  {:<14} {:<30} {:>8}", "comparison", "level", "weight");
            println!("  {:<14} {:<30} {:>8.2}", "prior", "", e.prior_weight);
            for t in &e.terms {
                let tf = t
                    .tf_adjustment
                    .map(|x| format!(" (term frequency {x:+.2})"))
                    .unwrap_or_default();
                println!(
                    "  {:<14} {:<30} {:>8.2}  m={:.4} u={:.6}{tf}",
                    t.comparison, t.level, t.weight, t.m, t.u
                );
            }
            println!(
                "  match weight {:.2}, probability {:.4}",
                e.weight, e.probability
            );
            let (ci, cj) = (s.resolution.person[i], s.resolution.person[j]);
            println!(
                "  {}",
                if ci == cj {
                    "one person in this linkage"
                } else {
                    "different people in this linkage"
                }
            );
            Ok(ExitStatus::Success)
        }
        LinkCommand::Accept {
            lake,
            a,
            b,
            spec: sp,
        } => decide(&lake, &a, &b, &sp, true),
        LinkCommand::Reject {
            lake,
            a,
            b,
            spec: sp,
        } => decide(&lake, &a, &b, &sp, false),
    }
}

fn decide(
    lake: &Path,
    a: &str,
    b: &str,
    sp: &Option<std::path::PathBuf>,
    same: bool,
) -> anyhow::Result<ExitStatus> {
    let spec = spec(sp)?;
    let s = store::link_store(lake, &spec)?;
    let (i, j) = (find(&s, a)?, find(&s, b)?);
    let id = |r: &PersonRecord| (r.identity.system.clone(), r.identity.value.clone());
    store::decide(
        lake,
        StoredDecision {
            a: id(&s.records[i]),
            b: id(&s.records[j]),
            same,
        },
    )?;
    println!(
        "recorded: {a} and {b} are {}; later runs honour it",
        if same {
            "one person"
        } else {
            "different people"
        }
    );
    Ok(ExitStatus::Success)
}
