//! `ehr-risk serve` arguments.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service configuration (model, lake, address, trusted issuers and their keys,
    /// limits): see the README's "At the point of care".
    #[arg(long, env = "EHR_RISK_SERVE_CONFIG")]
    pub config: PathBuf,
    /// Listen here instead of the configuration's `bind` (port 0: any free port).
    #[arg(long)]
    pub bind: Option<String>,
}
