//! The high-risk worklist. In: the assessments of each subject's latest prediction time, shard
//! by shard, and how each subject is known to the receiving system ([`super::fhir::SubjectRefs`]).
//! Out: `worklist.csv`, the subjects at the run's most recent prediction time whose risk is at or
//! above the threshold, highest risk first, with the receiving system's patient id, the risks,
//! the tier, the factors as a clinician reads them (treatments apart, as markers) and the
//! recommendations with the trials' what-if. Candidates are spilled to disk as rendered records
//! and memory keeps a small index, so a million subjects do not have to fit.

use super::assess::{Assessment, describe};
use super::fhir::SubjectRefs;
use crate::explain::clinician_text;
use crate::model::bundle::{Model, ModelError};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where a candidate's rendered record lies in the spill file.
struct Item {
    any_risk: f64,
    subject_id: i64,
    prediction_time: i64,
    offset: u64,
    len: u32,
}

pub struct Worklist {
    threshold: f64,
    top: usize,
    spill_path: PathBuf,
    spill: BufWriter<std::fs::File>,
    spilled: u64,
    index: Vec<Item>,
}

fn io(p: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Io {
        path: p.display().to_string(),
        message,
    }
}

impl Worklist {
    pub fn new(out: &Path, threshold: f64, top: usize) -> Result<Worklist, ModelError> {
        let spill_path = out.join("worklist.partial");
        let spill = BufWriter::new(
            std::fs::File::create(&spill_path).map_err(|e| io(&spill_path)(e.to_string()))?,
        );
        Ok(Worklist {
            threshold,
            top,
            spill_path,
            spill,
            spilled: 0,
            index: Vec::new(),
        })
    }

    /// Consider one subject's latest assessment.
    pub fn push(
        &mut self,
        model: &Model,
        a: &Assessment,
        refs: &SubjectRefs,
    ) -> Result<(), ModelError> {
        if a.any_risk < self.threshold {
            return Ok(());
        }
        let line = serde_json::to_string(&fields(model, a, refs, self.top)).expect("json") + "\n";
        self.spill
            .write_all(line.as_bytes())
            .map_err(|e| io(&self.spill_path)(e.to_string()))?;
        self.index.push(Item {
            any_risk: a.any_risk,
            subject_id: a.subject_id,
            prediction_time: a.prediction_time,
            offset: self.spilled,
            len: line.len() as u32,
        });
        self.spilled += line.len() as u64;
        Ok(())
    }

    /// Write `worklist.csv` (the run's most recent prediction time only, highest risk first);
    /// returns how many subjects it lists.
    pub fn finish(
        mut self,
        p: &Path,
        model: &Model,
        refs: &SubjectRefs,
    ) -> Result<u64, ModelError> {
        self.spill
            .flush()
            .map_err(|e| io(&self.spill_path)(e.to_string()))?;
        // The worklist is for now: the most recent prediction time of the run.
        let now = self.index.iter().map(|a| a.prediction_time).max();
        self.index.retain(|a| Some(a.prediction_time) == now);
        self.index.sort_by(|a, b| {
            b.any_risk
                .total_cmp(&a.any_risk)
                .then(a.subject_id.cmp(&b.subject_id))
        });
        let mut w = csv::Writer::from_path(p).map_err(|e| io(p)(e.to_string()))?;
        let h = model
            .manifest
            .horizons_years
            .iter()
            .max()
            .copied()
            .unwrap_or(0);
        let mut header = vec![
            "rank".to_string(),
            "subject_id".into(),
            refs.worklist_column(),
            "prediction_time".into(),
            format!("any_risk_{h}y"),
        ];
        header.extend(
            model
                .manifest
                .outcomes
                .iter()
                .map(|o| format!("{o}_risk_{h}y")),
        );
        header.extend(["tier", "top_factors", "recommendations"].map(String::from));
        w.write_record(&header).map_err(|e| io(p)(e.to_string()))?;
        let sp = &self.spill_path;
        let mut f = std::fs::File::open(sp).map_err(|e| io(sp)(e.to_string()))?;
        let mut buf = Vec::new();
        for (i, item) in self.index.iter().enumerate() {
            buf.resize(item.len as usize, 0);
            f.seek(SeekFrom::Start(item.offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| io(sp)(e.to_string()))?;
            let fields: Vec<String> =
                serde_json::from_slice(&buf).map_err(|e| io(sp)(e.to_string()))?;
            let mut rec = vec![(i + 1).to_string()];
            rec.extend(fields);
            w.write_record(&rec).map_err(|e| io(p)(e.to_string()))?;
        }
        w.flush().map_err(|e| io(p)(e.to_string()))?;
        drop(f);
        std::fs::remove_file(sp).map_err(|e| io(sp)(e.to_string()))?;
        Ok(self.index.len() as u64)
    }
}

/// A worklist record without its rank.
fn fields(model: &Model, a: &Assessment, refs: &SubjectRefs, top: usize) -> Vec<String> {
    let t = chrono::DateTime::from_timestamp_micros(a.prediction_time)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let mut rec = vec![
        a.subject_id.to_string(),
        refs.worklist_value(a.subject_id),
        t,
        format!("{:.4}", a.any_risk),
    ];
    rec.extend(
        model
            .manifest
            .outcomes
            .iter()
            .map(|o| format!("{:.4}", a.risk[o])),
    );
    rec.push(a.tier.to_string());
    rec.push(
        a.factors
            .iter()
            .map(|(o, fs)| format!("{o}: {}", clinician_text(fs, top)))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    rec.push(
        a.recommendations
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(" | "),
    );
    rec
}
