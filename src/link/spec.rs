//! The linkage configuration as data. In: `schemas/linkage.toml` (embedded) or a user's file.
//! Out: a validated [`LinkSpec`]: deterministic rules for the prior, blocking rules, comparisons
//! with their levels, EM training blocks, thresholds, cluster guards and the nickname table.

use super::LinkError;
use crate::schema::identity::IdField;
use serde::Deserialize;

/// One comparison level: the first level of a comparison that holds for a pair is its level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Level {
    Exact,
    /// This field and `also` both agree exactly (a street and its house number): one piece
    /// of evidence, not two.
    ExactWith {
        also: IdField,
    },
    /// Another field agrees exactly (the town, when the street line was mistyped or moved
    /// into another field): a weaker level of the same evidence.
    OtherExact {
        field: IdField,
    },
    /// Given and family names swapped: each record's value is the other's `with` field (one
    /// of the two crossings may carry a typo).
    Swapped {
        with: IdField,
    },
    /// Both names are forms of one name in the nickname table.
    Nickname,
    JaroWinkler {
        at_least: f64,
    },
    DamerauLevenshtein {
        at_most: usize,
    },
    /// Dates `YYYYMMDD` whose day and month are swapped.
    DayMonthSwapped,
    /// The first `chars` characters agree (a birth year and month; a postcode's district).
    Prefix {
        chars: usize,
    },
}

