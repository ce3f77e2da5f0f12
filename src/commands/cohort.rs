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
    let (n, problems) =
        crate::features::audit(&i.lake, &i.cohort, &task, spec(&i.spec)?, a.sample, a.seed)?;
    println!(
        "leakage audit: {n} prediction times perturbed after the time, {} changed",
        problems.len()
    );
    for p in &problems {
        println!("  {p}");
    }
    Ok(if problems.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Threshold
    })
}

pub fn evaluate(a: crate::cli::cohort::EvaluateArgs) -> anyhow::Result<ExitStatus> {
    let (columns, keys, rows) = crate::features::read_tabular(&a.features)?;
    let manifest: crate::features::FeatureManifest = serde_json::from_str(
        &std::fs::read_to_string(a.features.join("manifest.json"))
            .context("read features manifest.json")?,
    )?;
    let labels = crate::cohort::read_labels(&a.cohort.join("labels").join(&a.label))
        .with_context(|| format!("labels {}", a.label))?;
    let (outcome, horizon) = a
        .label
        .rsplit_once('_')
        .and_then(|(o, h)| Some((o.to_string(), h.trim_end_matches('y').parse::<i32>().ok()?)))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--label {:?}: expected <outcome>_<years>y, e.g. mi_5y",
                a.label
            )
        })?;
    let oracle = match &a.truth {
        Some(p) => {
            let t = crate::synth::read_truth(p)?;
            Some(
                t.into_iter()
                    .filter(|((_, _, h), _)| *h == horizon)
                    .map(|((s, ti, _), (mi, st))| ((s, ti), if outcome == "mi" { mi } else { st }))
                    .collect::<std::collections::HashMap<_, _>>(),
            )
        }
        None => None,
    };
    let e = crate::evaluate::run(
        &a.label,
        &columns,
        &keys,
        &rows,
        &labels,
        oracle.as_ref(),
        &a.split,
        (&manifest.feature_spec_hash, &manifest.task_hash),
        a.bootstrap,
        a.seed,
    )
    .map_err(|m| anyhow::anyhow!(m))?;
    std::fs::write(&a.out, serde_json::to_string_pretty(&e)?)
        .with_context(|| format!("write {}", a.out.display()))?;
    println!(
        "{} on {} split (AUROC with 95% bootstrap intervals)",
        e.outcome, e.split
    );
    println!(
        "{:<10} {:<12} {:>7} {:>7} {:>22} {:>8} {:>7}",
        "model", "subgroup", "n", "events", "AUROC", "Brier", "slope"
    );
    for (model, groups) in &e.models {
        for (g, m) in groups {
            let au = m
                .auroc
                .map(|x| format!("{:.3} ({:.3}-{:.3})", x.value, x.lo, x.hi))
                .unwrap_or_else(|| "-".into());
            let slope = m
                .calibration_slope
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{model:<10} {g:<12} {:>7} {:>7} {au:>22} {:>8.4} {slope:>7}",
                m.n, m.events, m.brier
            );
        }
    }
    Ok(ExitStatus::Success)
}
