//! FHIR R4 reader: Bulk Data NDJSON (one resource per line, plain or gzip) and Bundles
//! (collection, transaction, searchset, document; nested bundles flattened). Patient, Encounter,
//! Condition, Observation (valueQuantity, valueCodeableConcept, valueString, components such as
//! systolic/diastolic BP), MedicationRequest, MedicationStatement and Procedure become events;
//! deaths come from Patient.deceased*. Other resource types are counted as skipped, by type.
//! Rows are lines (NDJSON) or entries (Bundle, 1-based in document order).

use super::{Chunk, Ctx, Identity, PersonRecord, Reject, measurement};
use crate::schema::Event;
use crate::schema::codes::{
    Kind, encounter_code, fhir_vocab, gender_code, normalize, preference_rank,
};
use crate::schema::identity::IdField;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The identity system shared by FHIR `Patient.id` and Synthea CSV `Id`: Synthea writes the
/// same UUID in both, so the same person links across the two exports.
pub const PATIENT_ID_SYSTEM: &str = "patient-id";

#[derive(Deserialize, Default)]
struct Coding<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    display: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct CodeableConcept<'a> {
    #[serde(borrow, default)]
    coding: Vec<Coding<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Reference<'a> {
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Period<'a> {
    #[serde(borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow)]
    end: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Quantity<'a> {
    value: Option<f64>,
    #[serde(borrow)]
    unit: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    comparator: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Extension<'a> {
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    extension: Vec<Extension<'a>>,
    #[serde(borrow, rename = "valueCoding")]
    value_coding: Option<Coding<'a>>,
    #[serde(borrow, rename = "valueString")]
    value_string: Option<Cow<'a, str>>,
}

/// Observation value[x], a view shared by the resource and its components.
struct Value<'r, 'a> {
    quantity: Option<&'r Quantity<'a>>,
    concept: Option<&'r CodeableConcept<'a>>,
    string: Option<&'r str>,
    integer: Option<i64>,
    boolean: Option<bool>,
    date_time: Option<&'r str>,
    range: bool,
    ratio: bool,
    sampled: bool,
    time: bool,
    period: bool,
}

macro_rules! value_view {
    ($r:expr) => {
        Value {
            quantity: $r.value_quantity.as_ref(),
            concept: $r.value_concept.as_ref(),
            string: $r.value_string.as_deref(),
            integer: $r.value_integer,
            boolean: $r.value_boolean,
            date_time: $r.value_date_time.as_deref(),
            range: $r.value_range.is_some(),
            ratio: $r.value_ratio.is_some(),
            sampled: $r.value_sampled.is_some(),
            time: $r.value_time.is_some(),
            period: $r.value_period.is_some(),
        }
    };
}

#[derive(Deserialize)]
struct Component<'a> {
    #[serde(borrow)]
    code: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "valueQuantity")]
    value_quantity: Option<Quantity<'a>>,
    #[serde(borrow, rename = "valueCodeableConcept")]
    value_concept: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "valueString")]
    value_string: Option<Cow<'a, str>>,
    #[serde(rename = "valueInteger")]
    value_integer: Option<i64>,
    #[serde(rename = "valueBoolean")]
    value_boolean: Option<bool>,
    #[serde(borrow, rename = "valueDateTime")]
    value_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "valueRange")]
    value_range: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueRatio")]
    value_ratio: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueSampledData")]
    value_sampled: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueTime")]
    value_time: Option<&'a RawValue>,
    #[serde(borrow, rename = "valuePeriod")]
    value_period: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, rename = "fullUrl")]
    full_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

/// The fields of every resource type we read, flattened; absent ones are `None`.
#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, rename = "resourceType")]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    // Patient
    #[serde(borrow, rename = "birthDate")]
    birth_date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    gender: Option<Cow<'a, str>>,
    #[serde(rename = "deceasedBoolean")]
    deceased_boolean: Option<bool>,
    #[serde(borrow, rename = "deceasedDateTime")]
    deceased_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    extension: Vec<Extension<'a>>,
    // Patient identity facts: kept raw, read only for a Patient (other types use these names
    // for other shapes: a Location's `name` is a string).
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    address: Option<&'a RawValue>,
    #[serde(borrow)]
    identifier: Option<&'a RawValue>,
    #[serde(borrow)]
    telecom: Option<&'a RawValue>,
    #[serde(borrow)]
    link: Option<&'a RawValue>,
    // references
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    patient: Option<Reference<'a>>,
    #[serde(borrow)]
    encounter: Option<Reference<'a>>,
    #[serde(borrow)]
    context: Option<Reference<'a>>,
    // codes
    #[serde(borrow)]
    code: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "medicationCodeableConcept")]
    medication_concept: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "medicationReference")]
    medication_reference: Option<Reference<'a>>,
    #[serde(borrow, rename = "verificationStatus")]
    verification_status: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "class")]
    class: Option<&'a RawValue>,
    // times
    #[serde(borrow, rename = "effectiveDateTime")]
    effective_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "effectiveInstant")]
    effective_instant: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "effectivePeriod")]
    effective_period: Option<Period<'a>>,
    #[serde(borrow)]
    issued: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "onsetDateTime")]
    onset_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "onsetPeriod")]
    onset_period: Option<Period<'a>>,
    #[serde(borrow, rename = "recordedDate")]
    recorded_date: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "abatementDateTime")]
    abatement_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "authoredOn")]
    authored_on: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "dateAsserted")]
    date_asserted: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "performedDateTime")]
    performed_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "performedPeriod")]
    performed_period: Option<Period<'a>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
    // Observation
    #[serde(borrow, rename = "valueQuantity")]
    value_quantity: Option<Quantity<'a>>,
    #[serde(borrow, rename = "valueCodeableConcept")]
    value_concept: Option<CodeableConcept<'a>>,
    #[serde(borrow, rename = "valueString")]
    value_string: Option<Cow<'a, str>>,
    #[serde(rename = "valueInteger")]
    value_integer: Option<i64>,
    #[serde(rename = "valueBoolean")]
    value_boolean: Option<bool>,
    #[serde(borrow, rename = "valueDateTime")]
    value_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "valueRange")]
    value_range: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueRatio")]
    value_ratio: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueSampledData")]
    value_sampled: Option<&'a RawValue>,
    #[serde(borrow, rename = "valueTime")]
    value_time: Option<&'a RawValue>,
    #[serde(borrow, rename = "valuePeriod")]
    value_period: Option<&'a RawValue>,
    #[serde(borrow, default)]
    component: Vec<Component<'a>>,
    #[serde(borrow, default)]
    contained: Vec<&'a RawValue>,
}