impl Level {
    pub fn label(&self) -> String {
        match self {
            Level::Exact => "exact".into(),
            Level::ExactWith { also } => format!("exact with {}", also.name()),
            Level::OtherExact { field } => format!("same {}", field.name()),
            Level::Swapped { with } => format!("swapped with {}", with.name()),
            Level::Nickname => "nickname".into(),
            Level::JaroWinkler { at_least } => format!("jaro-winkler >= {at_least}"),
            Level::DamerauLevenshtein { at_most } => format!("damerau-levenshtein <= {at_most}"),
            Level::DayMonthSwapped => "day and month swapped".into(),
            Level::Prefix { chars } => format!("first {chars} characters"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub field: IdField,
    #[serde(default)]
    pub tf: bool,
    pub levels: Vec<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocking {
    pub on: Vec<IdField>,
    #[serde(default)]
    pub unordered: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prior {
    pub deterministic: Vec<Vec<IdField>>,
    pub recall: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifiers {
    pub strong: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub link: f64,
    pub review: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub u_pairs: u64,
    pub seed: u64,
    pub em_iterations: usize,
    pub em_blocks: Vec<Vec<IdField>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clusters {
    pub cannot_link: f64,
    pub max_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nicknames {
    names: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    prior: Prior,
    identifiers: Identifiers,
    thresholds: Thresholds,
    training: Training,
    clusters: Clusters,
    blocking: Vec<Blocking>,
    comparison: Vec<Comparison>,
    nicknames: Nicknames,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    pub prior: Prior,
    pub identifiers: Identifiers,
    pub thresholds: Thresholds,
    pub training: Training,
    pub clusters: Clusters,
    pub blocking: Vec<Blocking>,
    pub comparisons: Vec<Comparison>,
    /// Folded name -> the nickname groups it belongs to.
    pub nicknames: rustc_hash::FxHashMap<String, Vec<u32>>,
    /// FNV-1a of the configuration text (recorded with every linkage).
    pub hash: u64,
}

/// The embedded default, `schemas/linkage.toml`.
pub const DEFAULT: &str = include_str!("../../schemas/linkage.toml");

impl LinkSpec {
    pub fn default_spec() -> LinkSpec {
        LinkSpec::parse(DEFAULT, "schemas/linkage.toml")
            .expect("the embedded linkage spec is valid")
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<LinkSpec, LinkError> {
        match path {
            None => Ok(LinkSpec::default_spec()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|err| LinkError::Io {
                    path: p.to_path_buf(),
                    err,
                })?;
                LinkSpec::parse(&text, &p.display().to_string())
            }
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<LinkSpec, LinkError> {
        let bad = |message: String| LinkError::Spec {
            origin: origin.to_string(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let t = &raw.thresholds;
        if !(0.0 < t.review && t.review <= t.link && t.link < 1.0) {
            return Err(bad(format!(
                "thresholds: expected 0 < review <= link < 1, got review {} and link {}",
                t.review, t.link
            )));
        }
        if !(0.0 < raw.prior.recall && raw.prior.recall <= 1.0)
            || raw.prior.deterministic.is_empty()
        {
            return Err(bad(
                "prior: expected at least one deterministic rule and 0 < recall <= 1".into(),
            ));
        }
        if raw.blocking.is_empty() || raw.blocking.iter().any(|b| b.on.is_empty()) {
            return Err(bad(
                "blocking: expected rules, each on at least one field".into()
            ));
        }
        if !(0.0 <= raw.clusters.cannot_link && raw.clusters.cannot_link < t.review)
            || raw.clusters.max_size < 2
        {
            return Err(bad(
                "clusters: expected 0 <= cannot_link < thresholds.review and max_size >= 2".into(),
            ));
        }
        for c in &raw.comparison {
            if c.levels.is_empty() || c.levels.len() > 29 {
                return Err(bad(format!(
                    "comparison {}: expected 1 to 29 levels",
                    c.field.name()
                )));
            }
            let free = raw
                .training
                .em_blocks
                .iter()
                .any(|b| !b.contains(&c.field) && !swapped_fields(c).any(|f| b.contains(&f)));
            if !free {
                return Err(bad(format!(
                    "comparison {}: no training.em_blocks entry leaves it free to be estimated \
                     (each comparison needs a block not on its own fields)",
                    c.field.name()
                )));
            }
        }
        if raw.comparison.is_empty() || raw.comparison.len() > 12 {
            return Err(bad("comparison: expected 1 to 12 comparisons".into()));
        }
        let mut nicknames: rustc_hash::FxHashMap<String, Vec<u32>> = Default::default();
        for (g, names) in raw.nicknames.names.iter().enumerate() {
            for n in names {
                let k = crate::schema::identity::fold(n);
                nicknames.entry(k).or_default().push(g as u32);
            }
        }
        Ok(LinkSpec {
            prior: raw.prior,
            identifiers: raw.identifiers,
            thresholds: raw.thresholds,
            training: raw.training,
            clusters: raw.clusters,
            blocking: raw.blocking,
            comparisons: raw.comparison,
            nicknames,
            hash: crate::schema::fnv1a(text.as_bytes()),
        })
    }

    /// Every field a comparison reads (its own and those its levels name).
    pub fn fields_of(c: &Comparison) -> Vec<IdField> {
        let mut v = vec![c.field];
        v.extend(swapped_fields(c));
        v
    }
}

fn swapped_fields(c: &Comparison) -> impl Iterator<Item = IdField> + '_ {
    c.levels.iter().filter_map(|l| match l {
        Level::Swapped { with } => Some(*with),
        Level::ExactWith { also } => Some(*also),
        Level::OtherExact { field } => Some(*field),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_spec_is_valid_and_a_bad_one_is_refused_with_its_reason() {
        let s = LinkSpec::default_spec();
        assert!(s.comparisons.len() >= 6);
        assert_eq!(
            s.comparisons[0].levels[1],
            Level::Swapped {
                with: IdField::FamilyName
            }
        );
        assert!(
            s.nicknames["bill"]
                .iter()
                .any(|g| s.nicknames["william"].contains(g))
        );
        let broken = DEFAULT.replace("link = 0.95", "link = 0.2");
        let e = LinkSpec::parse(&broken, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("review <= link"), "{e}");
        let broken = DEFAULT.replace(
            "em_blocks = [[\"given_name\", \"family_name\"], [\"birth_date\"]]",
            "em_blocks = [[\"birth_date\"]]",
        );
        let e = LinkSpec::parse(&broken, "x.toml").unwrap_err().to_string();
        assert!(e.contains("comparison birth_date"), "{e}");
        let broken = DEFAULT.replace("kind = \"nickname\"", "kind = \"soundex\"");
        assert!(LinkSpec::parse(&broken, "x.toml").is_err());
    }
}
