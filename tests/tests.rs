//! One integration-test binary, a module per area (ripgrep's layout).

#[path = "it/cli.rs"]
mod cli;
#[path = "it/clock.rs"]
mod clock;
#[path = "it/cohort.rs"]
mod cohort;
#[path = "it/common.rs"]
mod common;
#[path = "it/equations.rs"]
mod equations;
#[path = "it/exports.rs"]
mod exports;
#[path = "it/gru.rs"]
mod gru;
#[path = "it/ingest_bad.rs"]
mod ingest_bad;
#[path = "it/ingest_real.rs"]
mod ingest_real;
#[path = "it/lake_ops.rs"]
mod lake_ops;
#[path = "it/laws.rs"]
mod laws;
#[path = "it/link.rs"]
mod link;
#[path = "it/models.rs"]
mod models;
#[path = "it/outputs.rs"]
mod outputs;
#[path = "it/serve.rs"]
mod serve;
#[path = "it/synth.rs"]
mod synth;
