//! The `ehr-risk` binary: parse the command line, start logging, run one command, and turn
//! the outcome into the exit status (0 ok, 1 threshold crossed, 2 error).

use clap::Parser;
use ehr_risk::cli::Cli;
use ehr_risk::commands::{self, ExitStatus};
use tracing_subscriber::EnvFilter;

// Ingest allocates a few small strings per event on every core; mimalloc's per-thread heaps
// make that markedly cheaper than glibc malloc (measured in docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let status = match commands::run(cli) {
        Ok(s) => s,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                std::process::exit(0);
            }
            eprintln!("error: {e:#}");
            ExitStatus::Error
        }
    };
    std::process::exit(status as i32);
}
