//! Synthea CSV export reader: patients, encounters, conditions, observations, medications,
//! procedures (other tables are counted as skipped). Patient `Id` is the identity shared with
//! Synthea's FHIR output (same UUID), so both exports of one person become one subject.
//! Codes: conditions and procedures SNOMED, observations LOINC, medications RxNorm (Synthea v3
//! may add a SYSTEM column, which is honoured when present).
//!
//! Older releases (2017-2019) wrote other headers, recognised per table by the header itself:
//! encounters as `ID,DATE,PATIENT,CODE,DESCRIPTION,REASONCODE,REASONDESCRIPTION` (no STOP and no
//! ENCOUNTERCLASS: the class comes from the encounter's SNOMED code through
//! `schemas/vocabularies.toml` `[synthea_encounter_snomed]`, and an encounter code not listed
//! there is `ENCOUNTER//UNKNOWN`, counted, with the code kept as `source_code`), procedures with
//! `DATE` instead of `START`, observations without `TYPE`. Nothing else changed in the tables
//! read.

use super::fhir::PATIENT_ID_SYSTEM;
use super::tabular::Row;
use super::{Chunk, Ctx, Identity, PersonRecord, Reject, measurement, parse_number};
use crate::schema::Event;
use crate::schema::codes::{encounter_code, gender_code, normalize};
use crate::schema::identity::IdField;

/// The tables read, with their required columns (lower case) in the current schema.
pub const TABLES: [(&str, &[&str]); 6] = [
    ("patients", &["id", "birthdate", "gender"]),
    ("encounters", &["id", "start", "patient", "encounterclass"]),
    ("conditions", &["start", "patient", "code"]),
    ("observations", &["date", "patient", "code", "value"]),
    ("medications", &["start", "patient", "code"]),
    ("procedures", &["patient", "code"]),
];

/// Encounters in the 2017-2018 schema: a date and a SNOMED code, no class.
const LEGACY_ENCOUNTERS: &[&str] = &["id", "date", "patient", "code"];

/// The required columns of `table`, for the schema its header is written in.
pub fn required(table: &str, header: &super::tabular::Header) -> Vec<&'static str> {
    if table == "encounters" && !header.has("start") && header.has("date") {
        return LEGACY_ENCOUNTERS.to_vec();
    }
    TABLES
        .iter()
        .find(|t| t.0 == table)
        .map(|t| t.1.to_vec())
        .unwrap_or_default()
}

fn base(ctx: &Ctx, row: &Row, table: &str, sid: i64) -> Event {
    Event {
        subject_id: sid,
        source: crate::schema::source_name("synthea", table),
        provenance: ctx.provenance(row.line),
        // Patients and encounters carry their own `Id`; the other tables' rows have none.
        source_record_id: match table {
            "patients" | "encounters" => row.get("id").map(String::from),
            _ => None,
        },
        ..Default::default()
    }
}

fn subject(ctx: &Ctx, row: &Row) -> Result<i64, Reject> {
    let p = row.req("patient")?;
    ctx.require_known("PATIENT", &Identity::new(PATIENT_ID_SYSTEM, p))
}

