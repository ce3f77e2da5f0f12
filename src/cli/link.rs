//! `ehr-risk link` arguments.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(subcommand)]
    pub command: LinkCommand,
}

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Link the lake's identity store: estimate the model, score candidate pairs, cluster,
    /// queue uncertain pairs for review; write identity/{links,clusters}.parquet and model.json.
    Run {
        lake: PathBuf,
        /// A linkage spec (default: the embedded schemas/linkage.toml).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// A CSV of `system,value,person` (a known truth): print pairwise precision, recall
        /// and F1 of the clusters over the identities it names.
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the pairs waiting for review: keyed record hashes, probability and the level of
    /// each comparison; identity facts only with --show-identity.
    Review {
        lake: PathBuf,
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Also print the two records' identity facts (PHI: for the reviewer's eyes only).
        #[arg(long)]
        show_identity: bool,
        /// At most this many pairs, most uncertain first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show how a pair's match weight is made: the prior and each comparison's weight.
    Explain {
        lake: PathBuf,
        /// Record hash (from `review`).
        a: String,
        /// Record hash (from `review`).
        b: String,
        #[arg(long)]
        spec: Option<PathBuf>,
        #[arg(long)]
        show_identity: bool,
    },
    /// Record that two records are one person; later runs link them whatever the model says.
    Accept {
        lake: PathBuf,
        a: String,
        b: String,
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// Record that two records are different people; later runs never put them together.
    Reject {
        lake: PathBuf,
        a: String,
        b: String,
        #[arg(long)]
        spec: Option<PathBuf>,
    },
}
