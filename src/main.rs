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

/// The panic message, whatever its payload.
fn panic_message(info: &std::panic::PanicHookInfo) -> String {
    info.payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn main() {
    // A closed pipe (`ehr-risk lake stats LAKE | head`) ends the output quietly with status 0;
    // any other panic, on any thread, is an internal error: one line and status 2, never 101.
    std::panic::set_hook(Box::new(|info| {
        let msg = panic_message(info);
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error{at}: {msg}");
        std::process::exit(ExitStatus::Error as i32);
    }));
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
