//! Per-patient explanations. In: integrated-gradients attributions of one risk (from
//! `model::gru::integrated_gradients`: one number per code occurrence, per step's time inputs,
//! per tabular feature) and the row's inputs. Out: factors a clinician recognises (a measurement
//! concept, a diagnosis, a treatment, smoking, age, sex...), each with its contribution to the
//! risk in absolute terms and its split over time windows (the 5-year summary features, the last
//! 12 months, 1-3 and 3-5 years before). The contributions of all factors add up to the risk
//! minus the baseline risk (no events, average tabular features), so nothing is hidden.
//!
//! Each factor has a kind: a modifiable risk factor (a measurement, smoking), a known condition,
//! a treatment, a demographic or healthcare use. A treatment's contribution is a marker of the
//! disease it treats (treated people are sicker), never a reason to stop it, so the lines a
//! clinician reads list treatments apart ([`clinician_lines`]).

pub mod basis;

use crate::features::spec::{FeatureSpec, rules_match};
use crate::model::data::Dataset;
use crate::model::gru::Attribution;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What kind of thing a factor is, for how a clinician should read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// A measurement or habit that can be changed (BP, lipids, glucose, weight, smoking).
    RiskFactor,
    /// A diagnosis or a prior outcome: known disease.
    Condition,
    /// A treatment: a marker of the disease it treats, not a cause of risk.
    Treatment,
    Demographic,
    /// Visits, stays, timing and volume of care.
    Care,
}

impl FactorKind {
    pub fn label(&self) -> &'static str {
        match self {
            FactorKind::RiskFactor => "risk factor",
            FactorKind::Condition => "known condition",
            FactorKind::Treatment => "treatment (marker of known disease)",
            FactorKind::Demographic => "demographic",
            FactorKind::Care => "healthcare use",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    pub factor: String,
    pub kind: FactorKind,
    /// Absolute risk contribution (fraction; positive raises the risk).
    pub contribution: f64,
    /// window -> contribution
    pub windows: BTreeMap<String, f64>,
}

impl Factor {
    /// "systolic_bp +2.1 pp (last 12 months +1.5, 5-year summary +0.6)"
    pub fn describe(&self) -> String {
        let mut w: Vec<(&String, &f64)> = self.windows.iter().collect();
        w.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let parts: Vec<String> = w
            .iter()
            .filter(|(_, v)| v.abs() >= 0.0005)
            .map(|(k, v)| format!("{k} {:+.1}", *v * 100.0))
            .collect();
        if parts.len() > 1 {
            format!(
                "{} {:+.1} pp ({})",
                self.factor,
                self.contribution * 100.0,
                parts.join(", ")
            )
        } else {
            format!("{} {:+.1} pp", self.factor, self.contribution * 100.0)
        }
    }
}

impl Factor {
    /// [`Factor::describe`], with a treatment marked as a marker of known disease.
    pub fn line(&self) -> String {
        if self.kind == FactorKind::Treatment {
            format!("{} [{}]", self.describe(), self.kind.label())
        } else {
            self.describe()
        }
    }
}

/// Names factors from tabular columns and sequence codes.
pub struct Namer {
    code_factor: HashMap<String, (String, FactorKind)>,
    /// vocabulary id -> code
    id_code: HashMap<i32, String>,
}

impl Namer {
    pub fn new(vocab: &HashMap<String, i32>) -> Namer {
        let spec = FeatureSpec::builtin();
        let concepts = crate::schema::units::units().concepts();
        let mut code_factor = HashMap::new();
        for code in vocab.keys() {
            let vocabulary = code.split("//").next().unwrap_or("");
            let name = if let Some(c) = concepts.iter().find(|c| &c.code == code) {
                (c.name.clone(), FactorKind::RiskFactor)
            } else if let Some(c) = spec.condition.iter().find(|c| rules_match(&c.codes, code)) {
                (c.name.clone(), FactorKind::Condition)
            } else if code.starts_with("ENCOUNTER//") {
                ("healthcare use".into(), FactorKind::Care)
            } else if code == "LOINC//72166-2" {
                ("smoking status".into(), FactorKind::RiskFactor)
            } else if spec.medication_vocabularies.iter().any(|v| v == vocabulary) {
                (format!("medication {code}"), FactorKind::Treatment)
            } else if code == "MEDS_BIRTH"
                || code.starts_with("GENDER//")
                || code.starts_with("RACE//")
                || code.starts_with("ETHNICITY//")
            {
                (code.clone(), FactorKind::Demographic)
            } else {
                (code.clone(), FactorKind::Condition)
            };
            code_factor.insert(code.clone(), name);
        }
        Namer {
            code_factor,
            id_code: vocab.iter().map(|(c, i)| (*i, c.clone())).collect(),
        }
    }

