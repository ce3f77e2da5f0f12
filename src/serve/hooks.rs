//! The CDS Hooks 2.0 documents of the service. In: a `patient-view` request body. Out: the
//! discovery document (the service, its prefetch templates), the checked request (400 with a
//! reason when it is not one), the FHIR queries a missing prefetch needs, and the card built from
//! an [`Assessment`]: a summary under 140 characters (tier and risk), an indicator by tier, a
//! Markdown detail (risks, top factors with treatments apart as markers of known disease,
//! recommendations with their guideline and the trials' what-if), the source (model and
//! guideline link) and links to the guidelines behind the recommendations.

use crate::explain::clinician_lines;
use crate::score::Assessment;
use serde::Deserialize;
use serde_json::{Value, json};

/// The service id (its URL is `/cds-services/{SERVICE_ID}`).
pub const SERVICE_ID: &str = "ehr-risk-patient-view";

/// Prefetch keys and their FHIR queries: what the model reads (the patient, diagnoses, vital
/// signs and labs, smoking status, medications).
pub const PREFETCH: [(&str, &str); 5] = [
    ("patient", "Patient/{{context.patientId}}"),
    ("conditions", "Condition?patient={{context.patientId}}"),
    (
        "observations",
        "Observation?patient={{context.patientId}}&category=vital-signs,laboratory,social-history",
    ),
    (
        "medicationRequests",
        "MedicationRequest?patient={{context.patientId}}",
    ),
    ("encounters", "Encounter?patient={{context.patientId}}"),
];

/// The discovery document.
pub fn discovery() -> Value {
    let prefetch: serde_json::Map<String, Value> = PREFETCH
        .iter()
        .map(|(k, q)| (k.to_string(), Value::String(q.to_string())))
        .collect();
    json!({"services": [{
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": "Heart attack and stroke risk",
        "description": "10-year risk of myocardial infarction and stroke from the longitudinal record, with the preventive steps the ACC/AHA guidelines recommend and their effect in trials",
        "prefetch": prefetch,
        "usageRequirements": "Prefetch or FHIR server access to the patient's Conditions, Observations, MedicationRequests and Encounters",
    }]})
}

/// The EHR's grant to read its FHIR server (CDS Hooks names these fields in snake case).
#[derive(Debug, Deserialize)]
pub struct FhirAuthorization {
    pub access_token: String,
    pub token_type: Option<String>,
}

/// A checked `patient-view` request.
#[derive(Debug)]
pub struct PatientView {
    pub hook_instance: String,
    pub patient_id: String,
    pub fhir_server: Option<String>,
    pub fhir_authorization: Option<FhirAuthorization>,
    /// prefetch key -> the resource's JSON text (absent or null: to be fetched)
    pub prefetch: std::collections::BTreeMap<String, String>,
}

/// A request that is not a `patient-view` call this service takes: 400 with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// The request as it arrives: the prefetched resources are kept as raw JSON text (they go to
/// the FHIR reader as text; a request's whole history is never built as a JSON tree).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    hook: Option<Value>,
    hook_instance: Option<Value>,
    context: Option<Value>,
    fhir_server: Option<Value>,
    fhir_authorization: Option<Value>,
    #[serde(borrow)]
    prefetch: Option<&'a serde_json::value::RawValue>,
}

/// What a prefetched resource is, read without building it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    resource_type: Option<Value>,
    id: Option<Value>,
}

