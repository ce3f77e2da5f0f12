//! OMOP CDM 5.3 / 5.4 CSV reader: person, visit_occurrence, condition_occurrence, measurement,
//! observation, drug_exposure, procedure_occurrence, death. Columns match case-insensitively.
//! Each event keeps the standard concept as `code` (its vocabulary code when the export carries
//! a concept table, else `OMOP//<concept_id>`) and the source value as `source_code`, so an
//! outcome code set finds an MI whether the export coded it in SNOMED or kept the ICD-10 source.
//! An export without its standard vocabulary (MIMIC-IV's OMOP conversion ships only local
//! concepts) keeps `OMOP//<concept_id>`, which code sets also list (`vocabulary = "OMOP"`), and
//! its `CONCEPT_ANCESTOR` rows become the codes' ancestors. A source value whose vocabulary
//! the export does not say stays `SOURCE//<value>` unless the input's policy says it is ICD
//! ([`super::SourceVocabulary`]); every value read that way is counted in the report.
//! Identity: `person_source_value` when present (Synthea-derived exports put the patient UUID
//! there, which links to the same person's FHIR and Synthea records), else the export's own
//! `person_id` qualified by the export folder name.

use super::fhir::PATIENT_ID_SYSTEM;
use super::tabular::Row;
use super::{Chunk, Ctx, Identity, PersonRecord, Reject, measurement, parse_number};
use crate::schema::codes::{encounter_code, gender_code, normalize, vocabularies};
use crate::schema::identity::IdField;
use crate::schema::{Event, Stamp};
use std::collections::HashMap;

/// Per-table column names (lower case) for the concept, source value, source concept, dates.
pub struct TableSpec {
    pub name: &'static str,
    pub concept: &'static str,
    pub source_value: &'static str,
    pub source_concept: &'static str,
    pub start_date: &'static str,
    pub start_datetime: &'static str,
    pub end_date: Option<&'static str>,
    pub end_datetime: Option<&'static str>,
}

pub const EVENT_TABLES: [TableSpec; 5] = [
    TableSpec {
        name: "condition_occurrence",
        concept: "condition_concept_id",
        source_value: "condition_source_value",
        source_concept: "condition_source_concept_id",
        start_date: "condition_start_date",
        start_datetime: "condition_start_datetime",
        end_date: Some("condition_end_date"),
        end_datetime: Some("condition_end_datetime"),
    },
    TableSpec {
        name: "measurement",
        concept: "measurement_concept_id",
        source_value: "measurement_source_value",
        source_concept: "measurement_source_concept_id",
        start_date: "measurement_date",
        start_datetime: "measurement_datetime",
        end_date: None,
        end_datetime: None,
    },
    TableSpec {
        name: "observation",
        concept: "observation_concept_id",
        source_value: "observation_source_value",
        source_concept: "observation_source_concept_id",
        start_date: "observation_date",
        start_datetime: "observation_datetime",
        end_date: None,
        end_datetime: None,
    },
    TableSpec {
        name: "drug_exposure",
        concept: "drug_concept_id",
        source_value: "drug_source_value",
        source_concept: "drug_source_concept_id",
        start_date: "drug_exposure_start_date",
        start_datetime: "drug_exposure_start_datetime",
        end_date: Some("drug_exposure_end_date"),
        end_datetime: Some("drug_exposure_end_datetime"),
    },
    TableSpec {
        name: "procedure_occurrence",
        concept: "procedure_concept_id",
        source_value: "procedure_source_value",
        source_concept: "procedure_source_concept_id",
        start_date: "procedure_date",
        start_datetime: "procedure_datetime",
        end_date: None,
        end_datetime: None,
    },
];