    /// The kind of a tabular column's factor.
    pub fn column_kind(column: &str) -> FactorKind {
        match column {
            "age_years" | "sex_female" => FactorKind::Demographic,
            c if c.starts_with("race_") => FactorKind::Demographic,
            c if c.starts_with("rx_") => FactorKind::Treatment,
            c if c.starts_with("dx_") || c.starts_with("prior_") => FactorKind::Condition,
            "n_encounters_1y" | "n_inpatient_stays" | "n_events" => FactorKind::Care,
            _ => FactorKind::RiskFactor,
        }
    }

    pub fn column_factor(column: &str) -> String {
        for s in [
            "_days_since_last",
            "_slope_per_year",
            "_last",
            "_mean",
            "_count",
        ] {
            if let Some(m) = column.strip_suffix(s) {
                return m.to_string();
            }
        }
        match column {
            "age_years" => "age".into(),
            "sex_female" => "sex".into(),
            c if c.starts_with("race_") => "race".into(),
            c if c.starts_with("smoking_") => "smoking status".into(),
            c if c.starts_with("dx_") => c[3..].to_string(),
            c if c.starts_with("rx_") => format!("{} treatment", &c[3..]),
            c if c.starts_with("prior_") => format!("prior {}", &c[6..]),
            "n_encounters_1y" | "n_inpatient_stays" | "n_events" => "healthcare use".into(),
            c => c.to_string(),
        }
    }

    fn code_name(&self, id: i32) -> (String, FactorKind) {
        match self.id_code.get(&id) {
            Some(c) => self
                .code_factor
                .get(c)
                .cloned()
                .unwrap_or_else(|| (c.clone(), FactorKind::Condition)),
            None if id == 1 => ("rare codes".into(), FactorKind::Care),
            None => ("unknown code".into(), FactorKind::Care),
        }
    }
}

fn window(days: f32) -> &'static str {
    if days < 365.0 {
        "last 12 months"
    } else if days < 3.0 * 365.25 {
        "1-3 years before"
    } else {
        "3-5 years before"
    }
}

/// All factors of one row, largest absolute contribution first.
pub fn factors(
    a: &Attribution,
    d: &Dataset,
    r: usize,
    columns: &[String],
    namer: &Namer,
) -> Vec<Factor> {
    let mut by: BTreeMap<(String, FactorKind), BTreeMap<String, f64>> = BTreeMap::new();
    let mut add = |f: (String, FactorKind), w: &str, v: f64| {
        *by.entry(f).or_default().entry(w.to_string()).or_default() += v;
    };
    for (j, v) in a.tab.iter().enumerate() {
        if *v != 0.0 {
            add(
                (
                    Namer::column_factor(&columns[j]),
                    Namer::column_kind(&columns[j]),
                ),
                "5-year summary",
                *v as f64,
            );
        }
    }
    let mut k = 0;
    for (si, s) in (d.step_off[r]..d.step_off[r + 1]).enumerate() {
        let w = window(d.step_days[s]);
        for c in d.code_off[s]..d.code_off[s + 1] {
            add(namer.code_name(d.codes[c]), w, a.codes[k] as f64);
            k += 1;
        }
        if let Some(v) = a.steps.get(si) {
            add(("timing of care".into(), FactorKind::Care), w, *v as f64);
        }
        if let Some(v) = a.step_age.get(si) {
            add(("age".into(), FactorKind::Demographic), w, *v as f64);
        }
    }
    // steps beyond the row's own (padding) carry zero input, hence zero attribution
    let mut out: Vec<Factor> = by
        .into_iter()
        .map(|((factor, kind), windows)| Factor {
            factor,
            kind,
            contribution: windows.values().sum(),
            windows,
        })
        .collect();
    out.sort_by(largest_first);
    out
}

/// The order factors are listed in: largest absolute contribution first, then by name.
pub fn largest_first(a: &Factor, b: &Factor) -> std::cmp::Ordering {
    b.contribution
        .abs()
        .total_cmp(&a.contribution.abs())
        .then(a.factor.cmp(&b.factor))
}

