//! Feature definitions (`schemas/features.toml`) compiled against the lake: measured concepts to
//! their canonical codes, conditions to code rules, treatments to the lake codes whose
//! description names an ingredient.

use crate::cohort::spec::CodeRule;
use crate::schema::Event;
use crate::schema::units::units;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub measurements: Vec<String>,
    pub condition: Vec<ConditionSpec>,
    pub active_days: u32,
    /// Vocabularies whose codes are medications wherever they were recorded.
    pub medication_vocabularies: Vec<String>,
    pub treatment: Vec<TreatmentSpec>,
    pub sequence: SequenceSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub name: String,
    pub codes: Vec<CodeRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TreatmentSpec {
    pub name: String,
    pub ingredients: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SequenceSpec {
    pub max_steps: usize,
    pub min_code_count: u64,
}

impl FeatureSpec {
    pub fn builtin() -> FeatureSpec {
        toml::from_str(include_str!("../../schemas/features.toml"))
            .expect("schemas/features.toml is valid (unit-tested)")
    }

    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(toml::to_string(self).expect("serialises").as_bytes())[..8])
    }
}

/// The spec resolved against a lake's code metadata.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub spec: FeatureSpec,
    /// (name, canonical code) per measurement.
    pub measurements: Vec<(String, String)>,
    /// Per treatment: the lake codes that name one of its ingredients.
    pub treatment_codes: Vec<HashSet<String>>,
}

pub use crate::cohort::spec::rules_match;

impl FeatureSpec {
    /// The spec with its conditions' descendants resolved against a lake's code hierarchy
    /// (the hash stays the spec's own: the lake is in the lake fingerprint).
    pub fn with_descendants(mut self, parents: &crate::cohort::spec::CodeParents) -> FeatureSpec {
        for c in &mut self.condition {
            c.codes = crate::cohort::spec::with_descendants(&c.codes, parents);
        }
        self
    }
}

impl Compiled {
    pub fn new(
        spec: FeatureSpec,
        codes: &BTreeMap<String, Option<String>>,
    ) -> Result<Compiled, super::FeatureError> {
        let mut measurements = Vec::new();
        for name in &spec.measurements {
            let c = units()
                .concepts()
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| super::FeatureError::UnknownMeasurement(name.clone()))?;
            measurements.push((name.clone(), c.code.clone()));
        }
        let mut c = Compiled {
            treatment_codes: vec![HashSet::new(); spec.treatment.len()],
            spec,
            measurements,
        };
        c.add_codes(codes);
        Ok(c)
    }

    /// Learn more codes and their descriptions (a point-of-care request's medications that the
    /// lake has not seen): each joins the treatments whose ingredient it names.
    pub fn add_codes(&mut self, codes: &BTreeMap<String, Option<String>>) {
        for (code, desc) in codes {
            let text = format!("{} {}", code, desc.as_deref().unwrap_or("")).to_ascii_lowercase();
            for (t, set) in self.spec.treatment.iter().zip(&mut self.treatment_codes) {
                if t.ingredients.iter().any(|i| text.contains(i.as_str())) {
                    set.insert(code.clone());
                }
            }
        }
    }

    /// A medication record: from a medication source, or coded in a drug vocabulary.
    pub fn is_medication(&self, e: &Event) -> bool {
        crate::schema::MEDICATION_SOURCES.contains(&e.source.as_ref())
            || e.code
                .split_once("//")
                .is_some_and(|(v, _)| self.spec.medication_vocabularies.iter().any(|m| m == v))
    }

    /// Whether `e` records treatment `k`: a medication record naming one of its ingredients.
    pub fn is_treatment(&self, k: usize, e: &Event) -> bool {
        if !self.is_medication(e) {
            return false;
        }
        self.treatment_codes[k].contains(&e.code)
            || e.text_value.as_deref().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                self.spec.treatment[k]
                    .ingredients
                    .iter()
                    .any(|i| t.contains(i.as_str()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(code: &str, source: &'static str, text: Option<&str>) -> Event {
        Event {
            subject_id: 1,
            time: Some(0),
            code: code.into(),
            text_value: text.map(String::from),
            source: std::borrow::Cow::Borrowed(source),
            ..Default::default()
        }
    }

    /// Issue 10: treatment flags come from medication records only. Each false friend below
    /// names an ingredient in its description or text and set a flag before.
    #[test]
    fn treatment_flags_come_from_medication_records_only() {
        let codes: BTreeMap<String, Option<String>> = [
            (
                "LOINC//20448-7",
                "Insulin [Units/volume] in Serum or Plasma",
            ),
            ("SNOMED//293586001", "Allergy to aspirin"),
            ("RXNORM//617314", "atorvastatin 10 MG Oral Tablet"),
            ("MEDICATION//metformin", "metformin"),
        ]
        .into_iter()
        .map(|(c, d)| (c.to_string(), Some(d.to_string())))
        .collect();
        let c = Compiled::new(FeatureSpec::builtin(), &codes).unwrap();
        let k = |name: &str| {
            c.spec
                .treatment
                .iter()
                .position(|t| t.name == name)
                .unwrap()
        };
        let (statin, diabetes, aspirin) = (k("statin"), k("antidiabetic"), k("aspirin"));
        // False friends: a lab, an allergy, a note.
        assert!(!c.is_treatment(diabetes, &event("LOINC//20448-7", "fhir:Observation", None)));
        assert!(!c.is_treatment(aspirin, &event("SNOMED//293586001", "fhir:Condition", None)));
        assert!(!c.is_treatment(
            statin,
            &event(
                "LOINC//8302-2",
                "fhir:Observation",
                Some("asked about atorvastatin")
            )
        ));
        assert!(!c.is_treatment(
            aspirin,
            &event("SNOMED//293586001", "synthea:conditions", Some("aspirin"))
        ));
        // Medication records: by source, and by drug vocabulary (MEDS input has no table).
        assert!(c.is_treatment(
            statin,
            &event("RXNORM//617314", "fhir:MedicationRequest", None)
        ));
        assert!(c.is_treatment(statin, &event("RXNORM//617314", "meds", None)));
        assert!(c.is_treatment(
            statin,
            &event(
                "MIMIC_DRUG//LIPITOR",
                "mimic:prescriptions",
                Some("Atorvastatin")
            )
        ));
        assert!(c.is_treatment(diabetes, &event("MEDICATION//metformin", "meds", None)));
    }
}