/// Required columns per table (lower case).
pub fn required(table: &str) -> Vec<&'static str> {
    match table {
        "person" => vec!["person_id", "gender_concept_id", "year_of_birth"],
        "visit_occurrence" => vec![
            "visit_occurrence_id",
            "person_id",
            "visit_concept_id",
            "visit_start_date",
        ],
        "death" => vec!["person_id", "death_date"],
        t => EVENT_TABLES
            .iter()
            .find(|s| s.name == t)
            .map(|s| vec!["person_id", s.concept, s.start_date])
            .unwrap_or_default(),
    }
}

/// A concept from the export's concept table.
#[derive(Debug, Clone)]
pub struct Concept {
    pub vocabulary: String,
    pub code: String,
    pub name: String,
}

/// Lookups for one OMOP export.
pub struct OmopContext {
    pub concepts: HashMap<i64, Concept>,
    /// descendant concept -> its ancestors (from `CONCEPT_ANCESTOR`, when the export ships it).
    pub ancestors: HashMap<i64, Vec<i64>>,
    /// person_id -> identity (from person.csv)
    pub persons: HashMap<i64, Identity>,
    /// location_id -> address_1, city, state, zip (from `LOCATION`, when the export ships it).
    pub locations: HashMap<i64, [Option<String>; 4]>,
    /// Export name used to qualify person_id when there is no person_source_value.
    pub export: String,
    /// [`OmopContext::concept_code`] of each concept met so far: a table's rows repeat a few
    /// thousand concepts, and building the lake code anew for each row was 7 % of an OMOP run
    /// (2026-12-06). Filled as rows are read, so a full vocabulary costs nothing up front.
    pub codes: std::sync::RwLock<rustc_hash::FxHashMap<i64, ConceptCode>>,
}

/// A concept's lake code and its description.
pub type ConceptCode = (String, Option<String>);

/// Read an integer id that some exports write as `7.0`.
pub fn parse_id(field: &str, v: &str) -> Result<i64, Reject> {
    let t = v.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Ok(i);
    }
    match t.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(Reject::new(field, "bad_number", v, "an integer id")),
    }
}

impl OmopContext {
    /// The identity facts of a person row: birth date (as precise as the row), sex,
    /// `person_source_value` and the address of its `location_id`.
    fn facts(&self, row: &Row, ident: &Identity, year: i64, month: i64, day: i64) -> PersonRecord {
        let mut p = PersonRecord::new(ident.clone());
        let date = match (row.get("month_of_birth"), row.get("day_of_birth")) {
            (Some(_), Some(_)) => format!("{year:04}{month:02}{day:02}"),
            (Some(_), None) => format!("{year:04}{month:02}"),
            _ => format!("{year:04}"),
        };
        p.set(IdField::BirthDate, &date);
        match row
            .get("gender_concept_id")
            .and_then(|g| g.trim().parse::<i64>().ok())
        {
            Some(8507) => p.set(IdField::Sex, "m"),
            Some(8532) => p.set(IdField::Sex, "f"),
            _ => {}
        }
        if let Some(v) = row.get("person_source_value") {
            p.add_identifier("omop:person_source_value", v);
        }
        let loc = row
            .get("location_id")
            .and_then(|l| parse_id("location_id", l).ok())
            .and_then(|l| self.locations.get(&l));
        if let Some([line, city, state, zip]) = loc {
            if let Some(l) = line {
                p.set_street_line(l);
            }
            for (f, v) in [
                (IdField::Locality, city),
                (IdField::State, state),
                (IdField::Postcode, zip),
            ] {
                if let Some(v) = v {
                    p.set(f, v);
                }
            }
        }
        p
    }

    /// The lake code for a concept id: vocabulary code when known, `OMOP//<id>` otherwise.
    pub fn concept_code(&self, id: i64) -> Option<ConceptCode> {
        if id == 0 {
            return None;
        }
        if let Some(hit) = self.codes.read().expect("concept codes").get(&id) {
            return Some(hit.clone());
        }
        let code = self.make_concept_code(id);
        self.codes
            .write()
            .expect("concept codes")
            .insert(id, code.clone());
        Some(code)
    }

