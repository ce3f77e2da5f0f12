//! Treatment effects from trials, applied to a patient's predicted risk. In: the effects table
//! (`schemas/effects.toml`: relative risk per unit of dose per outcome, with its source), one
//! patient's quantities (last LDL-C, last systolic BP) and the predicted risk per outcome at the
//! reference horizon. Out: the what-if risk per outcome, `1 - (1 - p) ^ (rr ^ dose)` (a
//! proportional hazard over the horizon), with the dose and the source named.
//!
//! Why not the network: trained on observational records, it learns that treated people are
//! sicker (confounding by indication), so the change it predicts when a treatment flag flips is
//! an association. The what-if a clinician reads is the trials' effect; the network's response is
//! kept beside it for analysts, labelled as association.

use super::whatif::Change;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// mg/dL of LDL-C per mmol/L.
const LDL_MG_PER_MMOL: f64 = 38.67;

/// How an effect's dose is measured on the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dose {
    /// mmol/L of LDL-C lowered: the last LDL-C times `ldl_fraction_lowered`.
    LdlMmolLowered,
    /// Tens of mmHg of systolic BP lowered to `sbp_target`.
    #[serde(rename = "sbp_10mmhg_lowered")]
    Sbp10mmhgLowered,
    /// The whole treatment (1).
    Whole,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectToml {
    what_if: String,
    dose: Dose,
    ldl_fraction_lowered: Option<f64>,
    sbp_target: Option<f64>,
    rr_per_unit: BTreeMap<String, f64>,
    source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectsFile {
    effect: Vec<EffectToml>,
}

/// One treatment's effect as measured in trials.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub change: Change,
    pub dose: Dose,
    pub ldl_fraction_lowered: f64,
    pub sbp_target: f64,
    /// outcome -> relative risk per unit of dose
    pub rr_per_unit: BTreeMap<String, f64>,
    pub source: String,
}

/// The trials' effect applied to one patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedEffect {
    /// The horizon of the risks.
    pub horizon_years: u32,
    /// outcome -> (risk before, risk after)
    pub risk: BTreeMap<String, (f64, f64)>,
    /// The dose in words ("LDL-C 1.6 mmol/L lower", "SBP 24 mmHg lower").
    pub dose: String,
    pub source: String,
}

impl AppliedEffect {
    /// The outcomes the effect changes, as "mi 12% -> 9%" with `pct` formatting a risk; empty
    /// when it changes none.
    pub fn changes(&self, pct: &dyn Fn(f64) -> String, arrow: &str) -> Vec<String> {
        self.risk
            .iter()
            .filter(|(_, (b, a))| a != b)
            .map(|(o, (b, a))| format!("{o} {} {arrow} {}", pct(*b), pct(*a)))
            .collect()
    }

    /// The dose in parentheses after a space (" (SBP 8 mmHg lower)"), or nothing.
    pub fn dose_note(&self) -> String {
        if self.dose.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.dose)
        }
    }
}

/// A table of effects that cannot be used, with why.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{file}: {err}")]
    Toml { file: String, err: toml::de::Error },
    #[error("{file}: effect {what_if:?}: {problem}")]
    Effect {
        file: String,
        what_if: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    pub effects: Vec<Effect>,
}

impl Effects {
    pub fn builtin() -> Effects {
        Self::parse("effects.toml", include_str!("../../schemas/effects.toml"))
            .expect("schemas/effects.toml is valid (unit-tested)")
    }