impl PatientView {
    pub fn parse(body: &[u8]) -> Result<PatientView, BadRequest> {
        let w: Wire = serde_json::from_slice(body).map_err(|e| {
            BadRequest(if e.is_data() {
                format!("body is not a CDS Hooks request: {e}")
            } else {
                format!("body is not JSON: {e}")
            })
        })?;
        match w.hook.as_ref().and_then(|h| h.as_str()) {
            Some("patient-view") => {}
            Some(h) => {
                return Err(BadRequest(format!(
                    "hook {h:?}: this service answers patient-view"
                )));
            }
            None => return Err(BadRequest("hook: missing".into())),
        }
        let hook_instance = w
            .hook_instance
            .as_ref()
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .ok_or_else(|| BadRequest("hookInstance: missing".into()))?
            .to_string();
        let patient_id = w
            .context
            .as_ref()
            .and_then(|c| c.get("patientId"))
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .ok_or_else(|| BadRequest("context.patientId: missing".into()))?
            .to_string();
        if patient_id.len() > 64
            || !patient_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(BadRequest(
                "context.patientId: not a FHIR id ([A-Za-z0-9-.]{1,64})".into(),
            ));
        }
        let fhir_server = match w.fhir_server {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(_) => return Err(BadRequest("fhirServer: not an http(s) URL".into())),
        };
        let fhir_authorization = match w.fhir_authorization {
            None | Some(Value::Null) => None,
            Some(a) => Some(
                serde_json::from_value(a)
                    .map_err(|e| BadRequest(format!("fhirAuthorization: {e}")))?,
            ),
        };
        let mut prefetch = std::collections::BTreeMap::new();
        if let Some(raw) = w.prefetch.filter(|r| r.get() != "null") {
            let entries: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
                serde_json::from_str(raw.get())
                    .map_err(|_| BadRequest("prefetch: not an object".into()))?;
            for (k, r) in entries {
                if r.get() == "null" {
                    continue;
                }
                let peek: Peek = serde_json::from_str(r.get())
                    .map_err(|_| BadRequest(format!("prefetch.{k}: not a FHIR resource")))?;
                let Some(Value::String(t)) = peek.resource_type else {
                    return Err(BadRequest(format!("prefetch.{k}: not a FHIR resource")));
                };
                if k == "patient"
                    && (t != "Patient"
                        || peek.id.as_ref().and_then(|i| i.as_str()) != Some(patient_id.as_str()))
                {
                    return Err(BadRequest(
                        "prefetch.patient: not the Patient of context.patientId".into(),
                    ));
                }
                prefetch.insert(k, r.get().to_string());
            }
        }
        Ok(PatientView {
            hook_instance,
            patient_id,
            fhir_server,
            fhir_authorization,
            prefetch,
        })
    }

    /// The FHIR query of a prefetch key for this patient (relative to the FHIR server).
    pub fn query(&self, template: &str) -> String {
        template.replace("{{context.patientId}}", &self.patient_id)
    }
}

fn indicator(tier: &str) -> &'static str {
    match tier {
        "high" => "critical",
        "intermediate" => "warning",
        _ => "info",
    }
}

fn pct(p: f64) -> String {
    if p < 0.01 {
        "<1%".into()
    } else {
        format!("{:.0}%", p * 100.0)
    }
}