/// A Bundle as far as its entries: the only fields read from it, so that a Bundle-level field
/// of an unexpected shape (found by the fhir_bundle fuzzer: `"component": "<a string>"` made
/// the whole Bundle one malformed row while its five entries were counted) cannot hide them.
/// The framing count ([`count_records`]) and the reader decide what a Bundle is by this same
/// parse, so they cannot disagree on it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "resourceType")]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    entry: Vec<Entry<'a>>,
}

/// `raw` read as a Bundle's envelope, if it is a Bundle whose entries can be read.
fn envelope(raw: &str) -> Option<Envelope<'_>> {
    // A byte scan first: most resources are not Bundles and are not parsed twice.
    memchr::memmem::find(raw.as_bytes(), b"\"Bundle\"")?;
    serde_json::from_str::<Envelope>(raw)
        .ok()
        .filter(|e| e.resource_type.as_deref() == Some("Bundle"))
}

const USED: [&str; 8] = [
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "Procedure",
    "Medication",
];

/// A Medication's code: (`code`, `source_code`, description).
pub type MedCode = (String, Option<String>, Option<String>);

/// Medications of a whole export (`Medication.ndjson` in a bulk export), by `Medication/<id>`.
pub type Medications = HashMap<String, MedCode>;

/// Index the Medication resources of NDJSON lines, so MedicationRequests in other files can
/// resolve `medicationReference`.
pub fn index_medications(data: &[u8], into: &mut Medications) {
    for raw in data.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(raw) else {
            continue;
        };
        if peek_type(text) != Some("Medication") {
            continue;
        }
        if let Ok(r) = serde_json::from_str::<Resource>(text)
            && let (Some(id), Some(cc)) = (r.id.as_deref(), r.code.as_ref())
            && let Ok((c, a, d)) = pick_code(cc, Kind::Medication)
        {
            into.insert(format!("Medication/{id}"), (c, a, d.map(String::from)));
        }
    }
}

/// Resolves references inside one document (bundle fullUrls, Medication resources).
#[derive(Default)]
struct Scope<'g> {
    /// Medications of the whole export.
    global: Option<&'g Medications>,
    /// fullUrl -> Patient.id
    patient_urls: HashMap<String, String>,
    /// "Medication/<id>" or fullUrl or "#id" -> code
    medications: HashMap<String, (String, Option<String>, Option<String>)>,
    /// Patients registered in this document (bundles carry their own patients).
    local_known: HashSet<i64>,
}

