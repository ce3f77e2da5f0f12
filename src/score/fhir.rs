//! FHIR R4 `RiskAssessment` for one assessment. In: an [`Assessment`] (risks at the reference
//! horizon, top factors, recommendations) and the model. Out: a JSON resource shaped like the
//! HL7 examples (`RiskAssessment-cardiac`, `-riskexample`): status, subject (by the lake's
//! subject identifier), occurrenceDateTime, method (the model and its weights hash), code, basis,
//! one prediction per outcome with a SNOMED CT outcome, probabilityDecimal, whenRange (the age
//! range the horizon covers, as in the HL7 cardiac example) and rationale (the top factors), and
//! mitigation (the recommendations). No free-text patient data beyond what the model computed.

use super::{Assessment, describe};
use crate::model::bundle::Model;
use serde_json::{Value, json};

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

pub fn risk_assessment(model: &Model, a: &Assessment, top: usize) -> Value {
    let m = &model.manifest;
    let h = m.horizons_years.iter().max().copied().unwrap_or(0) as f64;
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
            let reasons: Vec<String> = a
                .factors
                .get(o)
                .map(|f| f.iter().take(top).map(|f| f.describe()).collect())
                .unwrap_or_default();
            p["rationale"] = Value::String(if reasons.is_empty() {
                format!("{h:.0}-year risk from the ehr-risk network; not explained in this run")
            } else {
                format!(
                    "{h:.0}-year risk. Largest contributions (percentage points against an average record): {}",
                    reasons.join("; ")
                )
            });
            p
        })
        .collect();
    let date = when.get(..10).unwrap_or("");
    let mut r = json!({
        "resourceType": "RiskAssessment",
        "id": format!("ehr-risk-{}-{}", a.subject_id, date),
        "identifier": [{"use": "official", "system": "urn:ehr-risk:risk-assessment",
                        "value": format!("{}-{}-{}", a.subject_id, date, &m.weights_hash[..12])}],
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "709510001",
                             "display": "Assessment of risk for disease (procedure)"}]},
        "subject": {"identifier": {"system": "urn:ehr-risk:subject", "value": a.subject_id.to_string()}},
        "occurrenceDateTime": when,
        "method": {"coding": [{"system": "urn:ehr-risk:model", "code": "gru",
                               "display": format!("ehr-risk GRU {} ({}), weights {}", m.ehr_risk_version, m.task, &m.weights_hash[..12])}],
                   "text": "Recurrent network over the longitudinal record: discrete-time competing-risks hazards, recalibrated on a tuning split"},
        "basis": [{"display": "Longitudinal EHR events in the 5-year look-back (ehr-risk features)"}],
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
