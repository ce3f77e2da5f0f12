//! `ehr-risk ingest` arguments.

use crate::ingest::Format;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The lake folder (created if missing).
    #[arg(long, env = "EHR_RISK_LAKE")]
    pub lake: PathBuf,
    /// Export files or folders; each one's format is detected.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Force the input format instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Exit with status 1 when an input rejects more than this fraction of the rows it
    /// judged (rejected / (accepted + rejected)); an input that accepts nothing always fails.
    #[arg(long, env = "EHR_RISK_MAX_REJECT_RATE", default_value_t = crate::ingest::verdict::DEFAULT_MAX_REJECT_RATE)]
    pub max_reject_rate: f64,
    /// The inputs' dates are shifted on purpose (MIMIC, its OMOP conversions): no future-event
    /// check for them. Recorded with each input in the manifest.
    #[arg(long)]
    pub dates_shifted: bool,
    /// Read OMOP source values whose vocabulary the export does not give (no known
    /// *_source_concept_id) as ICD: all ICD-9-CM, all ICD-10-CM, or told apart by shape
    /// (`icd`; V and E8 codes exist in both and stay unresolved). Recorded in the manifest.
    #[arg(long, value_enum)]
    pub source_vocabulary: Option<crate::ingest::SourceVocabulary>,
    /// Time zone for timestamps written without an offset (IANA name).
    #[arg(long, default_value = "UTC", env = "EHR_RISK_TZ")]
    pub tz: String,
    /// Subject shards of a new lake (an existing lake keeps its own).
    #[arg(long, default_value_t = 32)]
    pub shards: usize,
    /// Quarantine events later than this (ISO date/time; default: now + 1 day).
    #[arg(long)]
    pub max_event_time: Option<String>,
    /// Events buffered in memory before spilling to disk.
    #[arg(long, default_value_t = 250_000, env = "EHR_RISK_BUFFER_EVENTS")]
    pub buffer_events: usize,
    /// Print the ingest report as JSON on stdout.
    /// Identity resolution spec (default: the embedded schemas/linkage.toml).
    #[arg(long)]
    pub link_spec: Option<PathBuf>,
    /// Join records only by identifier (system, value): no identity resolution.
    #[arg(long, conflicts_with = "link_spec")]
    pub no_link: bool,
    #[arg(long)]
    pub json: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    pub show_config: bool,
}