/// Pick the preferred coding of a CodeableConcept: (`code`, `source_code`, description).
fn pick_code<'c>(
    cc: &'c CodeableConcept,
    kind: Kind,
) -> Result<(String, Option<String>, Option<&'c str>), Reject> {
    // (rank, position, vocabulary, code, display) of the codings in known vocabularies
    let mut best: Option<(usize, &str, &str, Option<&'c str>)> = None;
    let mut second: Option<(usize, &str, &str)> = None;
    let mut first_unknown: Option<(&str, &str, Option<&'c str>)> = None;
    for c in &cc.coding {
        let (Some(sys), Some(code)) = (c.system.as_deref(), c.code.as_deref()) else {
            continue;
        };
        match fhir_vocab(sys) {
            Some(v) => {
                let rank = preference_rank(kind, v);
                // strictly better rank wins; equal ranks keep the source order
                match best {
                    Some((r, ..)) if r <= rank => {
                        if second.is_none_or(|(r2, ..)| rank < r2) {
                            second = Some((rank, v, code));
                        }
                    }
                    _ => {
                        if let Some((r, bv, bc, _)) = best {
                            second = Some((r, bv, bc));
                        }
                        best = Some((rank, v, code, c.display.as_deref()));
                    }
                }
            }
            None => {
                if first_unknown.is_none() {
                    first_unknown = Some((sys, code, c.display.as_deref()));
                }
            }
        }
    }
    let bad = |code: &str, e: crate::schema::codes::BadCode| {
        Reject::new("code", "bad_code", code, e.to_string())
    };
    let unknown_code =
        |sys: &str, code: &str| format!("{}//{}", sys.trim_end_matches('/'), code.trim());
    if let Some((_, v, code, desc)) = best {
        let norm = normalize(v, code).map_err(|e| bad(code, e))?;
        let alt = match second {
            Some((_, v2, c2)) => Some(normalize(v2, c2).map_err(|e| bad(c2, e))?),
            None => first_unknown.map(|(s, c, _)| unknown_code(s, c)),
        };
        return Ok((norm, alt, desc.or(cc.text.as_deref())));
    }
    if let Some((sys, code, desc)) = first_unknown {
        return Ok((unknown_code(sys, code), None, desc.or(cc.text.as_deref())));
    }
    Err(Reject::new(
        "code",
        "missing_field",
        cc.text.as_deref().unwrap_or(""),
        "a coding with a system and a code",
    ))
}

fn reference_id(r: &str, scope: &Scope<'_>) -> Option<(String, bool)> {
    if let Some(pid) = scope.patient_urls.get(r) {
        return Some((pid.clone(), true));
    }
    if let Some(u) = r.strip_prefix("urn:uuid:") {
        return Some((u.to_string(), true));
    }
    // A versioned reference `Patient/45/_history/2` names the same patient.
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => r,
    };
    let mut parts = r.rsplitn(3, '/');
    let id = parts.next()?;
    let ty = parts.next()?;
    Some((id.to_string(), ty == "Patient"))
}

struct Row<'s, 'c> {
    ctx: &'s Ctx<'c>,
    scope: &'s Scope<'s>,
    row: u64,
    /// The resource's `id`, carried by each of its events (`source_record_id`).
    id: Option<&'s str>,
}

impl Row<'_, '_> {
    fn subject(&self, res: &Resource) -> Result<i64, Reject> {
        let r = res
            .subject
            .as_ref()
            .or(res.patient.as_ref())
            .and_then(|r| r.reference.as_deref())
            .ok_or_else(|| Reject::missing("subject.reference"))?;
        match reference_id(r, self.scope) {
            Some((id, true)) => {
                let ident = Identity::new(PATIENT_ID_SYSTEM, &id);
                if self.scope.local_known.contains(&ident.subject_id) {
                    Ok(ident.subject_id)
                } else {
                    self.ctx
                        .require_known("subject.reference", &ident)
                        .map_err(|mut e| {
                            e.value = r.to_string();
                            e
                        })
                }
            }
            _ => Err(Reject::new(
                "subject.reference",
                "unknown_patient",
                r,
                "a reference to a Patient (Patient/<id> or a bundle fullUrl)",
            )),
        }
    }

    fn base(&self, subject_id: i64, source: &str) -> Event {
        Event {
            subject_id,
            source: crate::schema::source_name("fhir", source),
            provenance: self.ctx.provenance(self.row),
            source_record_id: self.id.filter(|s| !s.is_empty()).map(String::from),
            ..Default::default()
        }
    }

    fn time(&self, field: &str, v: &str) -> Result<i64, Reject> {
        self.ctx.time(field, v, false)
    }

    fn stamp(&self, field: &str, v: &str) -> Result<crate::schema::Stamp, Reject> {
        self.ctx.stamp(field, v, false)
    }

    /// An event's time and, when the resource says when it was recorded or issued later, that
    /// (the later of the two is when it was known).
    fn stamp_recorded(
        &self,
        field: &str,
        v: &str,
        recorded: Option<(&str, &str)>,
    ) -> Result<crate::schema::Stamp, Reject> {
        let mut s = self.stamp(field, v)?;
        if let Some((rf, rv)) = recorded {
            s.known = s.known.max(self.stamp(rf, rv)?.known);
        }
        Ok(s)
    }

    fn visit(&self, res: &Resource) -> Option<String> {
        res.encounter
            .as_ref()
            .or(res.context.as_ref())
            .and_then(|r| r.reference.as_deref())
            .map(|r| r.rsplit(['/', ':']).next().unwrap_or(r).to_string())
    }
}

fn status_skip(rt: &str, status: Option<&str>) -> Option<String> {
    match status {
        Some(s @ ("entered-in-error" | "cancelled" | "refuted")) => {
            Some(format!("{rt} status {s}"))
        }
        _ => None,
    }
}

/// What to do with one resource.
#[derive(Deserialize)]
struct HumanName<'a> {
    #[serde(borrow, rename = "use")]
    use_: Option<Cow<'a, str>>,
    #[serde(borrow)]
    family: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    given: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
}

#[derive(Deserialize)]
struct Address<'a> {
    #[serde(borrow, rename = "use")]
    use_: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    line: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    city: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "postalCode")]
    postal_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
}

#[derive(Deserialize)]
struct Identifier<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    type_: Option<CodeableConcept<'a>>,
}

#[derive(Deserialize)]
struct ContactPoint<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PatientLink<'a> {
    #[serde(borrow)]
    other: Option<Reference<'a>>,
}

/// Identifier systems and v2-0203 type codes that carry a national identifier.
const NATIONAL_ID_SYSTEMS: [&str; 1] = ["http://hl7.org/fhir/sid/us-ssn"];
const NATIONAL_ID_TYPES: [&str; 2] = ["SS", "NI"];

/// A list element of a Patient field, or nothing when the field has another shape (identity
/// facts are evidence for linkage, never a reason to reject the Patient's clinical facts).
fn list<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Vec<T> {
    raw.and_then(|r| serde_json::from_str::<Vec<T>>(r.get()).ok())
        .unwrap_or_default()
}

/// The one of several (names, addresses) a record is compared by: current (no period end),
/// then the preferred `use`, then the first.
fn current<'x, T>(
    items: &'x [T],
    use_of: impl Fn(&T) -> Option<&str>,
    ended: impl Fn(&T) -> bool,
    preferred: &[&str],
) -> Option<&'x T> {
    let rank = |t: &T| {
        let u = use_of(t).unwrap_or("");
        (
            ended(t) || u == "old",
            preferred
                .iter()
                .position(|p| *p == u)
                .unwrap_or(preferred.len()),
        )
    };
    items
        .iter()
        .enumerate()
        .min_by_key(|(i, t)| (rank(t), *i))
        .map(|(_, t)| t)
}

