//! What-if changes of modifiable factors. In: one patient's model inputs (tabular features and
//! the normalised values in the monthly sequence) and a [`Change`]. Out: the same inputs as if
//! the factor had been at the changed level over the look-back, which the network and the
//! equations then score; the difference is the network's response to the change. That response
//! is an association learned from observational records (treated people are sicker), so it is
//! kept for analysts only; the what-if shown to a clinician is the trials' effect
//! ([`super::effects`]). Treatment flags are left as they are (except for anticoagulation, which
//! is the change itself).

use crate::model::data::Dataset;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// LDL-C -30 % (moderate-intensity statin).
    StatinModerate,
    /// LDL-C -50 % (high-intensity statin).
    StatinHigh,
    /// SBP to 130 and DBP to 80 mmHg where above.
    BpToTarget,
    StopSmoking,
    Anticoagulate,
}

/// A what-if name this engine does not know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "unknown what_if {0:?}: expected statin_moderate, statin_high, bp_to_target, stop_smoking or anticoagulate"
)]
pub struct UnknownChange(pub String);

impl std::str::FromStr for Change {
    type Err = UnknownChange;
    fn from_str(s: &str) -> Result<Change, UnknownChange> {
        Ok(match s {
            "statin_moderate" => Change::StatinModerate,
            "statin_high" => Change::StatinHigh,
            "bp_to_target" => Change::BpToTarget,
            "stop_smoking" => Change::StopSmoking,
            "anticoagulate" => Change::Anticoagulate,
            o => return Err(UnknownChange(o.to_string())),
        })
    }
}

impl Change {
    pub fn name(&self) -> &'static str {
        match self {
            Change::StatinModerate => "statin_moderate",
            Change::StatinHigh => "statin_high",
            Change::BpToTarget => "bp_to_target",
            Change::StopSmoking => "stop_smoking",
            Change::Anticoagulate => "anticoagulate",
        }
    }
}

/// Where a measurement concept's values sit in the sequences: vocabulary id -> (mean, std).
#[derive(Debug, Clone, Default)]
pub struct SequenceValues {
    pub by_concept: HashMap<String, HashMap<i32, (f32, f32)>>,
}

impl SequenceValues {
    /// From the model's vocabulary and value normalisation.
    pub fn new(vocab: &HashMap<String, i32>, norm: &HashMap<String, (f32, f32)>) -> Self {
        let mut by_concept: HashMap<String, HashMap<i32, (f32, f32)>> = HashMap::new();
        for c in crate::schema::units::units().concepts() {
            if let (Some(id), Some(mn)) = (vocab.get(&c.code), norm.get(&c.code)) {
                by_concept
                    .entry(c.name.clone())
                    .or_default()
                    .insert(*id, *mn);
            }
        }
        SequenceValues { by_concept }
    }
}

fn col(columns: &[String], name: &str) -> Option<usize> {
    columns.iter().position(|c| c == name)
}

/// Apply `f` (raw value -> changed raw value) to a measurement: its `_last` and `_mean`
/// tabular features and every value of the concept in row `r`'s sequence.
fn change_measurement(
    d: &mut Dataset,
    r: usize,
    columns: &[String],
    seq: &SequenceValues,
    concept: &str,
    f: &dyn Fn(f32) -> f32,
) {
    let n = d.n_tab;
    for s in ["last", "mean"] {
        if let Some(j) = col(columns, &format!("{concept}_{s}")) {
            let v = &mut d.tab[r * n + j];
            if !v.is_nan() {
                *v = f(*v);
            }
        }
    }
    let Some(ids) = seq.by_concept.get(concept) else {
        return;
    };
    for s in d.step_off[r]..d.step_off[r + 1] {
        for c in d.code_off[s]..d.code_off[s + 1] {
            if let Some((m, sd)) = ids.get(&d.codes[c]) {
                let raw = d.vals[c] * sd + m;
                d.vals[c] = ((f(raw) - m) / sd).clamp(-10.0, 10.0);
            }
        }
    }
}

/// Change row `r` of `d` in place. Returns false when the change does not apply (nothing to
/// change: e.g. blood pressure already at target, a non-smoker).
pub fn apply(
    change: Change,
    d: &mut Dataset,
    r: usize,
    columns: &[String],
    seq: &SequenceValues,
) -> bool {
    let n = d.n_tab;
    let get = |d: &Dataset, name: &str| col(columns, name).map_or(f32::NAN, |j| d.tab[r * n + j]);
    let set = |d: &mut Dataset, name: &str, v: f32| {
        if let Some(j) = col(columns, name) {
            d.tab[r * n + j] = v;
        }
    };
    match change {
        Change::StatinModerate | Change::StatinHigh => {
            let cut = if change == Change::StatinHigh {
                0.5
            } else {
                0.3
            };
            let ldl = get(d, "ldl_cholesterol_last");
            if ldl.is_nan() {
                return false;
            }
            let drop = ldl * cut;
            change_measurement(d, r, columns, seq, "ldl_cholesterol", &|v| v * (1.0 - cut));
            change_measurement(d, r, columns, seq, "total_cholesterol", &|v| {
                (v - drop).max(v * 0.3)
            });
            true
        }
        Change::BpToTarget => {
            let (s, di) = (get(d, "systolic_bp_last"), get(d, "diastolic_bp_last"));
            if !(s > 130.0 || di > 80.0) {
                return false;
            }
            change_measurement(d, r, columns, seq, "systolic_bp", &|v| v.min(130.0));
            change_measurement(d, r, columns, seq, "diastolic_bp", &|v| v.min(80.0));
            true
        }
        Change::StopSmoking => {
            if get(d, "smoking_current") != 1.0 {
                return false;
            }
            set(d, "smoking_current", 0.0);
            set(d, "smoking_former", 1.0);
            true
        }
        Change::Anticoagulate => {
            if get(d, "rx_anticoagulant") == 1.0 {
                return false;
            }
            set(d, "rx_anticoagulant", 1.0);
            true
        }
    }
}
