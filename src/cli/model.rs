//! `ehr-risk train`, `score` and `evaluate` arguments.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The features folder written by `ehr-risk features`.
    #[arg(long)]
    pub features: PathBuf,
    /// The cohort folder (labels/) the features were built for.
    #[arg(long)]
    pub cohort: PathBuf,
    #[arg(long, default_value = "mi_stroke")]
    pub task: String,
    /// The model directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// A GRU configuration (config.json of an earlier model, or a subset of its fields).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides the configuration's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides the configuration's maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// "cpu" (default) or "cuda".
    #[arg(long)]
    pub device: Option<String>,
    /// Overrides the configuration's cap on training rows (0 = all).
    #[arg(long)]
    pub max_train_rows: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A model directory written by `ehr-risk train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Features built with the model's spec, task and vocabulary.
    #[arg(long)]
    pub features: PathBuf,
    /// Output folder (scores.parquet).
    #[arg(long)]
    pub out: PathBuf,
    /// The lake the features were built from: its subject map says how each patient is known
    /// to the systems that receive the FHIR RiskAssessments and the worklist.
    #[arg(long)]
    pub lake: Option<PathBuf>,
    /// Write RiskAssessments for this source system only (a subject map system, e.g.
    /// `patient-id` for source FHIR Patient ids); without it, one per system that knows the
    /// patient.
    #[arg(long)]
    pub fhir_target: Option<String>,
    /// Only each subject's latest prediction time.
    #[arg(long)]
    pub latest: bool,
    /// Also write scores.csv.
    #[arg(long)]
    pub csv: bool,
    /// Which prediction times get explanations (integrated gradients) and what-if risks.
    #[arg(long, value_enum, default_value = "latest")]
    pub explain: crate::score::Explain,
    /// Recommendation rules folder (default: the built-in schemas/rules).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Worklist: latest risk of MI or stroke at the reference horizon at or above this.
    #[arg(long, default_value_t = 0.20)]
    pub worklist_threshold: f64,
    /// Lower bounds of the borderline, intermediate and high tiers (reference-horizon risk).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [0.05, 0.075, 0.20])]
    pub tiers: Vec<f64>,
    /// Factors listed per outcome.
    #[arg(long, default_value_t = 5)]
    pub top_factors: usize,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The cohort folder (labels/).
    #[arg(long)]
    pub cohort: PathBuf,
    /// The features folder (tabular/, sequences/, manifest.json).
    #[arg(long)]
    pub features: PathBuf,
    /// A trained model directory: evaluates its network and baseline next to the equations.
    /// Without it, a logistic baseline is fitted on the train split of one --label.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// One output (e.g. mi_5y); default: all outputs of the model (mi_5y without a model).
    #[arg(long)]
    pub label: Option<String>,
    /// Ground truth of a synthetic cohort (truth/risk.parquet): adds the oracle.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long, default_value = "held_out")]
    pub split: String,
    /// Output folder: evaluation.json (everything, calibration curves included) and
    /// evaluation.parquet (one row per output x model x subgroup).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The score folder (scores.parquet, score_summary.json).
    #[arg(long)]
    pub scores: PathBuf,
    /// The evaluation folder (evaluation.json).
    #[arg(long)]
    pub evaluation: PathBuf,
    /// The cohort folder (summary.json), for label counts.
    #[arg(long)]
    pub cohort: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(long)]
    pub out: PathBuf,
}
