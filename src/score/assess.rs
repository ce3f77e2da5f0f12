//! The assessment of prediction times, apart from where it goes. In: model inputs for some rows
//! (a [`Dataset`]), the model's risks and the clinical equations for them, the rules and the
//! trial effects. Out: one [`Assessment`] per row: the risk per outcome at the reference horizon,
//! the tier, recommendations with the trials' what-if (and, for analysts, the network's own
//! response labelled as association), and, for the rows asked for, integrated-gradients factors.
//! Pure: no files. The batch sinks (Parquet, CSV, worklist, FHIR) and the CDS Hooks service
//! both call this, so a patient gets the same assessment through either path.

use super::ScoreOptions;
use crate::explain::{Factor, Namer, factors};
use crate::model::bundle::{Model, RowRisks};
use crate::model::data::Dataset;
use crate::model::equations::{self, EquationRisks, Row};
use crate::model::gru::{Batch, integrated_gradients_many};
use crate::recommend::effects::Effects;
use crate::recommend::whatif::{self, SequenceValues};
use crate::recommend::{Recommendation, RuleSet};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Which rows get explanations and the network's what-if response (the costly part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
pub enum Explain {
    None,
    /// Each subject's latest prediction time.
    #[default]
    Latest,
    All,
}

/// Everything computed for one prediction time.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub subject_id: i64,
    pub prediction_time: i64,
    pub age: f64,
    /// The reference horizon (the model's longest).
    pub horizon_years: u32,
    /// outcome -> calibrated risk at the reference horizon
    pub risk: BTreeMap<String, f64>,
    /// risk of any outcome at the reference horizon
    pub any_risk: f64,
    pub tier: &'static str,
    /// outcome -> factors (largest first), empty when not explained
    pub factors: BTreeMap<String, Vec<Factor>>,
    pub recommendations: Vec<Recommendation>,
    pub explained: bool,
    /// The source records behind the top factors (batch write-back with a lake; else empty).
    pub basis: Vec<super::basis::BasisRecord>,
}

pub const TIERS: [&str; 4] = ["low", "borderline", "intermediate", "high"];

pub fn tier(r: f64, bounds: &[f64; 3]) -> &'static str {
    TIERS[bounds.iter().filter(|b| r >= **b).count()]
}

/// The row of each subject's latest prediction time, in row order.
pub fn latest_rows(d: &Dataset) -> Vec<usize> {
    let mut best: HashMap<i64, usize> = HashMap::new();
    for (r, k) in d.keys.iter().enumerate() {
        let e = best.entry(k.0).or_insert(r);
        if d.keys[*e].1 < k.1 {
            *e = r;
        }
    }
    let mut v: Vec<usize> = best.into_values().collect();
    v.sort_unstable();
    v
}

/// Why each equation does not apply, or None when all apply.
pub fn reasons(e: &EquationRisks) -> Option<String> {
    let mut v = vec![];
    if let Err(m) = &e.pce_ascvd_10y {
        v.push(format!("pce: {m}"));
    }
    if let Err(m) = &e.prevent_ascvd_10y {
        v.push(format!("prevent: {m}"));
    }
    if let Err(m) = &e.cha2ds2vasc {
        v.push(format!("cha2ds2vasc: {m}"));
    }
    (!v.is_empty()).then(|| v.join("; "))
}

