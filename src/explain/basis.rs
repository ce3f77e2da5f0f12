//! The source records behind an explanation's factors. In: a subject's lake events, when each
//! became known ([`Visibility`]), the prediction time, the compiled feature spec and task the
//! model was trained with, and a factor's name as [`super::factors`] names it. Out: the events
//! the features stage read for that factor at that time, most recently known first: the values a
//! measurement's summaries came from, the diagnoses that set a condition flag, the prescriptions
//! that made a treatment active, the birth and sex records behind age and sex. The selection
//! applies the features' own visibility rule, so a RiskAssessment's `basis` can only point at
//! records that were known at its prediction time.

use crate::cohort::labels::{MICROS_PER_DAY, MICROS_PER_YEAR};
use crate::cohort::spec::Task;
use crate::features::compute::Visibility;
use crate::features::spec::{Compiled, rules_match};
use crate::schema::Event;

/// Where a factor's events are looked for.
enum Scope {
    /// Any time before the prediction (conditions, prior outcomes, static facts).
    Ever,
    /// Inside the task's look-back (measurements, sequence codes).
    LookBack,
    /// Inside the treatments' `active_days` (what made a treatment active).
    Active,
}

/// One subject's records as known at one prediction time, asked factor by factor.
pub struct Behind<'a> {
    events: &'a [Event],
    vis: Visibility,
    /// Indices of the events visible at `t` (the features' rule), computed once.
    seen: Vec<usize>,
    t: i64,
    c: &'a Compiled,
    task: &'a Task,
}

