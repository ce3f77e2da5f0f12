//! Measured concepts: canonical unit, accepted spellings, conversions and plausible range,
//! all read from `schemas/measurements.toml`. In: a code, a value and the unit the source
//! wrote. Out: the value in the canonical unit, or the reason it cannot be trusted
//! (unknown unit, impossible value). A unit is never guessed.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    concept: Vec<ConceptSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConceptSpec {
    name: String,
    codes: Vec<String>,
    unit: String,
    spellings: Vec<String>,
    min: f64,
    max: f64,
    #[serde(default)]
    convert: Vec<Conversion>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Conversion {
    from: Vec<String>,
    factor: f64,
    #[serde(default)]
    offset: f64,
}

/// One measured concept after loading.
#[derive(Debug)]
pub struct Concept {
    pub name: String,
    pub unit: String,
    /// The first code listed: every alias code is rewritten to it.
    pub code: String,
    pub min: f64,
    pub max: f64,
    /// unit spelling (lower-cased) -> (factor, offset)
    units: HashMap<String, (f64, f64)>,
}

/// Why a measurement was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitProblem {
    UnknownUnit {
        concept: String,
        unit: String,
        expected: String,
    },
    Implausible {
        concept: String,
        value: f64,
        unit: String,
        min: f64,
        max: f64,
    },
}

impl UnitProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            UnitProblem::UnknownUnit { .. } => "unknown_unit",
            UnitProblem::Implausible { .. } => "implausible_value",
        }
    }
}

impl std::fmt::Display for UnitProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitProblem::UnknownUnit {
                concept,
                unit,
                expected,
            } => {
                write!(
                    f,
                    "{concept}: unit {unit:?} is not known; expected one of {expected}"
                )
            }
            UnitProblem::Implausible {
                concept,
                value,
                unit,
                min,
                max,
            } => write!(
                f,
                "{concept}: {value} {unit} is outside the plausible range {min}..{max} {unit}"
            ),
        }
    }
}

/// The loaded catalog: code -> concept.
#[derive(Debug)]
pub struct Units {
    concepts: Vec<Concept>,
    by_code: HashMap<String, usize>,
}

/// The embedded catalog.
pub fn units() -> &'static Units {
    static U: OnceLock<Units> = OnceLock::new();
    U.get_or_init(|| {
        Units::parse(include_str!("../../schemas/measurements.toml"))
            .expect("schemas/measurements.toml is valid (checked by a unit test)")
    })
}

/// A measurement converted to its canonical unit (and canonical code).
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub code: String,
    pub value: f64,
    pub unit: String,
}

/// A measurements catalog that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("measurements catalog: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{concept}: min {min} must be below max {max}")]
    EmptyRange { concept: String, min: f64, max: f64 },
    #[error("code {0} listed twice")]
    DuplicateCode(String),
}

impl Units {
    pub fn parse(text: &str) -> Result<Units, CatalogError> {
        let cat: Catalog = toml::from_str(text)?;
        let mut concepts = Vec::new();
        let mut by_code = HashMap::new();
        for c in cat.concept {
            if c.min >= c.max {
                return Err(CatalogError::EmptyRange {
                    concept: c.name,
                    min: c.min,
                    max: c.max,
                });
            }
            let mut units = HashMap::new();
            for s in &c.spellings {
                units.insert(s.to_ascii_lowercase(), (1.0, 0.0));
            }
            for conv in &c.convert {
                for s in &conv.from {
                    units.insert(s.to_ascii_lowercase(), (conv.factor, conv.offset));
                }
            }
            let idx = concepts.len();
            for code in &c.codes {
                if by_code.insert(code.clone(), idx).is_some() {
                    return Err(CatalogError::DuplicateCode(code.clone()));
                }
            }
            concepts.push(Concept {
                name: c.name,
                unit: c.unit,
                code: c.codes[0].clone(),
                min: c.min,
                max: c.max,
                units,
            });
        }
        Ok(Units { concepts, by_code })
    }

    /// The concept a code belongs to, if it is a measured concept we normalise.
    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.by_code.get(code).map(|&i| &self.concepts[i])
    }

    /// All concepts, in file order.
    pub fn concepts(&self) -> &[Concept] {
        &self.concepts
    }

    /// Convert `value unit` of `code` to canonical form. Codes that are not measured concepts
    /// pass through unchanged (`Ok(None)`): their unit is kept as written.
    pub fn canonicalize(
        &self,
        code: &str,
        value: f64,
        unit: Option<&str>,
    ) -> Result<Option<Canonical>, UnitProblem> {
        let Some(c) = self.concept(code) else {
            return Ok(None);
        };
        let written = unit.unwrap_or("").trim();
        let Some(&(factor, offset)) = c.units.get(&written.to_ascii_lowercase()) else {
            let mut expected: Vec<&str> = c.units.keys().map(|s| s.as_str()).collect();
            expected.sort();
            return Err(UnitProblem::UnknownUnit {
                concept: c.name.clone(),
                unit: written.to_string(),
                expected: expected.join(", "),
            });
        };
        let v = value * factor + offset;
        if !(v >= c.min && v <= c.max) {
            return Err(UnitProblem::Implausible {
                concept: c.name.clone(),
                value: v,
                unit: c.unit.clone(),
                min: c.min,
                max: c.max,
            });
        }
        Ok(Some(Canonical {
            code: c.code.clone(),
            value: v,
            unit: c.unit.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_loads_and_converts() {
        let u = units();
        let c = u
            .canonicalize("LOINC//35200-5", 6.3, Some("mmol/L"))
            .unwrap()
            .unwrap();
        assert_eq!(c.code, "LOINC//2093-3");
        assert!((c.value - 243.621).abs() < 1e-6);
        assert_eq!(c.unit, "mg/dL");
        let a1c = u
            .canonicalize("LOINC//4548-4", 53.0, Some("mmol/mol"))
            .unwrap()
            .unwrap();
        assert!((a1c.value - 7.00044).abs() < 1e-4, "{}", a1c.value);
        let bp = u
            .canonicalize("LOINC//8480-6", 120.0, Some("mm[Hg]"))
            .unwrap()
            .unwrap();
        assert_eq!(bp.unit, "mmHg");
    }

    #[test]
    fn rejects_unknown_unit_and_impossible_value() {
        let u = units();
        let e = u
            .canonicalize("LOINC//2093-3", 5.0, Some("g/L"))
            .unwrap_err();
        assert_eq!(e.reason(), "unknown_unit");
        assert!(e.to_string().contains("mmol/l"), "{e}");
        let e = u
            .canonicalize("LOINC//8480-6", 900.0, Some("mmHg"))
            .unwrap_err();
        assert_eq!(e.reason(), "implausible_value");
        let e = u
            .canonicalize("LOINC//8480-6", 0.0, Some("mmHg"))
            .unwrap_err();
        assert_eq!(e.reason(), "implausible_value");
        assert_eq!(
            u.canonicalize("LOINC//9999-9", 1.0, Some("x")).unwrap(),
            None
        );
    }

    #[test]
    fn duplicate_code_is_an_error() {
        let t = "[[concept]]\nname='a'\ncodes=['X//1']\nunit='u'\nspellings=['u']\nmin=0.0\nmax=1.0\n\
                 [[concept]]\nname='b'\ncodes=['X//1']\nunit='u'\nspellings=['u']\nmin=0.0\nmax=1.0\n";
        assert!(
            Units::parse(t)
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
    }
}
