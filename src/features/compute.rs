//! Point-in-time features for one subject at one prediction time: a pure function of the
//! subject's events, the time and the learned vocabulary/normalisation. The one rule that keeps
//! leakage out lives in [`Visibility`] (shared with the labels' prior-outcome flags): an event is seen only if it was *available* before the
//! prediction time (at it, if the task says same-time events are past), where a diagnosis coded
//! for an inpatient stay becomes available at the stay's discharge. Nothing else in this module
//! looks at an event's time directly.

use super::spec::{Compiled, rules_match};
pub use crate::cohort::availability::Visibility;
use crate::cohort::labels::{MICROS_PER_DAY, MICROS_PER_YEAR};
use crate::cohort::spec::Task;
use crate::schema::Event;
use std::collections::{BTreeMap, HashMap};

/// Code vocabulary and per-code numeric normalisation, learned on the train split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab {
    /// code -> id (0 = padding, 1 = unknown)
    pub ids: HashMap<String, i32>,
    /// code -> (mean, std)
    pub norm: HashMap<String, (f32, f32)>,
}

pub const PAD: i32 = 0;
pub const UNK: i32 = 1;

impl Vocab {
    /// Learn from train-split events: codes with at least `min_count` events get an id (in
    /// code order, so the same data gives the same ids), numeric values their mean and std.
    pub fn learn<'a>(events: impl Iterator<Item = &'a Event>, min_count: u64) -> Vocab {
        let mut acc = VocabCounts::default();
        for e in events {
            acc.add(e);
        }
        Vocab::from_counts(acc, min_count)
    }

    pub fn from_counts(acc: VocabCounts, min_count: u64) -> Vocab {
        let VocabCounts { counts, moments } = acc;
        let mut ids = HashMap::new();
        for (c, n) in &counts {
            if *n >= min_count {
                ids.insert(c.clone(), ids.len() as i32 + 2);
            }
        }
        let norm = moments
            .into_iter()
            .filter(|(_, m)| m.0 >= 2.0)
            .map(|(c, (n, s, ss))| {
                let mean = s / n;
                let sd = ((ss / n - mean * mean).max(0.0)).sqrt().max(1e-6);
                (c, (mean as f32, sd as f32))
            })
            .collect();
        Vocab { ids, norm }
    }

    pub fn id(&self, code: &str) -> i32 {
        self.ids.get(code).copied().unwrap_or(UNK)
    }
}

/// Code counts and numeric moments, accumulated shard by shard and merged.
#[derive(Debug, Clone, Default)]
pub struct VocabCounts {
    pub counts: BTreeMap<String, u64>,
    pub moments: BTreeMap<String, (f64, f64, f64)>,
}

impl VocabCounts {
    pub fn add(&mut self, e: &Event) {
        if e.time.is_none() {
            return;
        }
        match self.counts.get_mut(&e.code) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(e.code.clone(), 1);
            }
        }
        if let Some(v) = e.numeric_value {
            if !self.moments.contains_key(&e.code) {
                self.moments.insert(e.code.clone(), (0.0, 0.0, 0.0));
            }
            let m = self.moments.get_mut(&e.code).expect("inserted");
            m.0 += 1.0;
            m.1 += v as f64;
            m.2 += (v as f64) * (v as f64);
        }
    }

    pub fn merge(&mut self, o: VocabCounts) {
        for (k, n) in o.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for (k, m) in o.moments {
            let x = self.moments.entry(k).or_default();
            x.0 += m.0;
            x.1 += m.1;
            x.2 += m.2;
        }
    }
}

/// One step (calendar month) of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub days_before: f32,
    pub gap_days: f32,
    pub age: f32,
    pub codes: Vec<i32>,
    pub values: Vec<f32>,
}