    fn make_concept_code(&self, id: i64) -> ConceptCode {
        match self.concepts.get(&id) {
            Some(c) => {
                let vocab = vocabularies().omop.get(&c.vocabulary).map(String::as_str);
                let code = match vocab {
                    Some(v) => normalize(v, &c.code).unwrap_or_else(|_| format!("{v}//{}", c.code)),
                    None => format!("{}//{}", c.vocabulary.to_ascii_uppercase(), c.code),
                };
                (code, Some(c.name.clone()))
            }
            None => (format!("OMOP//{id}"), None),
        }
    }

    /// The ancestors of every concept `CONCEPT_ANCESTOR` names, as lake codes.
    pub fn ancestor_codes(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeMap::new();
        for (d, ancs) in &self.ancestors {
            let Some((code, _)) = self.concept_code(*d) else {
                continue;
            };
            let set: std::collections::BTreeSet<String> = ancs
                .iter()
                .filter_map(|a| self.concept_code(*a).map(|(c, _)| c))
                .filter(|c| *c != code)
                .collect();
            if !set.is_empty() {
                out.insert(code, set);
            }
        }
        out
    }

    pub fn identity_for(
        system_export: &str,
        person_id: i64,
        source_value: Option<&str>,
    ) -> Identity {
        match source_value {
            Some(v) => Identity::new(PATIENT_ID_SYSTEM, v),
            None => Identity::new(&format!("omop:{system_export}"), &person_id.to_string()),
        }
    }

    fn subject(&self, ctx: &Ctx, row: &Row) -> Result<i64, Reject> {
        let raw = row.req("person_id")?;
        let pid = parse_id("person_id", raw)?;
        match self.persons.get(&pid) {
            Some(ident) => ctx.require_known("person_id", ident),
            None => Err(Reject::new(
                "person_id",
                "unknown_patient",
                raw,
                "a person_id present in this export's person table",
            )),
        }
    }

    fn date(&self, ctx: &Ctx, row: &Row, dt: &str, d: &str) -> Result<Option<i64>, Reject> {
        Ok(self.stamp(ctx, row, dt, d)?.map(|s| s.at))
    }

    /// An event's start with its precision: the datetime column when given, else the date. A
    /// datetime at exactly local midnight is what ETLs write when only the date was known, so it
    /// is known, like the date, at the end of that day.
    fn stamp(&self, ctx: &Ctx, row: &Row, dt: &str, d: &str) -> Result<Option<Stamp>, Reject> {
        let Some(v) = row.get(dt) else {
            return match row.get(d) {
                Some(v) => ctx.stamp(d, v, false).map(Some),
                None => Ok(None),
            };
        };
        let s = ctx.stamp(dt, v, false)?;
        match v.trim().get(10..) {
            Some(" 00:00:00" | "T00:00:00" | " 00:00:00.000" | "T00:00:00Z") => {
                let day = ctx.stamp(dt, &v.trim()[..10], false)?;
                Ok(Some(Stamp {
                    at: s.at,
                    known: s.at.max(day.known),
                }))
            }
            _ => Ok(Some(s)),
        }
    }
}

/// A source value whose vocabulary the export does not give: ICD under the input's policy
/// (diagnosis tables only), else `SOURCE//<value>`. Counted either way it is interpreted.
fn bare_source(ctx: &Ctx, table: &str, v: &str, c: &mut Chunk) -> String {
    let bare = || format!("SOURCE//{v}");
    let Some(policy) = ctx.policy.source_vocabulary else {
        return bare();
    };
    if table != "condition_occurrence" {
        return bare();
    }
    match policy.vocabulary_of(v) {
        Some(vocab) => match normalize(vocab, v) {
            Ok(code) => {
                c.interpreted(match vocab {
                    "ICD9CM" => "source_value_as_icd9cm",
                    _ => "source_value_as_icd10cm",
                });
                code
            }
            Err(_) => {
                c.interpreted("source_value_not_icd_shaped");
                bare()
            }
        },
        None => {
            c.interpreted("source_value_icd_version_ambiguous");
            bare()
        }
    }
}

