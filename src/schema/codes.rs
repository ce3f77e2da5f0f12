//! Code normalisation: whatever a source wrote (dots or not, padding, case, system URI),
//! out comes one spelling per vocabulary, `VOCAB//value`. The mappings are data
//! (`schemas/vocabularies.toml`); the per-vocabulary value rules are here because they are
//! the grammar of each code system, not configuration.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The vocabulary mapping tables, parsed once from `schemas/vocabularies.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabularies {
    pub preference: Preference,
    pub fhir: HashMap<String, String>,
    pub omop: HashMap<String, String>,
    pub meds_prefix: HashMap<String, String>,
    pub encounter_class: HashMap<String, String>,
    pub synthea_encounter_snomed: HashMap<String, String>,
    pub mimic_lab_loinc: HashMap<String, String>,
}

/// Preferred vocabularies per kind of resource.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub observation: Vec<String>,
    pub condition: Vec<String>,
    pub medication: Vec<String>,
    pub procedure: Vec<String>,
}

/// Which preference list applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Observation,
    Condition,
    Medication,
    Procedure,
}

/// The embedded vocabulary tables.
pub fn vocabularies() -> &'static Vocabularies {
    static V: OnceLock<Vocabularies> = OnceLock::new();
    V.get_or_init(|| {
        toml::from_str(include_str!("../../schemas/vocabularies.toml"))
            .expect("schemas/vocabularies.toml is valid (checked by a unit test)")
    })
}

/// Why a code value could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCode {
    pub vocab: String,
    pub value: String,
    pub expected: &'static str,
}

impl std::fmt::Display for BadCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} code {:?}: expected {}",
            self.vocab, self.value, self.expected
        )
    }
}

fn strip_dots_upper(v: &str) -> String {
    v.trim()
        .chars()
        .filter(|c| *c != '.' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn with_dot(s: &str, at: usize) -> String {
    if s.len() > at {
        format!("{}.{}", &s[..at], &s[at..])
    } else {
        s.to_string()
    }
}

/// Normalise a value within a named vocabulary and return the full `VOCAB//value` code.
pub fn normalize(vocab: &str, value: &str) -> Result<String, BadCode> {
    let bad = |expected| BadCode {
        vocab: vocab.to_string(),
        value: value.to_string(),
        expected,
    };
    let v = value.trim();
    if v.is_empty() {
        return Err(bad("a non-empty code"));
    }
    let norm = match vocab {
        "ICD10CM" | "ICD10" => {
            let s = strip_dots_upper(v);
            let ok = s.len() >= 3
                && s.as_bytes()[0].is_ascii_alphabetic()
                && s.chars().all(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(
                    "a letter then 2+ alphanumerics, dot optional (e.g. I21.4)",
                ));
            }
            with_dot(&s, 3)
        }
        "ICD9CM" => {
            let s = strip_dots_upper(v);
            let ok = s.len() >= 3 && s.chars().all(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad("3 to 5 characters, dot optional (e.g. 410.71)"));
            }
            if s.starts_with('E') {
                with_dot(&s, 4)
            } else {
                with_dot(&s, 3)
            }
        }
        "ICD9PROC" => {
            let s = strip_dots_upper(v);
            if s.len() < 2 || !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad("2 to 4 digits, dot optional (e.g. 39.61)"));
            }
            with_dot(&s, 2)
        }
        "ICD10PCS" => {
            let s = strip_dots_upper(v);
            if s.len() != 7 || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("7 alphanumeric characters"));
            }
            s
        }
        "SNOMED" | "RXNORM" | "CVX" | "RXNORM_EXT" => {
            let s = v.trim_start_matches('0');
            let s = if s.is_empty() { "0" } else { s };
            if !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad("digits only"));
            }
            s.to_string()
        }
        "LOINC" => {
            let s = v.to_ascii_uppercase();
            let ok = s.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.len() == 1
                    && b.chars().all(|c| c.is_ascii_digit())
            }) || (s.starts_with("LP") || s.starts_with("LA"));
            if !ok {
                return Err(bad("digits, a dash and a check digit (e.g. 8480-6)"));
            }
            s
        }
        "NDC" => {
            let s: String = v.chars().filter(|c| *c != '-').collect();
            if !s.chars().all(|c| c.is_ascii_digit()) || s.len() < 10 || s.len() > 11 {
                return Err(bad("10 or 11 digits, dashes optional"));
            }
            format!("{s:0>11}")
        }
        _ => v.to_string(),
    };
    Ok(format!("{vocab}//{norm}"))
}

