//! FHIR R4 `RiskAssessment`s an EHR can take back. In: an [`Assessment`], the model, and how the
//! subject is known to the receiving systems ([`SubjectRefs`], from the lake's subject map). Out:
//! JSON resources shaped like the HL7 examples (`RiskAssessment-cardiac`, `-riskexample`):
//! status, subject (the receiving system's `Patient/<id>`, or its identifier), a stable
//! `identifier` per subject, receiving patient, model and prediction time (so a re-run updates
//! instead of duplicating), occurrenceDateTime, method (the model and its weights hash), code,
//! basis, one prediction per outcome (SNOMED CT outcome, probabilityDecimal, whenRange, rationale
//! with treatments listed apart as markers of known disease) and mitigation (the recommendations
//! with the trials' what-if); and a transaction Bundle of them, one conditional update per
//! resource, for a FHIR server to take in one POST. No patient data beyond what the model computed.

use super::assess::{Assessment, describe};
use crate::explain::clinician_text;
use crate::ingest::fhir::PATIENT_ID_SYSTEM;
use crate::model::bundle::{Model, ModelError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The lake's own subject ids, used when no subject map is given (no EHR knows them).
pub const LAKE_SUBJECT_SYSTEM: &str = "urn:ehr-risk:subject";

/// The identifier system of the resources this engine writes.
pub const IDENTIFIER_SYSTEM: &str = "urn:ehr-risk:risk-assessment";

/// How each subject is known to the systems that receive the resources.
#[derive(Debug, Clone, Default)]
pub struct SubjectRefs {
    /// Only this system (`--fhir-target`); else every system that knows the patient.
    target: Option<String>,
    by_subject: HashMap<i64, Vec<(String, String)>>,
}

impl SubjectRefs {
    /// The lake's subject map, restricted to `target` when given (refused when no subject is
    /// known to that system: a typo would otherwise write nothing back).
    pub fn from_lake(lake: &Path, target: Option<&str>) -> Result<SubjectRefs, ModelError> {
        let p = lake.join("metadata/subject_map.parquet");
        let ids = crate::lake::write::read_subject_map(&p).map_err(|e| ModelError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        let mut by_subject: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        let mut systems = std::collections::BTreeSet::new();
        for i in ids {
            systems.insert(i.system.clone());
            if target.is_none_or(|t| t == i.system) {
                by_subject
                    .entry(i.subject_id)
                    .or_default()
                    .push((i.system, i.value));
            }
        }
        if let Some(t) = target
            && !systems.contains(t)
        {
            return Err(ModelError::Mismatch {
                dir: lake.display().to_string(),
                message: format!(
                    "--fhir-target {t:?}: no patient in the lake is known to that system (systems: {})",
                    systems.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        for v in by_subject.values_mut() {
            v.sort();
            v.dedup();
        }
        Ok(SubjectRefs {
            target: target.map(String::from),
            by_subject,
        })
    }

    /// The (system, value) pairs a subject's resources are written for: one per receiving
    /// system; none when the subject is not known to the target; without a subject map (no
    /// lake given), the lake's own subject id.
    pub fn of(&self, subject_id: i64) -> Vec<(String, String)> {
        match self.by_subject.get(&subject_id) {
            Some(v) => v.clone(),
            None if self.target.is_none() && self.by_subject.is_empty() => {
                vec![(LAKE_SUBJECT_SYSTEM.to_string(), subject_id.to_string())]
            }
            None => vec![],
        }
    }

    pub fn worklist_column(&self) -> String {
        match &self.target {
            Some(t) => format!("{t} id"),
            None => "source ids".into(),
        }
    }

    pub fn worklist_value(&self, subject_id: i64) -> String {
        let v = self.of(subject_id);
        match &self.target {
            Some(_) => v
                .iter()
                .map(|x| x.1.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            None => v
                .iter()
                .map(|(s, x)| format!("{s}|{x}"))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

/// The subject reference for a receiving system: `Patient/<id>` for a source Patient id, else
/// a logical reference by identifier.
pub fn subject_reference(system: &str, value: &str) -> Value {
    if system == PATIENT_ID_SYSTEM {
        json!({"reference": format!("Patient/{value}")})
    } else {
        json!({"identifier": {"system": system, "value": value}})
    }
}

/// SNOMED CT concept of an outcome name.
fn outcome_code(o: &str) -> (&'static str, &'static str) {
    match o {
        "mi" => ("22298006", "Myocardial infarction"),
        "stroke" => ("230690007", "Cerebrovascular accident"),
        _ => ("", ""),
    }
}

fn years(v: f64) -> Value {
    json!({"value": (v * 10.0).round() / 10.0, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"})
}

/// The stable identifier value of the resource for one subject as one system knows them, one
/// model and one prediction time: a re-run of the same model updates it.
pub fn identifier_value(model: &Model, a: &Assessment, system: &str, value: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        system.as_bytes(),
        value.as_bytes(),
        model.manifest.weights_hash.as_bytes(),
        &a.prediction_time.to_le_bytes(),
        &a.subject_id.to_le_bytes(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// One RiskAssessment of `a` for the patient `(system, value)` of a receiving system.
pub fn risk_assessment(
    model: &Model,
    a: &Assessment,
    top: usize,
    system: &str,
    value: &str,
) -> Value {
    let m = &model.manifest;
    let h = a.horizon_years as f64;
    let when = chrono::DateTime::from_timestamp_micros(a.prediction_time)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let predictions: Vec<Value> = m
        .outcomes
        .iter()
        .map(|o| {
            let (code, display) = outcome_code(o);
            let mut outcome = json!({"text": display});
            if !code.is_empty() {
                outcome["coding"] =
                    json!([{"system": "http://snomed.info/sct", "code": code, "display": display}]);
            }
            let mut p = json!({
                "outcome": outcome,
                "probabilityDecimal": (a.risk[o] * 1e4).round() / 1e4,
            });
            if a.age.is_finite() {
                p["whenRange"] = json!({"low": years(a.age), "high": years(a.age + h)});
            }
            let reasons = a
                .factors
                .get(o)
                .map(|f| clinician_text(f, top))
                .unwrap_or_default();
            p["rationale"] = Value::String(if reasons.is_empty() {
                format!("{h:.0}-year risk from the ehr-risk network; not explained in this run")
            } else {
                format!(
                    "{h:.0}-year risk. Largest contributions (percentage points against an average record): {reasons}"
                )
            });
            p
        })
        .collect();
    let ident = identifier_value(model, a, system, value);
    let mut r = json!({
        "resourceType": "RiskAssessment",
        "id": format!("ehr-risk-{ident}"),
        "identifier": [{"use": "official", "system": IDENTIFIER_SYSTEM, "value": ident}],
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "709510001",
                             "display": "Assessment of risk for disease (procedure)"}]},
        "subject": subject_reference(system, value),
        "occurrenceDateTime": when,
        "method": {"coding": [{"system": "urn:ehr-risk:model", "code": "gru",
                               "display": format!("ehr-risk GRU {} ({}), weights {}", m.ehr_risk_version, m.task, &m.weights_hash[..12])}],
                   "text": "Recurrent network over the longitudinal record: discrete-time competing-risks hazards, recalibrated on a tuning split"},
        "basis": basis(a, system),
        "prediction": predictions,
        "note": [{"text": format!("Risk tier: {} ({:.1}% risk of MI or stroke within {h:.0} years)", a.tier, a.any_risk * 100.0)}],
    });
    if !a.recommendations.is_empty() {
        r["mitigation"] = Value::String(
            a.recommendations
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    r
}

/// The identifier system of a source record that is not referenced literally.
pub fn record_system(source: &str) -> String {
    format!("urn:ehr-risk:source:{source}")
}

/// `basis`: the source records behind the top factors. A record of a FHIR export is referenced
/// literally (`Observation/<id>`) when the receiving system is that export's own (the subject is
/// its `Patient/<id>`); otherwise, and for other formats, by an identifier naming its source
/// table and id. Records without an id of their own are named in `display` only. Without
/// records (no lake given, or not explained), one display says what the score was computed from.
pub fn basis(a: &Assessment, system: &str) -> Value {
    if a.basis.is_empty() {
        return json!([{"display": "Longitudinal EHR events in the 5-year look-back (ehr-risk features)"}]);
    }
    let literal = system == PATIENT_ID_SYSTEM;
    a.basis
        .iter()
        .map(|b| {
            let when = b
                .known_at
                .and_then(chrono::DateTime::from_timestamp_micros)
                .map(|d| format!(", known {}", d.date_naive()))
                .unwrap_or_default();
            let display = format!("{}: {}{when} ({})", b.factor, b.code, b.source);
            match (&b.record_id, b.source.strip_prefix("fhir:")) {
                (Some(id), Some(ty)) if literal => {
                    json!({"reference": format!("{ty}/{id}"), "display": display})
                }
                (Some(id), _) => json!({
                    "identifier": {"system": record_system(&b.source), "value": id},
                    "display": display,
                }),
                (None, _) => json!({"display": display}),
            }
        })
        .collect()
}

/// The transaction Bundle's entry for a resource: a conditional update on its identifier, so
/// the server creates it the first time and updates it after.
pub fn transaction_entry(resource: &Value) -> Value {
    let ident = resource["identifier"][0]["value"].as_str().unwrap_or("");
    json!({
        "fullUrl": format!("urn:uuid:{}", uuid_text(ident)),
        "resource": resource,
        "request": {
            "method": "PUT",
            "url": format!("RiskAssessment?identifier={IDENTIFIER_SYSTEM}|{ident}"),
        },
    })
}

/// A UUID-shaped text of (the first) 32 hex digits, padded with zeros when shorter.
pub fn uuid_text(hex32: &str) -> String {
    let h = format!("{hex32:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Writes a transaction Bundle entry by entry (the run's resources never sit in memory).
pub struct TransactionWriter<W: Write> {
    w: W,
    entries: u64,
}

impl<W: Write> TransactionWriter<W> {
    pub fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(b"{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[")?;
        Ok(TransactionWriter { w, entries: 0 })
    }

    pub fn add(&mut self, resource: &Value) -> std::io::Result<()> {
        if self.entries > 0 {
            self.w.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.w, &transaction_entry(resource))?;
        self.entries += 1;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<u64> {
        self.w.write_all(b"]}\n")?;
        self.w.flush()?;
        Ok(self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_patient_id_is_a_literal_reference_and_an_mrn_a_logical_one() {
        assert_eq!(
            subject_reference(PATIENT_ID_SYSTEM, "p1"),
            json!({"reference": "Patient/p1"})
        );
        assert_eq!(
            subject_reference("urn:oid:1.2.3", "0042"),
            json!({"identifier": {"system": "urn:oid:1.2.3", "value": "0042"}})
        );
    }

    #[test]
    fn transaction_bundle_is_valid_json_with_one_conditional_update_per_resource() {
        let mut buf = Vec::new();
        let mut w = TransactionWriter::new(&mut buf).unwrap();
        for v in ["a1", "b2"] {
            w.add(&json!({"resourceType": "RiskAssessment", "identifier": [{"value": format!("{v:0>32}")}]}))
                .unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2);
        let b: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(b["type"], "transaction");
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["request"]["method"], "PUT");
        assert_eq!(
            e[1]["request"]["url"],
            format!(
                "RiskAssessment?identifier={IDENTIFIER_SYSTEM}|{:0>32}",
                "b2"
            )
        );
        assert!(e[0]["fullUrl"].as_str().unwrap().starts_with("urn:uuid:"));
        assert_ne!(e[0]["fullUrl"], e[1]["fullUrl"]);
    }
}
