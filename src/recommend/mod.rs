//! Preventive recommendations from rules kept as data (`schemas/rules/*.toml`, see its README).
//! In: the quantities of one patient at one prediction time (tabular features, the equations'
//! and the network's risks). Out: the rules that fire, each with its text, strength, guideline,
//! the values that triggered it, and the what-if change whose risk effect is shown next to it.
//! Treatment-aware: a patient on a statin is never told to start one.

pub mod effects;
pub mod whatif;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Intensify,
    Continue,
    Stop,
    Avoid,
    Lifestyle,
    Assess,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: String,
    group: Option<String>,
    topic: String,
    action: Action,
    treatment: Option<String>,
    recommendation: String,
    strength: String,
    guideline: String,
    #[serde(default)]
    when: Vec<String>,
    #[serde(default)]
    when_any: Vec<Vec<String>>,
    what_if: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// Guideline name (the start of a rule's `guideline`) -> where it can be read.
    #[serde(default)]
    guideline_urls: BTreeMap<String, String>,
    rule: Vec<RuleToml>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Ge(f64),
    Gt(f64),
    Le(f64),
    Lt(f64),
    Eq(f64),
    Ne(f64),
    Between(f64, f64),
    Missing,
    Present,
}

/// A rule file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{file}: {err}")]
    Toml { file: String, err: toml::de::Error },
    #[error("{file}: rule {rule:?}: {problem}")]
    Rule {
        file: String,
        rule: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub quantity: String,
    op: Op,
    pub text: String,
}

impl Condition {
    fn parse(s: &str) -> Result<Condition, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let num = |x: &str| {
            x.parse::<f64>()
                .map_err(|_| format!("{x:?} is not a number"))
        };
        let op = match parts.as_slice() {
            [_, "missing"] => Op::Missing,
            [_, "present"] => Op::Present,
            [_, "between", lo, hi] => Op::Between(num(lo)?, num(hi)?),
            [_, op, v] => {
                let v = num(v)?;
                match *op {
                    ">=" => Op::Ge(v),
                    ">" => Op::Gt(v),
                    "<=" => Op::Le(v),
                    "<" => Op::Lt(v),
                    "==" => Op::Eq(v),
                    "!=" => Op::Ne(v),
                    o => return Err(format!("unknown operator {o:?}")),
                }
            }
            _ => {
                return Err(
                    "expected \"<quantity> <op> <value>\", \"<quantity> between <lo> <hi>\", \
                     \"<quantity> missing\" or \"<quantity> present\""
                        .into(),
                );
            }
        };
        Ok(Condition {
            quantity: parts[0].to_string(),
            op,
            text: s.to_string(),
        })
    }

    fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Missing => v.is_nan(),
            Op::Present => !v.is_nan(),
            _ if v.is_nan() => false,
            Op::Ge(x) => v >= x,
            Op::Gt(x) => v > x,
            Op::Le(x) => v <= x,
            Op::Lt(x) => v < x,
            Op::Eq(x) => v == x,
            Op::Ne(x) => v != x,
            Op::Between(lo, hi) => v >= lo && v <= hi,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub group: Option<String>,
    pub topic: String,
    pub action: Action,
    pub treatment: Option<String>,
    pub recommendation: String,
    pub strength: String,
    pub guideline: String,
    /// Where the guideline can be read (its DOI), from the file's `guideline_urls`.
    pub guideline_url: Option<String>,
    pub when: Vec<Condition>,
    pub when_any: Vec<Vec<Condition>>,
    pub what_if: Option<whatif::Change>,
}

/// Every derived quantity rules may use besides the tabular columns.
pub const DERIVED: [&str; 6] = [
    "ascvd_10y",
    "mi_10y",
    "stroke_10y",
    "cha2ds2vasc",
    "cha2ds2vasc_beyond_sex",
    "prior_ascvd",
];