/// The card for one assessment.
pub fn card(a: &Assessment, hook_instance: &str, model_label: &str, top: usize) -> Value {
    let h = a.horizon_years;
    let mut summary = format!(
        "{} risk: {} chance of heart attack or stroke in {h} years",
        capitalise(a.tier),
        pct(a.any_risk)
    );
    summary.truncate(139);
    let mut d = String::new();
    d.push_str(&format!(
        "**{h}-year risk**: myocardial infarction {}, stroke {}, either {} (tier: {}).\n\n",
        pct(a.risk.get("mi").copied().unwrap_or(f64::NAN)),
        pct(a.risk.get("stroke").copied().unwrap_or(f64::NAN)),
        pct(a.any_risk),
        a.tier
    ));
    if let Some(fs) = a.factors.get("mi").or_else(|| a.factors.values().next()) {
        let (risk, markers) = clinician_lines(fs, top);
        if !risk.is_empty() {
            d.push_str("**What drives the risk** (percentage points):\n");
            for l in &risk {
                d.push_str(&format!("- {l}\n"));
            }
            d.push('\n');
        }
        if !markers.is_empty() {
            d.push_str("**Treatments** (markers of known disease, not causes):\n");
            for l in &markers {
                d.push_str(&format!("- {l}\n"));
            }
            d.push('\n');
        }
    }
    if !a.recommendations.is_empty() {
        d.push_str("**Recommended**:\n");
        for r in &a.recommendations {
            d.push_str(&format!("- {} *({}; {})*", r.text, r.guideline, r.strength));
            if let Some(e) = &r.effect {
                let ch = e.changes(&pct, "→");
                if !ch.is_empty() {
                    d.push_str(&format!(
                        ". If done{}: {}. *Effect measured in trials: {}*",
                        e.dose_note(),
                        ch.join(", "),
                        e.source
                    ));
                }
            }
            d.push('\n');
        }
    }
    let mut links: Vec<Value> = Vec::new();
    for r in &a.recommendations {
        if let Some(u) = &r.guideline_url
            && !links.iter().any(|l| l["url"] == *u)
        {
            let label = r.guideline.split(',').next().unwrap_or(&r.guideline);
            links.push(json!({"label": label, "url": u, "type": "absolute"}));
        }
    }
    json!({
        "uuid": card_uuid(hook_instance),
        "summary": summary,
        "indicator": indicator(a.tier),
        "detail": d,
        "source": {
            "label": model_label,
            "url": "https://doi.org/10.1161/CIR.0000000000000678",
            "topic": {"system": "http://snomed.info/sct", "code": "709510001", "display": "Assessment of risk for disease"},
        },
        "links": links,
        // The numbers behind the card, for the EHR's own use and for checks.
        "extension": {"ehr-risk": {
            "horizon_years": h,
            "tier": a.tier,
            "any_risk": a.any_risk,
            "risk": a.risk,
        }},
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A card id derived from the hook instance (the same call gets the same card id).
fn card_uuid(hook_instance: &str) -> String {
    crate::score::fhir::uuid_text(&blake3::hash(hook_instance.as_bytes()).to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_patient_view_request_is_checked_with_reasons() {
        let ok = json!({"hook": "patient-view", "hookInstance": "h1",
                        "context": {"userId": "Practitioner/1", "patientId": "p-1"},
                        "prefetch": {"patient": {"resourceType": "Patient", "id": "p-1"}, "conditions": null}});
        let p = PatientView::parse(&body(ok.clone())).unwrap();
        assert_eq!(p.patient_id, "p-1");
        assert_eq!(p.query(PREFETCH[1].1), "Condition?patient=p-1");
        for (change, why) in [
            (json!({"hook": "order-sign"}), "patient-view"),
            (json!({"hookInstance": ""}), "hookInstance"),
            (json!({"context": {}}), "context.patientId"),
            (json!({"context": {"patientId": "a/../b"}}), "not a FHIR id"),
            (json!({"prefetch": [1]}), "prefetch: not an object"),
            (json!({"prefetch": {"x": 3}}), "prefetch.x"),
            (
                json!({"prefetch": {"patient": {"resourceType": "Patient", "id": "other"}}}),
                "prefetch.patient",
            ),
            (json!({"fhirServer": "ftp://x"}), "fhirServer"),
        ] {
            let mut v = ok.clone();
            for (k, x) in change.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = PatientView::parse(&body(v)).unwrap_err().0;
            assert!(e.contains(why), "{e} should say {why}");
        }
        assert!(
            PatientView::parse(b"{not json")
                .unwrap_err()
                .0
                .contains("not JSON")
        );
    }

    #[test]
    fn discovery_lists_the_service_with_its_prefetch() {
        let d = discovery();
        let s = &d["services"][0];
        assert_eq!(s["hook"], "patient-view");
        assert_eq!(s["id"], SERVICE_ID);
        assert_eq!(s["prefetch"]["patient"], "Patient/{{context.patientId}}");
    }
}
