//! Model inputs in memory. In: a features folder (`tabular/` and `sequences/` shards written by
//! `ehr-risk features`) and, for training, the cohort's label folders. Out: a [`Dataset`], one
//! row per subject x prediction time in a compact flat layout (tabular values, then monthly
//! steps, then the codes and normalised values of each step), with, for training, each row's
//! time to event laid out as yearly intervals (the discrete-time hazard targets) and the boolean
//! status of every outcome x horizon (with a mask where censoring hides it). Read shard by shard
//! so scoring holds one shard at a time.

use crate::cohort::censoring;
use crate::cohort::labels::{LabelValue, Survival};
use crate::features::FeatureError;
use arrow::array::{Array, Float32Array, Int32Array, Int64Array, ListArray, StringArray};
use arrow::array::{RecordBatch, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Per-step numeric inputs besides the codes: ln(1 + gap days), ln(1 + days before the
/// prediction time), age / 100 (0 when unknown).
pub const STEP_INPUTS: usize = 3;

#[derive(Debug, Default, Clone)]
pub struct Dataset {
    pub keys: Vec<(i64, i64)>,
    pub split: Vec<String>,
    pub n_tab: usize,
    /// Raw tabular features, `n_tab` per row, NaN where missing.
    pub tab: Vec<f32>,
    /// Row r owns steps `step_off[r]..step_off[r + 1]`.
    pub step_off: Vec<usize>,
    pub step_x: Vec<[f32; STEP_INPUTS]>,
    /// Days before the prediction time of each step (for explanations' time windows).
    pub step_days: Vec<f32>,
    /// Step s owns codes `code_off[s]..code_off[s + 1]`.
    pub code_off: Vec<usize>,
    pub codes: Vec<i32>,
    pub vals: Vec<f32>,
    /// `n_out` (outcomes x horizons) per row: the status (1.0/0.0) and whether it is known.
    pub n_out: usize,
    pub labels: Vec<f32>,
    pub mask: Vec<f32>,
    /// `n_out` per row: the inverse probability of censoring of each known status (0 where
    /// censoring hides it), from the Kaplan-Meier of censoring within the row's split.
    pub ipcw: Vec<f64>,
    /// Hazard targets, `n_outcomes x intervals` per row (yearly intervals): the exposure without
    /// an event (1 for a whole year survived, the observed fraction of the year follow-up ends
    /// in, else 0), the outcome in the interval, death first in the interval.
    pub n_outcomes: usize,
    pub intervals: usize,
    pub exposure: Vec<f32>,
    pub event: Vec<f32>,
    pub death: Vec<f32>,
}

/// The 0-based yearly interval a time `x` years after the prediction time falls in: (k, k + 1],
/// the first one holding time 0 too.
pub fn interval_of(x: f64) -> usize {
    (x.ceil().max(1.0) as usize) - 1
}

/// One outcome's hazard targets over `intervals` yearly intervals: (exposure, event, death).
pub fn hazard_targets(s: &Survival, o: usize, intervals: usize) -> Vec<(f32, f32, f32)> {
    let mut v = vec![(0.0, 0.0, 0.0); intervals];
    if !s.at_risk[o] {
        return v;
    }
    let event = s.events[o];
    let death = s.death.filter(|&d| event.is_none_or(|e| e > d));
    for (k, slot) in v.iter_mut().enumerate() {
        let (lo, hi) = (k as f64, k as f64 + 1.0);
        if event.is_some_and(|e| interval_of(e) == k) {
            slot.1 = 1.0;
            break;
        }
        if death.is_some_and(|d| interval_of(d) == k) {
            slot.2 = 1.0;
            break;
        }
        if s.followup >= hi {
            slot.0 = 1.0;
        } else {
            slot.0 = (s.followup - lo).max(0.0) as f32;
            break;
        }
    }
    v
}

/// One row computed in memory: (subject, prediction time), tabular values, sequence steps.
pub type MemoryRow = ((i64, i64), Vec<f32>, Vec<crate::features::compute::Step>);

/// A step's numeric inputs ([`STEP_INPUTS`]) from its gap, days before the prediction time and
/// age (NaN when unknown).
pub fn step_inputs(gap_days: f32, days_before: f32, age: f32) -> [f32; STEP_INPUTS] {
    [
        gap_days.max(0.0).ln_1p() / 5.0,
        days_before.max(0.0).ln_1p() / 5.0,
        if age.is_nan() { 0.0 } else { age / 100.0 },
    ]
}

impl Dataset {
    /// Rows computed in memory (the point-of-care path): the same layout, and the same inputs
    /// bit for bit, as the rows read back from a features folder.
    pub fn from_rows(n_tab: usize, rows: Vec<MemoryRow>) -> Dataset {
        let mut d = Dataset {
            n_tab,
            step_off: vec![0],
            code_off: vec![0],
            ..Default::default()
        };
        for (key, tab, steps) in rows {
            assert_eq!(tab.len(), n_tab, "tabular row of the model's width");
            d.keys.push(key);
            d.split.push("serve".into());
            d.tab.extend(tab);
            for s in steps {
                d.step_x.push(step_inputs(s.gap_days, s.days_before, s.age));
                d.step_days.push(s.days_before);
                d.codes.extend(s.codes);
                d.vals.extend(s.values);
                d.code_off.push(d.codes.len());
            }
            d.step_off.push(d.step_x.len());
        }
        d
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn tab_row(&self, r: usize) -> &[f32] {
        &self.tab[r * self.n_tab..(r + 1) * self.n_tab]
    }

    fn append(&mut self, o: Dataset) {
        if self.n_tab == 0 {
            self.n_tab = o.n_tab;
        }
        let steps0 = self.step_x.len();
        let codes0 = self.codes.len();
        self.keys.extend(o.keys);
        self.split.extend(o.split);
        self.tab.extend(o.tab);
        if self.step_off.is_empty() {
            self.step_off.push(0);
        }
        self.step_off
            .extend(o.step_off.iter().skip(1).map(|x| x + steps0));
        self.step_x.extend(o.step_x);
        self.step_days.extend(o.step_days);
        if self.code_off.is_empty() {
            self.code_off.push(0);
        }
        self.code_off
            .extend(o.code_off.iter().skip(1).map(|x| x + codes0));
        self.codes.extend(o.codes);
        self.vals.extend(o.vals);
    }

    /// A new dataset of the given rows, in that order (labels included when attached).
    pub fn select(&self, rows: &[usize]) -> Dataset {
        let mut t = Dataset {
            n_tab: self.n_tab,
            n_out: self.n_out,
            n_outcomes: self.n_outcomes,
            intervals: self.intervals,
            step_off: vec![0],
            code_off: vec![0],
            ..Default::default()
        };
        for &r in rows {
            t.keys.push(self.keys[r]);
            t.split.push(self.split[r].clone());
            t.tab.extend_from_slice(self.tab_row(r));
            if self.n_out > 0 {
                let o = r * self.n_out..(r + 1) * self.n_out;
                t.labels.extend_from_slice(&self.labels[o.clone()]);
                t.mask.extend_from_slice(&self.mask[o.clone()]);
                t.ipcw.extend_from_slice(&self.ipcw[o]);
            }
            let w = self.n_outcomes * self.intervals;
            if w > 0 {
                let o = r * w..(r + 1) * w;
                t.exposure.extend_from_slice(&self.exposure[o.clone()]);
                t.event.extend_from_slice(&self.event[o.clone()]);
                t.death.extend_from_slice(&self.death[o]);
            }
            for s in self.step_off[r]..self.step_off[r + 1] {
                let c = self.code_off[s]..self.code_off[s + 1];
                t.step_x.push(self.step_x[s]);
                t.step_days.push(self.step_days[s]);
                t.codes.extend_from_slice(&self.codes[c.clone()]);
                t.vals.extend_from_slice(&self.vals[c]);
                t.code_off.push(t.codes.len());
            }
            t.step_off.push(t.step_x.len());
        }
        t
    }

    /// Attach each row's time to event (rows without one stay unlabelled): the status of
    /// every outcome at every horizon in `horizons` (outcome-major) and the hazard targets over
    /// `intervals` yearly intervals.
    pub fn attach_survival(
        &mut self,
        survival: &HashMap<(i64, i64), Survival>,
        n_outcomes: usize,
        horizons: &[u32],
        intervals: usize,
    ) {
        let n = self.len();
        self.n_out = n_outcomes * horizons.len();
        self.n_outcomes = n_outcomes;
        self.intervals = intervals;
        self.labels = vec![0.0; n * self.n_out];
        self.mask = vec![0.0; n * self.n_out];
        let w = n_outcomes * intervals;
        self.exposure = vec![0.0; n * w];
        self.event = vec![0.0; n * w];
        self.death = vec![0.0; n * w];
        for (r, k) in self.keys.iter().enumerate() {
            let Some(s) = survival.get(k) else { continue };
            for o in 0..n_outcomes {
                for (hi, &h) in horizons.iter().enumerate() {
                    let j = r * self.n_out + o * horizons.len() + hi;
                    match s.value(o, h as f64) {
                        LabelValue::True => (self.labels[j], self.mask[j]) = (1.0, 1.0),
                        LabelValue::False => self.mask[j] = 1.0,
                        LabelValue::Censored | LabelValue::ExcludedPrior => {}
                    }
                }
                for (k, (x, e, d)) in hazard_targets(s, o, intervals).into_iter().enumerate() {
                    let i = r * w + o * intervals + k;
                    (self.exposure[i], self.event[i], self.death[i]) = (x, e, d);
                }
            }
        }
        self.ipcw = vec![0.0; n * self.n_out];
        let rows: Vec<(Option<&Survival>, &str)> = (0..n)
            .map(|r| (survival.get(&self.keys[r]), self.split[r].as_str()))
            .collect();
        let hs: Vec<f64> = horizons.iter().map(|&h| h as f64).collect();
        for o in 0..n_outcomes {
            for (r, w) in censoring::grouped_weights(&rows, o, &hs)
                .into_iter()
                .enumerate()
            {
                for (hi, w) in w.into_iter().enumerate() {
                    let j = r * self.n_out + o * horizons.len() + hi;
                    self.ipcw[j] = if self.mask[j] > 0.0 { w } else { 0.0 };
                }
            }
        }
    }
}

/// The shard files of a features folder, in order: (tabular, sequences).
pub fn shard_files(features: &Path) -> Result<Vec<(PathBuf, PathBuf)>, FeatureError> {
    Ok(crate::features::tabular_files(features)?
        .into_iter()
        .map(|t| {
            let s = features
                .join("sequences")
                .join(t.file_name().expect("file"));
            (t, s)
        })
        .collect())
}

fn batches(p: &Path) -> Result<Vec<RecordBatch>, FeatureError> {
    let bad = |m: String| FeatureError::Cohort {
        path: p.display().to_string(),
        message: m,
    };
    let f = std::fs::File::open(p).map_err(|err| FeatureError::Io {
        path: p.display().to_string(),
        err,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(e.to_string()))?
        .build()
        .map_err(|e| bad(e.to_string()))?
        .map(|b| b.map_err(|e| bad(e.to_string())))
        .collect()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, p: &Path) -> Result<&'a T, FeatureError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| FeatureError::Cohort {
            path: p.display().to_string(),
            message: format!("column {name} missing or of the wrong type"),
        })
}

/// One step as read: (step index, step inputs, days before, codes, values).
type RawStep = (i32, [f32; STEP_INPUTS], f32, Vec<i32>, Vec<f32>);

/// Read one shard pair, keeping the rows for which `keep(subject, time, split)` is true.
/// `columns` must equal the tabular columns (after the keys and split).
pub fn read_shard(
    tabular: &Path,
    sequences: &Path,
    columns: &[String],
    keep: &dyn Fn(i64, i64, &str) -> bool,
) -> Result<Dataset, FeatureError> {
    let mut d = Dataset {
        n_tab: columns.len(),
        step_off: vec![0],
        code_off: vec![0],
        ..Default::default()
    };
    let mut wanted: HashMap<(i64, i64), usize> = HashMap::new();
    for b in batches(tabular)? {
        let names: Vec<&String> = b
            .schema_ref()
            .fields()
            .iter()
            .skip(3)
            .map(|f| f.name())
            .collect();
        if names.len() != columns.len() || names.iter().zip(columns).any(|(a, b)| *a != b) {
            return Err(FeatureError::Cohort {
                path: tabular.display().to_string(),
                message: "tabular columns differ from the ones the model was trained on".into(),
            });
        }
        let s = col::<Int64Array>(&b, "subject_id", tabular)?;
        let t = col::<TimestampMicrosecondArray>(&b, "prediction_time", tabular)?;
        let sp = col::<StringArray>(&b, "split", tabular)?;
        let cols: Vec<&Float32Array> = columns
            .iter()
            .map(|c| col::<Float32Array>(&b, c, tabular))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            if !keep(s.value(i), t.value(i), sp.value(i)) {
                continue;
            }
            wanted.insert((s.value(i), t.value(i)), d.keys.len());
            d.keys.push((s.value(i), t.value(i)));
            d.split.push(sp.value(i).to_string());
            d.tab.extend(
                cols.iter()
                    .map(|c| if c.is_null(i) { f32::NAN } else { c.value(i) }),
            );
        }
    }
    // Sequences: gather the steps per wanted row, then lay them out in row order.
    let mut per_row: Vec<Vec<RawStep>> = vec![Vec::new(); d.keys.len()];
    if !d.keys.is_empty() {
        if !sequences.exists() {
            return Err(FeatureError::Cohort {
                path: sequences.display().to_string(),
                message: format!(
                    "missing: {} has rows but no sequence shard beside it (rebuild the features)",
                    tabular.display()
                ),
            });
        }
        for b in batches(sequences)? {
            let s = col::<Int64Array>(&b, "subject_id", sequences)?;
            let t = col::<TimestampMicrosecondArray>(&b, "prediction_time", sequences)?;
            let step = col::<Int32Array>(&b, "step", sequences)?;
            let days = col::<Float32Array>(&b, "days_before", sequences)?;
            let gap = col::<Float32Array>(&b, "gap_days", sequences)?;
            let age = col::<Float32Array>(&b, "age", sequences)?;
            let codes = col::<ListArray>(&b, "codes", sequences)?;
            let vals = col::<ListArray>(&b, "values", sequences)?;
            for i in 0..b.num_rows() {
                let Some(&r) = wanted.get(&(s.value(i), t.value(i))) else {
                    continue;
                };
                let c = codes.value(i);
                let c = c.as_any().downcast_ref::<Int32Array>().ok_or_else(|| {
                    FeatureError::Cohort {
                        path: sequences.display().to_string(),
                        message: "codes are not int32 lists".into(),
                    }
                })?;
                let v = vals.value(i);
                let v = v.as_any().downcast_ref::<Float32Array>().ok_or_else(|| {
                    FeatureError::Cohort {
                        path: sequences.display().to_string(),
                        message: "values are not float32 lists".into(),
                    }
                })?;
                let a = if age.is_null(i) {
                    f32::NAN
                } else {
                    age.value(i)
                };
                per_row[r].push((
                    step.value(i),
                    step_inputs(gap.value(i), days.value(i), a),
                    days.value(i),
                    c.values().to_vec(),
                    v.values().to_vec(),
                ));
            }
        }
    }
    for mut steps in per_row {
        steps.sort_by_key(|s| s.0);
        for (_, x, days, c, v) in steps {
            d.step_x.push(x);
            d.step_days.push(days);
            d.codes.extend(c);
            d.vals.extend(v);
            d.code_off.push(d.codes.len());
        }
        d.step_off.push(d.step_x.len());
    }
    Ok(d)
}