const BUILTIN: [(&str, &str); 4] = [
    (
        "antithrombotic.toml",
        include_str!("../../schemas/rules/antithrombotic.toml"),
    ),
    (
        "blood_pressure.toml",
        include_str!("../../schemas/rules/blood_pressure.toml"),
    ),
    (
        "cholesterol.toml",
        include_str!("../../schemas/rules/cholesterol.toml"),
    ),
    (
        "lifestyle.toml",
        include_str!("../../schemas/rules/lifestyle.toml"),
    ),
];

#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One fired rule for one patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub id: String,
    pub topic: String,
    pub action: Action,
    pub text: String,
    pub strength: String,
    pub guideline: String,
    pub guideline_url: Option<String>,
    /// quantity -> value, for every quantity the rule's conditions read.
    pub triggered_by: BTreeMap<String, f64>,
    pub what_if: Option<whatif::Change>,
    /// The what-if a clinician reads: the trials' effect of the change applied to this
    /// patient's predicted risk ([`effects`]), when its dose can be measured.
    pub effect: Option<effects::AppliedEffect>,
    /// The network's own response to the change (absolute risk change by output): an
    /// association learned from observational records, for analysts, never shown as an effect.
    pub model_association: BTreeMap<String, f64>,
}

impl RuleSet {
    pub fn builtin() -> RuleSet {
        Self::parse(
            BUILTIN.iter().map(|(n, t)| (n.to_string(), t.to_string())),
            None,
        )
        .expect("built-in rules are valid (unit-tested)")
    }

    /// Load every `*.toml` of a folder, checking quantities against `columns` when given.
    pub fn load(dir: &Path, columns: Option<&[String]>) -> Result<RuleSet, RuleError> {
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |err| RuleError::Io { path, err }
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let texts = files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| (p.display().to_string(), t))
                    .map_err(io(p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::parse(texts.into_iter(), columns)
    }

    fn parse(
        files: impl Iterator<Item = (String, String)>,
        columns: Option<&[String]>,
    ) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for (name, text) in files {
            let f: RuleFile = toml::from_str(&text).map_err(|err| RuleError::Toml {
                file: name.clone(),
                err,
            })?;
            for r in f.rule {
                let ctx = |problem: String| RuleError::Rule {
                    file: name.clone(),
                    rule: r.id.clone(),
                    problem,
                };
                if !ids.insert(r.id.clone()) {
                    return Err(ctx("duplicate id".into()));
                }
                let cond = |s: &String| Condition::parse(s).map_err(|m| ctx(format!("{s:?}: {m}")));
                let when = r.when.iter().map(cond).collect::<Result<Vec<_>, _>>()?;
                let when_any = r
                    .when_any
                    .iter()
                    .map(|g| g.iter().map(cond).collect::<Result<Vec<_>, _>>())
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(cols) = columns {
                    for c in when.iter().chain(when_any.iter().flatten()) {
                        if !cols.contains(&c.quantity) && !DERIVED.contains(&c.quantity.as_str()) {
                            return Err(ctx(format!(
                                "unknown quantity {:?} (not a feature column nor one of {DERIVED:?})",
                                c.quantity
                            )));
                        }
                    }
                    if let Some(t) = &r.treatment
                        && !cols.contains(&format!("rx_{t}"))
                    {
                        return Err(ctx(format!("unknown treatment {t:?} (no rx_{t} feature)")));
                    }
                }
                if r.treatment.is_none()
                    && matches!(
                        r.action,
                        Action::Start
                            | Action::Stop
                            | Action::Intensify
                            | Action::Continue
                            | Action::Avoid
                    )
                {
                    return Err(ctx(format!("action {:?} needs a treatment", r.action)));
                }
                let what_if = r
                    .what_if
                    .as_deref()
                    .map(|w| w.parse::<whatif::Change>().map_err(|e| ctx(e.to_string())))
                    .transpose()?;
                rules.push(Rule {
                    id: r.id,
                    group: r.group,
                    topic: r.topic,
                    action: r.action,
                    treatment: r.treatment,
                    recommendation: r.recommendation,
                    strength: r.strength,
                    guideline_url: f
                        .guideline_urls
                        .iter()
                        .filter(|(name, _)| r.guideline.starts_with(name.as_str()))
                        .max_by_key(|(name, _)| name.len())
                        .map(|(_, u)| u.clone()),
                    guideline: r.guideline,
                    when,
                    when_any,
                    what_if,
                });
            }
        }
        Ok(RuleSet { rules })
    }