    pub fn parse(file: &str, text: &str) -> Result<Effects, EffectError> {
        let f: EffectsFile = toml::from_str(text).map_err(|err| EffectError::Toml {
            file: file.into(),
            err,
        })?;
        let mut effects = Vec::new();
        for e in f.effect {
            let bad = |problem: String| EffectError::Effect {
                file: file.into(),
                what_if: e.what_if.clone(),
                problem,
            };
            let change: Change = e.what_if.parse().map_err(|x| bad(format!("{x}")))?;
            if effects.iter().any(|x: &Effect| x.change == change) {
                return Err(bad("listed twice".into()));
            }
            for (o, rr) in &e.rr_per_unit {
                if !(rr.is_finite() && *rr > 0.0 && *rr <= 1.5) {
                    return Err(bad(format!(
                        "rr_per_unit.{o} = {rr}: expected a relative risk in (0, 1.5]"
                    )));
                }
            }
            let ldl = match (e.dose, e.ldl_fraction_lowered) {
                (Dose::LdlMmolLowered, Some(f)) if f > 0.0 && f < 1.0 => f,
                (Dose::LdlMmolLowered, v) => {
                    return Err(bad(format!(
                        "ldl_fraction_lowered = {v:?}: expected a fraction in (0, 1)"
                    )));
                }
                (_, _) => 0.0,
            };
            let sbp = match (e.dose, e.sbp_target) {
                (Dose::Sbp10mmhgLowered, Some(t)) if (90.0..=160.0).contains(&t) => t,
                (Dose::Sbp10mmhgLowered, v) => {
                    return Err(bad(format!(
                        "sbp_target = {v:?}: expected mmHg between 90 and 160"
                    )));
                }
                (_, _) => 0.0,
            };
            if e.source.trim().is_empty() {
                return Err(bad(
                    "source is empty: every effect names where it comes from".into(),
                ));
            }
            effects.push(Effect {
                change,
                dose: e.dose,
                ldl_fraction_lowered: ldl,
                sbp_target: sbp,
                rr_per_unit: e.rr_per_unit,
                source: e.source,
            });
        }
        Ok(Effects { effects })
    }

    pub fn get(&self, c: Change) -> Option<&Effect> {
        self.effects.iter().find(|e| e.change == c)
    }

