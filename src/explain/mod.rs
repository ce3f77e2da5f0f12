//! Per-patient explanations. In: integrated-gradients attributions of one risk (from
//! `model::gru::integrated_gradients`: one number per code occurrence, per step's time inputs,
//! per tabular feature) and the row's inputs. Out: factors a clinician recognises (a measurement
//! concept, a diagnosis, a treatment, smoking, age, sex...), each with its contribution to the
//! risk in absolute terms and its split over time windows (the 5-year summary features, the last
//! 12 months, 1-3 and 3-5 years before). The contributions of all factors add up to the risk
//! minus the baseline risk (no events, average tabular features), so nothing is hidden.

use crate::features::spec::{FeatureSpec, rules_match};
use crate::model::data::Dataset;
use crate::model::gru::Attribution;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    pub factor: String,
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

/// Names factors from tabular columns and sequence codes.
pub struct Namer {
    code_factor: HashMap<String, String>,
    /// vocabulary id -> code
    id_code: HashMap<i32, String>,
}

impl Namer {
    pub fn new(vocab: &HashMap<String, i32>) -> Namer {
        let spec = FeatureSpec::builtin();
        let concepts = crate::schema::units::units().concepts();
        let mut code_factor = HashMap::new();
        for code in vocab.keys() {
            let name = if let Some(c) = concepts.iter().find(|c| &c.code == code) {
                c.name.clone()
            } else if let Some(c) = spec.condition.iter().find(|c| rules_match(&c.codes, code)) {
                c.name.clone()
            } else if code.starts_with("ENCOUNTER//") {
                "healthcare use".into()
            } else if code == "LOINC//72166-2" {
                "smoking status".into()
            } else {
                code.clone()
            };
            code_factor.insert(code.clone(), name);
        }
        Namer {
            code_factor,
            id_code: vocab.iter().map(|(c, i)| (*i, c.clone())).collect(),
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

    fn code_name(&self, id: i32) -> String {
        match self.id_code.get(&id) {
            Some(c) => self
                .code_factor
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.clone()),
            None if id == 1 => "rare codes".into(),
            None => "unknown code".into(),
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
    let mut by: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut add = |f: String, w: &str, v: f64| {
        *by.entry(f).or_default().entry(w.to_string()).or_default() += v;
    };
    for (j, v) in a.tab.iter().enumerate() {
        if *v != 0.0 {
            add(
                Namer::column_factor(&columns[j]),
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
            add("timing of care".into(), w, *v as f64);
        }
        if let Some(v) = a.step_age.get(si) {
            add("age".into(), w, *v as f64);
        }
    }
    // steps beyond the row's own (padding) carry zero input, hence zero attribution
    let mut out: Vec<Factor> = by
        .into_iter()
        .map(|(factor, windows)| Factor {
            factor,
            contribution: windows.values().sum(),
            windows,
        })
        .collect();
    out.sort_by(|a, b| {
        b.contribution
            .abs()
            .total_cmp(&a.contribution.abs())
            .then(a.factor.cmp(&b.factor))
    });
    out
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
