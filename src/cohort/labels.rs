//! Labels for one subject, as a pure function of their events and the task: which prediction
//! times are eligible (and, if not, why), whether each outcome occurs in each horizon, prior
//! outcomes, censoring. Rules: an event exactly at the prediction time is future unless the task
//! says otherwise; a subject needs `min_history_days` of data before the time and must be inside
//! the age range and alive. Each row carries its time to event ([`Survival`]): the first outcome
//! after the time, death (the competing event) and the end of follow-up. The boolean of a horizon
//! is decided from it: the outcome inside it is true; death before it without the outcome is
//! false (a cumulative incidence: the dead cannot have the outcome, and leaving them out would
//! condition the label on surviving); follow-up that ends before it without either is censored
//! (dropped or marked, per the task). Follow-up ends where the routine records say the person
//! left ([`observation_end`]), never where an outcome's own records end.

use super::spec::{CensorRule, PriorRule, Task, TimesKind};
use crate::schema::Event;

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
pub const MICROS_PER_YEAR: i64 = 31_557_600_000_000; // 365.25 days

/// One outcome x horizon result at one prediction time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelValue {
    True,
    False,
    /// Death or end of data before the horizon, outcome not seen.
    Censored,
    /// A prior outcome and the task excludes them.
    ExcludedPrior,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    pub subject_id: i64,
    pub prediction_time: i64,
    pub age_years: f64,
    /// Per outcome: a prior event strictly before (or at, if same time is past) the time.
    pub prior: Vec<bool>,
    /// Per outcome, per horizon (task order).
    pub values: Vec<Vec<LabelValue>>,
    pub survival: Survival,
}

/// Time to event of one prediction time, in years after it (365.25 days).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Survival {
    /// Until when the person was followed: the last observation or the end of the extract,
    /// whichever is first (death is an observation).
    pub followup: f64,
    /// Death, when inside follow-up.
    pub death: Option<f64>,
    /// Per outcome: the first occurrence after the time, when inside follow-up.
    pub events: Vec<Option<f64>>,
    /// Per outcome: false when a prior outcome excludes the row from it (task rule).
    pub at_risk: Vec<bool>,
    /// The end of the whole extract (infinite when unknown).
    pub extract_end: f64,
}

impl Survival {
    /// The boolean status of outcome `o` at `h` years, the one rule labels and evaluation use.
    pub fn value(&self, o: usize, h: f64) -> LabelValue {
        if !self.at_risk[o] {
            return LabelValue::ExcludedPrior;
        }
        // A horizon past the end of the extract is censored for everyone, whatever was seen
        // inside it: keeping the outcomes seen before the end and not the others would
        // inflate the label's prevalence.
        if h > self.extract_end {
            return LabelValue::Censored;
        }
        match (self.events[o], self.death) {
            (Some(e), _) if e <= h => LabelValue::True,
            (_, Some(d)) if d <= h && self.events[o].is_none_or(|e| e > d) => LabelValue::False,
            _ if self.followup >= h => LabelValue::False,
            _ => LabelValue::Censored,
        }
    }
}

/// Why a prediction time produced no row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exclusion {
    NoBirthDate,
    OutsideAgeRange,
    DeadBefore,
    NotEnoughHistory,
    NoFollowUp,
}

impl Exclusion {
    pub fn name(&self) -> &'static str {
        match self {
            Exclusion::NoBirthDate => "no_birth_date",
            Exclusion::OutsideAgeRange => "outside_age_range",
            Exclusion::DeadBefore => "dead_before_time",
            Exclusion::NotEnoughHistory => "not_enough_history",
            Exclusion::NoFollowUp => "no_follow_up_after_time",
        }
    }
}

