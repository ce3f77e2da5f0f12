//! `lake validate`: checks every invariant the lake promises, and lists each breach. In: a lake
//! folder. Out: a report with counts and problems (empty means valid). Checked: shard schemas
//! are exactly the lake schema; each subject lives in one shard, the shard its id hashes to,
//! with its rows contiguous and sorted by time (nulls first); no exact duplicate events; every
//! code is in `metadata/codes.parquet`; every subject has a split; the manifest's row counts add
//! up; every quarantine file the manifest names exists; every shard the manifest records is
//! there with the number of events it records.

use super::write::{read_codes, read_splits};
use super::{Lake, LakeError, shard_of};
use crate::schema::event_schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Serialize, Default)]
pub struct Validation {
    pub shards: usize,
    pub events: u64,
    pub subjects: u64,
    pub codes: u64,
    pub problems: Vec<String>,
}

impl Validation {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn validate(lake: &Lake) -> Result<Validation, LakeError> {
    let mut v = Validation::default();
    let mut subjects_seen: HashMap<i64, usize> = HashMap::new();
    let codes = read_codes(&lake.root.join("metadata/codes.parquet"))?;
    let mut missing_codes: HashSet<String> = HashSet::new();
    for (i, p) in (0..lake.manifest.shards).map(|i| (i, lake.shard_path(i))) {
        let recorded = lake.manifest.shard_rows.get(&i).copied();
        if !p.exists() {
            if let Some(n) = recorded.filter(|&n| n > 0) {
                v.problems.push(format!(
                    "{}: missing; the manifest records {n} events in it",
                    p.display()
                ));
            }
            continue;
        }
        v.shards += 1;
        let f = std::fs::File::open(&p).map_err(super::io(&p))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| LakeError::Corrupt {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let schema = b.schema().clone();
        let want = event_schema();
        for (fw, fg) in want.fields().iter().zip(schema.fields()) {
            if fw.name() != fg.name() || fw.data_type() != fg.data_type() {
                v.problems.push(format!(
                    "{}: column {} is {} {:?}, expected {} {:?}",
                    p.display(),
                    fg.name(),
                    fg.name(),
                    fg.data_type(),
                    fw.name(),
                    fw.data_type()
                ));
            }
        }
        if schema.fields().len() != want.fields().len() {
            v.problems.push(format!(
                "{}: {} columns, expected {}",
                p.display(),
                schema.fields().len(),
                want.fields().len()
            ));
        }
        let events = super::read_events(&p)?;
        match recorded {
            Some(n) if n != events.len() as u64 => v.problems.push(format!(
                "{}: holds {} events, the manifest records {n}",
                p.display(),
                events.len()
            )),
            None if !lake.manifest.shard_rows.is_empty() => v
                .problems
                .push(format!("{}: not recorded in the manifest", p.display())),
            _ => {}
        }
        let mut prev: Option<&crate::schema::Event> = None;
        let mut closed: HashSet<i64> = HashSet::new();
        // Problems name the file and the row (0-based, in file order): where to look, never who.
        for (row, e) in events.iter().enumerate() {
            v.events += 1;
            if shard_of(e.subject_id, lake.manifest.shards) != i {
                v.problems.push(format!(
                    "{} row {row}: the subject belongs in shard {}",
                    p.display(),
                    shard_of(e.subject_id, lake.manifest.shards)
                ));
            }
            if !codes.contains_key(&e.code) {
                missing_codes.insert(e.code.clone());
            }
            match (e.time, e.available_time) {
                (Some(t), Some(a)) if a < t => v.problems.push(format!(
                    "{} row {row}: available_time is before time",
                    p.display()
                )),
                (Some(_), None) => v.problems.push(format!(
                    "{} row {row}: a timed event without available_time",
                    p.display()
                )),
                _ => {}
            }
            if let Some(pv) = prev {
                if pv.subject_id != e.subject_id {
                    closed.insert(pv.subject_id);
                    if closed.contains(&e.subject_id) {
                        v.problems.push(format!(
                            "{} row {row}: the subject's rows are not contiguous",
                            p.display()
                        ));
                    }
                } else {
                    let ordered = match (pv.time, e.time) {
                        (Some(a), Some(b)) => a <= b,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                    if !ordered {
                        v.problems.push(format!(
                            "{} row {row}: the subject's rows are not sorted by time (nulls first)",
                            p.display()
                        ));
                    }
                    if pv.same_fact(e) {
                        v.problems.push(format!(
                            "{} row {row}: an exact duplicate of the row before ({})",
                            p.display(),
                            e.code
                        ));
                    }
                }
            }
            if let Some(other) = subjects_seen.insert(e.subject_id, i)
                && other != i
            {
                v.problems.push(format!(
                    "{} row {row}: a subject also in shard {other}",
                    p.display()
                ));
            }
            prev = Some(e);
        }
    }
    v.subjects = subjects_seen.len() as u64;
    v.codes = codes.len() as u64;
    let mut mc: Vec<_> = missing_codes.into_iter().collect();
    mc.sort();
    for c in mc.iter().take(20) {
        v.problems.push(format!(
            "code {c} is used but missing from metadata/codes.parquet"
        ));
    }
    let splits = read_splits(&lake.root.join("metadata/subject_splits.parquet"))?;
    let with_split: HashSet<i64> = splits.iter().map(|s| s.0).collect();
    let no_split = subjects_seen
        .keys()
        .filter(|s| !with_split.contains(s))
        .count();
    if no_split > 0 {
        v.problems.push(format!(
            "{no_split} subjects have no split in metadata/subject_splits.parquet"
        ));
    }
    for (s, name) in &splits {
        if !["train", "tuning", "held_out"].contains(&name.as_str()) {
            v.problems
                .push(format!("subject {s} has unknown split {name:?}"));
        }
    }
    for inp in &lake.manifest.inputs {
        if !inp.tally.balanced() {
            v.problems.push(format!(
                "manifest: {} rows do not add up ({:?})",
                inp.path, inp.tally
            ));
        }
    }
    for r in &lake.manifest.runs {
        if let Some(q) = &r.quarantine_file
            && !lake.root.join(q).exists()
        {
            v.problems
                .push(format!("manifest names {q}, which is missing"));
        }
    }
    if !lake.root.join("metadata/dataset.json").exists() {
        v.problems.push("metadata/dataset.json is missing".into());
    }
    Ok(v)
}
