//! `manifest.json`: what the lake was built from. Every input file with its content hash, size,
//! format and row counts, and every run. A file whose hash is already here is not read again,
//! which is what makes re-running the same export a no-op and a new export incremental.

use crate::schema::records::Tally;
use serde::{Deserialize, Serialize};

/// Version 2 added `available_time` and `coded_at_discharge` to the events; a lake of another
/// version is refused (re-ingest its exports) rather than read with a clock it does not have.
pub const LAKE_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub lake_format_version: u32,
    /// Number of subject shards (fixed when the lake is created).
    pub shards: usize,
    pub inputs: Vec<InputRecord>,
    pub runs: Vec<RunRecord>,
    /// Events in each shard file, as committed: a deleted or truncated shard is an error when
    /// read, not an empty shard. (Lakes written before this have none recorded.)
    #[serde(default)]
    pub shard_rows: std::collections::BTreeMap<usize, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    pub path: String,
    /// BLAKE3 of the file's bytes.
    pub blake3: String,
    pub bytes: u64,
    pub format: String,
    pub table: String,
    /// Short id used in event provenance (`<file_id>:<row>`).
    pub file_id: String,
    pub run_id: String,
    pub tally: Tally,
    /// Exact duplicate events from this file that were not written (already present).
    pub duplicates: u64,
    /// What the input was read under (shifted dates, vocabulary of bare source values).
    #[serde(default)]
    pub policy: crate::schema::records::InputPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub run_id: String,
    pub engine_version: String,
    /// Hash of the resolved ingest configuration.
    pub config_hash: String,
    pub files_read: usize,
    pub files_already_ingested: usize,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub events_produced: u64,
    pub duplicates: u64,
    pub events_written: u64,
    pub quarantine_file: Option<String>,
}

impl Manifest {
    pub fn new(shards: usize) -> Manifest {
        Manifest {
            lake_format_version: LAKE_FORMAT_VERSION,
            shards,
            inputs: Vec::new(),
            runs: Vec::new(),
            shard_rows: Default::default(),
        }
    }
    pub fn has_hash(&self, sha: &str) -> bool {
        self.inputs.iter().any(|i| i.blake3 == sha)
    }
}