fn set_address(p: &mut PersonRecord, a: &Address) {
    if let Some(line) = a.line.first() {
        p.set_street_line(line);
    }
    for (f, v) in [
        (IdField::Locality, &a.city),
        (IdField::State, &a.state),
        (IdField::Postcode, &a.postal_code),
    ] {
        if let Some(v) = v.as_deref() {
            p.set(f, v);
        }
    }
}

/// The identity facts of a Patient, for the identity store: names, birth date, sex, the
/// current address, telecom, identifiers and `Patient.link`; and one more row of the same
/// identity for each earlier address it lists (an address history lets a record another site
/// made before a move still be linked).
fn patient_facts(res: &Resource, ident: &Identity) -> Vec<PersonRecord> {
    let base = patient_base(res, ident);
    let addresses: Vec<Address> = list(res.address);
    let ended = |per: &Option<Period>| per.as_ref().is_some_and(|x| x.end.is_some());
    let now = current(
        &addresses,
        |a| a.use_.as_deref(),
        |a| ended(&a.period),
        &["home"],
    );
    let mut out = Vec::new();
    let mut first = base.clone();
    if let Some(a) = now {
        set_address(&mut first, a);
    }
    out.push(first);
    for a in &addresses {
        if now.is_some_and(|n| std::ptr::eq(n, a)) {
            continue;
        }
        let mut r = base.clone();
        set_address(&mut r, a);
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

fn patient_base(res: &Resource, ident: &Identity) -> PersonRecord {
    let mut p = PersonRecord::new(ident.clone());
    let names: Vec<HumanName> = list(res.name);
    let ended = |per: &Option<Period>| per.as_ref().is_some_and(|x| x.end.is_some());
    if let Some(n) = current(
        &names,
        |n| n.use_.as_deref(),
        |n| ended(&n.period),
        &["official", "usual"],
    ) {
        if let Some(g) = n.given.first() {
            p.set(IdField::GivenName, g);
        }
        if let Some(f) = n.family.as_deref() {
            p.set(IdField::FamilyName, f);
        }
    }
    if let Some(b) = res.birth_date.as_deref() {
        p.set(IdField::BirthDate, b);
    }
    if let Some(g) = res.gender.as_deref() {
        p.set(IdField::Sex, g);
    }
    for t in list::<ContactPoint>(res.telecom) {
        if t.system.as_deref() == Some("phone")
            && let Some(v) = t.value.as_deref()
        {
            p.set(IdField::Phone, v);
        }
    }
    for i in list::<Identifier>(res.identifier) {
        let Some(v) = i.value.as_deref() else {
            continue;
        };
        let ty = i
            .type_
            .as_ref()
            .and_then(|t| t.coding.iter().find_map(|c| c.code.as_deref()));
        let system = i.system.as_deref();
        if system.is_some_and(|s| NATIONAL_ID_SYSTEMS.contains(&s))
            || ty.is_some_and(|t| NATIONAL_ID_TYPES.contains(&t))
        {
            p.set(IdField::NationalId, v);
        }
        match (system, ty) {
            (Some(s), _) => p.add_identifier(s, v),
            (None, Some(t)) => p.add_identifier(&format!("type:{t}"), v),
            (None, None) => p.add_identifier("", v),
        }
    }
    for l in list::<PatientLink>(res.link) {
        if let Some(r) = l.other.as_ref().and_then(|o| o.reference.as_deref()) {
            let id = r.rsplit_once("Patient/").map_or(r, |(_, id)| id);
            let id = id.split('/').next().unwrap_or(id);
            p.add_identifier("link", id);
        }
    }
    p
}

enum Outcome {
    Events(Vec<Event>),
    Skip(String),
}

fn patient(
    res: &Resource,
    row: &Row,
    c: &mut Chunk,
    raw: &str,
) -> Result<(Identity, Vec<Event>), Reject> {
    let id = res
        .id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Reject::missing("id"))?;
    let ident = Identity::new(PATIENT_ID_SYSTEM, id);
    let mut out = Vec::new();
    let birth = match res.birth_date.as_deref() {
        Some(b) => Some(row.time("birthDate", b)?),
        None => None,
    };
    let death = match res.deceased_date_time.as_deref() {
        Some(d) => Some(row.time("deceasedDateTime", d)?),
        None => None,
    };
    if let (Some(b), Some(d)) = (birth, death)
        && d < b
    {
        return Err(Reject::new(
            "deceasedDateTime",
            "birth_after_death",
            res.deceased_date_time.as_deref().unwrap_or(""),
            "a death on or after the birth date",
        ));
    }
    if let Some(b) = birth {
        let mut e = row.base(ident.subject_id, "Patient");
        e.time = Some(b);
        e.code = "MEDS_BIRTH".into();
        out.push(e);
    }
    if let Some(d) = death {
        let mut e = row.base(ident.subject_id, "Patient");
        e.time = Some(d);
        e.code = "MEDS_DEATH".into();
        out.push(e);
    } else if res.deceased_boolean == Some(true) {
        c.reject_field(
            row.ctx.file,
            row.row,
            raw,
            Reject::new(
                "deceasedBoolean",
                "missing_death_date",
                "true",
                "deceasedDateTime: a death without a date cannot be placed in time",
            ),
        );
    }
    if let Some(g) = res.gender.as_deref() {
        let mut e = row.base(ident.subject_id, "Patient");
        e.code = gender_code(g);
        out.push(e);
    }
    for ext in &res.extension {
        let url = ext.url.as_deref().unwrap_or("");
        let kind = if url.ends_with("us-core-race") {
            "RACE"
        } else if url.ends_with("us-core-ethnicity") {
            "ETHNICITY"
        } else {
            continue;
        };
        let text = ext
            .extension
            .iter()
            .find(|e| e.url.as_deref() == Some("text"))
            .and_then(|e| e.value_string.as_deref())
            .or_else(|| {
                ext.extension
                    .iter()
                    .find_map(|e| e.value_coding.as_ref().and_then(|c| c.display.as_deref()))
            });
        if let Some(t) = text {
            let mut e = row.base(ident.subject_id, "Patient");
            e.code = format!("{kind}//{}", t.trim().to_ascii_lowercase());
            out.push(e);
        }
    }
    Ok((ident, out))
}

fn observation_value(e: Event, field: &str, v: &Value) -> Result<Option<Event>, Reject> {
    let mut e = e;
    if let Some(q) = v.quantity {
        let Some(x) = q.value else {
            return Err(Reject::missing(&format!("{field}Quantity.value")));
        };
        let ucum = q
            .system
            .as_deref()
            .is_some_and(|s| s.contains("unitsofmeasure"));
        let unit = if ucum {
            q.code.as_deref().or(q.unit.as_deref())
        } else {
            q.unit.as_deref().or(q.code.as_deref())
        };
        let mut m = measurement(e, &format!("{field}Quantity"), x, unit)?;
        if let Some(cmp) = q.comparator.as_deref() {
            m.text_value = Some(cmp.to_string());
        }
        return Ok(Some(m));
    }
    if let Some(cc) = v.concept {
        let text = cc
            .text
            .as_deref()
            .or_else(|| cc.coding.iter().find_map(|c| c.display.as_deref()))
            .or_else(|| cc.coding.iter().find_map(|c| c.code.as_deref()));
        e.text_value = text.map(|t| t.trim().to_string());
        return Ok(Some(e));
    }
    if let Some(s) = v.string {
        e.text_value = Some(s.to_string());
        return Ok(Some(e));
    }
    if let Some(i) = v.integer {
        return measurement(e, &format!("{field}Integer"), i as f64, None).map(Some);
    }
    if let Some(b) = v.boolean {
        e.text_value = Some(b.to_string());
        return Ok(Some(e));
    }
    if let Some(d) = v.date_time {
        e.text_value = Some(d.to_string());
        return Ok(Some(e));
    }
    for (name, present) in [
        ("Range", v.range),
        ("Ratio", v.ratio),
        ("SampledData", v.sampled),
        ("Time", v.time),
        ("Period", v.period),
    ] {
        if present {
            return Err(Reject::new(
                &format!("{field}{name}"),
                "unsupported_value_type",
                name,
                "valueQuantity, valueCodeableConcept, valueString, valueInteger, valueBoolean or valueDateTime",
            ));
        }
    }
    Ok(None)
}

fn first_time<'a>(opts: &[(&'static str, Option<&'a str>)]) -> Option<(&'static str, &'a str)> {
    opts.iter().find_map(|(f, v)| v.map(|v| (*f, v)))
}

