//! `ehr-risk demo`: the README's main command on its embedded default. Generates the synthetic
//! demo cohort (2,000 people by default, seed 42) into `<out>/input`, ingests its three exports
//! into `<out>/lake`, checks that ingest quarantined exactly the defects the generator wrote,
//! validates the lake, prints its statistics and where each output is.

use super::ExitStatus;
use super::progress::Bars;
use crate::cli::DemoArgs;
use crate::ingest::driver::IngestOptions;
use crate::lake::{Lake, stats, validate};
use crate::synth::SynthOptions;
use anyhow::Context;

pub fn run(a: DemoArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let input = a.out.join("input");
    let lake_dir = a.out.join("lake");
    if lake_dir.exists() {
        // The demo always starts from a fresh lake so its output is the same on every run.
        std::fs::remove_dir_all(&lake_dir)
            .with_context(|| format!("remove {}", lake_dir.display()))?;
    }
    let r = 0.002;
    let defects = crate::synth::export::DefectRates::uniform(r);
    let opts = SynthOptions {
        patients: a.patients,
        seed: a.seed,
        defects,
        ..Default::default()
    };
    let m = super::synth::generate(&input, &opts, quiet)?;
    let paths = ["hospital_fhir", "clinic_omop", "synthea_csv"].map(|d| input.join(d));
    let out = crate::ingest::run(
        &lake_dir,
        &paths,
        &IngestOptions::default(),
        &Bars::new(quiet),
    )
    .context("demo ingest")?;
    if !quiet {
        eprint!("{}", super::ingest::summary(&out.report));
    }
    let mut status = ExitStatus::Success;
    for (reason, (_, n)) in &m.defects {
        let got = out
            .report
            .totals
            .rejected_by_reason
            .get(reason)
            .copied()
            .unwrap_or(0);
        if got != *n {
            eprintln!(
                "error: the generator wrote {n} rows with defect {reason}, ingest quarantined {got}"
            );
            status = ExitStatus::Threshold;
        }
    }
    let lake = Lake::open(&lake_dir)?;
    let v = validate::validate(&lake)?;
    let s = stats::stats(&lake, 10)?;
    super::lake::print_stats(&s);
    println!(
        "lake validation: {}",
        if v.ok() {
            "valid".to_string()
        } else {
            format!("INVALID: {:?}", v.problems)
        }
    );
    println!(
        "defects written = quarantined: {}",
        if status == ExitStatus::Success {
            "yes"
        } else {
            "NO"
        }
    );
    println!("outputs:");
    println!("  synthetic exports {}", input.display());
    println!(
        "  ground truth      {}",
        input.join("truth/risk.parquet").display()
    );
    println!("  lake (MEDS)       {}", lake_dir.display());
    println!(
        "  quarantine        {}",
        lake_dir.join("quarantine").display()
    );
    println!("  ingest report     {}", lake_dir.join("reports").display());
    println!(
        "  manifest          {}",
        lake_dir.join("manifest.json").display()
    );
    if !v.ok() {
        status = ExitStatus::Threshold;
    }
    Ok(status)
}
