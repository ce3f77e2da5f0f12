//! Who a record is about. In: what a source says identifies a person (an identifier, names, birth
//! date, sex, address, telecom, a national id). Out: [`Identity`] (the `(system, value)` a
//! source keys its records by, which makes the record's subject id) and [`PersonRecord`] (the
//! identity facts of one source record, normalised, for linkage). Both are shared by the readers
//! that produce them, the lake that stores them and the linkage that compares them. Identity facts
//! are PHI: they live in the lake's identity store, never in event tables or logs.

use super::subject_id_for;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// A person identity seen in a source: `(system, value)` makes the subject id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    pub subject_id: i64,
    pub system: String,
    pub value: String,
}

impl Identity {
    pub fn new(system: &str, value: &str) -> Identity {
        Identity {
            subject_id: subject_id_for(system, value),
            system: system.into(),
            value: value.into(),
        }
    }
}

/// One row of the lake's subject map: a source identity (its own record id in
/// `identity.subject_id`), the person (subject) it belongs to, and the evidence that put it
/// there (the rule and probability of its strongest link; `None` for a person of one record).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRow {
    pub identity: Identity,
    pub person: i64,
    pub rule: Option<String>,
    pub probability: Option<f64>,
}

/// An identity fact a record may carry; linkage rules name them (snake case) in
/// `schemas/linkage.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdField {
    GivenName,
    FamilyName,
    /// `YYYYMMDD` (or `YYYYMM`, `YYYY` when the source was less precise).
    BirthDate,
    /// `m`, `f` or `o`.
    Sex,
    StreetNumber,
    /// The street line without its number.
    Address,
    /// Suburb, city or town.
    Locality,
    Postcode,
    State,
    /// A national identifier (SSN or the like): letters and digits only.
    NationalId,
    /// Digits only, the last ten.
    Phone,
}

impl IdField {
    pub const ALL: [IdField; 11] = [
        IdField::GivenName,
        IdField::FamilyName,
        IdField::BirthDate,
        IdField::Sex,
        IdField::StreetNumber,
        IdField::Address,
        IdField::Locality,
        IdField::Postcode,
        IdField::State,
        IdField::NationalId,
        IdField::Phone,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The column name in the identity store and in `schemas/linkage.toml`.
    pub fn name(self) -> &'static str {
        match self {
            IdField::GivenName => "given_name",
            IdField::FamilyName => "family_name",
            IdField::BirthDate => "birth_date",
            IdField::Sex => "sex",
            IdField::StreetNumber => "street_number",
            IdField::Address => "address",
            IdField::Locality => "locality",
            IdField::Postcode => "postcode",
            IdField::State => "state",
            IdField::NationalId => "national_id",
            IdField::Phone => "phone",
        }
    }

    /// Normalise a value as written into the form records are compared in; `None` when
    /// nothing identifying is left (empty, punctuation only, an impossible date).
    pub fn normalise(self, raw: &str) -> Option<String> {
        let v = match self {
            IdField::BirthDate => birth_date(raw)?,
            IdField::Sex => sex(raw)?,
            IdField::NationalId | IdField::Postcode | IdField::StreetNumber => raw
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .flat_map(char::to_lowercase)
                .collect(),
            IdField::Phone => {
                let d: String = raw.chars().filter(char::is_ascii_digit).collect();
                d[d.len().saturating_sub(10)..].to_string()
            }
            _ => fold(raw),
        };
        (!v.is_empty()).then_some(v)
    }
}

/// Case, accents and punctuation folded away: `"O'Brien-Núñez "` -> `"o brien nunez"`.
pub fn fold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

/// A birth date as `YYYYMMDD` (from `YYYY-MM-DD`, `YYYYMMDD` or a FHIR dateTime), `YYYYMM` or
/// `YYYY` when that is all the source knew. Digits are kept as written (a day/month swap or a
/// typo is evidence linkage weighs), but a value that is not a date shape is dropped.
fn birth_date(raw: &str) -> Option<String> {
    let head = raw.trim().split('T').next().unwrap_or("");
    let d: String = head.chars().filter(char::is_ascii_digit).collect();
    let shape_ok = head
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == '/');
    (shape_ok && matches!(d.len(), 4 | 6 | 8)).then_some(d)
}