fn convert(res: &Resource, row: &Row, c: &mut Chunk) -> Result<Outcome, Reject> {
    let rt = res.resource_type.as_deref().unwrap_or("");
    if let Some(s) = status_skip(rt, res.status.as_deref()) {
        return Ok(Outcome::Skip(s));
    }
    match rt {
        "Encounter" => {
            let sid = row.subject(res)?;
            let p = res
                .period
                .as_ref()
                .ok_or_else(|| Reject::missing("period.start"))?;
            let start = p
                .start
                .as_deref()
                .ok_or_else(|| Reject::missing("period.start"))?;
            let class: Option<Coding> = res.class.and_then(|r| serde_json::from_str(r.get()).ok());
            let class_code = class
                .as_ref()
                .and_then(|c| c.code.as_deref())
                .unwrap_or("UNK");
            let mut e = row.base(sid, rt);
            e.set_time(row.stamp("period.start", start)?);
            e.end_time = match p.end.as_deref() {
                Some(x) => Some(row.time("period.end", x)?),
                None => None,
            };
            e.code = encounter_code(class_code);
            e.visit_id = res.id.as_deref().map(String::from);
            Ok(Outcome::Events(vec![e]))
        }
        "Condition" => {
            if let Some(vs) = &res.verification_status
                && vs
                    .coding
                    .iter()
                    .any(|c| matches!(c.code.as_deref(), Some("entered-in-error" | "refuted")))
            {
                return Ok(Outcome::Skip(
                    "Condition verificationStatus refuted/entered-in-error".into(),
                ));
            }
            let sid = row.subject(res)?;
            let cc = res.code.as_ref().ok_or_else(|| Reject::missing("code"))?;
            let (code, alt, desc) = pick_code(cc, Kind::Condition)?;
            let (f, t) = first_time(&[
                ("onsetDateTime", res.onset_date_time.as_deref()),
                (
                    "onsetPeriod.start",
                    res.onset_period.as_ref().and_then(|p| p.start.as_deref()),
                ),
                ("recordedDate", res.recorded_date.as_deref()),
            ])
            .ok_or_else(|| Reject::missing("onsetDateTime"))?;
            let mut e = row.base(sid, rt);
            let recorded = res.recorded_date.as_deref().map(|r| ("recordedDate", r));
            e.set_time(row.stamp_recorded(f, t, recorded)?);
            e.end_time = match res.abatement_date_time.as_deref() {
                Some(x) => Some(row.time("abatementDateTime", x)?),
                None => None,
            };
            if let Some(d) = desc {
                c.describe(&code, d);
            }
            e.code = code;
            e.source_code = alt;
            e.visit_id = row.visit(res);
            e.coded_at_discharge = e.visit_id.is_some();
            Ok(Outcome::Events(vec![e]))
        }
        "Observation" => {
            let sid = row.subject(res)?;
            let cc = res.code.as_ref().ok_or_else(|| Reject::missing("code"))?;
            let (code, alt, desc) = pick_code(cc, Kind::Observation)?;
            let (f, t) = first_time(&[
                ("effectiveDateTime", res.effective_date_time.as_deref()),
                ("effectiveInstant", res.effective_instant.as_deref()),
                (
                    "effectivePeriod.start",
                    res.effective_period
                        .as_ref()
                        .and_then(|p| p.start.as_deref()),
                ),
                ("issued", res.issued.as_deref()),
            ])
            .ok_or_else(|| Reject::missing("effective[x]"))?;
            let issued = res.issued.as_deref().map(|r| ("issued", r));
            let mut base = row.base(sid, rt);
            base.set_time(row.stamp_recorded(f, t, issued)?);
            base.visit_id = row.visit(res);
            let mut out = Vec::new();
            let mut descs = Vec::new();
            for (i, comp) in res.component.iter().enumerate() {
                let Some(ccc) = comp.code.as_ref() else {
                    return Err(Reject::missing(&format!("component[{i}].code")));
                };
                let (ccode, calt, cdesc) = pick_code(ccc, Kind::Observation)?;
                let mut e = base.clone();
                e.code = ccode.clone();
                e.source_code = calt;
                if let Some(ev) =
                    observation_value(e, &format!("component[{i}].value"), &value_view!(comp))?
                {
                    if let Some(d) = cdesc {
                        descs.push((ev.code.clone(), d));
                    }
                    out.push(ev);
                }
            }
            let mut e = base;
            e.code = code.clone();
            e.source_code = alt;
            match observation_value(e.clone(), "value", &value_view!(res))? {
                Some(ev) => {
                    if let Some(d) = desc {
                        descs.push((ev.code.clone(), d));
                    }
                    out.push(ev);
                }
                None if out.is_empty() => {
                    if let Some(d) = desc {
                        descs.push((code, d));
                    }
                    out.push(e);
                }
                None => {}
            }
            for (code, d) in descs {
                c.describe(&code, d);
            }
            Ok(Outcome::Events(out))
        }
        "MedicationRequest" | "MedicationStatement" => {
            let sid = row.subject(res)?;
            let (code, alt, desc): (String, Option<String>, Option<&str>) =
                if let Some(cc) = &res.medication_concept {
                    pick_code(cc, Kind::Medication)?
                } else if let Some(r) = res
                    .medication_reference
                    .as_ref()
                    .and_then(|r| r.reference.as_deref())
                {
                    row.scope
                    .medications
                    .get(r)
                    .or_else(|| row.scope.global.and_then(|g| g.get(r)))
                    .map(|(c, a, d)| (c.clone(), a.clone(), d.as_deref()))
                    .ok_or_else(|| {
                        Reject::new(
                            "medicationReference",
                            "unresolved_reference",
                            r,
                            "a Medication contained in the resource or present in the same bundle",
                        )
                    })?
                } else {
                    return Err(Reject::missing("medication[x]"));
                };
            let (f, t) = first_time(&[
                ("authoredOn", res.authored_on.as_deref()),
                ("effectiveDateTime", res.effective_date_time.as_deref()),
                (
                    "effectivePeriod.start",
                    res.effective_period
                        .as_ref()
                        .and_then(|p| p.start.as_deref()),
                ),
                ("dateAsserted", res.date_asserted.as_deref()),
            ])
            .ok_or_else(|| {
                Reject::missing(if rt == "MedicationRequest" {
                    "authoredOn"
                } else {
                    "effective[x]"
                })
            })?;
            let mut e = row.base(sid, rt);
            e.set_time(row.stamp(f, t)?);
            e.end_time = match res.effective_period.as_ref().and_then(|p| p.end.as_deref()) {
                Some(x) => Some(row.time("effectivePeriod.end", x)?),
                None => None,
            };
            if let Some(d) = desc {
                c.describe(&code, d);
            }
            e.code = code;
            e.source_code = alt;
            e.visit_id = row.visit(res);
            Ok(Outcome::Events(vec![e]))
        }
        "Procedure" => {
            let sid = row.subject(res)?;
            let cc = res.code.as_ref().ok_or_else(|| Reject::missing("code"))?;
            let (code, alt, desc) = pick_code(cc, Kind::Procedure)?;
            let (f, t) = first_time(&[
                ("performedDateTime", res.performed_date_time.as_deref()),
                (
                    "performedPeriod.start",
                    res.performed_period
                        .as_ref()
                        .and_then(|p| p.start.as_deref()),
                ),
            ])
            .ok_or_else(|| Reject::missing("performed[x]"))?;
            let mut e = row.base(sid, rt);
            e.set_time(row.stamp(f, t)?);
            e.end_time = match res.performed_period.as_ref().and_then(|p| p.end.as_deref()) {
                Some(x) => Some(row.time("performedPeriod.end", x)?),
                None => None,
            };
            if let Some(d) = desc {
                c.describe(&code, d);
            }
            e.code = code;
            e.source_code = alt;
            e.visit_id = row.visit(res);
            Ok(Outcome::Events(vec![e]))
        }
        "Medication" => Ok(Outcome::Skip(
            "Medication (used to resolve references)".into(),
        )),
        "" => Err(Reject::missing("resourceType")),
        other => Ok(Outcome::Skip(format!("resource type {other} not used"))),
    }
}