/// Map a FHIR `Coding.system` URI to our vocabulary name.
pub fn fhir_vocab(system: &str) -> Option<&'static str> {
    vocabularies()
        .fhir
        .get(system.trim_end_matches('/'))
        .map(|s| s.as_str())
}

/// Rank of a vocabulary in the coding preference list of a kind (lower is preferred).
pub fn preference_rank(kind: Kind, vocab: &str) -> usize {
    let p = &vocabularies().preference;
    let list = match kind {
        Kind::Observation => &p.observation,
        Kind::Condition => &p.condition,
        Kind::Medication => &p.medication,
        Kind::Procedure => &p.procedure,
    };
    list.iter().position(|p| p == vocab).unwrap_or(usize::MAX)
}

/// Rewrite a code from another MEDS ETL into our spelling when we know its shape.
pub fn from_meds(code: &str) -> String {
    for (prefix, vocab) in &vocabularies().meds_prefix {
        if let Some(rest) = code.strip_prefix(prefix.as_str())
            && let Ok(c) = normalize(vocab, rest)
        {
            return c;
        }
    }
    code.to_string()
}

/// Encounter class to `ENCOUNTER//<ActCode>`; unknown classes keep their own upper-cased name.
pub fn encounter_code(class: &str) -> String {
    let key = class.trim().to_ascii_lowercase();
    match vocabularies().encounter_class.get(&key) {
        Some(c) => format!("ENCOUNTER//{c}"),
        None => format!("ENCOUNTER//{}", class.trim().to_ascii_uppercase()),
    }
}

/// Administrative sex to the MEDS static code.
pub fn gender_code(g: &str) -> String {
    let g = g.trim().to_ascii_lowercase();
    let c = match g.as_str() {
        "f" | "female" | "8532" => "F",
        "m" | "male" | "8507" => "M",
        "o" | "other" => "O",
        _ => "U",
    };
    format!("GENDER//{c}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd_spellings_converge() {
        assert_eq!(normalize("ICD10CM", "I214").unwrap(), "ICD10CM//I21.4");
        assert_eq!(normalize("ICD10CM", " i21.4 ").unwrap(), "ICD10CM//I21.4");
        assert_eq!(normalize("ICD10CM", "I21").unwrap(), "ICD10CM//I21");
        assert_eq!(normalize("ICD9CM", "41071").unwrap(), "ICD9CM//410.71");
        assert_eq!(normalize("ICD9CM", "410.71").unwrap(), "ICD9CM//410.71");
        assert_eq!(normalize("ICD9CM", "V707").unwrap(), "ICD9CM//V70.7");
        assert_eq!(normalize("ICD9CM", "E8809").unwrap(), "ICD9CM//E880.9");
        assert_eq!(normalize("ICD9PROC", "3961").unwrap(), "ICD9PROC//39.61");
        assert!(normalize("ICD10CM", "12").is_err());
    }

    #[test]
    fn other_vocabularies() {
        assert_eq!(
            normalize("SNOMED", "022298006").unwrap(),
            "SNOMED//22298006"
        );
        assert!(normalize("SNOMED", "2229A").is_err());
        assert_eq!(normalize("LOINC", "8480-6").unwrap(), "LOINC//8480-6");
        assert!(normalize("LOINC", "84806").is_err());
        assert_eq!(
            normalize("NDC", "0002-3227-30").unwrap(),
            "NDC//00002322730"
        );
        assert_eq!(fhir_vocab("http://snomed.info/sct/"), Some("SNOMED"));
        assert_eq!(from_meds("DIAGNOSIS//ICD//10//I214"), "ICD10CM//I21.4");
        assert_eq!(from_meds("LAB//123"), "LAB//123");
        assert_eq!(encounter_code("wellness"), "ENCOUNTER//AMB");
        assert_eq!(gender_code("female"), "GENDER//F");
    }
}
