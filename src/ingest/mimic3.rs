//! MIMIC-III 1.4 reader (`PATIENTS.csv[.gz]`... upper-case tables and columns, matched
//! case-insensitively): PATIENTS (DOB, DOD), ADMISSIONS, DIAGNOSES_ICD + D_ICD_DIAGNOSES,
//! PROCEDURES_ICD, LABEVENTS + D_LABITEMS, PRESCRIPTIONS. Other tables (CHARTEVENTS, NOTEEVENTS,
//! ICUSTAYS...) are listed as not read. Like MIMIC-IV, dates are shifted into 2100-2200 on
//! purpose, so the future-event check does not apply.
//!
//! What differs from MIMIC-IV, and how it is met:
//! - ICD-9 only, written without dots (`41071`): ICD-9-CM diagnoses, ICD-9 procedures.
//! - Diagnoses *and* procedures carry no time: both are coded for the admission and become
//!   events at its discharge, so a prediction made during the stay cannot see them.
//! - Birth is `DOB`. Patients older than 89 at any time had `DOB` set to exactly 300 years
//!   before their first admission (MIMIC-III documentation, PATIENTS table); their true age is
//!   unknown beyond "over 89", with a median of 91.4 years. Such a birth (first admission -
//!   DOB of 150 years or more) is placed 91.4 years before the first admission and counted in
//!   the report as `age_over_89_top_coded`, never used as a 300-year age.
//! - Labs: D_LABITEMS gives a LOINC code for most items; where it does not, the itemid is
//!   mapped as MIMIC-IV's (same item ids), else kept as `MIMIC3_LAB//<itemid>`.
//!
//! Identity: `SUBJECT_ID` in its own namespace (`mimic3-subject`): MIMIC-III and MIMIC-IV
//! number their patients independently.

use super::detect::{InputSet, find_table};
use super::tabular::{Row, load_lookup, read_header};
use super::{Chunk, Ctx, Identity, IngestError, Reject};
use crate::schema::Event;
use crate::schema::codes::{normalize, vocabularies};
use std::collections::HashMap;

pub const SYSTEM: &str = "mimic3-subject";

/// Tables read, in order (patients first).
pub const TABLES: [&str; 6] = [
    "patients",
    "admissions",
    "diagnoses_icd",
    "procedures_icd",
    "labevents",
    "prescriptions",
];

/// Required columns of a table (lower case).
pub fn required(table: &str) -> &'static [&'static str] {
    match table {
        "patients" => &["subject_id", "gender", "dob"],
        "admissions" => &["subject_id", "hadm_id", "admittime", "dischtime"],
        "diagnoses_icd" | "procedures_icd" => &["subject_id", "hadm_id", "icd9_code"],
        "labevents" => &["subject_id", "itemid", "charttime"],
        "prescriptions" => &["subject_id", "startdate", "drug"],
        _ => &[],
    }
}

/// The documented median age of the patients whose age was top-coded (over 89).
const TOP_CODED_MEDIAN_AGE_YEARS: f64 = 91.4;
/// A first admission this many years or more after DOB is a top-coded (shifted) birth.
const TOP_CODED_GAP_YEARS: f64 = 150.0;
const MICROS_PER_YEAR: f64 = 365.25 * 86_400.0 * 1e6;

/// Lookups shared by the tables of one MIMIC-III export.
#[derive(Default)]
pub struct Mimic3Context {
    /// HADM_ID -> (ADMITTIME, DISCHTIME)
    pub admissions: HashMap<String, (i64, i64)>,
    /// SUBJECT_ID -> first ADMITTIME
    pub first_admission: HashMap<String, i64>,
    /// ITEMID -> LOINC code (D_LABITEMS.LOINC_CODE)
    pub lab_loinc: HashMap<String, String>,
}

impl Mimic3Context {
    /// Load ADMISSIONS, D_ICD_DIAGNOSES and D_LABITEMS; returns the context and the code
    /// descriptions the dictionaries give.
    pub fn load(
        set: &InputSet,
        ctx: &Ctx,
    ) -> Result<(Mimic3Context, Vec<(String, String)>), IngestError> {
        let mut m = Mimic3Context::default();
        let mut descriptions = Vec::new();
        if let Some(af) = set.files.iter().find(|f| f.table == "admissions") {
            let cols = ["subject_id", "hadm_id", "admittime", "dischtime"];
            for r in load_lookup(&af.path, &cols)? {
                if let (Some(s), Some(h), Some(a), Some(d)) = (&r[0], &r[1], &r[2], &r[3])
                    && let (Ok(a), Ok(d)) = (
                        ctx.time("admittime", a, true),
                        ctx.time("dischtime", d, true),
                    )
                {
                    m.admissions.insert(h.clone(), (a, d));
                    let first = m.first_admission.entry(s.clone()).or_insert(a);
                    *first = (*first).min(a);
                }
            }
        }
        if let Some(p) = find_table(&set.root, "d_icd_diagnoses") {
            for r in load_lookup(&p, &["icd9_code", "long_title"])? {
                if let (Some(c), Some(t)) = (&r[0], &r[1])
                    && let Ok(code) = normalize("ICD9CM", c)
                {
                    descriptions.push((code, t.clone()));
                }
            }
        }
        if let Some(p) = find_table(&set.root, "d_labitems") {
            let has_loinc = read_header(&p)?.has("loinc_code");
            let cols: &[&str] = if has_loinc {
                &["itemid", "label", "fluid", "loinc_code"]
            } else {
                &["itemid", "label", "fluid"]
            };
            for r in load_lookup(&p, cols)? {
                let Some(item) = &r[0] else { continue };
                if let Some(label) = &r[1] {
                    let d = format!("{label} ({})", r[2].as_deref().unwrap_or("?"));
                    descriptions.push((format!("MIMIC3_LAB//{item}"), d));
                }
                if let Some(Some(l)) = r.get(3)
                    && normalize("LOINC", l).is_ok()
                {
                    m.lab_loinc.insert(item.clone(), l.clone());
                }
            }
        }
        Ok((m, descriptions))
    }

