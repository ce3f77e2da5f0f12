//! `lake stats`: a summary of what the lake holds, computed with polars' lazy engine over the
//! shards (so it streams whatever the lake's size): events, subjects, time span, events per
//! source and the most frequent codes; plus rejected rows by reason from the manifest.

use super::{Lake, LakeError};
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Stats {
    pub events: u64,
    pub subjects: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub by_source: Vec<(String, u64)>,
    pub top_codes: Vec<(String, u64)>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub inputs: usize,
    pub runs: usize,
}

fn perr(lake: &Lake) -> impl Fn(PolarsError) -> LakeError + '_ {
    move |e| LakeError::Corrupt {
        path: lake.root.clone(),
        message: e.to_string(),
    }
}

fn pairs(df: &DataFrame, key: &str) -> PolarsResult<Vec<(String, u64)>> {
    let k = df.column(key)?.str()?.clone();
    let n = df.column("n")?.cast(&DataType::UInt64)?;
    let n = n.u64()?;
    Ok((0..df.height())
        .map(|i| (k.get(i).unwrap_or("").to_string(), n.get(i).unwrap_or(0)))
        .collect())
}

pub fn stats(lake: &Lake, top: usize) -> Result<Stats, LakeError> {
    let mut rejected = BTreeMap::new();
    for i in &lake.manifest.inputs {
        for (k, v) in &i.tally.rejected_by_reason {
            *rejected.entry(k.clone()).or_default() += v;
        }
    }
    let files = lake.shard_files()?;
    if files.is_empty() {
        return Ok(Stats {
            events: 0,
            subjects: 0,
            first_time: None,
            last_time: None,
            by_source: vec![],
            top_codes: vec![],
            rejected_by_reason: rejected,
            inputs: lake.manifest.inputs.len(),
            runs: lake.manifest.runs.len(),
        });
    }
    let glob = format!("{}/data/*.parquet", lake.root.display());
    let lf = LazyFrame::scan_parquet(PlRefPath::new(glob.as_str()), ScanArgsParquet::default())
        .map_err(perr(lake))?;
    let summary = lf
        .clone()
        .select([
            len().alias("events"),
            col("subject_id").n_unique().alias("subjects"),
            col("time")
                .min()
                .dt()
                .to_string("%Y-%m-%dT%H:%M:%S")
                .alias("first"),
            col("time")
                .max()
                .dt()
                .to_string("%Y-%m-%dT%H:%M:%S")
                .alias("last"),
        ])
        .collect()
        .map_err(perr(lake))?;
    let get_u = |name: &str| -> u64 {
        summary
            .column(name)
            .ok()
            .and_then(|c| c.cast(&DataType::UInt64).ok())
            .and_then(|c| c.u64().ok().and_then(|a| a.get(0)))
            .unwrap_or(0)
    };
    let get_s = |name: &str| -> Option<String> {
        summary
            .column(name)
            .ok()
            .and_then(|c| c.str().ok().and_then(|a| a.get(0).map(String::from)))
    };
    let desc = SortMultipleOptions::default().with_order_descending_multi([true, false]);
    let by_source = lf
        .clone()
        .group_by([col("source")])
        .agg([len().alias("n")])
        .sort_by_exprs([col("n"), col("source")], desc.clone())
        .collect()
        .map_err(perr(lake))?;
    let codes = lf
        .group_by([col("code")])
        .agg([len().alias("n")])
        .sort_by_exprs([col("n"), col("code")], desc)
        .limit(top as IdxSize)
        .collect()
        .map_err(perr(lake))?;
    Ok(Stats {
        events: get_u("events"),
        subjects: get_u("subjects"),
        first_time: get_s("first"),
        last_time: get_s("last"),
        by_source: pairs(&by_source, "source").map_err(perr(lake))?,
        top_codes: pairs(&codes, "code").map_err(perr(lake))?,
        rejected_by_reason: rejected,
        inputs: lake.manifest.inputs.len(),
        runs: lake.manifest.runs.len(),
    })
}
