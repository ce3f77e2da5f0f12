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
pub struct Compiled {
    pub spec: FeatureSpec,
    /// (name, canonical code) per measurement.
    pub measurements: Vec<(String, String)>,
    /// Per treatment: the lake codes that name one of its ingredients.
    pub treatment_codes: Vec<HashSet<String>>,
}

pub fn rules_match(rules: &[CodeRule], code: &str) -> bool {
    let Some((vocab, value)) = code.split_once("//") else {
        return false;
    };
    rules.iter().any(|r| {
        r.vocabulary == vocab
            && (r.exact.iter().any(|x| x == value)
                || r.prefixes.iter().any(|p| value.starts_with(p.as_str())))
    })
}

impl Compiled {
    pub fn new(
        spec: FeatureSpec,
        codes: &BTreeMap<String, Option<String>>,
    ) -> Result<Compiled, String> {
        let mut measurements = Vec::new();
        for name in &spec.measurements {
            let c = units()
                .concepts()
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| format!("features.toml: measurement {name:?} is not a concept of schemas/measurements.toml"))?;
            measurements.push((name.clone(), c.code.clone()));
        }
        let treatment_codes = spec
            .treatment
            .iter()
            .map(|t| {
                codes
                    .iter()
                    .filter(|(code, desc)| {
                        let text = format!("{} {}", code, desc.as_deref().unwrap_or(""))
                            .to_ascii_lowercase();
                        t.ingredients.iter().any(|i| text.contains(i.as_str()))
                    })
                    .map(|(c, _)| c.clone())
                    .collect()
            })
            .collect();
        Ok(Compiled {
            spec,
            measurements,
            treatment_codes,
        })
    }

    pub fn is_treatment(&self, k: usize, e: &Event) -> bool {
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