impl<'a> Behind<'a> {
    /// `events`: one subject's, in lake order.
    pub fn new(events: &'a [Event], t: i64, c: &'a Compiled, task: &'a Task) -> Behind<'a> {
        let vis = Visibility::new(events);
        let seen = vis.visible(t, task.spec.window.same_time_is_future);
        Behind {
            events,
            vis,
            seen,
            t,
            c,
            task,
        }
    }

    /// Indices into the events of the records behind `factor`, most recently known first, at
    /// most `max`. Factors that are not records (timing of care, rare codes) have none.
    pub fn of(&self, factor: &str, max: usize) -> Vec<usize> {
        let Some((scope, matches)) = selector(factor, self.c, self.task) else {
            return vec![];
        };
        let from = match scope {
            Scope::Ever => i64::MIN,
            Scope::LookBack => {
                self.t - self.task.spec.window.lookback_years as i64 * MICROS_PER_YEAR
            }
            Scope::Active => self.t - self.c.spec.active_days as i64 * MICROS_PER_DAY,
        };
        let mut found: Vec<(i64, usize)> = self
            .seen
            .iter()
            .copied()
            .filter(|&i| self.vis.at(i).is_none_or(|a| a >= from) && matches(&self.events[i]))
            .map(|i| (self.vis.at(i).unwrap_or(i64::MIN), i))
            .collect();
        // most recently known first; among equals, the lake order
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        found.into_iter().take(max).map(|(_, i)| i).collect()
    }
}

type Matcher<'a> = Box<dyn Fn(&Event) -> bool + 'a>;

/// The scope and event test of a factor name (the inverse of the explanation's naming).
fn selector<'a>(factor: &'a str, c: &'a Compiled, task: &'a Task) -> Option<(Scope, Matcher<'a>)> {
    let code_is = |code: &'a str| -> Matcher<'a> { Box::new(move |e: &Event| e.code == code) };
    if let Some((_, code)) = c.measurements.iter().find(|(m, _)| m == factor) {
        return Some((Scope::LookBack, code_is(code)));
    }
    if let Some(cond) = c.spec.condition.iter().find(|x| x.name == factor) {
        return Some((
            Scope::Ever,
            Box::new(move |e: &Event| {
                e.time.is_some()
                    && (rules_match(&cond.codes, &e.code)
                        || e.source_code
                            .as_deref()
                            .is_some_and(|s| rules_match(&cond.codes, s)))
            }),
        ));
    }
    if let Some(name) = factor.strip_prefix("prior ")
        && let Some(o) = task.outcomes.iter().find(|o| o.name == name)
    {
        return Some((
            Scope::Ever,
            Box::new(move |e: &Event| e.time.is_some() && o.matches(e)),
        ));
    }
    if let Some(name) = factor.strip_suffix(" treatment")
        && let Some(k) = c.spec.treatment.iter().position(|t| t.name == name)
    {
        return Some((
            Scope::Active,
            Box::new(move |e: &Event| c.is_treatment(k, e)),
        ));
    }
    if let Some(code) = factor.strip_prefix("medication ") {
        return Some((Scope::LookBack, code_is(code)));
    }
    match factor {
        "age" => Some((Scope::Ever, code_is("MEDS_BIRTH"))),
        "sex" => Some((
            Scope::Ever,
            Box::new(|e: &Event| e.code.starts_with("GENDER//")),
        )),
        "race" => Some((
            Scope::Ever,
            Box::new(|e: &Event| e.code.starts_with("RACE//")),
        )),
        "smoking status" => Some((Scope::LookBack, code_is("LOINC//72166-2"))),
        "healthcare use" => Some((
            Scope::LookBack,
            Box::new(|e: &Event| e.code.starts_with("ENCOUNTER//")),
        )),
        // a code named as itself (a diagnosis outside the spec's conditions, a demographic code)
        f if f.contains("//") || f == "MEDS_BIRTH" => Some((Scope::LookBack, code_is(f))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::spec::FeatureSpec;
    use std::collections::BTreeMap;

    const DAY: i64 = MICROS_PER_DAY;

    fn ev(t: Option<i64>, code: &str, v: Option<f32>, id: &str) -> Event {
        Event {
            subject_id: 1,
            time: t,
            available_time: t,
            code: code.into(),
            numeric_value: v,
            source: "fhir:Observation".into(),
            source_record_id: Some(id.into()),
            ..Default::default()
        }
    }

    fn setup() -> (Compiled, Task) {
        let codes: BTreeMap<String, Option<String>> = [(
            "RXNORM//617312".to_string(),
            Some("atorvastatin 40 MG Oral Tablet".to_string()),
        )]
        .into_iter()
        .collect();
        let c = Compiled::new(FeatureSpec::builtin(), &codes).unwrap();
        (c, Task::load("mi_stroke").unwrap())
    }

    #[test]
    fn records_behind_a_factor_are_those_known_at_the_time_most_recent_first() {
        let (c, task) = setup();
        let sbp = c
            .measurements
            .iter()
            .find(|m| m.0 == "systolic_bp")
            .unwrap()
            .1
            .clone();
        let t = 20_000 * DAY;
        let mut events = vec![
            ev(None, "GENDER//F", None, "pat"),
            ev(Some(-3000 * DAY), "MEDS_BIRTH", None, "pat"),
            ev(Some(t - 10 * 365 * DAY), &sbp, Some(150.0), "old"),
            ev(Some(t - 300 * DAY), &sbp, Some(140.0), "a"),
            ev(Some(t - 30 * DAY), &sbp, Some(145.0), "b"),
            ev(Some(t + DAY), &sbp, Some(190.0), "future"),
            ev(Some(t - 40 * DAY), "RXNORM//617312", None, "rx"),
            ev(Some(t - 900 * DAY), "RXNORM//617312", None, "rx-old"),
            ev(Some(t - 4000 * DAY), "ICD10CM//I10", None, "htn"),
        ];
        // a value measured before t but written after it is not behind anything at t
        let mut late = ev(Some(t - 5 * DAY), &sbp, Some(200.0), "late");
        late.available_time = Some(t + 5 * DAY);
        events.push(late);
        events.sort_by(|a, b| a.lake_cmp(b));
        let behind = Behind::new(&events, t, &c, &task);
        let ids = |f: &str, max: usize| -> Vec<String> {
            behind
                .of(f, max)
                .into_iter()
                .map(|i| events[i].source_record_id.clone().unwrap())
                .collect()
        };
        assert_eq!(
            ids("systolic_bp", 5),
            ["b", "a"],
            "look-back only, known only"
        );
        assert_eq!(ids("systolic_bp", 1), ["b"]);
        assert_eq!(ids("statin treatment", 5), ["rx"], "active days only");
        assert_eq!(ids("hypertension", 5), ["htn"], "conditions: ever");
        assert_eq!(ids("age", 5), ["pat"]);
        assert_eq!(ids("sex", 5), ["pat"]);
        assert!(ids("timing of care", 5).is_empty());
        assert!(ids("diabetes", 5).is_empty());
    }
}
