//! The clinical equations against every PCE and PREVENT vector in
//! ../shared/data/risk-equations/test_vectors.csv, to the precision each was published with.

use crate::common::*;
use ehr_risk::model::equations::pce::{self, Race, Sex};
use ehr_risk::model::equations::prevent::{self, Outcome};
use std::collections::HashMap;

#[test]
fn published_pce_and_prevent_vectors() {
    let Some(root) = shared("risk-equations") else {
        return;
    };
    let mut rd = csv::Reader::from_path(root.join("test_vectors.csv")).unwrap();
    let (mut pce_n, mut prevent_n) = (0, 0);
    for rec in rd.records() {
        let r = rec.unwrap();
        let (id, inputs, name, expected) = (&r[0], &r[2], &r[3], r[4].parse::<f64>().unwrap());
        if !(id.starts_with("PCE") || id.starts_with("PRV")) {
            continue; // QRISK3 and others: not implemented yet
        }
        let x: HashMap<String, String> = serde_json::from_str(inputs).unwrap();
        let f = |k: &str| x[k].parse::<f64>().unwrap();
        let sex = if x["sex"] == "female" {
            Sex::Female
        } else {
            Sex::Male
        };
        if id.starts_with("PCE") {
            let race = if x["race"] == "african_american" {
                Race::AfricanAmerican
            } else {
                Race::White
            };
            let got = 100.0
                * pce::risk(&pce::Inputs {
                    age: f("age_years"),
                    sex,
                    race,
                    total_chol: f("total_chol_mgdl"),
                    hdl: f("hdl_mgdl"),
                    sbp: f("sbp_mmhg"),
                    bp_treated: f("bp_treated") == 1.0,
                    smoker: f("current_smoker") == 1.0,
                    diabetes: f("diabetes") == 1.0,
                })
                .unwrap();
            // Published to 0.1 %; white men is 5.3 in the paper, 5.38 at full precision.
            assert!(
                (got - expected).abs() <= 0.1 + 1e-9,
                "{id}: {got:.3} vs {expected}"
            );
            pce_n += 1;
        } else if id.starts_with("PRV") {
            let outcome = match name {
                n if n.contains("total_cvd") => Outcome::TotalCvd,
                n if n.contains("ascvd") => Outcome::Ascvd,
                n if n.contains("heart_failure") => Outcome::HeartFailure,
                n if n.contains("chd") => Outcome::Chd,
                _ => Outcome::Stroke,
            };
            let inp = prevent::Inputs {
                age: f("age_years"),
                sex,
                total_chol: f("total_chol_mgdl"),
                hdl: f("hdl_mgdl"),
                sbp: f("sbp_mmhg"),
                bp_treated: f("bp_treated") == 1.0,
                statin: f("statin") == 1.0,
                diabetes: f("diabetes") == 1.0,
                smoker: f("current_smoker") == 1.0,
                egfr: f("egfr_ml_min_1_73m2"),
                bmi: f("bmi_kg_m2"),
            };
            let got = prevent::risk(&inp, outcome, f("horizon_years") as u32).unwrap();
            let decimals = r[4].split('.').nth(1).map(|d| d.len()).unwrap_or(0) as i32;
            let half_unit = 0.5 * 10f64.powi(-decimals);
            assert!(
                (got - expected).abs() <= half_unit + 1e-9,
                "{id}: {got:.4} vs {expected}"
            );
            prevent_n += 1;
        }
    }
    assert_eq!(
        (pce_n, prevent_n),
        (4, 10),
        "every PCE and PREVENT vector was checked"
    );
}