/// Candidate prediction times for a subject.
pub fn prediction_times(task: &Task, events: &[Event]) -> Vec<i64> {
    let pt = &task.spec.prediction_times;
    match pt.kind {
        TimesKind::Fixed => vec![task.start],
        TimesKind::Yearly => {
            let mut v = Vec::new();
            let start = chrono::DateTime::from_timestamp_micros(task.start)
                .expect("valid")
                .date_naive();
            let mut d = start;
            let micros = |d: chrono::NaiveDate| {
                d.and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc()
                    .timestamp_micros()
            };
            while micros(d) <= task.end {
                v.push(micros(d));
                d = d
                    .checked_add_months(chrono::Months::new(12))
                    .expect("in range");
            }
            v
        }
        TimesKind::Encounters => {
            let mut v: Vec<i64> = events
                .iter()
                .filter(|e| pt.encounter_codes.contains(&e.code))
                .filter_map(|e| e.time)
                .filter(|t| (task.start..=task.end).contains(t))
                .collect();
            v.dedup();
            v
        }
    }
}

/// Until when an event shows the person under observation: its time, or a stay's discharge.
/// A medication's stop date or a condition's abatement is not follow-up: it is written when
/// the drug stopped (or later), and nothing says the person was seen then.
pub fn observed_until(e: &Event) -> Option<i64> {
    let end = e.end_time.filter(|_| e.code.starts_with("ENCOUNTER//"));
    e.time.max(end)
}

/// Until when a person is under observation: `observation_gap_days` after their last routine
/// record, or the end of the extract if sooner (without a known extract end, the last record of
/// any kind). A routine record is any timed record that is not a death and not an outcome's
/// own care (from an outcome's time to `outcome_care_days` after it). Follow-up must not be
/// extended by the events it is meant to observe: ended at the last record of any kind, it ran
/// to an MI's admission for people who had one and stopped at the last visit for those who did
/// not, so the events were always seen and the event-free person-time was cut short; labels,
/// hazards and IPCW then put the incidence 5-20 % above the truth. Outcomes and deaths after the
/// observation's end are not seen, whichever way they happened.
pub fn observation_end(
    events: &[Event],
    outcome_starts: &[i64],
    w: &super::spec::Window,
    data_end: Option<i64>,
) -> Option<i64> {
    let care = w.outcome_care_days as i64 * MICROS_PER_DAY;
    let own_care = |x: i64| outcome_starts.iter().any(|&s| (s..=s + care).contains(&x));
    let last_routine = events
        .iter()
        .filter(|e| e.code != "MEDS_DEATH" && e.code != "MEDS_BIRTH")
        .filter(|e| e.time.is_some_and(|x| !own_care(x)))
        .filter_map(observed_until)
        .max()?;
    let gap = w.observation_gap_days as i64 * MICROS_PER_DAY;
    let end = data_end.or_else(|| events.iter().filter_map(observed_until).max())?;
    Some(last_routine.saturating_add(gap).min(end))
}

/// Label one subject (events sorted by time, static first). Returns rows and exclusions.
pub fn label_subject(task: &Task, events: &[Event]) -> (Vec<LabelRow>, Vec<Exclusion>) {
    label_subject_until(task, events, None)
}