/// The first `"resourceType": "X"` in the text, found without parsing the whole resource, so
/// types this engine does not use (Claim, ExplanationOfBenefit...) cost a byte scan, and their
/// fields, which may share names with ours but not shapes, are never deserialised.
fn peek_type(raw: &str) -> Option<&str> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"resourceType\""));
    let at = FINDER.find(raw.as_bytes())?;
    let rest = raw[at + 14..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Handle one JSON text that is a resource (or a Bundle). `row` is its line or entry number.
fn one_resource(raw: &str, row: u64, ctx: &Ctx, scope: &Scope<'_>, c: &mut Chunk) {
    if let Some(b) = envelope(raw) {
        bundle(&b, ctx, scope.global, c);
        // The bundle row itself is accounted for through its entries.
        return;
    }
    if let Some(t) = peek_type(raw)
        && t != "Bundle"
        && !USED.contains(&t)
    {
        c.skip(&format!("resource type {t} not used"));
        return;
    }
    let res: Resource = match serde_json::from_str(raw) {
        Ok(r) => r,
        Err(e) => {
            c.reject(
                ctx.file,
                row,
                raw,
                Reject::new(
                    "*",
                    "malformed_json",
                    "",
                    format!("one FHIR resource as a JSON object ({e})"),
                ),
            );
            return;
        }
    };
    if res.resource_type.as_deref() == Some("Bundle") {
        // Its envelope did not parse, so neither did the whole (which has more fields).
        c.reject(
            ctx.file,
            row,
            raw,
            Reject::new(
                "entry",
                "malformed_json",
                "",
                "a Bundle whose entries can be read",
            ),
        );
        return;
    }
    let r = Row {
        ctx,
        scope,
        row,
        id: res.id.as_deref(),
    };
    if res.resource_type.as_deref() == Some("Patient") {
        match patient(&res, &r, c, raw) {
            Ok((ident, events)) => {
                c.persons.extend(patient_facts(&res, &ident));
                c.identities.push(ident);
                c.accept(events);
            }
            Err(rej) => c.reject(ctx.file, row, raw, rej),
        }
        return;
    }
    match convert(&res, &r, c) {
        Ok(Outcome::Events(ev)) => c.accept(ev),
        Ok(Outcome::Skip(reason)) => c.skip(&reason),
        Err(rej) => c.reject(ctx.file, row, raw, rej),
    }
}

/// Flatten a bundle's entries (recursively) into (entry number, fullUrl, raw resource).
/// `skipped` counts entries without a resource, `empty` nested Bundles without entries.
fn flatten<'a>(
    res: &Envelope<'a>,
    out: &mut Vec<(Option<String>, &'a RawValue)>,
    skipped: &mut u64,
    empty: &mut u64,
) {
    for e in &res.entry {
        match e.resource {
            Some(r) => match envelope(r.get()) {
                Some(inner) if inner.entry.is_empty() => *empty += 1,
                Some(inner) => flatten(&inner, out, skipped, empty),
                None => out.push((e.full_url.as_deref().map(String::from), r)),
            },
            None => *skipped += 1,
        }
    }
}

/// Records in one NDJSON line: one, or a Bundle's entries ([`count_records`]).
pub fn line_records(line: &[u8]) -> u64 {
    if memchr::memmem::find(line, b"\"Bundle\"").is_none() {
        return 1;
    }
    std::str::from_utf8(line).map_or(1, count_records)
}

/// Records in a JSON document, counted apart from the reader that decides them: each entry of
/// a Bundle (a nested Bundle's entries in its place), one for an empty Bundle (a skipped
/// record), one for anything else (a resource, or text that is not one).
pub fn count_records(text: &str) -> u64 {
    match envelope(text) {
        Some(d) if !d.entry.is_empty() => d
            .entry
            .iter()
            .map(|e| e.resource.map_or(1, |r| count_records(r.get())))
            .sum(),
        _ => 1,
    }
}

fn medication_code(raw: &RawValue) -> Option<(String, Option<String>, Option<String>)> {
    let r: Resource = serde_json::from_str(raw.get()).ok()?;
    if r.resource_type.as_deref() != Some("Medication") {
        return None;
    }
    pick_code(r.code.as_ref()?, Kind::Medication)
        .ok()
        .map(|(c, a, d)| (c, a, d.map(String::from)))
}

fn bundle(res: &Envelope, ctx: &Ctx, global: Option<&Medications>, c: &mut Chunk) {
    let mut entries = Vec::new();
    let (mut no_resource, mut empty) = (0, 0);
    flatten(res, &mut entries, &mut no_resource, &mut empty);
    if res.entry.is_empty() {
        empty += 1;
    }
    for _ in 0..no_resource {
        c.skip("bundle entry without a resource");
    }
    for _ in 0..empty {
        c.skip("empty Bundle");
    }
    let mut scope = Scope {
        global,
        ..Default::default()
    };
    // First: Patients and Medications, so that entries can reference them in any order.
    let mut patient_rows = Vec::new();
    for (i, (full_url, raw)) in entries.iter().enumerate() {
        if !matches!(peek_type(raw.get()), Some("Patient" | "Medication")) {
            continue;
        }
        let probe: Option<Resource> = serde_json::from_str(raw.get()).ok();
        let Some(p) = probe else { continue };
        match p.resource_type.as_deref() {
            Some("Patient") => {
                if let (Some(u), Some(id)) = (full_url, p.id.as_deref()) {
                    scope.patient_urls.insert(u.clone(), id.to_string());
                }
                patient_rows.push(i);
            }
            Some("Medication") => {
                if let Some(code) = medication_code(raw) {
                    if let Some(u) = full_url {
                        scope.medications.insert(u.clone(), code.clone());
                    }
                    if let Some(id) = p.id.as_deref() {
                        scope.medications.insert(format!("Medication/{id}"), code);
                    }
                }
            }
            _ => {}
        }
    }
    for &i in &patient_rows {
        let before = c.identities.len();
        one_resource(entries[i].1.get(), i as u64 + 1, ctx, &scope, c);
        for id in &c.identities[before..] {
            scope.local_known.insert(id.subject_id);
        }
    }
    let patient_rows: HashSet<usize> = patient_rows.into_iter().collect();
    for (i, (_, raw)) in entries.iter().enumerate() {
        if patient_rows.contains(&i) {
            continue;
        }
        let text = raw.get();
        if has_contained(text) {
            let mut local = Scope {
                global,
                patient_urls: scope.patient_urls.clone(),
                medications: scope.medications.clone(),
                local_known: scope.local_known.clone(),
            };
            add_contained(text, &mut local);
            one_resource(text, i as u64 + 1, ctx, &local, c);
        } else {
            one_resource(text, i as u64 + 1, ctx, &scope, c);
        }
    }
}

fn has_contained(text: &str) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"contained\""));
    FINDER.find(text.as_bytes()).is_some()
}