fn sex(raw: &str) -> Option<String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "m" | "male" => Some("m".into()),
        "f" | "female" => Some("f".into()),
        "o" | "other" => Some("o".into()),
        _ => None,
    }
}

/// The identity facts of one source record: the identity it is keyed by and, per
/// [`IdField`], the normalised value (`None`: the source did not say).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PersonRecord {
    pub identity: Identity,
    pub fields: [Option<String>; IdField::COUNT],
    /// The other identifiers the source gives the record, `system|value` (`type:<code>|value`
    /// when only a type is known), and `link|<id>` for a source's own link to another record
    /// of the same person (FHIR `Patient.link`). Sorted, no duplicates.
    pub identifiers: Vec<String>,
}

impl PersonRecord {
    pub fn new(identity: Identity) -> PersonRecord {
        PersonRecord {
            identity,
            fields: Default::default(),
            identifiers: Vec::new(),
        }
    }

    pub fn get(&self, f: IdField) -> Option<&str> {
        self.fields[f.index()].as_deref()
    }

    /// Set a field from the value as written (normalised here); a later value for the same
    /// field does not replace an earlier one (a source's first name, first address, wins).
    pub fn set(&mut self, f: IdField, raw: &str) {
        if self.fields[f.index()].is_none() {
            self.fields[f.index()] = f.normalise(raw);
        }
    }

    /// A street line, `"7 Wallaby Place"`: a leading number is the street number.
    pub fn set_street_line(&mut self, line: &str) {
        let line = line.trim();
        match line.split_once(' ') {
            Some((num, rest)) if num.starts_with(|c: char| c.is_ascii_digit()) => {
                self.set(IdField::StreetNumber, num);
                self.set(IdField::Address, rest);
            }
            _ => self.set(IdField::Address, line),
        }
    }

    /// Add an identifier (`system|value`), keeping the list sorted and free of repeats.
    pub fn add_identifier(&mut self, system: &str, value: &str) {
        let (s, v) = (system.trim(), value.trim());
        if v.is_empty() {
            return;
        }
        let id = format!("{s}|{v}");
        if let Err(at) = self.identifiers.binary_search(&id) {
            self.identifiers.insert(at, id);
        }
    }

    /// How many fields carry a value.
    pub fn known(&self) -> usize {
        self.fields.iter().filter(|v| v.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalised_for_comparison() {
        assert_eq!(fold("  O'Brien-Núñez "), "o brien nunez");
        assert_eq!(fold("ÉLODIE"), "elodie");
        assert_eq!(IdField::GivenName.normalise(" -- "), None);
        assert_eq!(
            IdField::BirthDate.normalise("1956-04-09"),
            Some("19560409".into())
        );
        assert_eq!(
            IdField::BirthDate.normalise("1956-04-09T10:00:00Z"),
            Some("19560409".into())
        );
        assert_eq!(IdField::BirthDate.normalise("1956"), Some("1956".into()));
        assert_eq!(IdField::BirthDate.normalise("unknown 12"), None);
        assert_eq!(IdField::Sex.normalise("Female"), Some("f".into()));
        assert_eq!(IdField::Sex.normalise("unknown"), None);
        assert_eq!(
            IdField::NationalId.normalise("999-12-3456"),
            Some("999123456".into())
        );
        assert_eq!(
            IdField::Phone.normalise("+1 (555) 010-2030"),
            Some("5550102030".into())
        );
        let mut r = PersonRecord::new(Identity::new("s", "1"));
        r.set(IdField::FamilyName, "Smith");
        r.set(IdField::FamilyName, "Jones");
        assert_eq!(r.get(IdField::FamilyName), Some("smith"));
        assert_eq!(r.known(), 1);
    }
}
