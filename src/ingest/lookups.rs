//! The lookup tables an export's tables need, loaded once per export before its rows are read
//! (and even when the table itself is already ingested): FHIR Medication resources, OMOP's
//! concept and concept-ancestor tables and person ids, MIMIC's admissions (diagnoses are dated
//! at discharge) and dictionaries. In: an [`InputSet`]; out: [`SetLookups`], read-only while
//! the rows are converted in parallel.

use super::detect::{InputSet, find_table};
use super::io::LineBlocks;
use super::tabular::{self, load_lookup};
use super::{Ctx, Format, IngestError, InputPolicy, fhir, mimic, mimic3, omop};
use crate::ingest::driver::IngestOptions;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct SetLookups {
    pub medications: fhir::Medications,
    pub omop: Option<omop::OmopContext>,
    pub mimic: Option<mimic::MimicContext>,
    pub mimic3: Option<mimic3::Mimic3Context>,
    /// Code descriptions from the export's dictionaries, written with its people table.
    pub descriptions: Vec<(String, String)>,
}

/// A table of `dir` by name, case-insensitively (`concept.csv`, `CONCEPT.csv`).
fn table(dir: &Path, name: &str) -> Option<PathBuf> {
    find_table(dir, name)
}

/// A context for parsing lookup times: no plausibility window beyond the run's lower bound.
fn lookup_ctx<'a>(
    opts: &IngestOptions,
    known: &'a super::SubjectSet,
    policy: &'a InputPolicy,
) -> Ctx<'a> {
    Ctx {
        time: opts.time,
        max_event_time: i64::MAX,
        min_event_time: opts.min_event_time,
        known,
        policy,
        file_id: 0,
        file: "",
    }
}

impl SetLookups {
    pub fn load(set: &InputSet, opts: &IngestOptions) -> Result<SetLookups, IngestError> {
        let mut l = SetLookups::default();
        match set.format {
            Format::Omop => l.omop = Some(load_omop(set)?),
            Format::Mimic => {
                let mut m = mimic::MimicContext::default();
                let known = super::SubjectSet::default();
                let policy = InputPolicy::default();
                let ctx = lookup_ctx(opts, &known, &policy);
                if let Some(af) = set.files.iter().find(|f| f.table == "admissions") {
                    for r in load_lookup(&af.path, &["hadm_id", "admittime", "dischtime"])? {
                        if let (Some(h), Some(a), Some(d)) = (&r[0], &r[1], &r[2])
                            && let (Ok(a), Ok(d)) = (
                                ctx.time("admittime", a, true),
                                ctx.time("dischtime", d, true),
                            )
                        {
                            m.admissions.insert(h.clone(), (a, d));
                        }
                    }
                }
                let base = if set.root.join("hosp").is_dir() {
                    set.root.join("hosp")
                } else {
                    set.root.clone()
                };
                if let Some(p) = table(&base, "d_icd_diagnoses") {
                    for r in load_lookup(&p, &["icd_code", "icd_version", "long_title"])? {
                        if let (Some(c), Some(v), Some(t)) = (&r[0], &r[1], &r[2]) {
                            let vocab = if v == "9" { "ICD9CM" } else { "ICD10CM" };
                            if let Ok(code) = crate::schema::codes::normalize(vocab, c) {
                                l.descriptions.push((code, t.clone()));
                            }
                        }
                    }
                }
                if let Some(p) = table(&base, "d_labitems") {
                    for r in load_lookup(&p, &["itemid", "label", "fluid"])? {
                        if let (Some(i), Some(label)) = (&r[0], &r[1]) {
                            let d = format!("{label} ({})", r[2].as_deref().unwrap_or("?"));
                            m.labitems.insert(i.clone(), d.clone());
                            l.descriptions.push((format!("MIMIC_LAB//{i}"), d));
                        }
                    }
                }
                l.mimic = Some(m);
            }
            Format::Mimic3 => {
                let known = super::SubjectSet::default();
                let policy = InputPolicy::default();
                let ctx = lookup_ctx(opts, &known, &policy);
                let (m, descriptions) = mimic3::Mimic3Context::load(set, &ctx)?;
                l.mimic3 = Some(m);
                l.descriptions = descriptions;
            }
            Format::Fhir => {
                for f in set.files.iter().filter(|f| f.table == "Medication") {
                    let mut blocks = LineBlocks::new(super::io::open(&f.path)?, opts.block_bytes);
                    while let Some(b) = blocks.next_block() {
                        fhir::index_medications(&b.data, &mut l.medications);
                    }
                }
            }
            Format::Meds | Format::Synthea => {}
        }
        Ok(l)
    }

    /// Ancestors of the codes this export's events carry (OMOP `CONCEPT_ANCESTOR`, as lake
    /// codes), for `metadata/codes.parquet`'s `parent_codes`.
    pub fn ancestors(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.omop
            .as_ref()
            .map(omop::OmopContext::ancestor_codes)
            .unwrap_or_default()
    }
}

fn load_omop(set: &InputSet) -> Result<omop::OmopContext, IngestError> {
    let dir = &set.root;
    let mut concepts = HashMap::new();
    if let Some(cp) = table(dir, "concept") {
        for r in load_lookup(
            &cp,
            &[
                "concept_id",
                "vocabulary_id",
                "concept_code",
                "concept_name",
            ],
        )? {
            if let (Some(id), Some(v), Some(c)) = (&r[0], &r[1], &r[2])
                && let Ok(id) = omop::parse_id("concept_id", id)
            {
                concepts.insert(
                    id,
                    omop::Concept {
                        vocabulary: v.clone(),
                        code: c.clone(),
                        name: r[3].clone().unwrap_or_default(),
                    },
                );
            }
        }
    }
    // descendant -> its ancestors (not itself); an export may ship only the header.
    let mut ancestors: HashMap<i64, Vec<i64>> = HashMap::new();
    if let Some(ap) = table(dir, "concept_ancestor") {
        for r in load_lookup(&ap, &["ancestor_concept_id", "descendant_concept_id"])? {
            if let (Some(a), Some(d)) = (&r[0], &r[1])
                && let (Ok(a), Ok(d)) = (
                    omop::parse_id("ancestor_concept_id", a),
                    omop::parse_id("descendant_concept_id", d),
                )
                && a != d
            {
                ancestors.entry(d).or_default().push(a);
            }
        }
        for v in ancestors.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
    }
    let export = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut persons = HashMap::new();
    if let Some(pf) = set.files.iter().find(|f| f.people) {
        let h = tabular::read_header(&pf.path)?;
        let cols: Vec<&str> = if h.has("person_source_value") {
            vec!["person_id", "person_source_value"]
        } else {
            vec!["person_id"]
        };
        for r in load_lookup(&pf.path, &cols)? {
            if let Some(Ok(pid)) = r[0].as_deref().map(|v| omop::parse_id("person_id", v)) {
                let sv = r.get(1).and_then(|x| x.as_deref());
                persons.insert(pid, omop::OmopContext::identity_for(&export, pid, sv));
            }
        }
    }
    // location_id -> address_1, city, state, zip (identity facts of the people who live there).
    let mut locations = HashMap::new();
    if let Some(lp) = table(dir, "location") {
        for r in load_lookup(&lp, &["location_id", "address_1", "city", "state", "zip"])? {
            if let Some(Ok(id)) = r[0].as_deref().map(|v| omop::parse_id("location_id", v)) {
                locations.insert(id, [r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()]);
            }
        }
    }
    Ok(omop::OmopContext {
        concepts,
        ancestors,
        persons,
        locations,
        export,
        codes: Default::default(),
    })
}