/// As [`label_subject`], with the end of the whole extract: a horizon that runs past it is
/// censored even when the outcome was seen inside it, since only outcomes could have been
/// observed there (keeping them would inflate the label's prevalence).
pub fn label_subject_until(
    task: &Task,
    events: &[Event],
    data_end: Option<i64>,
) -> (Vec<LabelRow>, Vec<Exclusion>) {
    let w = &task.spec.window;
    let Some(first) = events.first() else {
        return (vec![], vec![]);
    };
    let subject_id = first.subject_id;
    let birth = events
        .iter()
        .find(|e| e.code == "MEDS_BIRTH")
        .and_then(|e| e.time);
    let death = events
        .iter()
        .filter(|e| e.code == "MEDS_DEATH")
        .filter_map(|e| e.time)
        .min();
    let first_time = events
        .iter()
        .filter(|e| e.code != "MEDS_BIRTH")
        .filter_map(|e| e.time)
        .min();
    // Per outcome: (event time, availability). Whether the outcome happens within a horizon is
    // a matter of its time; whether it is *prior* (known at the prediction time) of when it was
    // available, the clock the features use: an MI coded at the discharge of the stay that is
    // under way at `t` is neither prior nor, since it began before `t`, a future outcome.
    let vis = super::availability::Visibility::new(events);
    let outcome_times: Vec<Vec<(i64, i64)>> = task
        .outcomes
        .iter()
        .map(|o| {
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| o.matches(e))
                .filter_map(|(i, e)| Some((e.time?, vis.at(i)?)))
                .collect()
        })
        .collect();
    let outcome_starts: Vec<i64> = outcome_times.iter().flatten().map(|x| x.0).collect();
    let observed_to = observation_end(events, &outcome_starts, w, data_end);
    let mut rows = Vec::new();
    let mut excluded = Vec::new();
    for t in prediction_times(task, events) {
        let Some(b) = birth else {
            excluded.push(Exclusion::NoBirthDate);
            continue;
        };
        let age = (t - b) as f64 / MICROS_PER_YEAR as f64;
        if !(w.min_age..=w.max_age).contains(&age) {
            excluded.push(Exclusion::OutsideAgeRange);
            continue;
        }
        if death.is_some_and(|d| d < t) {
            excluded.push(Exclusion::DeadBefore);
            continue;
        }
        if first_time.is_none_or(|f| f > t - w.min_history_days as i64 * MICROS_PER_DAY) {
            excluded.push(Exclusion::NotEnoughHistory);
            continue;
        }
        if observed_to.is_none_or(|l| l <= t) {
            excluded.push(Exclusion::NoFollowUp);
            continue;
        }
        let before = |x: i64| if w.same_time_is_future { x < t } else { x <= t };
        let prior: Vec<bool> = outcome_times
            .iter()
            .map(|ts| ts.iter().any(|&(_, avail)| before(avail)))
            .collect();
        let years = |x: i64| (x - t) as f64 / MICROS_PER_YEAR as f64;
        let until = observed_to.unwrap_or(t);
        let survival = Survival {
            followup: years(until),
            death: death.filter(|&d| d <= until).map(years),
            events: outcome_times
                .iter()
                .map(|ts| {
                    ts.iter()
                        .map(|&(x, _)| x)
                        .filter(|&x| !before(x) && x <= until)
                        .min()
                        .map(years)
                })
                .collect(),
            at_risk: prior
                .iter()
                .map(|&p| !(p && w.prior_outcome == PriorRule::Exclude))
                .collect(),
            extract_end: data_end.map_or(f64::INFINITY, years),
        };
        let values = (0..outcome_times.len())
            .map(|o| {
                w.horizons_years
                    .iter()
                    .map(|&h| survival.value(o, h as f64))
                    .collect()
            })
            .collect();
        rows.push(LabelRow {
            subject_id,
            prediction_time: t,
            age_years: age,
            prior,
            values,
            survival,
        });
    }
    (rows, excluded)
}

