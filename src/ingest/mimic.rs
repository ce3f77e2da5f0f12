//! MIMIC-IV hosp reader (`*.csv.gz`): patients, admissions, diagnoses_icd (+ d_icd_diagnoses for
//! descriptions), labevents (+ d_labitems), prescriptions, procedures_icd. Dates in MIMIC are
//! shifted into the future on purpose, so the future-event check does not apply here.
//! Diagnoses carry no time of their own: they are dated at the admission's discharge, which is
//! when they are coded, so a prediction made during the admission cannot see them.
//! Birth: MIMIC gives only `anchor_age` at `anchor_year`; MEDS_BIRTH is 1 January of
//! `anchor_year - anchor_age`, the convention MEDS_transforms' MIMIC ETL uses.

use super::tabular::Row;
use super::{Chunk, Ctx, Identity, Reject, measurement, parse_number, parse_whole};
use crate::schema::Event;
use crate::schema::codes::{encounter_code, gender_code, normalize, vocabularies};
use std::collections::HashMap;

pub const SYSTEM: &str = "mimic-subject";

/// Tables read, in order (patients first), with required columns.
pub const TABLES: [(&str, &[&str]); 6] = [
    (
        "patients",
        &["subject_id", "gender", "anchor_age", "anchor_year"],
    ),
    (
        "admissions",
        &["subject_id", "hadm_id", "admittime", "dischtime"],
    ),
    (
        "diagnoses_icd",
        &["subject_id", "hadm_id", "icd_code", "icd_version"],
    ),
    ("labevents", &["subject_id", "itemid", "charttime"]),
    ("prescriptions", &["subject_id", "starttime", "drug"]),
    (
        "procedures_icd",
        &["subject_id", "chartdate", "icd_code", "icd_version"],
    ),
];

/// Lookups shared by the tables of one MIMIC export.
#[derive(Default)]
pub struct MimicContext {
    /// hadm_id -> (admittime, dischtime) as given
    pub admissions: HashMap<String, (i64, i64)>,
    /// itemid -> (label, fluid)
    pub labitems: HashMap<String, String>,
}

fn base(ctx: &Ctx, row: &Row, table: &str, sid: i64) -> Event {
    event_of(ctx, row, "mimic", table, sid)
}

/// The column holding a row's own id: MIMIC-III's `ROW_ID` on every table; in MIMIC-IV, the
/// tables that have one (a diagnosis row has none of its own).
fn record_id_column(format: &str, table: &str) -> Option<&'static str> {
    match (format, table) {
        ("mimic3", _) => Some("row_id"),
        (_, "patients") => Some("subject_id"),
        (_, "admissions") => Some("hadm_id"),
        (_, "labevents") => Some("labevent_id"),
        (_, "prescriptions") => Some("pharmacy_id"),
        _ => None,
    }
}

/// An event of `format:table` (MIMIC-IV `mimic`, MIMIC-III `mimic3`) for this row.
pub(super) fn event_of(ctx: &Ctx, row: &Row, format: &str, table: &str, sid: i64) -> Event {
    Event {
        subject_id: sid,
        source: crate::schema::source_name(format, table),
        provenance: ctx.provenance(row.line),
        source_record_id: record_id_column(format, table)
            .and_then(|c| row.get(c))
            .map(String::from),
        ..Default::default()
    }
}

/// Birth, sex and death of a patients row, the same in both MIMIC releases (`dod_field` names
/// the column in messages); a death before the birth is rejected.
pub(super) fn person_events(
    ctx: &Ctx,
    row: &Row,
    mk: &dyn Fn() -> Event,
    birth: i64,
    dod_field: &str,
) -> Result<Vec<Event>, Reject> {
    let mut out = Vec::new();
    let mut e = mk();
    e.time = Some(birth);
    e.code = "MEDS_BIRTH".into();
    out.push(e);
    let mut g = mk();
    g.code = gender_code(row.req("gender")?);
    out.push(g);
    if let Some(dod) = row.get("dod") {
        let d = ctx.stamp(dod_field, dod, true)?;
        if d.at < birth {
            return Err(Reject::new(
                dod_field,
                "birth_after_death",
                dod,
                "a death on or after the birth",
            ));
        }
        let mut e = mk();
        e.set_time(d);
        e.code = "MEDS_DEATH".into();
        out.push(e);
    }
    Ok(out)
}

/// An admission (a stay from admission to discharge) and the race its row gives.
pub(super) fn admission_events(
    ctx: &Ctx,
    row: &Row,
    mk: &dyn Fn() -> Event,
    race_col: &str,
) -> Result<Vec<Event>, Reject> {
    let a = ctx.stamp("admittime", row.req("admittime")?, true)?;
    let d = ctx.time("dischtime", row.req("dischtime")?, true)?;
    let mut e = mk();
    e.set_time(a);
    e.end_time = Some(d);
    e.code = encounter_code("inpatient");
    e.visit_id = row.get("hadm_id").map(String::from);
    let mut out = vec![e];
    if let Some(race) = row.get(race_col) {
        let mut r = mk();
        r.code = format!("RACE//{}", race.to_ascii_lowercase());
        out.push(r);
    }
    Ok(out)
}

