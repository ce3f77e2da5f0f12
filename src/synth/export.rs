//! Writes simulated people into three exports of different systems, the way real care is
//! fragmented: a hospital's FHIR Bulk NDJSON export (local time offsets, SNOMED + ICD-10
//! codings), a clinic network's OMOP CDM CSV extract (some sites in mmol/L and mmol/mol, ICD-10
//! source values beside SNOMED concepts) and a Synthea-style CSV export. A person belongs to one,
//! two or three of them; each visit is recorded in one (sometimes copied into a second, exactly);
//! demographics go to all. Defects are injected as extra rows, each kind counted exactly.

use super::identity::{self, Identities, SiteRecord};
use super::sim::{Dx, Export, Meas, Person, Rx, Smoking, Visit};
use crate::rng::Rng;
use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Output files, in a fixed order: (relative path, CSV header or None for NDJSON).
pub const FILES: [(&str, Option<&str>); 17] = [
    ("hospital_fhir/Patient.ndjson", None),
    ("hospital_fhir/Encounter.ndjson", None),
    ("hospital_fhir/Condition.ndjson", None),
    ("hospital_fhir/Observation.ndjson", None),
    ("hospital_fhir/MedicationRequest.ndjson", None),
    (
        "clinic_omop/person.csv",
        Some(
            "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id,person_source_value,gender_source_value,race_source_value",
        ),
    ),
    (
        "clinic_omop/visit_occurrence.csv",
        Some(
            "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_start_datetime,visit_end_date,visit_end_datetime,visit_type_concept_id",
        ),
    ),
    (
        "clinic_omop/condition_occurrence.csv",
        Some(
            "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_start_datetime,condition_type_concept_id,visit_occurrence_id,condition_source_value,condition_source_concept_id",
        ),
    ),
    (
        "clinic_omop/measurement.csv",
        Some(
            "measurement_id,person_id,measurement_concept_id,measurement_date,measurement_datetime,measurement_type_concept_id,value_as_number,unit_concept_id,visit_occurrence_id,measurement_source_value,unit_source_value",
        ),
    ),
    (
        "clinic_omop/observation.csv",
        Some(
            "observation_id,person_id,observation_concept_id,observation_date,observation_datetime,observation_type_concept_id,value_as_string,visit_occurrence_id,observation_source_value",
        ),
    ),
    (
        "clinic_omop/drug_exposure.csv",
        Some(
            "drug_exposure_id,person_id,drug_concept_id,drug_exposure_start_date,drug_exposure_start_datetime,drug_type_concept_id,visit_occurrence_id,drug_source_value",
        ),
    ),
    (
        "clinic_omop/death.csv",
        Some("person_id,death_date,death_datetime,death_type_concept_id"),
    ),
    (
        "synthea_csv/patients.csv",
        Some("Id,BIRTHDATE,DEATHDATE,RACE,ETHNICITY,GENDER"),
    ),
    (
        "synthea_csv/encounters.csv",
        Some("Id,START,STOP,PATIENT,ENCOUNTERCLASS,CODE,DESCRIPTION"),
    ),
    (
        "synthea_csv/conditions.csv",
        Some("START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION"),
    ),
    (
        "synthea_csv/observations.csv",
        Some("DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE"),
    ),
    (
        "synthea_csv/medications.csv",
        Some("START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION"),
    ),
];

const F_PAT: usize = 0;
const F_ENC: usize = 1;
const F_COND: usize = 2;
const F_OBS: usize = 3;
const F_MED: usize = 4;
const O_PERSON: usize = 5;
const O_VISIT: usize = 6;
const O_COND: usize = 7;
const O_MEAS: usize = 8;
const O_OBS: usize = 9;
const O_DRUG: usize = 10;
const O_DEATH: usize = 11;
const S_PAT: usize = 12;
const S_ENC: usize = 13;
const S_COND: usize = 14;
const S_OBS: usize = 15;
const S_MED: usize = 16;

