//! ehr-risk: fragmented EHR exports in, heart-attack and stroke risk out.
//!
//! ```text
//! FHIR NDJSON/Bundles ─┐
//! Synthea CSV ─────────┤           lake (MEDS 0.4 + extensions)
//! OMOP CDM CSV ────────┼─ ingest ─► data/shard-*.parquet, metadata/, quarantine/, manifest.json
//! MIMIC-IV hosp ───────┤
//! MEDS datasets ───────┘
//! ```
//! Stages in pipeline order: [`schema`] (the canonical event and vocabularies), [`ingest`]
//! (one reader per source format), [`lake`] (the event store on disk).

pub mod cli;
pub mod cohort;
pub mod commands;
pub mod evaluate;
pub mod explain;
pub mod features;
pub mod ingest;
pub mod lake;
pub mod link;
pub mod model;
pub mod recommend;
pub mod report;
pub mod rng;
pub mod schema;
pub mod score;
pub mod serve;
pub mod synth;