fn add_contained(text: &str, scope: &mut Scope<'_>) {
    if !has_contained(text) {
        return;
    }
    if let Ok(r) = serde_json::from_str::<Resource>(text) {
        for m in &r.contained {
            if let Some(code) = medication_code(m)
                && let Ok(inner) = serde_json::from_str::<Resource>(m.get())
                && let Some(id) = inner.id.as_deref()
            {
                scope.medications.insert(format!("#{id}"), code);
            }
        }
    }
}

/// Parse a run of NDJSON lines starting at line `first_line`.
pub fn read_lines(data: &[u8], first_line: u64, ctx: &Ctx, meds: &Medications) -> Chunk {
    let mut c = Chunk::default();
    // Every line ends with '\n' (the block reader guarantees it), so the piece after the last
    // newline is empty and is not a line.
    let lines = memchr::memchr_iter(b'\n', data).count();
    for (this, raw) in (first_line..).zip(data.split(|b| *b == b'\n').take(lines)) {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            c.skip("blank line");
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let lossy = String::from_utf8_lossy(raw);
                c.reject(
                    ctx.file,
                    this,
                    &lossy,
                    Reject::new("*", "malformed_json", "", format!("UTF-8 text ({e})")),
                );
                continue;
            }
        };
        let mut scope = Scope {
            global: Some(meds),
            ..Default::default()
        };
        add_contained(text, &mut scope);
        one_resource(text, this, ctx, &scope, &mut c);
    }
    c
}

