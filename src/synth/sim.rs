//! One synthetic person, month by month. In: the seed and the person's index. Out: the person's
//! latent monthly hazards, visits with noisy measurements, diagnoses and treatments decided by
//! rules a clinician would recognise, heart attacks, strokes and death.
//!
//! The generating model, in short:
//! - People are US adults aged 30-84 in 2008 with the 2010 Census age and sex structure.
//! - Risk factors drift with age (SBP, lipids, BMI, eGFR), plus a random walk, so two people with
//!   the same last value can have different histories.
//! - Treatments move them: an antihypertensive lowers SBP by 12 mmHg, a statin LDL by 35 %; they
//!   start at visits, from measured (noisy) values, by ACC/AHA-style thresholds.
//! - The monthly hazard of a first hard ASCVD event is the ACC/AHA Pooled Cohort Equations' 10-year
//!   risk turned into a rate, `-ln(1 - p10) / 10`, computed with the 5-year mean of SBP (cumulative
//!   exposure: risk depends on the trajectory, not only the last value); 55 % of it is MI, 45 %
//!   stroke, each times an age and sex multiplier that brings incidence to contemporary
//!   surveillance (within 15 % of AHA's rates at 45-74); atrial fibrillation multiplies the stroke hazard by 2.5, anticoagulation by 0.35.
//! - Deaths follow a Gompertz background hazard (x1.8 smokers, x1.5 diabetes).
//! - MI and stroke recur at the same hazard and do not feed back into the hazards (secondary
//!   prevention after an event is recorded but has no modelled effect). This keeps the ground
//!   truth exact: the probability of an event in a window, given the state at its start, is
//!   computed from the hazard path with no approximation (see [`Person::truth`]).

use crate::model::equations::pce::{self, Race, Sex};
use crate::rng::Rng;
use chrono::{Datelike, Months, NaiveDate};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Fixed generation window: history starts 2008-01-01 and ends 2022-01-01 (14 years).
pub const START_YEAR: i32 = 2008;
pub const MONTHS: u32 = 14 * 12;

pub fn month_start(m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(START_YEAR, 1, 1).expect("valid") + Months::new(m)
}

pub fn micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meas {
    Sbp,
    Dbp,
    TotalChol,
    Hdl,
    Ldl,
    Trig,
    Hba1c,
    Bmi,
    Egfr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoking {
    Never,
    Former,
    Current,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dx {
    Hypertension,
    Diabetes,
    AtrialFibrillation,
    Ckd,
    Hyperlipidemia,
    Mi,
    IschemicStroke,
    HemorrhagicStroke,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    Lisinopril,
    Amlodipine,
    Atorvastatin,
    Apixaban,
    Aspirin,
    Metformin,
}

/// Which export a record lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    Fhir,
    Omop,
    Synthea,
}

/// A contact with care, and everything recorded at it.
#[derive(Debug, Clone)]
pub struct Visit {
    pub time: i64,
    /// Admissions have a discharge time.
    pub end: Option<i64>,
    pub inpatient: bool,
    pub measurements: Vec<(Meas, f64)>,
    pub smoking: Option<Smoking>,
    pub diagnoses: Vec<Dx>,
    pub treatments: Vec<Rx>,
    pub export: Export,
    /// Also written, identically, to this export (an overlap between systems).
    pub copy_to: Option<Export>,
}

#[derive(Debug, Clone, Copy)]
pub struct MonthHazard {
    pub mi: f64,
    pub stroke: f64,
    pub death: f64,
}

/// Options that shape a person.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Probability that a visit's records are copied into a second export of the person.
    pub duplicate_rate: f64,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub index: u64,
    pub uuid: String,
    pub sex: Sex,
    pub race: Race,
    pub birth: NaiveDate,
    pub in_fhir: bool,
    pub in_omop: bool,
    pub in_synthea: bool,
    /// This person's OMOP site reports lipids in mmol/L and HbA1c in mmol/mol.
    pub omop_si_units: bool,
    pub visits: Vec<Visit>,
    /// Monthly hazards (per year) from month 0 until death or the end.
    pub hazards: Vec<MonthHazard>,
    pub mi: Vec<i64>,
    pub strokes: Vec<i64>,
    pub death: Option<i64>,
    /// Months lived inside the window (hazards cover all of it).
    pub months: u32,
}