/// A CDM table's primary key column (looked up per row: no allocation).
fn id_column(table: &str) -> Option<&'static str> {
    Some(match table {
        "person" => "person_id",
        "visit_occurrence" => "visit_occurrence_id",
        "condition_occurrence" => "condition_occurrence_id",
        "measurement" => "measurement_id",
        "observation" => "observation_id",
        "drug_exposure" => "drug_exposure_id",
        "procedure_occurrence" => "procedure_occurrence_id",
        _ => return None,
    })
}

fn base(ctx: &Ctx, row: &Row, table: &str, sid: i64) -> Event {
    Event {
        subject_id: sid,
        source: crate::schema::source_name("omop", table),
        provenance: ctx.provenance(row.line),
        // Each CDM table's primary key is `<table>_id` (`person_id`, `measurement_id`,
        // `condition_occurrence_id`...); `death` has none.
        source_record_id: id_column(table).and_then(|c| row.get(c)).map(String::from),
        ..Default::default()
    }
}

/// Convert one person row; registers the identity.
pub fn person(o: &OmopContext, ctx: &Ctx, row: &Row, c: &mut Chunk) {
    let r = (|| {
        let pid = parse_id("person_id", row.req("person_id")?)?;
        let ident = OmopContext::identity_for(&o.export, pid, row.get("person_source_value"));
        let year = parse_id("year_of_birth", row.req("year_of_birth")?)?;
        let month = row
            .get("month_of_birth")
            .map(|m| parse_id("month_of_birth", m))
            .transpose()?
            .unwrap_or(1);
        let day = row
            .get("day_of_birth")
            .map(|m| parse_id("day_of_birth", m))
            .transpose()?
            .unwrap_or(1);
        let birth = match row.get("birth_datetime") {
            Some(b) => ctx.time("birth_datetime", b, false)?,
            None => ctx.time(
                "year_of_birth",
                &format!("{year:04}-{month:02}-{day:02}"),
                false,
            )?,
        };
        let sid = ident.subject_id;
        let mut out = Vec::new();
        let mut e = base(ctx, row, "person", sid);
        e.time = Some(birth);
        e.code = "MEDS_BIRTH".into();
        out.push(e);
        let gid = parse_id("gender_concept_id", row.req("gender_concept_id")?)?;
        let g = match gid {
            8507 | 8532 => gid.to_string(),
            _ => row
                .get("gender_source_value")
                .unwrap_or("unknown")
                .to_string(),
        };
        let mut e = base(ctx, row, "person", sid);
        e.code = gender_code(&g);
        out.push(e);
        let race = row
            .get("race_concept_id")
            .and_then(|r| r.parse::<i64>().ok())
            .and_then(|id| o.concepts.get(&id).map(|c| c.name.clone()))
            .or_else(|| row.get("race_source_value").map(String::from));
        if let Some(r) = race {
            let mut e = base(ctx, row, "person", sid);
            e.code = format!("RACE//{}", r.to_ascii_lowercase());
            out.push(e);
        }
        c.persons.push(o.facts(row, &ident, year, month, day));
        c.identities.push(ident);
        Ok::<_, Reject>(out)
    })();
    match r {
        Ok(ev) => c.accept(ev),
        Err(rej) => c.reject(ctx.file, row.line, &row.raw(), rej),
    }
}

