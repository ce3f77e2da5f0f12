//! `ehr-risk serve`: load the configuration, run the service until SIGTERM or Ctrl-C, and say
//! what it did. Readiness ("ready: <url>") goes to stderr and to systemd's `NOTIFY_SOCKET`.

use super::ExitStatus;
use crate::cli::serve::ServeArgs;
use anyhow::Context;

pub fn run(a: ServeArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let (mut config, base) = crate::serve::ServeConfig::load(&a.config)?;
    if let Some(b) = a.bind {
        config.bind = b;
    }
    let s = crate::serve::run(&config, &base, &mut |url| {
        // Always printed: a supervisor or a test waits for this line.
        eprintln!("ready: {url}/cds-services");
    })
    .context("serve")?;
    if !quiet {
        eprintln!(
            "stopped: discovery {}, patient-view {}, feedback {}, refused 401 {}, bad request {}, 412 {}, errors {}",
            s.discovery,
            s.patient_view,
            s.feedback,
            s.unauthorized,
            s.bad_request,
            s.precondition_failed,
            s.errors
        );
    }
    Ok(ExitStatus::Success)
}
