//! The CLI's [`Reporter`]: an indicatif bar per input file (bytes read), hidden when stderr is
//! not a terminal or `-q` is given. Shows file names only, never patient data.

use crate::ingest::driver::Reporter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }
}

impl Reporter for Bars {
    fn file_started(&self, path: &Path, bytes: u64) {
        if !self.enabled {
            return;
        }
        let pb = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("valid template"),
        );
        pb.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        *self.bar.lock().expect("not poisoned") = Some(pb);
    }
    fn progress(&self, bytes: u64) {
        if let Some(b) = self.bar.lock().expect("not poisoned").as_ref() {
            b.inc(bytes);
        }
    }
    fn file_done(&self) {
        if let Some(b) = self.bar.lock().expect("not poisoned").take() {
            b.finish_and_clear();
        }
    }
    fn stage(&self, what: &str) {
        tracing::info!(stage = what);
    }
}
