//! Published clinical risk equations (PCE, PREVENT, CHA2DS2-VASc), coefficients as data in
//! `schemas/equations/`, each tested against its published vectors. [`on_features`] applies
//! them to one tabular feature row (the same inputs the learned models see) and says, per
//! equation, either the risk or why it does not apply.

pub mod cha2ds2vasc;
pub mod pce;
pub mod prevent;

use serde::Serialize;

/// Why an equation does not apply to a row (shown to clinicians as the reason).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotApplicable {
    #[error("missing {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("{name} {value:.1} is outside the validated range {lo}-{hi}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        lo: f64,
        hi: f64,
    },
    #[error("age {age:.1} is outside 30-{max_age} for the {horizon}-year model")]
    AgeOutsideModel {
        age: f64,
        max_age: f64,
        horizon: u32,
    },
    #[error("no {0}-year model")]
    NoModel(u32),
    #[error("no atrial fibrillation recorded")]
    NoAtrialFibrillation,
    #[error("no published rate for score {0}")]
    NoPublishedRate(u32),
}

/// Written as its reason, as outputs always showed it.
impl Serialize for NotApplicable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One tabular feature row with its column names.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub columns: &'a [String],
    pub values: &'a [f32],
}

impl Row<'_> {
    /// The value of a column (NaN when missing or not a column).
    pub fn get(&self, name: &str) -> f64 {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.values[i] as f64)
            .unwrap_or(f64::NAN)
    }
    pub fn flag(&self, name: &str) -> bool {
        self.get(name) == 1.0
    }
}

/// Every equation on one row: `Ok(risk)` or `Err(reason it does not apply)`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EquationRisks {
    /// PCE 10-year hard ASCVD.
    pub pce_ascvd_10y: Result<f64, NotApplicable>,
    /// PREVENT 10-year ASCVD and total CVD.
    pub prevent_ascvd_10y: Result<f64, NotApplicable>,
    pub prevent_cvd_10y: Result<f64, NotApplicable>,
    /// CHA2DS2-VASc score and adjusted annual stroke rate (fraction), in atrial fibrillation.
    pub cha2ds2vasc: Result<(u32, f64), NotApplicable>,
}

fn missing(r: &Row, names: &[(&str, &'static str)]) -> Option<NotApplicable> {
    let m: Vec<&'static str> = names
        .iter()
        .filter(|(c, _)| r.get(c).is_nan())
        .map(|(_, label)| *label)
        .collect();
    (!m.is_empty()).then_some(NotApplicable::Missing(m))
}

fn sex(r: &Row) -> Result<pce::Sex, NotApplicable> {
    let v = r.get("sex_female");
    if v == 1.0 {
        Ok(pce::Sex::Female)
    } else if v == 0.0 {
        Ok(pce::Sex::Male)
    } else {
        Err(NotApplicable::Missing(vec!["sex"]))
    }
}

pub fn pce_on(r: &Row) -> Result<f64, NotApplicable> {
    if let Some(m) = missing(
        r,
        &[
            ("age_years", "age"),
            ("total_cholesterol_last", "total cholesterol"),
            ("hdl_cholesterol_last", "HDL"),
            ("systolic_bp_last", "systolic BP"),
            ("smoking_current", "smoking status"),
        ],
    ) {
        return Err(m);
    }
    let x = pce::Inputs {
        age: r.get("age_years"),
        sex: sex(r)?,
        race: if r.flag("race_black") {
            pce::Race::AfricanAmerican
        } else {
            pce::Race::White
        },
        total_chol: r.get("total_cholesterol_last"),
        hdl: r.get("hdl_cholesterol_last"),
        sbp: r.get("systolic_bp_last"),
        bp_treated: r.flag("rx_antihypertensive"),
        smoker: r.flag("smoking_current"),
        diabetes: r.flag("dx_diabetes"),
    };
    pce::risk(&x)
}

pub fn prevent_on(r: &Row, outcome: prevent::Outcome) -> Result<f64, NotApplicable> {
    if let Some(m) = missing(
        r,
        &[
            ("age_years", "age"),
            ("total_cholesterol_last", "total cholesterol"),
            ("hdl_cholesterol_last", "HDL"),
            ("systolic_bp_last", "systolic BP"),
            ("egfr_last", "eGFR"),
            ("bmi_last", "BMI"),
            ("smoking_current", "smoking status"),
        ],
    ) {
        return Err(m);
    }
    let x = prevent::Inputs {
        age: r.get("age_years"),
        sex: sex(r)?,
        total_chol: r.get("total_cholesterol_last"),
        hdl: r.get("hdl_cholesterol_last"),
        sbp: r.get("systolic_bp_last"),
        bp_treated: r.flag("rx_antihypertensive"),
        statin: r.flag("rx_statin"),
        diabetes: r.flag("dx_diabetes"),
        smoker: r.flag("smoking_current"),
        egfr: r.get("egfr_last"),
        bmi: r.get("bmi_last"),
    };
    prevent::risk(&x, outcome, 10)
}

pub fn cha2ds2vasc_on(r: &Row) -> Result<(u32, f64), NotApplicable> {
    if !r.flag("dx_atrial_fibrillation") {
        return Err(NotApplicable::NoAtrialFibrillation);
    }
    if let Some(m) = missing(r, &[("age_years", "age"), ("sex_female", "sex")]) {
        return Err(m);
    }
    let s = cha2ds2vasc::score(&cha2ds2vasc::Inputs {
        heart_failure: r.flag("dx_heart_failure"),
        hypertension: r.flag("dx_hypertension") || r.flag("rx_antihypertensive"),
        age: r.get("age_years"),
        diabetes: r.flag("dx_diabetes"),
        prior_stroke: r.flag("prior_stroke"),
        vascular_disease: r.flag("prior_mi"),
        female: r.flag("sex_female"),
    });
    cha2ds2vasc::adjusted_stroke_rate(s)
        .map(|rate| (s, rate / 100.0))
        .ok_or(NotApplicable::NoPublishedRate(s))
}

pub fn on_features(r: &Row) -> EquationRisks {
    EquationRisks {
        pce_ascvd_10y: pce_on(r),
        prevent_ascvd_10y: prevent_on(r, prevent::Outcome::Ascvd),
        prevent_cvd_10y: prevent_on(r, prevent::Outcome::TotalCvd),
        cha2ds2vasc: cha2ds2vasc_on(r),
    }
}
