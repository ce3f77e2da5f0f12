//! `ehr-risk synth`: generate the synthetic population, with a progress bar and a summary.

use super::ExitStatus;
use crate::cli::synth::SynthArgs;
use crate::synth::export::DefectRates;
use crate::synth::identity::Identities;
use crate::synth::{SynthManifest, SynthOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub fn options(a: &SynthArgs) -> SynthOptions {
    let r = a.defect_rate;
    SynthOptions {
        patients: a.patients,
        seed: a.seed,
        defects: DefectRates::uniform(r),
        duplicate_rate: a.duplicate_rate,
        chunk: a.chunk,
        identities: match a.identities {
            crate::cli::synth::IdentityArg::Shared => Identities::Shared,
            crate::cli::synth::IdentityArg::Sites => Identities::Sites {
                national_id: a.national_id_rate,
            },
        },
    }
}

pub fn generate(
    out: &std::path::Path,
    opts: &SynthOptions,
    quiet: bool,
) -> anyhow::Result<SynthManifest> {
    let bar = if !quiet && std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(Some(opts.patients), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("synth {bar:30} {pos}/{len} people {per_sec} {eta}")
                .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let m = crate::synth::run(out, opts, &|done| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !quiet {
        eprintln!(
            "synth: {} people (FHIR {}, OMOP {}, Synthea {}), {} MI, {} strokes, {} deaths, {} visits copied, defects: {}",
            m.people,
            m.people_in["fhir"],
            m.people_in["omop"],
            m.people_in["synthea"],
            m.mi_events,
            m.stroke_events,
            m.deaths,
            m.visits_copied_to_a_second_export,
            m.defects
                .iter()
                .map(|(k, (_, n))| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(m)
}

pub fn run(a: SynthArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    generate(&a.out, &options(&a), quiet)?;
    Ok(ExitStatus::Success)
}