    /// The rules that fire for one patient (`q` gives every quantity; NaN when unknown).
    pub fn recommend(&self, q: &dyn Fn(&str) -> f64) -> Vec<Recommendation> {
        let mut groups_done: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for r in &self.rules {
            if r.group.as_deref().is_some_and(|g| groups_done.contains(g)) {
                continue;
            }
            if !r.when.iter().all(|c| c.holds(q(&c.quantity))) {
                continue;
            }
            if !r
                .when_any
                .iter()
                .all(|g| g.iter().any(|c| c.holds(q(&c.quantity))))
            {
                continue;
            }
            let on = r.treatment.as_ref().map(|t| q(&format!("rx_{t}")) == 1.0);
            let consistent = !matches!(
                (r.action, on),
                (Action::Start | Action::Avoid, Some(true))
                    | (
                        Action::Intensify | Action::Continue | Action::Stop,
                        Some(false)
                    )
            );
            if !consistent {
                continue;
            }
            if let Some(g) = &r.group {
                groups_done.insert(g);
            }
            let mut triggered_by = BTreeMap::new();
            for c in r.when.iter().chain(r.when_any.iter().flatten()) {
                let v = q(&c.quantity);
                if !v.is_nan() {
                    triggered_by.insert(c.quantity.clone(), v);
                }
            }
            if let Some(t) = &r.treatment {
                triggered_by.insert(format!("rx_{t}"), q(&format!("rx_{t}")));
            }
            out.push(Recommendation {
                id: r.id.clone(),
                topic: r.topic.clone(),
                action: r.action,
                text: r.recommendation.clone(),
                strength: r.strength.clone(),
                guideline: r.guideline.clone(),
                guideline_url: r.guideline_url.clone(),
                triggered_by,
                what_if: r.what_if,
                effect: None,
                model_association: BTreeMap::new(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn columns() -> Vec<String> {
        let spec = crate::features::spec::FeatureSpec::builtin();
        let c = crate::features::spec::Compiled::new(spec, &Default::default()).unwrap();
        let task = crate::cohort::spec::Task::load("mi_stroke").unwrap();
        crate::features::compute::tabular_columns(&c, &task)
    }

    fn run(values: &[(&str, f64)]) -> Vec<Recommendation> {
        let m: HashMap<&str, f64> = values.iter().copied().collect();
        RuleSet::builtin().recommend(&|k| m.get(k).copied().unwrap_or(f64::NAN))
    }

    #[test]
    fn builtin_rules_name_only_known_quantities() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/rules");
        let r = RuleSet::load(&dir, Some(&columns())).unwrap();
        assert_eq!(r.rules.len(), RuleSet::builtin().rules.len());
        let topics: HashSet<&str> = r.rules.iter().map(|r| r.topic.as_str()).collect();
        for t in [
            "cholesterol",
            "blood pressure",
            "tobacco",
            "diabetes",
            "weight",
            "atrial fibrillation",
            "aspirin",
        ] {
            assert!(topics.contains(t), "{t}");
        }
    }

    #[test]
    fn statin_by_risk_band_and_never_start_when_on_it() {
        let base = [
            ("age_years", 55.0),
            ("ldl_cholesterol_last", 130.0),
            ("rx_statin", 0.0),
            ("prior_ascvd", 0.0),
            ("dx_diabetes", 0.0),
        ];
        let with = |extra: &[(&str, f64)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            run(&v)
        };
        let ids = |r: &[Recommendation]| r.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        assert!(ids(&with(&[("ascvd_10y", 0.25)])).contains(&"statin-high-risk".to_string()));
        let mid = with(&[("ascvd_10y", 0.10)]);
        let r = mid
            .iter()
            .find(|r| r.id == "statin-intermediate-risk")
            .unwrap();
        assert_eq!(r.triggered_by["ascvd_10y"], 0.10);
        assert_eq!(r.triggered_by["ldl_cholesterol_last"], 130.0);
        assert!(
            !ids(&with(&[("ascvd_10y", 0.03)]))
                .iter()
                .any(|i| i.starts_with("statin"))
        );
        // on a statin already: no "start"
        let on = with(&[("ascvd_10y", 0.25), ("rx_statin", 1.0)]);
        assert!(
            on.iter()
                .all(|r| !(r.topic == "cholesterol" && r.action == Action::Start))
        );
        // severe hypercholesterolaemia wins its group over the risk band
        let severe = run(&[
            ("age_years", 45.0),
            ("ldl_cholesterol_last", 200.0),
            ("rx_statin", 0.0),
            ("ascvd_10y", 0.25),
        ]);
        let st: Vec<_> = severe.iter().filter(|r| r.topic == "cholesterol").collect();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].id, "statin-severe-hypercholesterolaemia");
    }

    #[test]
    fn blood_pressure_smoking_af_and_aspirin() {
        let r = run(&[
            ("systolic_bp_last", 150.0),
            ("diastolic_bp_last", 85.0),
            ("rx_antihypertensive", 0.0),
            ("smoking_current", 1.0),
            ("dx_atrial_fibrillation", 1.0),
            ("cha2ds2vasc_beyond_sex", 2.0),
            ("rx_anticoagulant", 0.0),
            ("prior_ascvd", 0.0),
            ("age_years", 74.0),
            ("rx_aspirin", 0.0),
            ("ascvd_10y", 0.3),
        ]);
        let ids: Vec<&str> = r.iter().map(|x| x.id.as_str()).collect();
        assert!(ids.contains(&"bp-stage2"), "{ids:?}");
        assert!(ids.contains(&"smoking-cessation"));
        assert!(ids.contains(&"af-anticoagulation"));
        assert!(ids.contains(&"aspirin-primary-avoid"), "{ids:?}");
        // on treatment above target: intensify, not start
        let r = run(&[("systolic_bp_last", 150.0), ("rx_antihypertensive", 1.0)]);
        assert_eq!(r[0].id, "bp-intensify");
        // aspirin with an anticoagulant and no MI: stop
        let r = run(&[
            ("rx_aspirin", 1.0),
            ("rx_anticoagulant", 1.0),
            ("prior_mi", 0.0),
            ("prior_ascvd", 0.0),
            ("age_years", 60.0),
        ]);
        assert!(
            r.iter()
                .any(|x| x.id == "aspirin-with-anticoagulant" && x.action == Action::Stop)
        );
    }

    #[test]
    fn bad_rules_are_refused_with_file_and_rule() {
        let bad = [
            (
                "x.toml",
                "[[rule]]\nid='a'\ntopic='t'\naction='lifestyle'\nrecommendation='r'\nstrength='s'\nguideline='g'\nwhen=['age_years >> 3']\n",
            ),
            (
                "y.toml",
                "[[rule]]\nid='b'\ntopic='t'\naction='start'\nrecommendation='r'\nstrength='s'\nguideline='g'\n",
            ),
            (
                "z.toml",
                "[[rule]]\nid='c'\ntopic='t'\naction='lifestyle'\nrecommendation='r'\nstrength='s'\nguideline='g'\nwhen=['shoe_size > 3']\n",
            ),
        ];
        let cols = columns();
        for (n, t) in bad {
            let e = RuleSet::parse(std::iter::once((n.to_string(), t.to_string())), Some(&cols))
                .expect_err("refused");
            assert!(e.to_string().starts_with(n), "{e}");
        }
    }
}