fn pct(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

/// A recommendation as one line: strength, text, triggering values, and the trials' what-if
/// ("if done (LDL-C 1.6 mmol/L lower): 10-year mi 12.0% -> 9.5%, stroke 5.0% -> 4.4%
/// [trial effect: source]").
pub fn describe(r: &Recommendation) -> String {
    let trig: Vec<String> = r
        .triggered_by
        .iter()
        .map(|(k, v)| format!("{k}={}", fmt_value(*v)))
        .collect();
    let mut s = format!("[{}] {} (because {})", r.strength, r.text, trig.join(", "));
    if let Some(e) = &r.effect {
        let ch = e.changes(&pct, "->");
        if !ch.is_empty() {
            s.push_str(&format!(
                "; if done{}: {}-year {} [trial effect: {}]",
                e.dose_note(),
                e.horizon_years,
                ch.join(", "),
                e.source
            ));
        }
    }
    s
}

/// The network's response to a recommendation's change, for analysts: "rec: mi_10y +1.8 pp,
/// ... (network response: association, not an effect)".
pub fn describe_association(r: &Recommendation) -> Option<String> {
    if r.model_association.is_empty() {
        return None;
    }
    let ch: Vec<String> = r
        .model_association
        .iter()
        .map(|(k, v)| format!("{k} {:+.1} pp", v * 100.0))
        .collect();
    Some(format!(
        "{}: {} (network response: association, not an effect)",
        r.id,
        ch.join(", ")
    ))
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// Assesses rows of a model's inputs.
pub struct Assessor<'a> {
    model: &'a Model,
    columns: &'a [String],
    rules: &'a RuleSet,
    effects: &'a Effects,
    namer: Namer,
    seq: SequenceValues,
    opts: &'a ScoreOptions,
}

impl<'a> Assessor<'a> {
    pub fn new(
        model: &'a Model,
        columns: &'a [String],
        rules: &'a RuleSet,
        effects: &'a Effects,
        opts: &'a ScoreOptions,
    ) -> Assessor<'a> {
        Assessor {
            model,
            columns,
            rules,
            effects,
            namer: Namer::new(&model.vocab),
            seq: SequenceValues::new(&model.vocab, &model.value_norm),
            opts,
        }
    }

    fn out_index(&self, outcome: usize, h: usize) -> usize {
        outcome * self.model.manifest.horizons_years.len() + h
    }

    /// Index of the reference horizon (the longest) among the model's horizons.
    pub fn ref_h(&self) -> usize {
        let hs = &self.model.manifest.horizons_years;
        (0..hs.len()).max_by_key(|&i| hs[i]).unwrap_or(0)
    }

    pub fn horizon_years(&self) -> u32 {
        self.model.manifest.horizons_years[self.ref_h()]
    }

    /// The clinical equations on every row of `d`.
    pub fn equations(&self, d: &Dataset) -> Vec<EquationRisks> {
        (0..d.len())
            .map(|r| {
                equations::on_features(&Row {
                    columns: self.columns,
                    values: d.tab_row(r),
                })
            })
            .collect()
    }

    /// Assess every row of `d`; rows with `explain[r]` also get factors and the network's
    /// what-if response.
    pub fn assess(
        &self,
        d: &Dataset,
        risks: &[RowRisks],
        eqs: &[EquationRisks],
        explain: &[bool],
    ) -> Vec<Assessment> {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        let horizon = m.horizons_years[hr];
        let ten_year = horizon == 10;
        let mut out: Vec<Assessment> = (0..d.len())
            .map(|r| {
                let risk: BTreeMap<String, f64> = m
                    .outcomes
                    .iter()
                    .enumerate()
                    .map(|(oi, o)| (o.clone(), risks[r].gru[self.out_index(oi, hr)]))
                    .collect();
                let any = 1.0 - risk.values().map(|p| 1.0 - p).product::<f64>();
                let row = Row {
                    columns: self.columns,
                    values: d.tab_row(r),
                };
                let get = |n: &str| row.get(n);
                let e = &eqs[r];
                let q = |n: &str| -> f64 {
                    match n {
                        // PCE where it applies; else the network's risk of MI or stroke,
                        // and only when it is a 10-year risk (the guidelines' thresholds are).
                        "ascvd_10y" => match &e.pce_ascvd_10y {
                            Ok(p) => *p,
                            Err(_) if ten_year => any,
                            Err(_) => f64::NAN,
                        },
                        "mi_10y" => risk.get("mi").copied().unwrap_or(f64::NAN),
                        "stroke_10y" => risk.get("stroke").copied().unwrap_or(f64::NAN),
                        "cha2ds2vasc" => {
                            e.cha2ds2vasc.as_ref().map_or(f64::NAN, |(s, _)| *s as f64)
                        }
                        "cha2ds2vasc_beyond_sex" => {
                            e.cha2ds2vasc.as_ref().map_or(f64::NAN, |(s, _)| {
                                *s as f64 - if get("sex_female") == 1.0 { 1.0 } else { 0.0 }
                            })
                        }
                        "prior_ascvd" => {
                            let (a, b) = (get("prior_mi"), get("prior_stroke"));
                            if a.is_nan() && b.is_nan() {
                                f64::NAN
                            } else {
                                (a == 1.0 || b == 1.0) as u8 as f64
                            }
                        }
                        n => get(n),
                    }
                };
                let mut recommendations = self.rules.recommend(&q);
                for rec in recommendations.iter_mut() {
                    if let Some(c) = rec.what_if {
                        rec.effect = self.effects.apply(c, &get, &risk, horizon);
                    }
                }
                if let Err(why) = &e.pce_ascvd_10y {
                    // Say where a guideline's 10-year ASCVD threshold met the network's risk.
                    for rec in recommendations
                        .iter_mut()
                        .filter(|x| x.triggered_by.contains_key("ascvd_10y"))
                    {
                        rec.text.push_str(&format!(
                            " [10-year ASCVD risk from the network (MI or stroke): the Pooled Cohort Equations do not apply ({why})]"
                        ));
                    }
                }
                Assessment {
                    subject_id: d.keys[r].0,
                    prediction_time: d.keys[r].1,
                    age: get("age_years"),
                    horizon_years: horizon,
                    any_risk: any,
                    tier: tier(any, &self.opts.tiers),
                    recommendations,
                    risk,
                    factors: BTreeMap::new(),
                    explained: false,
                    basis: Vec::new(),
                }
            })
            .collect();
        let scope: Vec<usize> = (0..d.len()).filter(|&r| explain[r]).collect();
        if self.opts.model_association {
            self.model_responses(d, &scope, &mut out);
        }
        self.explain(d, &scope, &mut out);
        out
    }

    /// The network's (and PCE's) response to every recommendation's change, for the rows in
    /// scope: an association, kept for analysts.
    fn model_responses(&self, d: &Dataset, scope: &[usize], out: &mut [Assessment]) {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        let mut variants: Vec<(usize, usize)> = Vec::new(); // (row, recommendation)
        let mut rows = Vec::new();
        for &r in scope {
            for (k, rec) in out[r].recommendations.iter().enumerate() {
                if rec.what_if.is_some() {
                    variants.push((r, k));
                    rows.push(r);
                }
            }
        }
        if variants.is_empty() {
            return;
        }
        let mut vd = d.select(&rows);
        let mut applies = vec![false; variants.len()];
        for (i, (r, k)) in variants.iter().enumerate() {
            let change = out[*r].recommendations[*k].what_if.expect("filtered");
            applies[i] = whatif::apply(change, &mut vd, i, self.columns, &self.seq);
        }
        let vr = self.model.predict(&vd);
        for (i, (r, k)) in variants.iter().enumerate() {
            if !applies[i] {
                continue;
            }
            let mut ch = BTreeMap::new();
            for (oi, o) in m.outcomes.iter().enumerate() {
                let j = self.out_index(oi, hr);
                ch.insert(
                    format!("{o}_{}y", m.horizons_years[hr]),
                    vr[i].gru[j] - out[*r].risk[o],
                );
            }
            let before = equations::pce_on(&Row {
                columns: self.columns,
                values: d.tab_row(*r),
            });
            let after = equations::pce_on(&Row {
                columns: self.columns,
                values: vd.tab_row(i),
            });
            if let (Ok(b), Ok(a)) = (before, after) {
                ch.insert("pce_ascvd_10y".into(), a - b);
            }
            out[*r].recommendations[*k].model_association = ch;
        }
    }

    /// Integrated-gradients factors per outcome at the reference horizon (all outcomes in the
    /// same passes).
    fn explain(&self, d: &Dataset, scope: &[usize], out: &mut [Assessment]) {
        let m = &self.model.manifest;
        let hr = self.ref_h();
        let js: Vec<i64> = (0..m.outcomes.len())
            .map(|oi| self.out_index(oi, hr) as i64)
            .collect();
        for chunk in scope.chunks(256) {
            let b = Batch::new(d, chunk, &self.model.norm, self.model.device);
            let atts = integrated_gradients_many(
                &self.model.net,
                &b,
                &js,
                &self.model.calibration.hazard_scale,
                &self.model.manifest.horizons_years,
                self.opts.ig_steps,
            );
            for (o, att) in m.outcomes.iter().zip(atts) {
                for (a, &r) in att.iter().zip(chunk) {
                    let f = factors(a, d, r, self.columns, &self.namer);
                    out[r].factors.insert(o.clone(), f);
                    out[r].explained = true;
                }
            }
        }
    }
}
