//! Command-line types (clap derive), one file per subcommand; no logic lives here.

pub mod cohort;
pub mod ingest;
pub mod lake;
pub mod link;
pub mod model;
pub mod serve;
pub mod synth;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ehr-risk",
    version,
    about = "Heart-attack and stroke risk from fragmented EHR exports"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output (-q hides progress bars and summaries).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Worker threads (default: all cores).
    #[arg(long, env = "EHR_RISK_THREADS", global = true)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest FHIR, Synthea CSV, OMOP CDM, MIMIC-IV or MEDS exports into a MEDS event lake.
    Ingest(ingest::IngestArgs),
    /// Inspect a lake.
    Lake(lake::LakeArgs),
    /// Identity resolution: which source records are one person (Fellegi-Sunter with EM,
    /// review queue, clerical decisions).
    Link(link::LinkArgs),
    /// Generate a synthetic population fragmented across FHIR, OMOP and Synthea exports, with
    /// ground-truth risk.
    Synth(synth::SynthArgs),
    /// Labels for a task (schemas/tasks/*.toml) in the MEDS label schema, with a summary.
    Cohort(cohort::CohortArgs),
    /// Point-in-time features (tabular and sequences) for a cohort's prediction times.
    Features(cohort::FeaturesArgs),
    /// Leakage audit: perturb events after each prediction time; features must not change.
    Audit(cohort::AuditArgs),
    /// Train the recurrent network (with calibration and the logistic baseline) into a model
    /// directory.
    Train(model::TrainArgs),
    /// Score every prediction time of a features folder with a trained model.
    Score(model::ScoreArgs),
    /// Every model side by side on a held-out split: discrimination with intervals,
    /// calibration, subgroups, the oracle on synthetic data.
    Evaluate(model::EvaluateArgs),
    /// A self-contained HTML report: cohort, risk distributions, ROC and calibration per model,
    /// subgroups, recommendation counts.
    Report(model::ReportArgs),
    /// A CDS Hooks 2.0 service (patient-view): a risk card when a clinician opens the chart,
    /// scored by the batch path's model, rules and trial effects; JWT-authenticated.
    Serve(serve::ServeArgs),
    /// The main job on the embedded default: a synthetic cohort, ingested and validated.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its inputs and lake.
    #[arg(long, default_value = "out/demo", env = "EHR_RISK_DEMO_OUT")]
    pub out: PathBuf,
    /// Size of the synthetic demo cohort.
    #[arg(long, default_value_t = 2000)]
    pub patients: u64,
    /// Seed of the synthetic demo cohort (and of training).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Training epochs of the demo model.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
}
