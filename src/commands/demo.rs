//! `ehr-risk demo`: the README's main command. Writes the embedded demo exports (a small,
//! fragmented sample population kept in `examples/demo/`) to `<out>/input`, ingests them into
//! `<out>/lake`, validates the lake and prints its statistics and where each output is.

use super::ExitStatus;
use super::progress::Bars;
use crate::cli::DemoArgs;
use crate::ingest::driver::IngestOptions;
use crate::lake::{Lake, stats, validate};
use anyhow::Context;

/// The embedded demo exports: (path under `input/`, content).
pub const DEMO_FILES: &[(&str, &str)] = &[
    (
        "fhir/Condition.ndjson",
        include_str!("../../examples/demo/fhir/Condition.ndjson"),
    ),
    (
        "fhir/MedicationRequest.ndjson",
        include_str!("../../examples/demo/fhir/MedicationRequest.ndjson"),
    ),
    (
        "fhir/Observation.ndjson",
        include_str!("../../examples/demo/fhir/Observation.ndjson"),
    ),
    (
        "fhir/Patient.ndjson",
        include_str!("../../examples/demo/fhir/Patient.ndjson"),
    ),
    (
        "omop/concept.csv",
        include_str!("../../examples/demo/omop/concept.csv"),
    ),
    (
        "omop/condition_occurrence.csv",
        include_str!("../../examples/demo/omop/condition_occurrence.csv"),
    ),
    (
        "omop/drug_exposure.csv",
        include_str!("../../examples/demo/omop/drug_exposure.csv"),
    ),
    (
        "omop/measurement.csv",
        include_str!("../../examples/demo/omop/measurement.csv"),
    ),
    (
        "omop/person.csv",
        include_str!("../../examples/demo/omop/person.csv"),
    ),
    (
        "synthea/conditions.csv",
        include_str!("../../examples/demo/synthea/conditions.csv"),
    ),
    (
        "synthea/medications.csv",
        include_str!("../../examples/demo/synthea/medications.csv"),
    ),
    (
        "synthea/observations.csv",
        include_str!("../../examples/demo/synthea/observations.csv"),
    ),
    (
        "synthea/patients.csv",
        include_str!("../../examples/demo/synthea/patients.csv"),
    ),
];

pub fn run(a: DemoArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let input = a.out.join("input");
    let lake_dir = a.out.join("lake");
    for (rel, text) in DEMO_FILES {
        let p = input.join(rel);
        std::fs::create_dir_all(p.parent().expect("has parent"))
            .with_context(|| format!("create {}", p.display()))?;
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
    }
    let opts = IngestOptions {
        shards: 4,
        ..Default::default()
    };
    let paths = ["fhir", "synthea", "omop"].map(|d| input.join(d));
    let out =
        crate::ingest::run(&lake_dir, &paths, &opts, &Bars::new(quiet)).context("demo ingest")?;
    if !quiet {
        eprint!("{}", super::ingest::summary(&out.report));
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
    println!("outputs:");
    println!("  lake (MEDS)       {}", lake_dir.display());
    println!("  events            {}", lake_dir.join("data").display());
    println!(
        "  quarantine        {}",
        lake_dir.join("quarantine").display()
    );
    println!("  ingest report     {}", lake_dir.join("reports").display());
    println!(
        "  manifest          {}",
        lake_dir.join("manifest.json").display()
    );
    Ok(if v.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Threshold
    })
}