/// Per-person probabilities of writing one defective row of each kind (when the person is in
/// the export that carries that kind).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DefectRates {
    pub malformed_json: f64,
    pub unknown_unit: f64,
    pub unknown_patient: f64,
    pub future_event: f64,
    pub bad_date: f64,
    pub implausible_value: f64,
}

impl DefectRates {
    /// The same rate for every kind of defect.
    pub fn uniform(r: f64) -> DefectRates {
        DefectRates {
            malformed_json: r,
            unknown_unit: r,
            unknown_patient: r,
            future_event: r,
            bad_date: r,
            implausible_value: r,
        }
    }
}

impl Default for DefectRates {
    fn default() -> Self {
        DefectRates::uniform(0.001)
    }
}

/// Where each kind of defect goes, and the reason ingest must give it.
pub const DEFECT_FILES: [(&str, &str); 6] = [
    ("malformed_json", "hospital_fhir/Observation.ndjson"),
    ("unknown_unit", "hospital_fhir/Observation.ndjson"),
    ("unknown_patient", "hospital_fhir/Observation.ndjson"),
    ("future_event", "hospital_fhir/Condition.ndjson"),
    ("bad_date", "clinic_omop/measurement.csv"),
    ("implausible_value", "synthea_csv/observations.csv"),
];

/// What one batch of people produced.
#[derive(Default)]
pub struct Out {
    pub files: Vec<String>,
    pub rows: Vec<u64>,
    pub defects: BTreeMap<String, u64>,
    pub copies: u64,
    /// With per-site identities: `clinic_omop/location.csv` rows and `truth/identity.csv` rows.
    pub locations: String,
    pub identity_truth: String,
}

/// Files written only with per-site identities, with their headers.
pub const LOCATION_FILE: (&str, &str) = (
    "clinic_omop/location.csv",
    "location_id,address_1,address_2,city,state,zip",
);
pub const IDENTITY_TRUTH_FILE: (&str, &str) = ("truth/identity.csv", "system,value,person");

/// A file's header under an identity mode: per-site identities add the identity columns a
/// site keeps (OMOP `location_id`; Synthea's names, SSN and address).
pub fn header(rel: &str, header: Option<&'static str>, mode: Identities) -> Option<String> {
    if mode == Identities::Shared {
        return header.map(String::from);
    }
    match rel {
        "clinic_omop/person.csv" => header.map(|h| format!("{h},location_id")),
        "synthea_csv/patients.csv" => {
            header.map(|h| format!("{h},SSN,FIRST,LAST,ADDRESS,CITY,STATE,ZIP"))
        }
        _ => header.map(String::from),
    }
}

impl Out {
    pub fn new() -> Out {
        Out {
            files: vec![String::new(); FILES.len()],
            rows: vec![0; FILES.len()],
            ..Default::default()
        }
    }
    fn line(&mut self, f: usize) -> &mut String {
        self.rows[f] += 1;
        &mut self.files[f]
    }
}

fn meas_info(m: Meas) -> (&'static str, &'static str, &'static str, i64) {
    // (LOINC, description, unit, OMOP concept id)
    match m {
        Meas::Sbp => ("8480-6", "Systolic blood pressure", "mm[Hg]", 3004249),
        Meas::Dbp => ("8462-4", "Diastolic blood pressure", "mm[Hg]", 3012888),
        Meas::TotalChol => (
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "mg/dL",
            3027114,
        ),
        Meas::Hdl => ("2085-9", "HDL Cholesterol", "mg/dL", 3007070),
        Meas::Ldl => ("18262-6", "LDL Cholesterol", "mg/dL", 3028437),
        Meas::Trig => ("2571-8", "Triglycerides", "mg/dL", 3022192),
        Meas::Hba1c => (
            "4548-4",
            "Hemoglobin A1c/Hemoglobin.total in Blood",
            "%",
            3004410,
        ),
        Meas::Bmi => ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 3038553),
        Meas::Egfr => (
            "33914-3",
            "Glomerular filtration rate/1.73 sq M.predicted",
            "mL/min/{1.73_m2}",
            3049187,
        ),
    }
}