fn uuid_of(seed: u64, index: u64) -> String {
    let mut r = Rng::new(seed, index, 99);
    let a = r.next_u64();
    let b = r.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// US adults 30 to 84 by 5-year age band in the 2010 Census (thousands, both sexes), with men per
/// 100 women in each band (Census Brief C2010BR-03, rounded): the people a cardiovascular risk
/// engine is for, younger than a uniform draw and more female with age. Under 30 the 10-year risk
/// of MI or stroke is negligible and the equations do not apply; 85 and over is left out as the
/// window ages everyone by 14 years.
const AGE_SEX_2010: [(f64, f64, f64); 11] = [
    (30.0, 20_371.0, 100.3),
    (35.0, 20_233.0, 99.6),
    (40.0, 20_969.0, 98.9),
    (45.0, 22_563.0, 97.6),
    (50.0, 22_080.0, 96.3),
    (55.0, 19_488.0, 94.3),
    (60.0, 16_735.0, 92.4),
    (65.0, 12_231.0, 89.7),
    (70.0, 9_168.0, 86.0),
    (75.0, 7_242.0, 80.4),
    (80.0, 5_702.0, 70.9),
];

/// Age at the window's start and sex, drawn from [`AGE_SEX_2010`].
fn draw_age_sex(r: &mut Rng) -> (f64, Sex) {
    let total: f64 = AGE_SEX_2010.iter().map(|b| b.1).sum();
    let mut u = r.uniform() * total;
    let band = AGE_SEX_2010
        .iter()
        .find(|b| {
            u -= b.1;
            u < 0.0
        })
        .unwrap_or(&AGE_SEX_2010[AGE_SEX_2010.len() - 1]);
    let age = band.0 + 5.0 * r.uniform();
    let male = band.2 / (100.0 + band.2);
    (
        age,
        if r.chance(male) {
            Sex::Male
        } else {
            Sex::Female
        },
    )
}

/// Multipliers on the equations' MI and stroke hazards that bring the world's incidence by age
/// and sex to contemporary community surveillance (AHA 2023 statistics, ARIC 2005-2014): the
/// Pooled Cohort Equations, fitted on cohorts from the 1970s-90s, rise too steeply with age for
/// today's rates (under-predicting at 45-54 and over-predicting at 65-74 by 20-35 %). Log-linear
/// in age, fitted on person-time rates at 45-74 and held flat outside the ages fitted.
fn incidence_calibration(sex: Sex, age: f64) -> (f64, f64) {
    let a = age.clamp(45.0, 75.0) - 60.0;
    let mi = match sex {
        Sex::Male => (0.17 - 0.020 * a).exp(),
        Sex::Female => (0.0 - 0.022 * a).exp(),
    };
    (mi, (0.073 - 0.026 * a).exp())
}

/// CHA2DS2-VASc from the person's state (for the anticoagulation rule).
fn cha2ds2vasc(age: f64, female: bool, htn: bool, dm: bool, stroke: bool) -> u32 {
    let mut s = 0;
    if age >= 75.0 {
        s += 2;
    } else if age >= 65.0 {
        s += 1;
    }
    s += female as u32 + htn as u32 + dm as u32 + 2 * stroke as u32;
    s
}

impl Person {
    /// Simulate person `index` of the population made with `seed`.
    pub fn simulate(seed: u64, index: u64, opts: &SimOptions) -> Person {
        let mut r = Rng::new(seed, index, 0);
        let mut ev = Rng::new(seed, index, 1); // events: their own stream
        let start = month_start(0);
        let (age0, sex) = draw_age_sex(&mut r);
        let birth = start - chrono::Days::new((age0 * 365.25) as u64);
        let female = sex == Sex::Female;
        let race = match r.uniform() {
            u if u < 0.70 => Race::White,
            u if u < 0.85 => Race::AfricanAmerican,
            _ => Race::Other,
        };
        let (mut in_fhir, in_omop, in_synthea) = (r.chance(0.6), r.chance(0.6), r.chance(0.4));
        if !in_omop && !in_synthea {
            in_fhir = true;
        }
        let omop_si_units = r.chance(0.5);
        // Latent baselines.
        let black = race == Race::AfricanAmerican;
        let sbp0 = 100.0 + 0.45 * age0 + if black { 5.0 } else { 0.0 } + r.gauss(0.0, 12.0);
        let sbp_slope = r.gauss(0.6, 0.4);
        let ldl0 = (118.0 + 0.4 * (age0 - 50.0) + r.gauss(0.0, 30.0)).clamp(45.0, 260.0);
        let hdl0 = (if female { 58.0 } else { 47.0 } + r.gauss(0.0, 12.0)).clamp(22.0, 100.0);
        let tg0 = (130.0 * (r.gauss(0.0, 0.4)).exp()).clamp(40.0, 900.0);
        let bmi0 = r.gauss(28.0, 5.0).clamp(17.0, 55.0);
        let bmi_slope = r.gauss(0.1, 0.15);
        let egfr0 = (105.0 - 0.8 * (age0 - 30.0) + r.gauss(0.0, 10.0)).clamp(20.0, 130.0);
        let mut smoking = match r.uniform() {
            u if u < 0.18 => Smoking::Current,
            u if u < 0.43 => Smoking::Former,
            _ => Smoking::Never,
        };
        let p_dm0 = 1.0 / (1.0 + (-(-4.2 + 0.04 * (age0 - 50.0) + 0.12 * (bmi0 - 28.0))).exp());
        let mut diabetes = r.chance(p_dm0 * 1.6);
        let p_af0 = 0.002 * (0.08 * (age0 - 50.0)).exp();
        let mut af = r.chance(p_af0.min(0.2));
        let visit_rate = if age0 > 65.0 { 2.0 } else { 1.3 };

        let mut p = Person {
            index,
            uuid: uuid_of(seed, index),
            sex,
            race,
            birth,
            in_fhir,
            in_omop,
            in_synthea,
            omop_si_units,
            visits: Vec::new(),
            hazards: Vec::new(),
            mi: Vec::new(),
            strokes: Vec::new(),
            death: None,
            months: 0,
        };
        let clinic: Vec<Export> = [
            (in_omop, Export::Omop),
            (in_synthea, Export::Synthea),
            (in_fhir, Export::Fhir),
        ]
        .iter()
        .filter(|x| x.0)
        .map(|x| x.1)
        .collect();
        let members = clinic.clone();
        let pick_other = |r: &mut Rng, e: Export| -> Option<Export> {
            let others: Vec<Export> = members.iter().copied().filter(|x| *x != e).collect();
            (!others.is_empty()).then(|| others[r.range(0, others.len() as u64) as usize])
        };

        // State.
        let mut rw_sbp = 0.0;
        let mut sbp_hist: Vec<f64> = Vec::with_capacity(MONTHS as usize);
        let (mut on_bp, mut on_statin, mut on_anticoag) = (false, false, false);
        let (mut dx_htn, mut dx_dm, mut dx_af, mut dx_ckd, mut dx_hld) =
            (false, false, false, false, false);
        let mut high_sbp_visits = 0;
        let mut low_egfr_visits = 0;
        let mut alive = true;

        for m in 0..MONTHS {
            let date = month_start(m);
            let t0 = micros(date);
            let days_in_month = (month_start(m + 1) - date).num_days();
            let years = m as f64 / 12.0;
            let age = (date - birth).num_days() as f64 / 365.25;
            rw_sbp += r.gauss(0.0, 0.9);
            // Kept physiological: a 14-year random walk would otherwise wander below 40 mmHg
            // for a handful of people in a million (found by the 1 M-person run).
            let sbp = (sbp0 + sbp_slope * years + rw_sbp - if on_bp { 12.0 } else { 0.0 })
                .clamp(85.0, 230.0);
            sbp_hist.push(sbp);
            let hdl = hdl0;
            let ldl_raw = ldl0 + 0.3 * years;
            let ldl = if on_statin { ldl_raw * 0.65 } else { ldl_raw };
            let tc = ldl + hdl + tg0 / 5.0;
            let bmi = bmi0 + bmi_slope * years;
            let egfr = (egfr0 - 1.0 * years).max(5.0);
            if smoking == Smoking::Current && r.chance(0.05 / 12.0) {
                smoking = Smoking::Former;
            }
            if !diabetes
                && r.chance(
                    0.004 * (0.12 * (bmi - 28.0)).exp() * if age > 45.0 { 1.5 } else { 1.0 } / 12.0,
                )
            {
                diabetes = true;
            }
            let hba1c = if diabetes {
                7.4
            } else {
                5.4 + 0.01 * (bmi - 28.0)
            };
            let new_af = !af && r.chance((0.0006 * (0.08 * (age - 50.0)).exp()).min(0.05) / 12.0);
            af |= new_af;

            // Hazards for this month (per year).
            let window = sbp_hist.len().saturating_sub(60);
            let sbp_mean =
                sbp_hist[window..].iter().sum::<f64>() / (sbp_hist.len() - window) as f64;
            let p10 = pce::risk_unchecked(&pce::Inputs {
                age: age.clamp(30.0, 85.0),
                sex,
                race,
                total_chol: tc.clamp(100.0, 400.0),
                hdl: hdl.clamp(20.0, 100.0),
                sbp: sbp_mean.clamp(85.0, 220.0),
                bp_treated: on_bp,
                smoker: smoking == Smoking::Current,
                diabetes,
            })
            .clamp(1e-5, 0.95);
            let ascvd = -(1.0 - p10).ln() / 10.0;
            let (k_mi, k_stroke) = incidence_calibration(sex, age);
            let h_mi = 0.55 * ascvd * k_mi;
            let h_stroke = 0.45
                * ascvd
                * k_stroke
                * if af {
                    2.5 * if on_anticoag { 0.35 } else { 1.0 }
                } else {
                    1.0
                };
            let h_death = 0.0003
                * (0.095 * (age - 30.0)).exp()
                * if smoking == Smoking::Current {
                    1.8
                } else {
                    1.0
                }
                * if diabetes { 1.5 } else { 1.0 };
            p.hazards.push(MonthHazard {
                mi: h_mi,
                stroke: h_stroke,
                death: h_death,
            });
            if alive {
                p.months = m + 1;
            }

            // An outpatient visit this month?
            if r.chance(visit_rate / 12.0) || (new_af && r.chance(0.7)) {
                let day = r.range(0, days_in_month as u64) as i64;
                let time = t0
                    + day * MICROS_PER_DAY
                    + (8 + r.range(0, 9) as i64) * 3_600_000_000
                    + r.range(0, 60) as i64 * 60_000_000;
                let export = clinic[r.range(0, clinic.len() as u64) as usize];
                let copy_to = if r.chance(opts.duplicate_rate) {
                    pick_other(&mut r, export)
                } else {
                    None
                };
                let mut v = Visit {
                    time,
                    end: None,
                    inpatient: false,
                    measurements: Vec::new(),
                    smoking: Some(smoking),
                    diagnoses: Vec::new(),
                    treatments: Vec::new(),
                    export,
                    copy_to,
                };
                let round1 = |x: f64| (x * 10.0).round() / 10.0;
                let m_sbp = round1((sbp + r.gauss(0.0, 7.0)).clamp(70.0, 260.0));
                let m_dbp = round1((0.55 * m_sbp + r.gauss(8.0, 5.0)).clamp(35.0, 150.0));
                v.measurements.push((Meas::Sbp, m_sbp));
                v.measurements.push((Meas::Dbp, m_dbp));
                v.measurements
                    .push((Meas::Bmi, round1(bmi + r.gauss(0.0, 0.4))));
                let mut m_ldl = None;
                if r.chance(0.45) {
                    // Direct LDL, HDL and triglycerides with assay noise; total = their sum (Friedewald).
                    let mldl = round1((ldl * (1.0 + r.gauss(0.0, 0.05))).clamp(20.0, 400.0));
                    let mhdl = round1((hdl * (1.0 + r.gauss(0.0, 0.05))).clamp(15.0, 120.0));
                    let mtg = round1((tg0 * (1.0 + r.gauss(0.0, 0.1))).clamp(30.0, 1500.0));
                    let mtc = round1(mldl + mhdl + mtg / 5.0);
                    v.measurements.extend([
                        (Meas::TotalChol, mtc),
                        (Meas::Hdl, mhdl),
                        (Meas::Trig, mtg),
                        (Meas::Ldl, mldl),
                    ]);
                    m_ldl = Some(mldl);
                }
                let mut m_a1c = None;
                if r.chance(if dx_dm { 0.6 } else { 0.12 }) {
                    let a = round1(hba1c + r.gauss(0.0, 0.3));
                    v.measurements.push((Meas::Hba1c, a));
                    m_a1c = Some(a);
                }
                let mut m_egfr = None;
                if r.chance(0.3) {
                    let e = round1(egfr + r.gauss(0.0, 4.0)).max(2.0);
                    v.measurements.push((Meas::Egfr, e));
                    m_egfr = Some(e);
                }
                // Diagnoses from what was measured.
                high_sbp_visits = if m_sbp >= 140.0 {
                    high_sbp_visits + 1
                } else {
                    0
                };
                if !dx_htn && high_sbp_visits >= 2 {
                    dx_htn = true;
                    v.diagnoses.push(Dx::Hypertension);
                }
                if !dx_dm && m_a1c.is_some_and(|a| a >= 6.5) {
                    dx_dm = true;
                    v.diagnoses.push(Dx::Diabetes);
                }
                if !dx_af && af {
                    dx_af = true;
                    v.diagnoses.push(Dx::AtrialFibrillation);
                }
                if let Some(e) = m_egfr {
                    low_egfr_visits = if e < 60.0 { low_egfr_visits + 1 } else { 0 };
                    if !dx_ckd && low_egfr_visits >= 2 {
                        dx_ckd = true;
                        v.diagnoses.push(Dx::Ckd);
                    }
                }
                if !dx_hld && m_ldl.is_some_and(|l| l >= 160.0) {
                    dx_hld = true;
                    v.diagnoses.push(Dx::Hyperlipidemia);
                }
                // Treatment rules (ACC/AHA 2017 BP, 2018 cholesterol, AF anticoagulation).
                let bp_goal = if dx_dm || dx_ckd { 130.0 } else { 140.0 };
                if !on_bp && dx_htn && m_sbp >= bp_goal && r.chance(0.7) {
                    on_bp = true;
                    v.treatments.push(if r.chance(0.6) {
                        Rx::Lisinopril
                    } else {
                        Rx::Amlodipine
                    });
                }
                if !on_statin {
                    let pce_measured = m_ldl.map(|_| p10).unwrap_or(0.0);
                    let indicated = m_ldl.is_some_and(|l| l >= 190.0)
                        || (dx_dm && (40.0..=75.0).contains(&age))
                        || ((40.0..=75.0).contains(&age) && pce_measured >= 0.075);
                    if indicated && r.chance(0.6) {
                        on_statin = true;
                        v.treatments.push(Rx::Atorvastatin);
                    }
                }
                if dx_dm
                    && !v.treatments.contains(&Rx::Metformin)
                    && v.diagnoses.contains(&Dx::Diabetes)
                {
                    v.treatments.push(Rx::Metformin);
                }
                // Stroke history is left out on purpose: the latent path must not depend on events.
                let score = cha2ds2vasc(age, female, dx_htn, dx_dm, false);
                if dx_af && !on_anticoag && score >= if female { 3 } else { 2 } && r.chance(0.7) {
                    on_anticoag = true;
                    v.treatments.push(Rx::Apixaban);
                }
                p.visits.push(v);
            }

            if !alive {
                continue;
            }
            // Events, in a fixed order: MI, stroke, then death.
            let admit = |ev: &mut Rng, dx: Dx, p: &mut Person| {
                let day = ev.range(0, days_in_month as u64) as i64;
                let time = t0 + day * MICROS_PER_DAY + ev.range(0, 24) as i64 * 3_600_000_000;
                let export = if p.in_fhir {
                    Export::Fhir
                } else {
                    members[ev.range(0, members.len() as u64) as usize]
                };
                let end = time + (3 + ev.range(0, 4) as i64) * MICROS_PER_DAY;
                p.visits.push(Visit {
                    time,
                    end: Some(end),
                    inpatient: true,
                    measurements: Vec::new(),
                    smoking: None,
                    diagnoses: vec![dx],
                    treatments: vec![Rx::Aspirin],
                    export,
                    copy_to: None,
                });
                time
            };
            if ev.chance(1.0 - (-h_mi / 12.0).exp()) {
                let t = admit(&mut ev, Dx::Mi, &mut p);
                p.mi.push(t);
            }
            if ev.chance(1.0 - (-h_stroke / 12.0).exp()) {
                let dx = if ev.chance(0.13) {
                    Dx::HemorrhagicStroke
                } else {
                    Dx::IschemicStroke
                };
                let t = admit(&mut ev, dx, &mut p);
                p.strokes.push(t);
            }
            if ev.chance(1.0 - (-h_death / 12.0).exp()) {
                let day = ev.range(0, days_in_month as u64) as i64;
                let t = t0 + day * MICROS_PER_DAY + ev.range(0, 24) as i64 * 3_600_000_000;
                let last_admission_end = p
                    .visits
                    .iter()
                    .filter(|v| v.inpatient)
                    .filter_map(|v| v.end)
                    .max()
                    .unwrap_or(t);
                p.death = Some(t.max(last_admission_end));
                alive = false;
            }
        }
        // The path went on past death so that hazards exist for every month (the ground truth
        // must not know when death comes); records after death are dropped.
        if let Some(d) = p.death {
            p.visits.retain(|v| v.time <= d);
        }
        p.visits.sort_by_key(|v| v.time);
        p
    }

    /// True probability of at least one MI, at least one stroke, and at least one of either
    /// (the joint ASCVD event the equations predict) in the `months` months from month
    /// `anchor`, given the person is alive at its start, under the generating model (events
    /// drawn monthly in the order MI, stroke, death), conditional on the person's latent
    /// risk-factor path (including its future course: an oracle no model can beat). `None` if
    /// the person died before the anchor.
    pub fn truth(&self, anchor: u32, months: u32) -> Option<super::TrueRisk> {
        let anchor_t = micros(month_start(anchor));
        if anchor >= MONTHS || self.death.is_some_and(|d| d < anchor_t) {
            return None;
        }
        let (mut p_mi, mut p_st, mut p_any) = (0.0, 0.0, 0.0);
        let (mut a_mi, mut a_st, mut a_any) = (1.0, 1.0, 1.0);
        let end = (anchor + months).min(MONTHS);
        for m in anchor..end {
            let h = self.hazards[m as usize];
            let q_mi = 1.0 - (-h.mi / 12.0).exp();
            let q_st = 1.0 - (-h.stroke / 12.0).exp();
            let q_d = 1.0 - (-h.death / 12.0).exp();
            p_mi += a_mi * q_mi;
            p_st += a_st * q_st;
            // Neither event this month: both draws fail (independent given the path).
            let neither = (1.0 - q_mi) * (1.0 - q_st);
            p_any += a_any * (1.0 - neither);
            a_mi *= (1.0 - q_mi) * (1.0 - q_d);
            a_st *= (1.0 - q_st) * (1.0 - q_d);
            a_any *= neither * (1.0 - q_d);
        }
        Some(super::TrueRisk {
            mi: p_mi,
            stroke: p_st,
            ascvd: p_any,
        })
    }

    pub fn age_at(&self, d: NaiveDate) -> f64 {
        (d - self.birth).num_days() as f64 / 365.25
    }

    pub fn birth_year(&self) -> i32 {
        self.birth.year()
    }
}