    /// The effect of `c` on a patient with quantities `q` (feature columns by name) and risks
    /// `risk` (outcome -> risk at the reference horizon). None when no effect is known for the
    /// change or its dose cannot be measured (no LDL-C, SBP already at target).
    pub fn apply(
        &self,
        c: Change,
        q: &dyn Fn(&str) -> f64,
        risk: &BTreeMap<String, f64>,
        horizon_years: u32,
    ) -> Option<AppliedEffect> {
        let e = self.get(c)?;
        let (dose, words) = match e.dose {
            Dose::LdlMmolLowered => {
                let ldl = q("ldl_cholesterol_last");
                if !(ldl.is_finite() && ldl > 0.0) {
                    return None;
                }
                let d = ldl * e.ldl_fraction_lowered / LDL_MG_PER_MMOL;
                (d, format!("LDL-C {d:.1} mmol/L lower"))
            }
            Dose::Sbp10mmhgLowered => {
                let sbp = q("systolic_bp_last");
                if !(sbp.is_finite() && sbp > e.sbp_target) {
                    return None;
                }
                let d = sbp - e.sbp_target;
                (d / 10.0, format!("SBP {d:.0} mmHg lower"))
            }
            Dose::Whole => (1.0, String::new()),
        };
        let risk = risk
            .iter()
            .map(|(o, &p)| {
                let after = match e.rr_per_unit.get(o) {
                    Some(rr) => 1.0 - (1.0 - p).powf(rr.powf(dose)),
                    None => p,
                };
                (o.clone(), (p, after))
            })
            .collect();
        Some(AppliedEffect {
            horizon_years,
            risk,
            dose: words,
            source: e.source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(ldl: f64, sbp: f64) -> impl Fn(&str) -> f64 {
        move |n: &str| match n {
            "ldl_cholesterol_last" => ldl,
            "systolic_bp_last" => sbp,
            _ => f64::NAN,
        }
    }

    fn risks(mi: f64, stroke: f64) -> BTreeMap<String, f64> {
        [("mi".to_string(), mi), ("stroke".to_string(), stroke)].into()
    }

    #[test]
    fn builtin_table_parses_and_covers_every_change() {
        let e = Effects::builtin();
        for c in [
            Change::StatinModerate,
            Change::StatinHigh,
            Change::BpToTarget,
            Change::StopSmoking,
            Change::Anticoagulate,
        ] {
            assert!(e.get(c).is_some(), "{c:?} has an effect");
        }
    }

    #[test]
    fn a_statin_lowers_risk_by_the_ctt_ratio_per_mmol() {
        let e = Effects::builtin();
        // LDL-C 154.68 mg/dL = 4 mmol/L; high intensity halves it: 2 mmol/L lower.
        let a = e
            .apply(
                Change::StatinHigh,
                &q(154.68, f64::NAN),
                &risks(0.2, 0.1),
                10,
            )
            .unwrap();
        let (b, after) = a.risk["mi"];
        assert_eq!(b, 0.2);
        let want = 1.0 - 0.8f64.powf(0.76f64.powi(2));
        assert!((after - want).abs() < 1e-12, "{after} vs {want}");
        assert!(after < b);
        assert!(a.dose.contains("2.0 mmol/L"), "{}", a.dose);
        assert!(a.source.contains("Lancet 2010"));
        // A moderate statin does less than a high-intensity one.
        let m = e
            .apply(
                Change::StatinModerate,
                &q(154.68, f64::NAN),
                &risks(0.2, 0.1),
                10,
            )
            .unwrap();
        assert!(m.risk["mi"].1 > after);
        // No LDL-C measured: no dose, no what-if.
        assert!(
            e.apply(
                Change::StatinHigh,
                &q(f64::NAN, 150.0),
                &risks(0.2, 0.1),
                10
            )
            .is_none()
        );
    }

    #[test]
    fn bp_effect_scales_with_the_mmhg_above_target_and_never_raises_risk() {
        let e = Effects::builtin();
        let a = e
            .apply(
                Change::BpToTarget,
                &q(f64::NAN, 150.0),
                &risks(0.2, 0.1),
                10,
            )
            .unwrap();
        let want = 1.0 - 0.9f64.powf(0.73f64.powi(2));
        assert!((a.risk["stroke"].1 - want).abs() < 1e-12);
        assert!(
            e.apply(
                Change::BpToTarget,
                &q(f64::NAN, 128.0),
                &risks(0.2, 0.1),
                10
            )
            .is_none(),
            "at target: nothing to lower"
        );
        for p in [0.0, 0.01, 0.5, 0.99] {
            let a = e
                .apply(Change::BpToTarget, &q(f64::NAN, 200.0), &risks(p, p), 10)
                .unwrap();
            for (b, after) in a.risk.values() {
                assert!(after <= b && *after >= 0.0);
            }
        }
    }

    #[test]
    fn anticoagulation_changes_stroke_only() {
        let a = Effects::builtin()
            .apply(
                Change::Anticoagulate,
                &q(f64::NAN, f64::NAN),
                &risks(0.2, 0.1),
                10,
            )
            .unwrap();
        assert_eq!(a.risk["mi"], (0.2, 0.2));
        assert!((a.risk["stroke"].1 - (1.0 - 0.9f64.powf(0.36))).abs() < 1e-12);
    }

    #[test]
    fn a_bad_table_is_refused_with_the_rule_it_breaks() {
        let bad = r#"[[effect]]
what_if = "statin_high"
dose = "ldl_mmol_lowered"
rr_per_unit = { mi = 0.76 }
source = "x""#;
        let e = Effects::parse("t.toml", bad).unwrap_err().to_string();
        assert!(e.contains("ldl_fraction_lowered"), "{e}");
        let bad = bad.replace(
            "rr_per_unit = { mi = 0.76 }",
            "ldl_fraction_lowered = 0.5\nrr_per_unit = { mi = 7 }",
        );
        let e = Effects::parse("t.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("relative risk"), "{e}");
        let e = Effects::parse(
            "t.toml",
            "[[effect]]\nwhat_if = \"fly\"\ndose = \"whole\"\nrr_per_unit = {}\nsource = \"x\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown what_if"), "{e}");
    }
}
