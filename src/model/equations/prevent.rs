//! AHA PREVENT equations (Khan SS et al., Circulation 2024;149:430-449), base model: 10- and
//! 30-year risk of total CVD, ASCVD, heart failure, CHD and stroke. In: age, sex, total and HDL
//! cholesterol (mg/dL), SBP, BP and statin treatment, diabetes, smoking, eGFR, BMI. Out: the
//! probability, or why the model does not apply (validated for ages 30-79; the 30-year horizon
//! for ages 30-59). Coefficients as data: `schemas/equations/prevent_khan2024_base.csv`
//! (transcribed and cross-checked in ../shared/data/risk-equations). Transforms as published by
//! the CDC KDSS page: age (age-55)/10; non-HDL and HDL in mmol/L centred at 3.5 and 1.3 (HDL /0.3);
//! SBP and eGFR split at 110 and 60; BMI split at 30; logistic link.

use super::pce::Sex;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    TotalCvd,
    Ascvd,
    HeartFailure,
    Chd,
    Stroke,
}

impl Outcome {
    fn key(&self) -> &'static str {
        match self {
            Outcome::TotalCvd => "cvd",
            Outcome::Ascvd => "ascvd",
            Outcome::HeartFailure => "hf",
            Outcome::Chd => "chd",
            Outcome::Stroke => "stroke",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub age: f64,
    pub sex: Sex,
    pub total_chol: f64,
    pub hdl: f64,
    pub sbp: f64,
    pub bp_treated: bool,
    pub statin: bool,
    pub diabetes: bool,
    pub smoker: bool,
    pub egfr: f64,
    pub bmi: f64,
}

type Table = HashMap<(u32, &'static str, &'static str), HashMap<String, f64>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Table = HashMap::new();
        let mut r = csv::Reader::from_reader(
            include_str!("../../../schemas/equations/prevent_khan2024_base.csv").as_bytes(),
        );
        for rec in r.records() {
            let rec = rec.expect("embedded CSV is valid (unit-tested)");
            let horizon: u32 = rec[1].parse().expect("horizon");
            let sex = if &rec[3] == "female" {
                "female"
            } else {
                "male"
            };
            let outcome = ["cvd", "ascvd", "hf", "chd", "stroke"]
                .into_iter()
                .find(|o| *o == &rec[4])
                .expect("known outcome");
            t.entry((horizon, sex, outcome))
                .or_default()
                .insert(rec[2].to_string(), rec[5].parse().expect("coefficient"));
        }
        t
    })
}