fn dx_info(d: Dx) -> (&'static str, &'static str, &'static str, i64, i64) {
    // (SNOMED, ICD-10-CM, description, OMOP concept, OMOP ICD-10 source concept)
    match d {
        Dx::Hypertension => (
            "59621000",
            "I10",
            "Essential hypertension",
            320128,
            35207668,
        ),
        Dx::Diabetes => (
            "44054006",
            "E11.9",
            "Type 2 diabetes mellitus",
            201826,
            35206882,
        ),
        Dx::AtrialFibrillation => (
            "49436004",
            "I48.91",
            "Atrial fibrillation",
            313217,
            45591467,
        ),
        Dx::Ckd => (
            "709044004",
            "N18.9",
            "Chronic kidney disease",
            46271022,
            35209340,
        ),
        Dx::Hyperlipidemia => ("55822004", "E78.5", "Hyperlipidemia", 432867, 35207764),
        Dx::Mi => (
            "22298006",
            "I21.9",
            "Myocardial infarction",
            4329847,
            1569130,
        ),
        Dx::IschemicStroke => ("422504002", "I63.9", "Ischemic stroke", 443454, 35207688),
        Dx::HemorrhagicStroke => (
            "274100004",
            "I61.9",
            "Cerebral hemorrhage",
            376713,
            35207682,
        ),
    }
}

fn rx_info(r: Rx) -> (&'static str, &'static str, i64) {
    // (RxNorm, description, OMOP concept)
    match r {
        Rx::Lisinopril => ("314076", "lisinopril 10 MG Oral Tablet", 1308251),
        Rx::Amlodipine => ("197361", "amlodipine 5 MG Oral Tablet", 1332419),
        Rx::Atorvastatin => ("617312", "atorvastatin 20 MG Oral Tablet", 1545959),
        Rx::Apixaban => ("1364445", "apixaban 5 MG Oral Tablet", 43013025),
        Rx::Aspirin => ("243670", "aspirin 81 MG Oral Tablet", 19059056),
        Rx::Metformin => (
            "860975",
            "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
            40163924,
        ),
    }
}

fn smoking_info(s: Smoking) -> (&'static str, &'static str) {
    match s {
        Smoking::Never => ("266919005", "Never smoker"),
        Smoking::Former => ("8517006", "Former smoker"),
        Smoking::Current => ("449868002", "Current every day smoker"),
    }
}

/// The OMOP concept table the clinic extract ships (every concept it uses).
pub fn omop_concepts() -> String {
    let mut s = String::from(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n",
    );
    let mut row = |id: i64, name: &str, domain: &str, vocab: &str, code: &str| {
        let _ = writeln!(
            s,
            "{id},\"{name}\",{domain},{vocab},Concept,S,{code},1970-01-01,2099-12-31,"
        );
    };
    for m in [
        Meas::Sbp,
        Meas::Dbp,
        Meas::TotalChol,
        Meas::Hdl,
        Meas::Ldl,
        Meas::Trig,
        Meas::Hba1c,
        Meas::Bmi,
        Meas::Egfr,
    ] {
        let (loinc, desc, _, id) = meas_info(m);
        row(id, desc, "Measurement", "LOINC", loinc);
    }
    row(
        3012697,
        "Tobacco smoking status",
        "Observation",
        "LOINC",
        "72166-2",
    );
    for d in [
        Dx::Hypertension,
        Dx::Diabetes,
        Dx::AtrialFibrillation,
        Dx::Ckd,
        Dx::Hyperlipidemia,
        Dx::Mi,
        Dx::IschemicStroke,
        Dx::HemorrhagicStroke,
    ] {
        let (snomed, icd, desc, id, src) = dx_info(d);
        row(id, desc, "Condition", "SNOMED", snomed);
        row(src, desc, "Condition", "ICD10CM", icd);
    }
    for r in [
        Rx::Lisinopril,
        Rx::Amlodipine,
        Rx::Atorvastatin,
        Rx::Apixaban,
        Rx::Aspirin,
        Rx::Metformin,
    ] {
        let (code, desc, id) = rx_info(r);
        row(id, desc, "Drug", "RxNorm", code);
    }
    for (id, name, code) in [
        (8840, "milligram per deciliter", "mg/dL"),
        (8753, "millimole per liter", "mmol/L"),
        (8876, "millimeter mercury column", "mm[Hg]"),
        (8554, "percent", "%"),
        (9579, "millimole per mole", "mmol/mol"),
        (9531, "kilogram per square meter", "kg/m2"),
        (
            9117,
            "milliliter per minute per 1.73 square meter",
            "mL/min/{1.73_m2}",
        ),
    ] {
        row(id, name, "Unit", "UCUM", code);
    }
    row(8507, "MALE", "Gender", "Gender", "M");
    row(8532, "FEMALE", "Gender", "Gender", "F");
    row(8527, "White", "Race", "Race", "5");
    row(8516, "Black or African American", "Race", "Race", "3");
    row(8522, "Other", "Race", "Race", "9");
    s
}