/// The `top` largest factors as a clinician reads them: risk factors, conditions and the rest
/// first, then the treatments apart, as markers of the disease they treat.
pub fn clinician_lines(factors: &[Factor], top: usize) -> (Vec<String>, Vec<String>) {
    let (mut risk, mut markers) = (Vec::new(), Vec::new());
    for f in factors.iter().take(top) {
        if f.kind == FactorKind::Treatment {
            markers.push(f.describe());
        } else {
            risk.push(f.describe());
        }
    }
    (risk, markers)
}

/// The same lines joined into one text: "a; b. Treatments (markers of known disease, not
/// causes): c".
pub fn clinician_text(factors: &[Factor], top: usize) -> String {
    let (risk, markers) = clinician_lines(factors, top);
    let mut s = risk.join("; ");
    if !markers.is_empty() {
        if !s.is_empty() {
            s.push_str(". ");
        }
        s.push_str("Treatments (markers of known disease, not causes): ");
        s.push_str(&markers.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_to_clinical_factors() {
        assert_eq!(
            Namer::column_factor("systolic_bp_slope_per_year"),
            "systolic_bp"
        );
        assert_eq!(Namer::column_factor("race_black"), "race");
        assert_eq!(Namer::column_factor("egfr_days_since_last"), "egfr");
        assert_eq!(Namer::column_factor("rx_statin"), "statin treatment");
        assert_eq!(Namer::column_factor("dx_diabetes"), "diabetes");
        assert_eq!(Namer::column_factor("prior_mi"), "prior mi");
        assert_eq!(Namer::column_kind("rx_statin"), FactorKind::Treatment);
        assert_eq!(
            Namer::column_kind("ldl_cholesterol_last"),
            FactorKind::RiskFactor
        );
        assert_eq!(Namer::column_kind("prior_stroke"), FactorKind::Condition);
        assert_eq!(Namer::column_kind("age_years"), FactorKind::Demographic);
    }

    #[test]
    fn treatments_are_listed_apart_as_markers() {
        let f = |name: &str, kind, c| Factor {
            factor: name.into(),
            kind,
            contribution: c,
            windows: BTreeMap::new(),
        };
        let fs = vec![
            f("statin treatment", FactorKind::Treatment, 0.03),
            f("systolic_bp", FactorKind::RiskFactor, 0.02),
            f("age", FactorKind::Demographic, 0.01),
        ];
        let (risk, markers) = clinician_lines(&fs, 3);
        assert_eq!(risk, vec!["systolic_bp +2.0 pp", "age +1.0 pp"]);
        assert_eq!(markers, vec!["statin treatment +3.0 pp"]);
        let t = clinician_text(&fs, 3);
        assert!(
            t.starts_with("systolic_bp +2.0 pp; age +1.0 pp. Treatments (markers of known disease, not causes): statin"),
            "{t}"
        );
    }

    #[test]
    fn factors_add_up_and_keep_windows() {
        let d = Dataset {
            n_tab: 2,
            keys: vec![(1, 0)],
            split: vec!["x".into()],
            tab: vec![0.0, 0.0],
            step_off: vec![0, 2],
            step_x: vec![[0.0; 3]; 2],
            step_days: vec![900.0, 30.0],
            code_off: vec![0, 1, 3],
            codes: vec![5, 5, 6],
            vals: vec![0.0; 3],
            ..Default::default()
        };
        let vocab: HashMap<String, i32> = [
            ("LOINC//8480-6".to_string(), 5),
            ("ICD10CM//E11.9".to_string(), 6),
        ]
        .into();
        let a = Attribution {
            codes: vec![0.01, 0.02, -0.005],
            steps: vec![0.001, 0.0],
            step_age: vec![0.0, 0.0],
            tab: vec![0.03, -0.002],
            risk: 0.2,
            baseline: 0.146,
        };
        let cols = vec!["systolic_bp_last".to_string(), "sex_female".to_string()];
        let f = factors(&a, &d, 0, &cols, &Namer::new(&vocab));
        assert_eq!(f[0].factor, "systolic_bp");
        assert_eq!(f[0].kind, FactorKind::RiskFactor);
        assert!((f[0].contribution - 0.06).abs() < 1e-6);
        assert!((f[0].windows["last 12 months"] - 0.02).abs() < 1e-6);
        assert!((f[0].windows["1-3 years before"] - 0.01).abs() < 1e-6);
        assert!(f.iter().any(|x| x.factor == "diabetes"));
        let total: f64 = f.iter().map(|x| x.contribution).sum();
        assert!((total - 0.054).abs() < 1e-6);
        assert!(
            f[0].describe().starts_with("systolic_bp +6.0 pp"),
            "{}",
            f[0].describe()
        );
    }
}