fn vocab_of(row: &Row, default: &'static str) -> &'static str {
    match row.get("system").map(|s| s.to_ascii_lowercase()) {
        Some(s) if s.contains("snomed") => "SNOMED",
        Some(s) if s.contains("loinc") => "LOINC",
        Some(s) if s.contains("rxnorm") => "RXNORM",
        Some(s) if s.contains("icd-10") || s.contains("icd10") => "ICD10CM",
        _ => default,
    }
}

fn code(row: &Row, default: &'static str) -> Result<String, Reject> {
    let raw = row.req("code")?;
    normalize(vocab_of(row, default), raw)
        .map_err(|e| Reject::new("CODE", "bad_code", raw, e.to_string()))
}

fn describe(c: &mut Chunk, row: &Row, code: &str) {
    if let Some(d) = row.get("description") {
        c.describe(code, d);
    }
}

/// Convert one row of `table`.
pub fn convert(table: &str, ctx: &Ctx, row: &Row, c: &mut Chunk) {
    let r = match table {
        "patients" => patient(ctx, row, c),
        "encounters" => (|| {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            let (f, t) = match row.get("start") {
                Some(s) => ("START", s),
                None => ("DATE", row.req("date")?),
            };
            e.set_time(ctx.stamp(f, t, false)?);
            e.end_time = ctx.opt_time("STOP", row.get("stop"), false)?;
            e.code = match row.get("encounterclass") {
                Some(class) => encounter_code(class),
                None if row.header.has("encounterclass") => {
                    return Err(Reject::missing("ENCOUNTERCLASS"));
                }
                None => legacy_encounter_code(row, c)?,
            };
            e.visit_id = row.get("id").map(String::from);
            if e.code == "ENCOUNTER//UNKNOWN" {
                e.source_code = Some(code(row, "SNOMED")?);
            }
            Ok(vec![e])
        })(),
        "conditions" => (|| {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            e.set_time(ctx.stamp("START", row.req("start")?, false)?);
            e.end_time = ctx.opt_time("STOP", row.get("stop"), false)?;
            e.code = code(row, "SNOMED")?;
            describe(c, row, &e.code);
            e.visit_id = row.get("encounter").map(String::from);
            e.coded_at_discharge = e.visit_id.is_some();
            Ok(vec![e])
        })(),
        "observations" => (|| {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            e.set_time(ctx.stamp("DATE", row.req("date")?, false)?);
            e.code = code(row, "LOINC")?;
            describe(c, row, &e.code);
            e.visit_id = row.get("encounter").map(String::from);
            let value = row.req("value")?;
            let numeric = match row.get("type") {
                Some("numeric") => true,
                Some(_) => false,
                None => value.parse::<f64>().is_ok(),
            };
            if numeric {
                let x = parse_number("VALUE", value)?;
                Ok(vec![measurement(e, "VALUE", x, row.get("units"))?])
            } else {
                e.text_value = Some(value.to_string());
                e.unit = row.get("units").map(String::from);
                Ok(vec![e])
            }
        })(),
        "medications" => (|| {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            e.set_time(ctx.stamp("START", row.req("start")?, false)?);
            e.end_time = ctx.opt_time("STOP", row.get("stop"), false)?;
            e.code = code(row, "RXNORM")?;
            describe(c, row, &e.code);
            e.visit_id = row.get("encounter").map(String::from);
            Ok(vec![e])
        })(),
        "procedures" => (|| {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            let (f, t) = match row.get("start") {
                Some(s) => ("START", s),
                None => ("DATE", row.req("date")?),
            };
            e.set_time(ctx.stamp(f, t, false)?);
            e.end_time = ctx.opt_time("STOP", row.get("stop"), false)?;
            e.code = code(row, "SNOMED")?;
            describe(c, row, &e.code);
            e.visit_id = row.get("encounter").map(String::from);
            Ok(vec![e])
        })(),
        _ => {
            c.skip(&format!("synthea table {table} not used"));
            return;
        }
    };
    match r {
        Ok(ev) => c.accept(ev),
        Err(rej) => c.reject(ctx.file, row.line, &row.raw(), rej),
    }
}

/// The encounter class of a 2017-2018 encounter row, from its SNOMED code.
fn legacy_encounter_code(row: &Row, c: &mut Chunk) -> Result<String, Reject> {
    let raw = row.req("code")?;
    let snomed = normalize("SNOMED", raw)
        .map_err(|e| Reject::new("CODE", "bad_code", raw, e.to_string()))?;
    let key = snomed.trim_start_matches("SNOMED//");
    Ok(
        match crate::schema::codes::vocabularies()
            .synthea_encounter_snomed
            .get(key)
        {
            Some(class) => encounter_code(class),
            None => {
                c.interpreted("encounter_class_unknown");
                "ENCOUNTER//UNKNOWN".into()
            }
        },
    )
}

fn patient(ctx: &Ctx, row: &Row, c: &mut Chunk) -> Result<Vec<Event>, Reject> {
    let id = row.req("id")?;
    let ident = Identity::new(PATIENT_ID_SYSTEM, id);
    let birth = ctx.time("BIRTHDATE", row.req("birthdate")?, false)?;
    let death = ctx.opt_time("DEATHDATE", row.get("deathdate"), false)?;
    if let Some(d) = death
        && d < birth
    {
        return Err(Reject::new(
            "DEATHDATE",
            "birth_after_death",
            row.get("deathdate").unwrap_or(""),
            "a death on or after BIRTHDATE",
        ));
    }
    let sid = ident.subject_id;
    let mut out = Vec::new();
    let mut e = base(ctx, row, "patients", sid);
    e.time = Some(birth);
    e.code = "MEDS_BIRTH".into();
    out.push(e);
    if let Some(d) = death {
        let mut e = base(ctx, row, "patients", sid);
        e.time = Some(d);
        e.code = "MEDS_DEATH".into();
        out.push(e);
    }
    let mut g = base(ctx, row, "patients", sid);
    g.code = gender_code(row.req("gender")?);
    out.push(g);
    for (col, kind) in [("race", "RACE"), ("ethnicity", "ETHNICITY")] {
        if let Some(v) = row.get(col) {
            let mut e = base(ctx, row, "patients", sid);
            e.code = format!("{kind}//{}", v.to_ascii_lowercase());
            out.push(e);
        }
    }
    c.persons.push(facts(row, &ident));
    c.identities.push(ident);
    Ok(out)
}

/// The identity facts of a `patients.csv` row (SSN, DRIVERS, PASSPORT, names, address, ZIP).
fn facts(row: &Row, ident: &Identity) -> PersonRecord {
    let mut p = PersonRecord::new(ident.clone());
    for (col, f) in [
        ("first", IdField::GivenName),
        ("last", IdField::FamilyName),
        ("birthdate", IdField::BirthDate),
        ("gender", IdField::Sex),
        ("city", IdField::Locality),
        ("state", IdField::State),
        ("zip", IdField::Postcode),
        ("ssn", IdField::NationalId),
    ] {
        if let Some(v) = row.get(col) {
            p.set(f, v);
        }
    }
    if let Some(a) = row.get("address") {
        p.set_street_line(a);
    }
    for (col, system) in [
        ("ssn", "http://hl7.org/fhir/sid/us-ssn"),
        ("drivers", "urn:synthea:drivers"),
        ("passport", "urn:synthea:passport"),
    ] {
        if let Some(v) = row.get(col) {
            p.add_identifier(system, v);
        }
    }
    p
}