fn unit_concept(unit: &str) -> i64 {
    match unit {
        "mg/dL" => 8840,
        "mmol/L" => 8753,
        "mm[Hg]" => 8876,
        "%" => 8554,
        "mmol/mol" => 9579,
        "kg/m2" => 9531,
        _ => 9117,
    }
}

fn fhir_time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(t)
        .expect("in range")
        .with_timezone(&New_York)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn z_time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(t)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn omop_dt(t: i64) -> (String, String) {
    let d = DateTime::<Utc>::from_timestamp_micros(t).expect("in range");
    (
        d.format("%Y-%m-%d").to_string(),
        d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn race_text(p: &Person, synthea: bool) -> &'static str {
    use crate::model::equations::pce::Race;
    match (p.race, synthea) {
        (Race::White, _) => "white",
        (Race::AfricanAmerican, true) => "black",
        (Race::AfricanAmerican, false) => "Black or African American",
        (Race::Other, _) => "other",
    }
}

fn female(p: &Person) -> bool {
    p.sex == crate::model::equations::pce::Sex::Female
}

/// Each site's id of the person (the UUID everywhere when sites share ids).
pub struct SiteIds {
    pub fhir: String,
    pub omop: String,
    pub synthea: String,
}

impl SiteIds {
    fn of(&self, e: Export) -> &str {
        match e {
            Export::Fhir => &self.fhir,
            Export::Omop => &self.omop,
            Export::Synthea => &self.synthea,
        }
    }
}

/// The FHIR fields of a site record's identity facts (after `"birthDate"`), JSON-escaped.
fn fhir_identity(rec: &SiteRecord) -> String {
    let mut ids = vec![serde_json::json!({"system": HOSPITAL_MRN_SYSTEM, "value": rec.id})];
    if let Some(ssn) = &rec.ssn {
        ids.push(serde_json::json!({"system": "http://hl7.org/fhir/sid/us-ssn",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
            "value": ssn}));
    }
    let mut out = format!(",\"identifier\":{}", serde_json::Value::Array(ids));
    let mut name = serde_json::Map::new();
    name.insert("use".into(), "official".into());
    if let Some(f) = &rec.family {
        name.insert("family".into(), f.as_str().into());
    }
    if let Some(g) = &rec.given {
        name.insert("given".into(), serde_json::json!([g]));
    }
    if name.len() > 1 {
        let _ = write!(out, ",\"name\":[{}]", serde_json::Value::Object(name));
    }
    let addr = |a: &identity::Address| serde_json::json!({"use": "home", "line": [a.line()], "city": a.town, "state": "MA", "postalCode": a.zip});
    let mut list: Vec<serde_json::Value> = rec.address.iter().map(addr).collect();
    if let Some(old) = &rec.old_address {
        let mut o = addr(old);
        o["use"] = "old".into();
        o["period"] = serde_json::json!({"end": "2015-06-30"});
        list.push(o);
    }
    if !list.is_empty() {
        let _ = write!(out, ",\"address\":{}", serde_json::Value::Array(list));
    }
    out
}

/// The hospital's MRN system in its FHIR export.
pub const HOSPITAL_MRN_SYSTEM: &str = "urn:ehr-risk:synth:hospital-mrn";

/// Write one person into the exports they belong to, with any defects drawn for them.
pub fn write_person(p: &Person, seed: u64, rates: &DefectRates, mode: Identities, o: &mut Out) {
    let mut r = Rng::new(seed, p.index, 7);
    let pid = p.index + 1;
    let truth = (mode != Identities::Shared).then(|| identity::true_identity(p, seed));
    let record = |e: Export| match &truth {
        Some(t) => identity::site_record(p, t, seed, mode, e),
        None => identity::site_record(
            p,
            &identity::TrueIdentity {
                given: String::new(),
                family: String::new(),
                address: identity::Address {
                    number: 0,
                    street: String::new(),
                    town: "",
                    zip: String::new(),
                },
                previous: None,
                ssn: String::new(),
            },
            seed,
            mode,
            e,
        ),
    };
    let ids = SiteIds {
        fhir: identity::site_id(p, seed, mode, Export::Fhir),
        omop: identity::site_id(p, seed, mode, Export::Omop),
        synthea: identity::site_id(p, seed, mode, Export::Synthea),
    };
    // Demographics, in every export the person is in.
    if p.in_fhir {
        let rec = record(Export::Fhir);
        let birth = &rec.birth;
        let race = race_text(p, false);
        let title = if race == "white" {
            "White"
        } else if race == "other" {
            "Other"
        } else {
            race
        };
        let death = p
            .death
            .map(|d| format!(",\"deceasedDateTime\":\"{}\"", fhir_time(d)))
            .unwrap_or_default();
        let facts = if truth.is_some() {
            fhir_identity(&rec)
        } else {
            String::new()
        };
        let _ = writeln!(
            o.line(F_PAT),
            r#"{{"resourceType":"Patient","id":"{}","gender":"{}","birthDate":"{birth}"{death}{facts},"extension":[{{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{{"url":"text","valueString":"{title}"}}]}}]}}"#,
            ids.fhir,
            if female(p) { "female" } else { "male" }
        );
        if truth.is_some() {
            let _ = writeln!(o.identity_truth, "patient-id,{},{}", ids.fhir, p.uuid);
        }
    }
    if p.in_omop {
        let rec = record(Export::Omop);
        let race = match race_text(p, false) {
            "white" => (8527, "white"),
            "other" => (8522, "other"),
            _ => (8516, "black"),
        };
        let (y, m, d) = (&rec.birth[..4], &rec.birth[5..7], &rec.birth[8..10]);
        let location = match (&truth, &rec.address) {
            (Some(_), Some(a)) => {
                let _ = writeln!(o.locations, "{pid},{},,{},MA,{}", a.line(), a.town, a.zip);
                format!(",{pid}")
            }
            (Some(_), None) => ",".to_string(),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            o.line(O_PERSON),
            "{pid},{},{y},{},{},{} 00:00:00,{},0,{},{},{}{location}",
            if female(p) { 8532 } else { 8507 },
            m.trim_start_matches('0'),
            d.trim_start_matches('0'),
            rec.birth,
            race.0,
            ids.omop,
            if female(p) { "F" } else { "M" },
            race.1
        );
        if truth.is_some() {
            let _ = writeln!(o.identity_truth, "patient-id,{},{}", ids.omop, p.uuid);
        }
        if let Some(d) = p.death {
            let (dd, dt) = omop_dt(d);
            let _ = writeln!(o.line(O_DEATH), "{pid},{dd},{dt},32817");
        }
    }
    if p.in_synthea {
        let rec = record(Export::Synthea);
        let death = p.death.map(|d| omop_dt(d).0).unwrap_or_default();
        let facts = if truth.is_some() {
            let a = rec.address.as_ref();
            format!(
                ",{},{},{},{},{},MA,{}",
                rec.ssn.as_deref().unwrap_or(""),
                rec.given.as_deref().unwrap_or(""),
                rec.family.as_deref().unwrap_or(""),
                a.map(|a| a.line()).unwrap_or_default(),
                a.map(|a| a.town).unwrap_or(""),
                a.map(|a| a.zip.as_str()).unwrap_or(""),
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o.line(S_PAT),
            "{},{},{death},{},nonhispanic,{}{facts}",
            ids.synthea,
            rec.birth,
            race_text(p, true),
            if female(p) { "F" } else { "M" }
        );
        if truth.is_some() {
            let _ = writeln!(o.identity_truth, "patient-id,{},{}", ids.synthea, p.uuid);
        }
    }
    for (k, v) in p.visits.iter().enumerate() {
        write_visit(p, &ids, k, v, v.export, false, o);
        if let Some(c) = v.copy_to {
            write_visit(p, &ids, k, v, c, true, o);
            o.copies += 1;
        }
    }
    // Defects: extra rows, never replacing a good one.
    let t = p
        .visits
        .first()
        .map(|v| v.time)
        .unwrap_or(super::sim::micros(super::sim::month_start(1)));
    let defect = |o: &mut Out, kind: &str| *o.defects.entry(kind.to_string()).or_default() += 1;
    if p.in_fhir {
        if r.chance(rates.malformed_json) {
            let _ = writeln!(
                o.line(F_OBS),
                r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/{}"#,
                ids.fhir
            );
            defect(o, "malformed_json");
        }
        if r.chance(rates.unknown_unit) {
            let _ = writeln!(
                o.line(F_OBS),
                r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/{}"}},"effectiveDateTime":"{}","code":{{"coding":[{{"system":"http://loinc.org","code":"2093-3"}}]}},"valueQuantity":{{"value":2.1,"unit":"g/L"}}}}"#,
                ids.fhir,
                fhir_time(t)
            );
            defect(o, "unknown_unit");
        }
        if r.chance(rates.unknown_patient) {
            let _ = writeln!(
                o.line(F_OBS),
                r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/unknown-{}"}},"effectiveDateTime":"{}","code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}},"valueQuantity":{{"value":120,"unit":"mmHg"}}}}"#,
                p.index,
                fhir_time(t)
            );
            defect(o, "unknown_patient");
        }
        if r.chance(rates.future_event) {
            let _ = writeln!(
                o.line(F_COND),
                r#"{{"resourceType":"Condition","subject":{{"reference":"Patient/{}"}},"onsetDateTime":"2999-01-01","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"59621000"}}]}}}}"#,
                ids.fhir
            );
            defect(o, "future_event");
        }
    }
    if p.in_omop && r.chance(rates.bad_date) {
        let _ = writeln!(
            o.line(O_MEAS),
            "{},{pid},3004249,2019-02-30,,44818702,120,8876,,8480-6,mmHg",
            pid * 100_000 + 99_999
        );
        defect(o, "bad_date");
    }
    if p.in_synthea && r.chance(rates.implausible_value) {
        let _ = writeln!(
            o.line(S_OBS),
            "{},{},,vital-signs,8480-6,Systolic blood pressure,900.0,mm[Hg],numeric",
            z_time(t),
            ids.synthea
        );
        defect(o, "implausible_value");
    }
}