    fn discharge(&self, row: &Row) -> Result<(String, i64), Reject> {
        let h = row.req("hadm_id")?;
        let (_, disch) = self.admissions.get(h).copied().ok_or_else(|| {
            Reject::new(
                "HADM_ID",
                "unresolved_reference",
                h,
                "an admission present in ADMISSIONS",
            )
        })?;
        Ok((h.to_string(), disch))
    }
}

fn base(ctx: &Ctx, row: &Row, table: &str, sid: i64) -> Event {
    super::mimic::event_of(ctx, row, "mimic3", table, sid)
}

fn subject(ctx: &Ctx, row: &Row) -> Result<i64, Reject> {
    let s = row.req("subject_id")?;
    ctx.require_known("SUBJECT_ID", &Identity::new(SYSTEM, s))
}

fn icd9(row: &Row, vocab: &str) -> Result<String, Reject> {
    let code = row.req("icd9_code")?;
    normalize(vocab, code).map_err(|e| Reject::new("ICD9_CODE", "bad_code", code, e.to_string()))
}

pub fn convert(m: &Mimic3Context, table: &str, ctx: &Ctx, row: &Row, c: &mut Chunk) {
    let r = (|| match table {
        "patients" => {
            let s = row.req("subject_id")?;
            let ident = Identity::new(SYSTEM, s);
            let sid = ident.subject_id;
            // A top-coded DOB lies before any plausible date (1800s): parsed without the
            // plausibility window, which then applies to the birth actually used.
            let dob_raw = row.req("dob")?;
            let dob = ctx.time.parse(dob_raw).map_err(|exp| {
                Reject::new("DOB", "bad_date", dob_raw, format!("expected {exp}"))
            })?;
            let birth = match m.first_admission.get(s) {
                Some(&first) if (first - dob) as f64 >= TOP_CODED_GAP_YEARS * MICROS_PER_YEAR => {
                    c.interpreted("age_over_89_top_coded");
                    first - (TOP_CODED_MEDIAN_AGE_YEARS * MICROS_PER_YEAR) as i64
                }
                _ => ctx.time("DOB", dob_raw, true)?,
            };
            let out = super::mimic::person_events(
                ctx,
                row,
                &|| base(ctx, row, table, sid),
                birth,
                "DOD",
            )?;
            c.identities.push(ident);
            Ok(out)
        }
        "admissions" => {
            let sid = subject(ctx, row)?;
            super::mimic::admission_events(ctx, row, &|| base(ctx, row, table, sid), "ethnicity")
        }
        "diagnoses_icd" | "procedures_icd" => {
            let sid = subject(ctx, row)?;
            let (h, disch) = m.discharge(row)?;
            let mut e = base(ctx, row, table, sid);
            e.time = Some(disch);
            e.code = icd9(
                row,
                if table == "diagnoses_icd" {
                    "ICD9CM"
                } else {
                    "ICD9PROC"
                },
            )?;
            e.visit_id = Some(h);
            e.coded_at_discharge = true;
            Ok(vec![e])
        }
        "labevents" => {
            let sid = subject(ctx, row)?;
            let item = row.req("itemid")?;
            let e = base(ctx, row, table, sid);
            let loinc = m
                .lab_loinc
                .get(item)
                .or_else(|| vocabularies().mimic_lab_loinc.get(item))
                .map(String::as_str);
            Ok(vec![super::mimic::lab_event(
                ctx,
                row,
                e,
                loinc,
                "MIMIC3_LAB",
            )?])
        }
        "prescriptions" => {
            let sid = subject(ctx, row)?;
            let e = base(ctx, row, table, sid);
            Ok(vec![super::mimic::prescription_event(
                ctx,
                row,
                e,
                "startdate",
                "enddate",
            )?])
        }
        _ => unreachable!("caller only passes known tables"),
    })();
    match r {
        Ok(ev) => c.accept(ev),
        Err(rej) => c.reject(ctx.file, row.line, &row.raw(), rej),
    }
}