/// Read every shard of a features folder, keeping the rows `keep` accepts.
pub fn read_all(
    features: &Path,
    columns: &[String],
    keep: &(dyn Fn(i64, i64, &str) -> bool + Sync),
) -> Result<Dataset, FeatureError> {
    use rayon::prelude::*;
    let parts: Vec<Result<Dataset, FeatureError>> = shard_files(features)?
        .par_iter()
        .map(|(t, s)| read_shard(t, s, columns, keep))
        .collect();
    let mut d = Dataset::default();
    for p in parts {
        d.append(p?);
    }
    if d.step_off.is_empty() {
        d.step_off.push(0);
        d.code_off.push(0);
    }
    d.n_tab = columns.len();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surv(followup: f64, death: Option<f64>, event: Option<f64>) -> Survival {
        Survival {
            followup,
            death,
            events: vec![event],
            at_risk: vec![true],
            extract_end: f64::INFINITY,
        }
    }

    #[test]
    fn intervals_are_half_open_on_the_left() {
        assert_eq!(interval_of(0.0), 0);
        assert_eq!(interval_of(0.3), 0);
        assert_eq!(interval_of(1.0), 0);
        assert_eq!(interval_of(1.0001), 1);
        assert_eq!(interval_of(9.5), 9);
    }

    /// Every year followed without an event counts whole, the year follow-up ends in by its
    /// fraction; the outcome or death ends the row's exposure in its year; death after the
    /// outcome does not compete with it.
    #[test]
    fn hazard_targets_follow_the_time_to_event() {
        let t = |s: &Survival| hazard_targets(s, 0, 4);
        assert_eq!(
            t(&surv(2.5, None, None)),
            vec![
                (1.0, 0.0, 0.0),
                (1.0, 0.0, 0.0),
                (0.5, 0.0, 0.0),
                (0.0, 0.0, 0.0)
            ]
        );
        assert_eq!(
            t(&surv(9.0, None, Some(1.5))),
            vec![
                (1.0, 0.0, 0.0),
                (0.0, 1.0, 0.0),
                (0.0, 0.0, 0.0),
                (0.0, 0.0, 0.0)
            ]
        );
        assert_eq!(
            t(&surv(3.2, Some(3.2), None)),
            vec![
                (1.0, 0.0, 0.0),
                (1.0, 0.0, 0.0),
                (1.0, 0.0, 0.0),
                (0.0, 0.0, 1.0)
            ]
        );
        assert_eq!(t(&surv(3.2, Some(3.2), Some(0.5)))[0], (0.0, 1.0, 0.0));
        let mut excluded = surv(9.0, None, None);
        excluded.at_risk = vec![false];
        assert_eq!(t(&excluded), vec![(0.0, 0.0, 0.0); 4]);
        // Past the last interval nothing is counted: followed 9 years, 4 intervals.
        assert_eq!(t(&surv(9.0, None, Some(6.0))), vec![(1.0, 0.0, 0.0); 4]);
    }
}
