//! `ehr-risk lake` arguments.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub command: LakeCommand,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Events, subjects, time span, sources, top codes and rejections.
    Stats {
        dir: PathBuf,
        /// How many codes to list.
        #[arg(long, default_value_t = 15)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Check every invariant of the lake; exit 1 if any is broken.
    Validate {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}
