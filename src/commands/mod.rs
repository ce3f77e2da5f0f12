//! Subcommands: each wires library stages together, owns its messages and progress bars, and
//! returns a typed exit status. Errors are `anyhow` with context; `main` turns them into exit 2.

pub mod cohort;
pub mod demo;
pub mod ingest;
pub mod lake;
pub mod link;
pub mod model;
pub mod progress;
pub mod serve;
pub mod synth;

use crate::cli::{Cli, Command};

/// The process exit status, decided in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything finished and passed.
    Success = 0,
    /// Finished, but a threshold was crossed (reject rate, validation problems).
    Threshold = 1,
    /// Usage, I/O or internal error.
    Error = 2,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    if let Some(t) = cli.global.threads {
        if t == 0 {
            anyhow::bail!("--threads 0: must be at least 1 (leave it out for one per core)");
        }
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let quiet = cli.global.quiet > 0;
    match cli.command {
        Command::Ingest(a) => ingest::run(a, quiet),
        Command::Lake(a) => lake::run(a),
        Command::Link(a) => link::run(a),
        Command::Synth(a) => synth::run(a, quiet),
        Command::Cohort(a) => cohort::cohort(a, quiet),
        Command::Features(a) => cohort::features(a, quiet),
        Command::Audit(a) => cohort::audit(a),
        Command::Train(a) => model::train(a, quiet),
        Command::Score(a) => model::score(a, quiet),
        Command::Evaluate(a) => model::evaluate(a),
        Command::Report(a) => model::report(a),
        Command::Serve(a) => serve::run(a, quiet),
        Command::Demo(a) => demo::run(a, quiet),
    }
}