/// A lab result: LOINC when known (else `<local>//<itemid>`, which stays the source code),
/// the number in canonical units, or the text as written.
pub(super) fn lab_event(
    ctx: &Ctx,
    row: &Row,
    mut e: Event,
    loinc: Option<&str>,
    local: &str,
) -> Result<Event, Reject> {
    let item = row.req("itemid")?;
    e.set_time(ctx.stamp("charttime", row.req("charttime")?, true)?);
    e.code = match loinc {
        Some(l) => format!("LOINC//{l}"),
        None => format!("{local}//{item}"),
    };
    e.source_code = Some(format!("{local}//{item}"));
    e.visit_id = row.get("hadm_id").map(String::from);
    match row.get("valuenum") {
        Some(v) => {
            let x = parse_number("valuenum", v)?;
            measurement(e, "valuenum", x, row.get("valueuom"))
        }
        None => {
            e.text_value = row.get("value").map(String::from);
            e.unit = row.get("valueuom").map(String::from);
            Ok(e)
        }
    }
}

/// A prescription: NDC when it is a real one, else the drug name; start and stop columns
/// differ between releases.
pub(super) fn prescription_event(
    ctx: &Ctx,
    row: &Row,
    mut e: Event,
    start_col: &str,
    stop_col: &str,
) -> Result<Event, Reject> {
    e.set_time(ctx.stamp(start_col, row.req(start_col)?, true)?);
    e.end_time = ctx.opt_time(stop_col, row.get(stop_col), true)?;
    let drug = row.req("drug")?;
    let ndc = row
        .get("ndc")
        .filter(|n| !n.trim_start_matches('0').is_empty());
    e.code = match ndc.map(|n| normalize("NDC", n)) {
        Some(Ok(c)) => c,
        _ => format!("MIMIC_DRUG//{}", drug.to_ascii_uppercase()),
    };
    e.text_value = Some(drug.to_string());
    e.visit_id = row.get("hadm_id").map(String::from);
    Ok(e)
}

fn subject(ctx: &Ctx, row: &Row) -> Result<i64, Reject> {
    let s = row.req("subject_id")?;
    ctx.require_known("subject_id", &Identity::new(SYSTEM, s))
}

fn icd(row: &Row, diagnosis: bool) -> Result<String, Reject> {
    let code = row.req("icd_code")?;
    let vocab = match (row.req("icd_version")?, diagnosis) {
        ("9", true) => "ICD9CM",
        ("10", true) => "ICD10CM",
        ("9", false) => "ICD9PROC",
        ("10", false) => "ICD10PCS",
        (v, _) => return Err(Reject::new("icd_version", "bad_code", v, "9 or 10")),
    };
    normalize(vocab, code).map_err(|e| Reject::new("icd_code", "bad_code", code, e.to_string()))
}

/// Parse an admission row into the lookup (done before the other tables).
pub fn admission_times(ctx: &Ctx, row: &Row) -> Option<(String, (i64, i64))> {
    let h = row.get("hadm_id")?;
    let a = ctx.time("admittime", row.get("admittime")?, true).ok()?;
    let d = ctx.time("dischtime", row.get("dischtime")?, true).ok()?;
    Some((h.to_string(), (a, d)))
}

pub fn convert(m: &MimicContext, table: &str, ctx: &Ctx, row: &Row, c: &mut Chunk) {
    let r = (|| match table {
        "patients" => {
            let s = row.req("subject_id")?;
            let ident = Identity::new(SYSTEM, s);
            let sid = ident.subject_id;
            // Whole years: MIMIC top-codes ages at 91 and shifts years into 2100-2200.
            let age = parse_whole("anchor_age", row.req("anchor_age")?, 0, 150)?;
            let year = parse_whole("anchor_year", row.req("anchor_year")?, 1000, 9999)?;
            let birth = ctx.time("anchor_year", &format!("{:04}-01-01", year - age), true)?;
            let out = person_events(ctx, row, &|| base(ctx, row, table, sid), birth, "dod")?;
            c.identities.push(ident);
            Ok(out)
        }
        "admissions" => {
            let sid = subject(ctx, row)?;
            admission_events(ctx, row, &|| base(ctx, row, table, sid), "race")
        }
        "diagnoses_icd" => {
            let sid = subject(ctx, row)?;
            let h = row.req("hadm_id")?;
            let (_, disch) = m.admissions.get(h).copied().ok_or_else(|| {
                Reject::new(
                    "hadm_id",
                    "unresolved_reference",
                    h,
                    "an admission present in admissions.csv",
                )
            })?;
            let mut e = base(ctx, row, table, sid);
            e.time = Some(disch);
            e.code = icd(row, true)?;
            e.visit_id = Some(h.to_string());
            e.coded_at_discharge = true;
            Ok(vec![e])
        }
        "procedures_icd" => {
            let sid = subject(ctx, row)?;
            let mut e = base(ctx, row, table, sid);
            // A date: known at the end of that day, not at the admission it may share.
            e.set_time(ctx.stamp("chartdate", row.req("chartdate")?, true)?);
            e.code = icd(row, false)?;
            e.visit_id = row.get("hadm_id").map(String::from);
            Ok(vec![e])
        }
        "labevents" => {
            let sid = subject(ctx, row)?;
            let item = row.req("itemid")?;
            let e = base(ctx, row, table, sid);
            let loinc = vocabularies().mimic_lab_loinc.get(item).map(String::as_str);
            Ok(vec![lab_event(ctx, row, e, loinc, "MIMIC_LAB")?])
        }
        "prescriptions" => {
            let sid = subject(ctx, row)?;
            let e = base(ctx, row, table, sid);
            Ok(vec![prescription_event(
                ctx,
                row,
                e,
                "starttime",
                "stoptime",
            )?])
        }
        _ => unreachable!("caller only passes known tables"),
    })();
    match r {
        Ok(ev) => c.accept(ev),
        Err(rej) => c.reject(ctx.file, row.line, &row.raw(), rej),
    }
}
