//! `ehr-risk cohort`, `features` and `audit` arguments.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CohortArgs {
    #[arg(long, env = "EHR_RISK_LAKE")]
    pub lake: PathBuf,
    /// Built-in task name or a task TOML file (code sets from ../codesets/ beside it).
    #[arg(long, default_value = "mi_stroke")]
    pub task: String,
    /// Output folder (labels/, cohort/, summary.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// What features are computed from: shared by `features` and `audit`.
#[derive(Debug, Args)]
pub struct FeatureInputs {
    #[arg(long, env = "EHR_RISK_LAKE")]
    pub lake: PathBuf,
    /// The cohort folder written by `ehr-risk cohort`.
    #[arg(long)]
    pub cohort: PathBuf,
    #[arg(long, default_value = "mi_stroke")]
    pub task: String,
    /// Feature definitions (default: the built-in schemas/features.toml).
    #[arg(long)]
    pub spec: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub inputs: FeatureInputs,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub inputs: FeatureInputs,
    /// How many prediction times to perturb and recompute.
    #[arg(long, default_value_t = 500)]
    pub sample: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