fn write_visit(
    p: &Person,
    ids: &SiteIds,
    k: usize,
    v: &Visit,
    export: Export,
    copy: bool,
    o: &mut Out,
) {
    let pid = p.index + 1;
    // Encounter ids: the UUID's first block when sites share ids, else the site's own MRN.
    let stem = if ids.fhir == p.uuid {
        &p.uuid[..8]
    } else {
        ids.of(export)
    };
    let enc_id = format!("{stem}-{k}");
    let end = v.end.unwrap_or(v.time + 20 * 60_000_000);
    match export {
        Export::Fhir => {
            let class = if v.inpatient { "IMP" } else { "AMB" };
            let _ = writeln!(
                o.line(F_ENC),
                r#"{{"resourceType":"Encounter","id":"{enc_id}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"{class}"}},"subject":{{"reference":"Patient/{}"}},"period":{{"start":"{}","end":"{}"}}}}"#,
                ids.fhir,
                fhir_time(v.time),
                fhir_time(end)
            );
            let t = fhir_time(v.time);
            for (i, d) in v.diagnoses.iter().enumerate() {
                let (snomed, icd, desc, ..) = dx_info(*d);
                // Some MIs arrive coded in ICD-10-CM only, as claims-fed systems do.
                let codings = if *d == Dx::Mi && (p.index + k as u64).is_multiple_of(3) {
                    format!(
                        r#"{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"{icd}","display":"{desc}"}}"#
                    )
                } else {
                    format!(
                        r#"{{"system":"http://snomed.info/sct","code":"{snomed}","display":"{desc}"}},{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"{icd}"}}"#
                    )
                };
                let _ = writeln!(
                    o.line(F_COND),
                    r#"{{"resourceType":"Condition","id":"{enc_id}-c{i}","subject":{{"reference":"Patient/{}"}},"encounter":{{"reference":"Encounter/{enc_id}"}},"onsetDateTime":"{t}","code":{{"coding":[{codings}]}}}}"#,
                    ids.fhir
                );
            }
            let obs = |o: &mut Out, id: String, body: String| {
                let _ = writeln!(
                    o.line(F_OBS),
                    r#"{{"resourceType":"Observation","id":"{id}","status":"final","subject":{{"reference":"Patient/{}"}},"encounter":{{"reference":"Encounter/{enc_id}"}},"effectiveDateTime":"{t}",{body}}}"#,
                    ids.fhir
                );
            };
            let get = |m: Meas| v.measurements.iter().find(|x| x.0 == m).map(|x| x.1);
            if let (Some(s), Some(d)) = (get(Meas::Sbp), get(Meas::Dbp)) {
                obs(
                    o,
                    format!("{enc_id}-bp"),
                    format!(
                        r#""code":{{"coding":[{{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel"}}]}},"component":[{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}},"valueQuantity":{{"value":{s:.1},"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}},{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8462-4"}}]}},"valueQuantity":{{"value":{d:.1},"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}}]"#
                    ),
                );
            }
            for (i, (m, x)) in v.measurements.iter().enumerate() {
                if matches!(m, Meas::Sbp | Meas::Dbp) {
                    continue;
                }
                let (loinc, desc, unit, _) = meas_info(*m);
                obs(
                    o,
                    format!("{enc_id}-m{i}"),
                    format!(
                        r#""code":{{"coding":[{{"system":"http://loinc.org","code":"{loinc}","display":"{desc}"}}]}},"valueQuantity":{{"value":{x:.1},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}"#
                    ),
                );
            }
            if let Some(s) = v.smoking {
                let (code, text) = smoking_info(s);
                obs(
                    o,
                    format!("{enc_id}-smk"),
                    format!(
                        r#""code":{{"coding":[{{"system":"http://loinc.org","code":"72166-2","display":"Tobacco smoking status"}}]}},"valueCodeableConcept":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}","display":"{text}"}}],"text":"{text}"}}"#
                    ),
                );
            }
            for (i, rx) in v.treatments.iter().enumerate() {
                let (code, desc, _) = rx_info(*rx);
                let _ = writeln!(
                    o.line(F_MED),
                    r#"{{"resourceType":"MedicationRequest","id":"{enc_id}-rx{i}","status":"active","intent":"order","subject":{{"reference":"Patient/{}"}},"encounter":{{"reference":"Encounter/{enc_id}"}},"authoredOn":"{t}","medicationCodeableConcept":{{"coding":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"{code}","display":"{desc}"}}]}}}}"#,
                    ids.fhir
                );
            }
        }
        Export::Omop => {
            let vid = pid * 10_000 + k as u64;
            let (sd, st) = omop_dt(v.time);
            let (ed, et) = omop_dt(end);
            let _ = writeln!(
                o.line(O_VISIT),
                "{vid},{pid},{},{sd},{st},{ed},{et},44818517",
                if v.inpatient { 9201 } else { 9202 }
            );
            for (i, d) in v.diagnoses.iter().enumerate() {
                let (_, icd, _, concept, src) = dx_info(*d);
                let _ = writeln!(
                    o.line(O_COND),
                    "{},{pid},{concept},{sd},{st},32817,{vid},{icd},{src}",
                    vid * 10 + i as u64
                );
            }
            let si = p.omop_si_units && !copy && v.copy_to.is_none();
            for (i, (m, x)) in v.measurements.iter().enumerate() {
                let (loinc, _, unit, concept) = meas_info(*m);
                let (value, unit) = match (si, m) {
                    (true, Meas::TotalChol | Meas::Hdl | Meas::Ldl) => {
                        (format!("{:.3}", x / 38.67), "mmol/L")
                    }
                    (true, Meas::Trig) => (format!("{:.3}", x / 88.57), "mmol/L"),
                    (true, Meas::Hba1c) => (format!("{:.1}", (x - 2.152) / 0.09148), "mmol/mol"),
                    _ => (format!("{x:.1}"), unit),
                };
                let _ = writeln!(
                    o.line(O_MEAS),
                    "{},{pid},{concept},{sd},{st},44818702,{value},{},{vid},{loinc},{unit}",
                    vid * 100 + i as u64,
                    unit_concept(unit)
                );
            }
            if let Some(s) = v.smoking {
                let _ = writeln!(
                    o.line(O_OBS),
                    "{},{pid},3012697,{sd},{st},38000280,{},{vid},72166-2",
                    vid,
                    smoking_info(s).1
                );
            }
            for (i, rx) in v.treatments.iter().enumerate() {
                let (code, _, concept) = rx_info(*rx);
                let _ = writeln!(
                    o.line(O_DRUG),
                    "{},{pid},{concept},{sd},{st},38000177,{vid},{code}",
                    vid * 10 + i as u64
                );
            }
        }
        Export::Synthea => {
            let (start, stop) = (z_time(v.time), z_time(end));
            let class = if v.inpatient {
                "inpatient"
            } else {
                "ambulatory"
            };
            let _ = writeln!(
                o.line(S_ENC),
                "{enc_id},{start},{stop},{},{class},185349003,Encounter for check up",
                ids.synthea
            );
            let day = &start[..10];
            for d in &v.diagnoses {
                let (snomed, _, desc, ..) = dx_info(*d);
                let _ = writeln!(
                    o.line(S_COND),
                    "{day},,{},{enc_id},{snomed},{desc}",
                    ids.synthea
                );
            }
            for (m, x) in &v.measurements {
                let (loinc, desc, unit, _) = meas_info(*m);
                let cat = if matches!(m, Meas::Sbp | Meas::Dbp | Meas::Bmi) {
                    "vital-signs"
                } else {
                    "laboratory"
                };
                let _ = writeln!(
                    o.line(S_OBS),
                    "{start},{},{enc_id},{cat},{loinc},{desc},{x:.1},{unit},numeric",
                    ids.synthea
                );
            }
            if let Some(s) = v.smoking {
                let _ = writeln!(
                    o.line(S_OBS),
                    "{start},{},{enc_id},survey,72166-2,Tobacco smoking status,{},,text",
                    ids.synthea,
                    smoking_info(s).1
                );
            }
            for rx in &v.treatments {
                let (code, desc, _) = rx_info(*rx);
                let _ = writeln!(
                    o.line(S_MED),
                    "{start},,{},{enc_id},{code},{desc}",
                    ids.synthea
                );
            }
        }
    }
}
