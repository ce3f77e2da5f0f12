//! MEDS dataset reader: `data/**/*.parquet` of any MEDS 0.3/0.4 dataset (ours included).
//! Every row becomes one event; subjects are identified as (`meds:<dataset_name>`, subject_id),
//! and codes of known shapes from other ETLs (`DIAGNOSIS//ICD//10//I214`) are rewritten to our
//! vocabulary spelling (`ICD10CM//I21.4`); all other codes are kept as they are. Rows pass the
//! same checks as every other source's (time window, finite values, units and ranges) or are
//! quarantined with the reason; `available_time` and `coded_at_discharge` are kept when the
//! dataset has them (ours), else each event is known at its time.

use super::{Chunk, Ctx, Identity, IngestError, Reject, measurement};
use crate::schema::codes::from_meds;
use crate::schema::{Event, from_batch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The dataset name from `metadata/dataset.json`, else the folder name.
pub fn dataset_name(root: &Path) -> String {
    std::fs::read_to_string(root.join("metadata/dataset.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("dataset_name")
                .and_then(|n| n.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| {
            root.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// All data shards, sorted.
pub fn shards(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("data")];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// The checks every source's events pass: a code, times inside the plausibility window (an
/// availability no earlier than the time), a finite value, canonical units and plausible
/// ranges for measured concepts.
fn checked(ctx: &Ctx, mut e: Event) -> Result<Event, Reject> {
    if e.code.trim().is_empty() {
        return Err(Reject::missing("code"));
    }
    e.code = from_meds(&e.code);
    let shown = |t: i64| super::time::format_micros(t);
    for (field, t) in [
        ("time", e.time),
        ("end_time", e.end_time),
        ("available_time", e.available_time),
    ] {
        if let Some(t) = t {
            ctx.check_time(field, t, &shown(t), false)?;
        }
    }
    if let (Some(t), Some(a)) = (e.time, e.available_time)
        && a < t
    {
        return Err(Reject::new(
            "available_time",
            "bad_date",
            shown(a),
            "an availability no earlier than the event's time",
        ));
    }
    if let Some(v) = e.numeric_value {
        if !v.is_finite() {
            return Err(Reject::new(
                "numeric_value",
                "bad_number",
                v.to_string(),
                "a finite number",
            ));
        }
        let unit = e.unit.take();
        e = measurement(e, "numeric_value", v as f64, unit.as_deref())?;
    }
    Ok(e)
}

/// Read one MEDS shard; subjects are registered as they are seen (MEDS has no person table).
pub fn read_shard(
    path: &Path,
    dataset: &str,
    ctx: &Ctx,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let perr = |e: &dyn std::fmt::Display| IngestError::Parquet {
        path: path.to_path_buf(),
        err: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|err| IngestError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| perr(&e))?
        .with_batch_size(65536)
        .build()
        .map_err(|e| perr(&e))?;
    let system = format!("meds:{dataset}");
    let mut row = 0u64;
    let mut seen: HashSet<i64> = HashSet::new();
    for batch in reader {
        let batch = batch.map_err(|e| perr(&e))?;
        let events = from_batch(&batch).map_err(|e| IngestError::Schema {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut c = Chunk::default();
        c.tally.rows_read = batch.num_rows() as u64;
        for e in events {
            row += 1;
            let raw = format!("{:?}", e);
            let ident = Identity::new(&system, &e.subject_id.to_string());
            let mut e = match checked(ctx, e) {
                Ok(e) => e,
                Err(rej) => {
                    c.reject(ctx.file, row, &raw, rej);
                    continue;
                }
            };
            if seen.insert(ident.subject_id) {
                c.identities.push(ident.clone());
            }
            e.subject_id = ident.subject_id;
            // Another lake's record links mean nothing here: the identity is this subject's.
            e.source_subject_id = None;
            e.source = std::borrow::Cow::Borrowed("meds");
            e.provenance = ctx.provenance(row);
            c.accept(vec![e]);
        }
        sink(c)?;
    }
    Ok(())
}
