//! `ehr-risk cohort`, `ehr-risk features` and `ehr-risk audit`: labels, the FeatureSet, and the
//! leakage audit (exit 1 if any feature moved when only later events changed).

use super::ExitStatus;
use crate::cli::cohort::{AuditArgs, CohortArgs, FeaturesArgs};
use crate::cohort::spec::Task;
use crate::features::spec::FeatureSpec;
use anyhow::Context;

fn spec(path: &Option<std::path::PathBuf>) -> anyhow::Result<FeatureSpec> {
    match path {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            toml::from_str(&t).with_context(|| format!("{}: not a valid feature spec", p.display()))
        }
        None => Ok(FeatureSpec::builtin()),
    }
}

pub fn cohort(a: CohortArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let task = Task::load(&a.task)?;
    let s = crate::cohort::run(&a.lake, &task, &a.out)
        .with_context(|| format!("cohort from {}", a.lake.display()))?;
    if !quiet {
        eprintln!(
            "cohort {} ({}): {} subjects, {} prediction times",
            s.task, s.task_hash, s.subjects, s.prediction_times
        );
        for (k, n) in &s.excluded_by_reason {
            eprintln!("  excluded {k}: {n}");
        }
        for (name, by_split) in &s.labels {
            let all = &by_split["all"];
            eprintln!(
                "  {name}: {} labelled, {} positive ({:.2}%), {} censored, {} prior excluded",
                all.labelled,
                all.positive,
                100.0 * all.prevalence,
                all.censored,
                all.excluded_prior
            );
        }
    }
    println!("{}", a.out.join("summary.json").display());
    Ok(ExitStatus::Success)
}

pub fn features(a: FeaturesArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let i = &a.inputs;
    let task = Task::load(&i.task)?;
    let m = crate::features::run(&i.lake, &i.cohort, &task, spec(&i.spec)?, &a.out)
        .context("features")?;
    if !quiet {
        eprintln!(
            "features: {} rows x {} tabular columns, {} sequence steps, vocabulary {} (learned on {})",
            m.rows,
            m.columns.len(),
            m.sequence_steps,
            m.vocab_size,
            m.vocab_learned_on
        );
    }
    println!("{}", a.out.join("manifest.json").display());
    Ok(ExitStatus::Success)
}

pub fn audit(a: AuditArgs) -> anyhow::Result<ExitStatus> {
    let i = &a.inputs;
    let task = Task::load(&i.task)?;
    let r = crate::features::audit(&i.lake, &i.cohort, &task, spec(&i.spec)?, a.sample, a.seed)?;
    println!(
        "leakage audit: {} prediction times perturbed after the time, {} changed; {} events known earlier than the lake's own facts allow",
        r.checked,
        r.changed.len(),
        r.early.len()
    );
    for p in r.changed.iter().chain(&r.early) {
        println!("  {p}");
    }
    Ok(if r.ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Threshold
    })
}