/// Convert one row of a non-person table.
pub fn convert(o: &OmopContext, table: &str, ctx: &Ctx, row: &Row, c: &mut Chunk) {
    let r = (|| {
        let sid = o.subject(ctx, row)?;
        match table {
            "visit_occurrence" => {
                let mut e = base(ctx, row, table, sid);
                e.set_time(
                    o.stamp(ctx, row, "visit_start_datetime", "visit_start_date")?
                        .ok_or_else(|| Reject::missing("visit_start_date"))?,
                );
                e.end_time = o.date(ctx, row, "visit_end_datetime", "visit_end_date")?;
                e.code = encounter_code(row.req("visit_concept_id")?);
                e.visit_id = row.get("visit_occurrence_id").map(String::from);
                Ok(vec![e])
            }
            "death" => {
                let mut e = base(ctx, row, table, sid);
                e.set_time(
                    o.stamp(ctx, row, "death_datetime", "death_date")?
                        .ok_or_else(|| Reject::missing("death_date"))?,
                );
                e.code = "MEDS_DEATH".into();
                Ok(vec![e])
            }
            _ => {
                let spec = EVENT_TABLES
                    .iter()
                    .find(|s| s.name == table)
                    .expect("caller checks the table");
                let mut e = base(ctx, row, table, sid);
                e.set_time(
                    o.stamp(ctx, row, spec.start_datetime, spec.start_date)?
                        .ok_or_else(|| Reject::missing(spec.start_date))?,
                );
                if let (Some(dt), Some(d)) = (spec.end_datetime, spec.end_date) {
                    e.end_time = o.date(ctx, row, dt, d)?;
                }
                let concept = parse_id(spec.concept, row.req(spec.concept)?)?;
                let source_concept = row
                    .get(spec.source_concept)
                    .map(|s| parse_id(spec.source_concept, s))
                    .transpose()?
                    .unwrap_or(0);
                // The source concept, when the export's concept table has it. A local one
                // (a vocabulary of the export's own, e.g. `mimiciv_cond_icd`) does not say
                // which ICD its code is: under a policy the source value is read instead.
                let described = o
                    .concept_code(source_concept)
                    .map(|(c, _)| c)
                    .filter(|c| !c.starts_with("OMOP//"));
                let recognised = o
                    .concepts
                    .get(&source_concept)
                    .is_some_and(|k| vocabularies().omop.contains_key(&k.vocabulary));
                let source = match described {
                    Some(d) if recognised || ctx.policy.source_vocabulary.is_none() => Some(d),
                    d => row
                        .get(spec.source_value)
                        .map(|v| bare_source(ctx, table, v, c))
                        .or(d),
                };
                let (code, desc) = match o.concept_code(concept) {
                    Some(x) => x,
                    None => match &source {
                        Some(s) => (s.clone(), None),
                        None => {
                            return Err(Reject::new(
                                spec.concept,
                                "missing_field",
                                "0",
                                "a standard concept or a source value",
                            ));
                        }
                    },
                };
                if let Some(d) = desc {
                    c.describe(&code, &d);
                }
                e.code = code;
                e.source_code = source.filter(|s| *s != e.code);
                e.visit_id = row.get("visit_occurrence_id").map(String::from);
                e.coded_at_discharge = table == "condition_occurrence" && e.visit_id.is_some();
                if table == "measurement" || table == "observation" {
                    if let Some(v) = row.get("value_as_number") {
                        let x = parse_number("value_as_number", v)?;
                        let unit = row
                            .get("unit_concept_id")
                            .and_then(|u| u.parse::<i64>().ok())
                            .filter(|u| *u != 0)
                            .and_then(|u| o.concepts.get(&u).map(|c| c.code.clone()))
                            .or_else(|| row.get("unit_source_value").map(String::from));
                        return Ok(vec![measurement(e, "value_as_number", x, unit.as_deref())?]);
                    }
                    if let Some(v) = row.get("value_as_string") {
                        e.text_value = Some(v.to_string());
                    } else if let Some(id) = row
                        .get("value_as_concept_id")
                        .and_then(|v| v.parse::<i64>().ok())
                        && id != 0
                    {
                        e.text_value = Some(
                            o.concepts
                                .get(&id)
                                .map(|c| c.name.clone())
                                .unwrap_or_else(|| format!("OMOP//{id}")),
                        );
                    }
                }
                Ok(vec![e])
            }
        }
    })();
    match r {
        Ok(ev) => c.accept(ev),
        Err(rej) => c.reject(ctx.file, row.line, &row.raw(), rej),
    }
}