/// Risk over `horizon` years (10 or 30), or why PREVENT does not apply.
pub fn risk(x: &Inputs, outcome: Outcome, horizon: u32) -> Result<f64, super::NotApplicable> {
    use super::NotApplicable;
    let max_age = if horizon == 30 { 59.0 } else { 79.0 };
    if !(30.0..=max_age).contains(&x.age) {
        return Err(NotApplicable::AgeOutsideModel {
            age: x.age,
            max_age,
            horizon,
        });
    }
    for (name, v, lo, hi) in [
        ("total cholesterol", x.total_chol, 130.0, 320.0),
        ("HDL", x.hdl, 20.0, 100.0),
        ("SBP", x.sbp, 90.0, 200.0),
        ("BMI", x.bmi, 18.5, 39.9),
        ("eGFR", x.egfr, 15.0, 140.0),
    ] {
        if !(lo..=hi).contains(&v) {
            return Err(NotApplicable::OutOfRange {
                name,
                value: v,
                lo,
                hi,
            });
        }
    }
    let sex = if x.sex == Sex::Female {
        "female"
    } else {
        "male"
    };
    let c = table()
        .get(&(horizon, sex, outcome.key()))
        .ok_or(NotApplicable::NoModel(horizon))?;
    let b = |k: &str| c.get(k).copied().unwrap_or(0.0);
    let flag = |v: bool| if v { 1.0 } else { 0.0 };
    let age = (x.age - 55.0) / 10.0;
    let mmol = 0.02586;
    let non_hdl = (x.total_chol - x.hdl) * mmol - 3.5;
    let hdl = (x.hdl * mmol - 1.3) / 0.3;
    let sbp_lo = (x.sbp.min(110.0) - 110.0) / 20.0;
    let sbp_hi = (x.sbp.max(110.0) - 130.0) / 20.0;
    let egfr_lo = (x.egfr.min(60.0) - 60.0) / -15.0;
    let egfr_hi = (x.egfr.max(60.0) - 90.0) / -15.0;
    let bmi_lo = (x.bmi.min(30.0) - 25.0) / 5.0;
    let bmi_hi = (x.bmi.max(30.0) - 30.0) / 5.0;
    let (dm, smk, bpt, st) = (
        flag(x.diabetes),
        flag(x.smoker),
        flag(x.bp_treated),
        flag(x.statin),
    );
    let lp = b("const")
        + b("coef_age_per_10_years") * age
        + b("coef_age_per_10_years_squared") * age * age
        + b("coef_non_hdl_c_per_1_mmol_l") * non_hdl
        + b("coef_hdl_c_per_0.3_mmol_l") * hdl
        + b("coef_sbp_lt110_per_20_mmhg") * sbp_lo
        + b("coef_sbp_gteq110_per_20_mmhg") * sbp_hi
        + b("coef_diabetes") * dm
        + b("coef_current_smoking") * smk
        + b("coef_bmi_lt30_per_5_kg_m2") * bmi_lo
        + b("coef_bmi_gt30_per_5_kg_m2") * bmi_hi
        + b("coef_egfr_lt60_per_15_ml") * egfr_lo
        + b("coef_egfr_gteq60_per_15_ml") * egfr_hi
        + b("coef_anti_hypertensive_use") * bpt
        + b("coef_statin_use") * st
        + b("coef_treated_sbp_gteq110_mm_hg_per_20_mm_hg") * bpt * sbp_hi
        + b("coef_treated_non_hdl_c") * st * non_hdl
        + b("coef_age_per_10yr_x_non_hdl_c_per_1_mmol_l") * age * non_hdl
        + b("coef_age_per_10yr_x_hdl_c_per_0.3_mml_l") * age * hdl
        + b("coef_age_per_10yr_x_sbp_gteq110_mm_hg_per_20_mmhg") * age * sbp_hi
        + b("coef_age_per_10yr_x_diabetes") * age * dm
        + b("coef_age_per_10yr_x_current_smoking") * age * smk
        + b("coef_age_per_10yr_x_bmi_gteq30_per_5_kg_m2") * age * bmi_hi
        + b("coef_age_per_10yr_x_egfr_lt60_per_15_ml") * age * egfr_lo;
    Ok(1.0 / (1.0 + (-lp).exp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preventr README example (../shared/data/risk-equations/prevent_examples_preventr.csv):
    /// female 50 y, SBP 160 treated, TC 200, HDL 45, no statin, diabetes, non-smoker, eGFR 90,
    /// BMI 35.
    #[test]
    fn published_example_all_ten_risks() {
        let x = Inputs {
            age: 50.0,
            sex: Sex::Female,
            total_chol: 200.0,
            hdl: 45.0,
            sbp: 160.0,
            bp_treated: true,
            statin: false,
            diabetes: true,
            smoker: false,
            egfr: 90.0,
            bmi: 35.0,
        };
        let want = [
            (Outcome::TotalCvd, 10, 0.147),
            (Outcome::Ascvd, 10, 0.092),
            (Outcome::HeartFailure, 10, 0.081),
            (Outcome::Chd, 10, 0.044),
            (Outcome::Stroke, 10, 0.054),
            (Outcome::TotalCvd, 30, 0.53),
            (Outcome::Ascvd, 30, 0.354),
            (Outcome::HeartFailure, 30, 0.39),
            (Outcome::Chd, 30, 0.198),
            (Outcome::Stroke, 30, 0.221),
        ];
        for (o, h, expected) in want {
            let got = risk(&x, o, h).unwrap();
            let digits = if expected == 0.53 || expected == 0.39 {
                100.0
            } else {
                1000.0
            };
            assert_eq!(
                (got * digits).round() / digits,
                expected,
                "{o:?} {h}y: {got}"
            );
        }
    }

    #[test]
    fn outside_the_validated_ages_is_not_applicable() {
        let x = Inputs {
            age: 65.0,
            sex: Sex::Male,
            total_chol: 200.0,
            hdl: 45.0,
            sbp: 130.0,
            bp_treated: false,
            statin: false,
            diabetes: false,
            smoker: false,
            egfr: 90.0,
            bmi: 27.0,
        };
        assert!(risk(&x, Outcome::Ascvd, 10).is_ok());
        assert!(
            risk(&x, Outcome::Ascvd, 30)
                .unwrap_err()
                .to_string()
                .contains("30-59")
        );
    }
}