/// The boolean a label file gets, or `None` when the row is left out of it.
pub fn label_bool(v: LabelValue, censoring: CensorRule) -> Option<bool> {
    match (v, censoring) {
        (LabelValue::True, _) => Some(true),
        (LabelValue::False, _) => Some(false),
        (LabelValue::Censored, CensorRule::Mark) => Some(false),
        (LabelValue::Censored, CensorRule::Drop) | (LabelValue::ExcludedPrior, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::spec::Task;

    const DAY: i64 = MICROS_PER_DAY;
    const YEAR: i64 = MICROS_PER_YEAR;
    /// Known free of the outcome at 1 year, censored at 5 and 10.
    const ONE_YEAR_ONLY: [LabelValue; 3] = [
        LabelValue::False,
        LabelValue::Censored,
        LabelValue::Censored,
    ];

    fn t(s: &str) -> i64 {
        crate::ingest::time::TimeContext::default()
            .parse(s)
            .unwrap()
    }

    fn ev(time: &str, code: &str) -> Event {
        Event {
            subject_id: 1,
            time: Some(t(time)),
            code: code.into(),
            ..Default::default()
        }
    }

    fn task(f: impl Fn(&mut crate::cohort::spec::TaskSpec)) -> Task {
        let mut s = Task::load("mi_stroke").unwrap().spec;
        s.prediction_times.kind = TimesKind::Fixed;
        s.prediction_times.start = "2015-01-01".into();
        s.prediction_times.end = None;
        f(&mut s);
        Task::from_spec(s, None).unwrap()
    }

    fn base() -> Vec<Event> {
        vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "ENCOUNTER//AMB"),
            ev("2026-01-01", "ENCOUNTER//AMB"),
        ]
    }

    /// Lake order with availability resolved, as ingest leaves a subject's events.
    fn sorted(mut v: Vec<Event>) -> Vec<Event> {
        v.sort_by(|a, b| a.lake_cmp(b));
        crate::schema::availability::resolve(&mut v);
        v
    }

    #[test]
    fn outcome_inside_horizon_is_true_outside_is_false() {
        let task = task(|_| {});
        let mut e = base();
        e.push(ev("2017-06-01", "ICD10CM//I21.4"));
        let (rows, _) = label_subject(&task, &sorted(e));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].values[0],
            vec![LabelValue::False, LabelValue::True, LabelValue::True]
        );
        assert_eq!(rows[0].values[1], vec![LabelValue::False; 3]);
        assert!(!rows[0].prior[0]);
    }

    #[test]
    fn event_exactly_at_prediction_time_is_future_unless_told_otherwise() {
        let mut e = base();
        e.push(ev("2015-01-01", "SNOMED//22298006"));
        let e = sorted(e);
        let (rows, _) = label_subject(&task(|_| {}), &e);
        assert_eq!(rows[0].values[0][0], LabelValue::True);
        assert!(!rows[0].prior[0]);
        let (rows, _) = label_subject(&task(|s| s.window.same_time_is_future = false), &e);
        assert!(rows[0].prior[0], "at the time counts as past");
        assert_eq!(rows[0].values[0][0], LabelValue::False);
    }

    #[test]
    fn prior_outcome_flagged_or_excluded() {
        let mut e = base();
        e.push(ev("2012-03-01", "ICD9CM//410.71"));
        let e = sorted(e);
        let (rows, _) = label_subject(&task(|_| {}), &e);
        assert!(rows[0].prior[0]);
        assert_eq!(rows[0].values[0][0], LabelValue::False);
        let (rows, _) = label_subject(&task(|s| s.window.prior_outcome = PriorRule::Exclude), &e);
        assert_eq!(rows[0].values[0], vec![LabelValue::ExcludedPrior; 3]);
        assert_eq!(
            rows[0].values[1][0],
            LabelValue::False,
            "other outcomes are unaffected"
        );
    }

    /// Issue 10: follow-up is observation. A statin's stop date in 2030 (written when it
    /// stopped) does not make 2017-2030 observed: the 5- and 10-year labels stay censored at
    /// the last visit (2017), where the old `max(time, end_time)` made them `False`.
    #[test]
    fn a_stop_date_is_not_follow_up_but_a_discharge_is() {
        let mut rx = ev("2014-06-01", "RXNORM//617312");
        rx.end_time = Some(t("2030-01-01"));
        let e = sorted(vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "ENCOUNTER//AMB"),
            ev("2017-01-01", "ENCOUNTER//AMB"),
            rx,
        ]);
        let (rows, _) = label_subject(&task(|_| {}), &e);
        assert_eq!(rows[0].values[0], ONE_YEAR_ONLY.to_vec());
        // A stay that ends in 2020 is observation up to its discharge.
        let mut stay = ev("2019-12-01", "ENCOUNTER//IMP");
        stay.end_time = Some(t("2020-02-01"));
        let mut e2 = e.clone();
        e2.push(stay);
        let (rows, _) = label_subject(&task(|_| {}), &sorted(e2));
        assert_eq!(rows[0].values[0][1], LabelValue::False);
    }

    /// Issue 10: labels and features use the same clock. An MI coded for a stay (dated at the
    /// admission, OMOP-style) is not *prior* at a time inside the stay, where features cannot
    /// see it either; after the discharge it is. The old flag used the event's own time.
    #[test]
    fn prior_flags_use_availability_like_features() {
        let mut stay = ev("2015-01-02", "ENCOUNTER//IMP");
        stay.end_time = Some(t("2015-01-10"));
        stay.visit_id = Some("h1".into());
        let mut mi = ev("2015-01-02", "ICD10CM//I21.4");
        mi.source = "omop:condition_occurrence".into();
        mi.visit_id = Some("h1".into());
        mi.coded_at_discharge = true;
        let mut e = base();
        e.extend([stay, mi]);
        let e = sorted(e);
        let at = |when: &'static str| task(move |s| s.prediction_times.start = when.into());
        let (rows, _) = label_subject(&at("2015-01-05"), &e);
        assert!(!rows[0].prior[0], "inside the stay the MI is not yet known");
        assert_eq!(
            rows[0].values[0][0],
            LabelValue::False,
            "nor is it a future outcome: it began before the time"
        );
        let (rows, _) = label_subject(&at("2015-02-01"), &e);
        assert!(rows[0].prior[0], "after the discharge it is prior");
    }

    /// Issue 17: follow-up is not extended by the events it observes. Seen last at a visit in
    /// mid-2016 (gap 730 days), a person is followed to mid-2018 whether or not an MI admission
    /// comes in 2019: the admission, its discharge and its aspirin are the MI's own care. A
    /// routine visit in 2020 keeps them under observation to the extract's end, and then the
    /// 2019 MI is seen. (Ended at the last record of any kind, the MI made its own follow-up:
    /// events were always seen, event-free time cut short.)
    #[test]
    fn follow_up_ends_with_routine_records_not_with_the_outcomes_own() {
        let task = task(|_| {});
        let end = Some(t("2022-01-01"));
        let mut e = base();
        e.retain(|x| x.code != "ENCOUNTER//AMB");
        e.extend([
            ev("2010-01-01", "ENCOUNTER//AMB"),
            ev("2016-07-01", "ENCOUNTER//AMB"),
        ]);
        let (rows, _) = label_subject_until(&task, &sorted(e.clone()), end);
        let quiet = rows[0].survival.clone();
        assert!((quiet.followup - 3.5).abs() < 0.01, "{quiet:?}");
        let mut stay = ev("2019-03-01", "ENCOUNTER//IMP");
        stay.end_time = Some(t("2019-03-06"));
        let mut with_mi = e.clone();
        with_mi.extend([
            stay,
            ev("2019-03-01", "ICD10CM//I21.4"),
            ev("2019-03-01", "RXNORM//1191"),
        ]);
        let (rows, _) = label_subject_until(&task, &sorted(with_mi.clone()), end);
        assert_eq!(
            rows[0].survival, quiet,
            "the MI's own records do not extend follow-up"
        );
        assert_eq!(rows[0].values[0], ONE_YEAR_ONLY.to_vec());
        with_mi.push(ev("2020-06-01", "ENCOUNTER//AMB"));
        let (rows, _) = label_subject_until(&task, &sorted(with_mi), end);
        let s = &rows[0].survival;
        assert!((s.followup - 7.0).abs() < 0.01, "{s:?}");
        assert!((s.events[0].unwrap() - 4.16).abs() < 0.01, "{s:?}");
        // (10 years from 2015 runs past the extract's end: censored whatever was seen.)
        assert_eq!(
            rows[0].values[0],
            vec![LabelValue::False, LabelValue::True, LabelValue::Censored]
        );
        // No routine record after the time (the 2016 visit is gone): not under observation.
        let mut gone = e;
        gone.retain(|x| x.time != Some(t("2016-07-01")));
        let (rows, ex) = label_subject_until(&task, &sorted(gone), end);
        assert!(
            rows.is_empty() && ex == vec![Exclusion::NoFollowUp],
            "{ex:?}"
        );
    }

    /// Issue 17: death is the competing event, not censoring. Someone who dies in 2018
    /// without an MI did not have one within 5 or 10 years of 2015 (false, as the truth's
    /// cumulative incidence counts them); someone whose record stops in 2017 alive is censored.
    #[test]
    fn death_is_a_known_negative_and_end_of_follow_up_censors() {
        let alive = sorted(vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "ENCOUNTER//AMB"),
            ev("2017-01-01", "ENCOUNTER//AMB"),
        ]);
        let (rows, _) = label_subject(&task(|_| {}), &alive);
        assert_eq!(rows[0].values[0], ONE_YEAR_ONLY.to_vec());
        let s = &rows[0].survival;
        assert!((s.followup - 2.0).abs() < 0.01, "{s:?}");
        assert_eq!((s.death, s.events.clone()), (None, vec![None, None]));
        let mut e = alive.clone();
        e.push(ev("2018-05-01", "MEDS_DEATH"));
        let e = sorted(e);
        let (rows, _) = label_subject(&task(|_| {}), &e);
        assert_eq!(rows[0].values[0], vec![LabelValue::False; 3]);
        let d = rows[0].survival.death.expect("death inside follow-up");
        assert!((d - 3.33).abs() < 0.01 && rows[0].survival.followup >= d);
        assert_eq!(label_bool(LabelValue::Censored, CensorRule::Drop), None);
        assert_eq!(
            label_bool(LabelValue::Censored, CensorRule::Mark),
            Some(false)
        );
        // An outcome before the death makes the label true; its time is the event's.
        let mut e2 = e.clone();
        e2.push(ev("2016-02-01", "ICD10CM//I63.9"));
        let (rows, _) = label_subject(&task(|_| {}), &sorted(e2.clone()));
        assert_eq!(
            rows[0].values[1],
            vec![LabelValue::False, LabelValue::True, LabelValue::True]
        );
        assert!((rows[0].survival.events[1].unwrap() - 1.08).abs() < 0.01);
        // ... unless the horizon runs past the end of the whole extract: there only outcomes
        // could be seen, so the row is censored whatever happened.
        let t0 = rows[0].prediction_time;
        let end = t0 + 6 * MICROS_PER_YEAR;
        let (rows, _) = label_subject_until(&task(|_| {}), &sorted(e2), Some(end));
        assert_eq!(
            rows[0].values[1],
            vec![LabelValue::False, LabelValue::True, LabelValue::Censored]
        );
        assert!(rows[0].survival.extract_end == 6.0);
    }

    #[test]
    fn exclusions_have_reasons() {
        let task = task(|_| {});
        let young = sorted(vec![
            ev("2000-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "X//1"),
            ev("2020-01-01", "X//1"),
        ]);
        assert_eq!(
            label_subject(&task, &young).1,
            vec![Exclusion::OutsideAgeRange]
        );
        let new = sorted(vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2014-12-01", "X//1"),
            ev("2020-01-01", "X//1"),
        ]);
        assert_eq!(
            label_subject(&task, &new).1,
            vec![Exclusion::NotEnoughHistory]
        );
        let dead = sorted(vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "X//1"),
            ev("2014-01-01", "MEDS_DEATH"),
        ]);
        assert_eq!(label_subject(&task, &dead).1, vec![Exclusion::DeadBefore]);
        let gone = sorted(vec![
            ev("1960-01-01", "MEDS_BIRTH"),
            ev("2010-01-01", "X//1"),
        ]);
        assert_eq!(label_subject(&task, &gone).1, vec![Exclusion::NoFollowUp]);
        let _ = (DAY, YEAR);
    }
}