/// Parse a whole JSON document: a Bundle or a single resource.
pub fn read_document(text: &str, ctx: &Ctx, meds: &Medications) -> Chunk {
    let mut c = Chunk::default();
    let mut scope = Scope {
        global: Some(meds),
        ..Default::default()
    };
    add_contained(text, &mut scope);
    one_resource(text, 1, ctx, &scope, &mut c);
    c
}

/// Whether a resource type is one this reader turns into events.
pub fn is_used_type(t: &str) -> bool {
    USED.contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(text: &str) -> Chunk {
        let known = crate::ingest::SubjectSet::default();
        let ctx = Ctx {
            time: Default::default(),
            max_event_time: i64::MAX,
            min_event_time: i64::MIN,
            known: &known,
            policy: &crate::ingest::NO_POLICY,
            file_id: 0,
            file: "t",
        };
        read_document(text, &ctx, &Medications::default())
    }

    fn decided(c: &Chunk) -> u64 {
        c.tally.rows_accepted + c.tally.rows_rejected + c.tally.rows_skipped
    }

    /// The framing count and the reader's outcomes agree on every shape of document, and an
    /// empty Bundle is one skipped record (it used to be none: a row that vanished).
    #[test]
    fn bundle_entries_are_counted_apart_from_their_outcomes() {
        let patient = r#"{"resourceType":"Patient","id":"p","gender":"male","birthDate":"1960"}"#;
        let nested = format!(
            r#"{{"resourceType":"Bundle","entry":[{{"resource":{patient}}},{{"resource":{{"resourceType":"Bundle","entry":[]}}}},{{"fullUrl":"x"}}]}}"#
        );
        let docs = [
            r#"{"resourceType":"Bundle","type":"collection","entry":[]}"#.to_string(),
            r#"{"resourceType":"Bundle"}"#.to_string(),
            patient.to_string(),
            nested.clone(),
            format!(r#"{{"resourceType":"Bundle","entry":[{{"resource":{nested}}}]}}"#),
            "not json".to_string(),
            r#"{"entry":[{"resource":{"resourceType":"Patient"}}],"resourceType":"Bundle"}"#
                .to_string(),
        ];
        for d in &docs {
            let c = outcomes(d);
            assert_eq!(count_records(d), decided(&c), "{d}");
            assert_eq!(line_records(d.as_bytes()), decided(&c), "{d}");
        }
        let empty = outcomes(&docs[0]);
        assert_eq!(empty.tally.rows_skipped, 1);
        assert_eq!(empty.tally.skipped_by_reason.get("empty Bundle"), Some(&1));
        assert_eq!(count_records(&nested), 3);
    }
}
