//! ACC/AHA Pooled Cohort Equations (Goff 2013): 10-year risk of a first hard ASCVD event.
//! In: age, sex, race, total and HDL cholesterol (mg/dL), systolic BP (mmHg), BP treatment,
//! current smoking, diabetes. Out: the probability, or why the equation does not apply
//! (outside its validated ranges: age 40-79, total cholesterol 130-320, HDL 20-100, SBP 90-200).

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Coefficients {
    pub ln_age: f64,
    pub ln_age_squared: f64,
    pub ln_total_chol: f64,
    pub ln_age_x_ln_total_chol: f64,
    pub ln_hdl: f64,
    pub ln_age_x_ln_hdl: f64,
    pub ln_treated_sbp: f64,
    pub ln_age_x_ln_treated_sbp: f64,
    pub ln_untreated_sbp: f64,
    pub ln_age_x_ln_untreated_sbp: f64,
    pub current_smoker: f64,
    pub ln_age_x_current_smoker: f64,
    pub diabetes: f64,
    pub baseline_survival_10y: f64,
    pub mean_coef_x_value: f64,
}

fn table() -> &'static HashMap<String, Coefficients> {
    static T: OnceLock<HashMap<String, Coefficients>> = OnceLock::new();
    T.get_or_init(|| {
        toml::from_str(include_str!("../../../schemas/equations/pce_goff2013.toml"))
            .expect("schemas/equations/pce_goff2013.toml is valid (unit-tested)")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

/// PCE has equations for African-American and white people; others use the white equations,
/// as the guideline advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    White,
    AfricanAmerican,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub age: f64,
    pub sex: Sex,
    pub race: Race,
    pub total_chol: f64,
    pub hdl: f64,
    pub sbp: f64,
    pub bp_treated: bool,
    pub smoker: bool,
    pub diabetes: bool,
}

/// The 10-year risk with no range checks (used by the generator, which clamps its inputs).
pub fn risk_unchecked(x: &Inputs) -> f64 {
    let group = match (x.race, x.sex) {
        (Race::AfricanAmerican, Sex::Female) => "african_american_women",
        (Race::AfricanAmerican, Sex::Male) => "african_american_men",
        (_, Sex::Female) => "white_women",
        (_, Sex::Male) => "white_men",
    };
    let c = &table()[group];
    let la = x.age.ln();
    let ltc = x.total_chol.ln();
    let lhdl = x.hdl.ln();
    let lsbp = x.sbp.ln();
    let smoke = if x.smoker { 1.0 } else { 0.0 };
    let mut s = c.ln_age * la
        + c.ln_age_squared * la * la
        + c.ln_total_chol * ltc
        + c.ln_age_x_ln_total_chol * la * ltc
        + c.ln_hdl * lhdl
        + c.ln_age_x_ln_hdl * la * lhdl
        + c.current_smoker * smoke
        + c.ln_age_x_current_smoker * la * smoke
        + if x.diabetes { c.diabetes } else { 0.0 };
    s += if x.bp_treated {
        c.ln_treated_sbp * lsbp + c.ln_age_x_ln_treated_sbp * la * lsbp
    } else {
        c.ln_untreated_sbp * lsbp + c.ln_age_x_ln_untreated_sbp * la * lsbp
    };
    1.0 - c
        .baseline_survival_10y
        .powf((s - c.mean_coef_x_value).exp())
}

/// The 10-year risk, or why PCE does not apply to these inputs.
pub fn risk(x: &Inputs) -> Result<f64, super::NotApplicable> {
    use super::NotApplicable;
    let checks = [
        ("age", x.age, 40.0, 79.0),
        ("total cholesterol", x.total_chol, 130.0, 320.0),
        ("HDL cholesterol", x.hdl, 20.0, 100.0),
        ("systolic BP", x.sbp, 90.0, 200.0),
    ];
    for (name, v, lo, hi) in checks {
        if !(lo..=hi).contains(&v) {
            return Err(NotApplicable::OutOfRange {
                name,
                value: v,
                lo,
                hi,
            });
        }
    }
    Ok(risk_unchecked(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(sex: Sex, race: Race) -> Inputs {
        Inputs {
            age: 55.0,
            sex,
            race,
            total_chol: 213.0,
            hdl: 50.0,
            sbp: 120.0,
            bp_treated: false,
            smoker: false,
            diabetes: false,
        }
    }

    /// Goff 2013 Table A worked examples (../shared/data/risk-equations/pce_goff2013_worked_examples.csv):
    /// WW 2.1 %, AAW 3.0 %, WM 5.3 % (5.38 at full precision; accepted 5.3-5.4), AAM 6.1 %.
    #[test]
    fn published_worked_examples() {
        let pct = |s, r| (risk(&profile(s, r)).unwrap() * 1000.0).round() / 10.0;
        assert_eq!(pct(Sex::Female, Race::White), 2.1);
        assert_eq!(pct(Sex::Female, Race::AfricanAmerican), 3.0);
        assert!((5.3..=5.4).contains(&pct(Sex::Male, Race::White)));
        assert_eq!(pct(Sex::Male, Race::AfricanAmerican), 6.1);
    }

    #[test]
    fn outside_validated_range_is_not_applicable() {
        let mut x = profile(Sex::Male, Race::White);
        x.age = 35.0;
        assert!(risk(&x).unwrap_err().to_string().contains("age 35"));
        assert!(risk_unchecked(&x) > 0.0);
    }
}
