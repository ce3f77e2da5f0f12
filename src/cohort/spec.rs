//! Task definitions as data: `schemas/tasks/*.toml` (prediction times, horizons, look-back,
//! history, age range, prior-outcome and censoring rules, outcomes) and the code sets they name
//! (`schemas/codesets/*.toml`, each with its citation). Parsed strictly (`deny_unknown_fields`)
//! and validated once into a [`Task`] that the labeller and the feature builder take.

use crate::ingest::time::TimeContext;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub description: String,
    pub prediction_times: PredictionTimes,
    pub window: Window,
    pub outcome: Vec<OutcomeSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimesKind {
    Fixed,
    Yearly,
    Encounters,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PredictionTimes {
    pub kind: TimesKind,
    pub start: String,
    #[serde(default)]
    pub end: Option<String>,
    /// Codes of the encounters that are prediction times (kind = "encounters").
    #[serde(default = "default_encounters")]
    pub encounter_codes: Vec<String>,
}

fn default_encounters() -> Vec<String> {
    vec!["ENCOUNTER//AMB".into()]
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PriorRule {
    Flag,
    Exclude,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CensorRule {
    Drop,
    Mark,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub horizons_years: Vec<u32>,
    pub lookback_years: u32,
    pub min_history_days: u32,
    pub min_age: f64,
    pub max_age: f64,
    pub same_time_is_future: bool,
    pub prior_outcome: PriorRule,
    pub censoring: CensorRule,
    /// A person is under observation until this many days after their last routine record
    /// (or the end of the extract, if sooner); see [`super::labels::observation_end`].
    #[serde(default = "default_observation_gap_days")]
    pub observation_gap_days: u32,
    /// Records within this many days after an outcome are that outcome's own care (the
    /// admission, its discharge, its rehabilitation) and do not extend the observation.
    #[serde(default = "default_outcome_care_days")]
    pub outcome_care_days: u32,
}

fn default_observation_gap_days() -> u32 {
    730
}

fn default_outcome_care_days() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSpec {
    pub name: String,
    pub codesets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodeSet {
    pub name: String,
    pub description: String,
    pub citation: String,
    pub codes: Vec<CodeRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodeRule {
    pub vocabulary: String,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub exact: Vec<String>,
    /// Also every code whose ancestors (the lake's `parent_codes`, from the export's own
    /// vocabulary, e.g. OMOP `CONCEPT_ANCESTOR`) include a code of this rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub descendants: bool,
    /// Values of this vocabulary left out (and, with `descendants`, their descendants too),
    /// e.g. "old myocardial infarction" under "myocardial infarction".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// Ancestors of lake codes (`metadata/codes.parquet` `parent_codes`).
pub type CodeParents = BTreeMap<String, BTreeSet<String>>;

impl CodeRule {
    fn matches_parts(&self, vocab: &str, value: &str) -> bool {
        self.vocabulary == vocab
            && (self.exact.iter().any(|x| x == value)
                || self.prefixes.iter().any(|p| value.starts_with(p.as_str())))
            && !self.except.iter().any(|x| x == value)
    }

    fn excepts(&self, code: &str) -> bool {
        code.split_once("//").is_some_and(|(vocab, value)| {
            self.vocabulary == vocab && self.except.iter().any(|x| x == value)
        })
    }

    /// Whether a code with these ancestors is a descendant this rule takes.
    fn takes_descendant(&self, code: &str, ancestors: &BTreeSet<String>) -> bool {
        self.descendants
            && !self.excepts(code)
            && ancestors.iter().any(|a| self.matches(a))
            && !ancestors.iter().any(|a| self.excepts(a))
    }

    /// Whether a lake code (`VOCAB//value`) matches this rule (itself, not its descendants).
    pub fn matches(&self, code: &str) -> bool {
        code.split_once("//")
            .is_some_and(|(vocab, value)| self.matches_parts(vocab, value))
    }
}

/// Whether a lake code matches any of the rules: the one matcher code sets, feature
/// conditions and explanations share.
pub fn rules_match(rules: &[CodeRule], code: &str) -> bool {
    let Some((vocab, value)) = code.split_once("//") else {
        return false;
    };
    rules.iter().any(|r| r.matches_parts(vocab, value))
}

/// The rules with the lake's descendants of every `descendants = true` rule added as exact
/// codes, so matching stays a lookup and needs no walk of the hierarchy.
pub fn with_descendants(rules: &[CodeRule], parents: &CodeParents) -> Vec<CodeRule> {
    let roots: Vec<&CodeRule> = rules.iter().filter(|r| r.descendants).collect();
    let mut out = rules.to_vec();
    if roots.is_empty() {
        return out;
    }
    let mut extra: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (code, ancestors) in parents {
        if rules_match(rules, code) || !roots.iter().any(|r| r.takes_descendant(code, ancestors)) {
            continue;
        }
        if let Some((vocab, value)) = code.split_once("//") {
            extra.entry(vocab).or_default().push(value.to_string());
        }
    }
    for (vocab, exact) in extra {
        out.push(CodeRule {
            vocabulary: vocab.to_string(),
            prefixes: Vec::new(),
            exact,
            descendants: false,
            except: Vec::new(),
        });
    }
    out
}

impl CodeSet {
    /// Whether a lake code (`VOCAB//value`) is in the set.
    pub fn matches(&self, code: &str) -> bool {
        rules_match(&self.codes, code)
    }
}

/// Built-in code sets and tasks, embedded so a fresh binary needs no files.
const BUILTIN_CODESETS: &[(&str, &str)] = &[
    (
        "acute_mi",
        include_str!("../../schemas/codesets/acute_mi.toml"),
    ),
    (
        "stroke_ischemic",
        include_str!("../../schemas/codesets/stroke_ischemic.toml"),
    ),
    (
        "stroke_hemorrhagic",
        include_str!("../../schemas/codesets/stroke_hemorrhagic.toml"),
    ),
    (
        "stroke_unspecified",
        include_str!("../../schemas/codesets/stroke_unspecified.toml"),
    ),
];
const BUILTIN_TASKS: &[(&str, &str)] = &[(
    "mi_stroke",
    include_str!("../../schemas/tasks/mi_stroke.toml"),
)];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
}

fn invalid(what: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        what: what.to_string(),
        message: message.into(),
    }
}

/// An outcome with its code sets resolved.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub codesets: Vec<CodeSet>,
}

impl Outcome {
    pub fn matches(&self, e: &crate::schema::Event) -> bool {
        self.codesets
            .iter()
            .any(|c| c.matches(&e.code) || e.source_code.as_deref().is_some_and(|s| c.matches(s)))
    }
}

impl Task {
    /// The task with its code sets' descendants resolved against a lake's code hierarchy.
    pub fn with_descendants(&self, parents: &CodeParents) -> Task {
        let mut t = self.clone();
        for o in &mut t.outcomes {
            for cs in &mut o.codesets {
                cs.codes = with_descendants(&cs.codes, parents);
            }
        }
        t
    }
}

/// A validated task.
#[derive(Debug, Clone)]
pub struct Task {
    pub spec: TaskSpec,
    pub outcomes: Vec<Outcome>,
    /// Prediction-time bounds, microseconds UTC.
    pub start: i64,
    pub end: i64,
    /// Hash of the task and its code sets (recorded in every artifact built from it).
    pub hash: String,
}

fn load_codeset(name: &str, dir: Option<&Path>) -> Result<CodeSet, SpecError> {
    let text = match dir
        .map(|d| d.join(format!("{name}.toml")))
        .filter(|p| p.exists())
    {
        Some(p) => std::fs::read_to_string(&p).map_err(|err| SpecError::Io {
            path: p.display().to_string(),
            err,
        })?,
        None => BUILTIN_CODESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| {
                invalid(
                    &format!("code set {name}"),
                    "not found (built-in or in the codesets folder)",
                )
            })?,
    };
    let cs: CodeSet =
        toml::from_str(&text).map_err(|e| invalid(&format!("code set {name}"), e.to_string()))?;
    if cs.citation.trim().is_empty() {
        return Err(invalid(
            &format!("code set {name}"),
            "a citation is required",
        ));
    }
    Ok(cs)
}

impl Task {
    /// Load a task by built-in name (`mi_stroke`) or from a TOML file; code sets come from the
    /// `codesets/` folder beside the task's folder when present, else the built-ins.
    pub fn load(name_or_path: &str) -> Result<Task, SpecError> {
        let p = Path::new(name_or_path);
        let (text, dir) = if p.exists() {
            let t = std::fs::read_to_string(p).map_err(|err| SpecError::Io {
                path: name_or_path.into(),
                err,
            })?;
            (
                t,
                p.parent()
                    .and_then(|d| d.parent())
                    .map(|d| d.join("codesets")),
            )
        } else {
            let t = BUILTIN_TASKS
                .iter()
                .find(|(n, _)| *n == name_or_path)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| {
                    invalid(
                        &format!("task {name_or_path}"),
                        "neither a file nor a built-in task (mi_stroke)",
                    )
                })?;
            (t, None)
        };
        let spec: TaskSpec = toml::from_str(&text)
            .map_err(|e| invalid(&format!("task {name_or_path}"), e.to_string()))?;
        Task::from_spec(spec, dir.as_deref())
    }

    pub fn from_spec(spec: TaskSpec, codeset_dir: Option<&Path>) -> Result<Task, SpecError> {
        let w = &spec.window;
        let what = format!("task {}", spec.name);
        if w.horizons_years.is_empty() || w.horizons_years.contains(&0) {
            return Err(invalid(
                &what,
                "horizons_years must list at least one horizon, each at least 1 year",
            ));
        }
        if w.min_age >= w.max_age {
            return Err(invalid(
                &what,
                format!("min_age {} must be below max_age {}", w.min_age, w.max_age),
            ));
        }
        if spec.outcome.is_empty() {
            return Err(invalid(&what, "at least one [[outcome]] is required"));
        }
        let tc = TimeContext::default();
        let start = tc
            .parse(&spec.prediction_times.start)
            .map_err(|e| invalid(&what, format!("prediction_times.start: expected {e}")))?;
        let end = match &spec.prediction_times.end {
            Some(e) => tc
                .parse(e)
                .map_err(|x| invalid(&what, format!("prediction_times.end: expected {x}")))?,
            None => start,
        };
        if end < start {
            return Err(invalid(&what, "prediction_times.end is before start"));
        }
        let mut outcomes = Vec::new();
        let mut hasher = Sha256::new();
        hasher.update(toml::to_string(&spec).expect("spec serialises").as_bytes());
        for o in &spec.outcome {
            let sets = o
                .codesets
                .iter()
                .map(|c| load_codeset(c, codeset_dir))
                .collect::<Result<Vec<_>, _>>()?;
            for s in &sets {
                hasher.update(toml::to_string(s).expect("codeset serialises").as_bytes());
            }
            outcomes.push(Outcome {
                name: o.name.clone(),
                codesets: sets,
            });
        }
        Ok(Task {
            spec,
            outcomes,
            start,
            end,
            hash: hex::encode(&hasher.finalize()[..8]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_task_loads_and_codesets_match() {
        let t = Task::load("mi_stroke").unwrap();
        assert_eq!(t.outcomes.len(), 2);
        let mi = &t.outcomes[0].codesets[0];
        assert!(
            mi.matches("ICD10CM//I21.4")
                && mi.matches("ICD9CM//410.71")
                && mi.matches("SNOMED//22298006")
        );
        assert!(!mi.matches("ICD10CM//I25.1") && !mi.matches("SNOMED//399211009"));
        let stroke = &t.outcomes[1];
        let ev = |c: &str| crate::schema::Event {
            code: c.into(),
            ..Default::default()
        };
        for c in [
            "ICD10CM//I63.40",
            "ICD10CM//I60.32",
            "ICD9CM//434.91",
            "ICD9CM//430",
            "SNOMED//230690007",
            "ICD10CM//I61.9",
        ] {
            assert!(stroke.matches(&ev(c)), "{c}");
        }
        assert!(!stroke.matches(&ev("ICD9CM//435.9")));
    }

    #[test]
    fn invalid_specs_say_which_rule_broke() {
        let mut s = Task::load("mi_stroke").unwrap().spec;
        s.window.horizons_years = vec![0];
        let e = Task::from_spec(s.clone(), None).unwrap_err().to_string();
        assert!(e.contains("horizons_years"), "{e}");
        s.window.horizons_years = vec![1];
        s.outcome[0].codesets = vec!["nope".into()];
        assert!(
            Task::from_spec(s, None)
                .unwrap_err()
                .to_string()
                .contains("code set nope")
        );
    }
}