/// Column names of the tabular features, in order.
pub fn tabular_columns(c: &Compiled, task: &Task) -> Vec<String> {
    let mut v: Vec<String> = [
        "age_years",
        "sex_female",
        "race_white",
        "race_black",
        "race_other",
        "smoking_current",
        "smoking_former",
        "smoking_never",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (m, _) in &c.measurements {
        for s in ["last", "mean", "slope_per_year", "count", "days_since_last"] {
            v.push(format!("{m}_{s}"));
        }
    }
    for cond in &c.spec.condition {
        v.push(format!("dx_{}", cond.name));
    }
    for o in &task.outcomes {
        v.push(format!("prior_{}", o.name));
    }
    for t in &c.spec.treatment {
        v.push(format!("rx_{}", t.name));
    }
    v.extend(["n_encounters_1y", "n_inpatient_stays", "n_events"].map(String::from));
    v
}

/// Tabular features and the sequence for one subject at time `t`.
pub fn features_at(
    events: &[Event],
    vis: &Visibility,
    t: i64,
    c: &Compiled,
    task: &Task,
    vocab: &Vocab,
) -> (Vec<f32>, Vec<Step>) {
    let w = &task.spec.window;
    let lookback_start = t - w.lookback_years as i64 * MICROS_PER_YEAR;
    let seen = vis.visible(t, w.same_time_is_future);
    let in_window = |i: usize| vis.at(i).is_some_and(|a| a >= lookback_start);
    let birth = seen
        .iter()
        .map(|&i| &events[i])
        .find(|e| e.code == "MEDS_BIRTH")
        .and_then(|e| e.time);
    let nan = f32::NAN;
    let mut row = Vec::new();
    let age = birth
        .map(|b| ((t - b) as f64 / MICROS_PER_YEAR as f64) as f32)
        .unwrap_or(nan);
    row.push(age);
    let has_static = |p: &str| {
        seen.iter()
            .any(|&i| events[i].time.is_none() && events[i].code.starts_with(p))
    };
    row.push(if has_static("GENDER//F") {
        1.0
    } else if has_static("GENDER//M") {
        0.0
    } else {
        nan
    });
    let race = seen
        .iter()
        .map(|&i| &events[i])
        .find(|e| e.code.starts_with("RACE//"))
        .map(|e| e.code.to_ascii_lowercase());
    let (rw, rb) = match &race {
        Some(r) => (
            r.contains("white") as u8 as f32,
            r.contains("black") as u8 as f32,
        ),
        None => (nan, nan),
    };
    row.extend([
        rw,
        rb,
        if race.is_some() {
            (rw == 0.0 && rb == 0.0) as u8 as f32
        } else {
            nan
        },
    ]);
    let smoking = seen
        .iter()
        .rev()
        .map(|&i| &events[i])
        .find(|e| e.code == "LOINC//72166-2" && e.text_value.is_some())
        .map(|e| {
            e.text_value
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase()
        });
    match smoking {
        Some(s) if s.contains("never") => row.extend([0.0, 0.0, 1.0]),
        Some(s) if s.contains("former") || s.contains("ex-") => row.extend([0.0, 1.0, 0.0]),
        Some(s) if s.contains("current") || s.contains("every day") || s.contains("some day") => {
            row.extend([1.0, 0.0, 0.0])
        }
        _ => row.extend([nan, nan, nan]),
    }
    for (_, code) in &c.measurements {
        let pts: Vec<(f64, f64)> = seen
            .iter()
            .filter(|&&i| in_window(i) && events[i].code == *code)
            .filter_map(|&i| {
                Some((
                    vis.at(i)? as f64 / MICROS_PER_YEAR as f64,
                    events[i].numeric_value? as f64,
                ))
            })
            .collect();
        if pts.is_empty() {
            row.extend([nan, nan, nan, 0.0, nan]);
            continue;
        }
        let n = pts.len() as f64;
        let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let mean_x = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let slope = if pts.len() >= 2 && sxx > 1e-9 {
            pts.iter()
                .map(|p| (p.0 - mean_x) * (p.1 - mean_y))
                .sum::<f64>()
                / sxx
        } else {
            f64::NAN
        };
        let last = pts.last().expect("non-empty");
        let days = (t as f64 / MICROS_PER_YEAR as f64 - last.0) * 365.25;
        row.extend([
            last.1 as f32,
            mean_y as f32,
            slope as f32,
            n as f32,
            days as f32,
        ]);
    }
    for cond in &c.spec.condition {
        let any = seen.iter().any(|&i| {
            let e = &events[i];
            e.time.is_some()
                && (rules_match(&cond.codes, &e.code)
                    || e.source_code
                        .as_deref()
                        .is_some_and(|s| rules_match(&cond.codes, s)))
        });
        row.push(any as u8 as f32);
    }
    for o in &task.outcomes {
        row.push(
            seen.iter()
                .any(|&i| events[i].time.is_some() && o.matches(&events[i])) as u8
                as f32,
        );
    }
    let active_from = t - c.spec.active_days as i64 * MICROS_PER_DAY;
    for k in 0..c.spec.treatment.len() {
        let active = seen.iter().any(|&i| {
            let e = &events[i];
            // Started (or refilled) within `active_days`. An end date is not used: at `t` an
            // interval still open is open, and the stop date an export carries was written
            // later, often because of the very event being predicted.
            c.is_treatment(k, e) && vis.at(i).is_some_and(|a| a >= active_from)
        });
        row.push(active as u8 as f32);
    }
    let year_ago = t - MICROS_PER_YEAR;
    row.push(
        seen.iter()
            .filter(|&&i| {
                events[i].code.starts_with("ENCOUNTER//")
                    && vis.at(i).is_some_and(|a| a >= year_ago)
            })
            .count() as f32,
    );
    row.push(
        seen.iter()
            .filter(|&&i| events[i].code == "ENCOUNTER//IMP" && in_window(i))
            .count() as f32,
    );
    row.push(seen.iter().filter(|&&i| in_window(i)).count() as f32);

    // Sequence: calendar months of availability, the last `max_steps` of the look-back.
    let mut buckets: BTreeMap<(i32, u32), Vec<usize>> = BTreeMap::new();
    for &i in seen.iter().filter(|&&i| in_window(i)) {
        let a = vis.at(i).expect("in window means timed");
        let d = chrono::DateTime::from_timestamp_micros(a)
            .expect("valid")
            .date_naive();
        use chrono::Datelike;
        buckets.entry((d.year(), d.month())).or_default().push(i);
    }
    let keep = buckets.len().saturating_sub(c.spec.sequence.max_steps);
    let mut steps = Vec::new();
    let mut prev: Option<i64> = None;
    for (_, idx) in buckets.into_iter().skip(keep) {
        let last = idx.iter().filter_map(|&i| vis.at(i)).max().expect("timed");
        let mut codes = Vec::with_capacity(idx.len());
        let mut values = Vec::with_capacity(idx.len());
        for &i in &idx {
            let e = &events[i];
            codes.push(vocab.id(&e.code));
            values.push(match (e.numeric_value, vocab.norm.get(&e.code)) {
                (Some(v), Some((m, s))) => ((v - m) / s).clamp(-10.0, 10.0),
                _ => 0.0,
            });
        }
        steps.push(Step {
            days_before: ((t - last) as f64 / MICROS_PER_DAY as f64) as f32,
            gap_days: prev
                .map(|p| ((last - p) as f64 / MICROS_PER_DAY as f64) as f32)
                .unwrap_or(0.0),
            age: birth
                .map(|b| ((last - b) as f64 / MICROS_PER_YEAR as f64) as f32)
                .unwrap_or(nan),
            codes,
            values,
        });
        prev = Some(last);
    }
    (row, steps)
}
