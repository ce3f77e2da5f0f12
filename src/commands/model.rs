//! `ehr-risk train`, `score` and `evaluate`: load inputs, run the model stages, print progress
//! (epoch, loss, tuning AUROC; shards scored) and readable tables; machine-readable results go
//! to files.

use super::ExitStatus;
use crate::cli::model::{EvaluateArgs, ScoreArgs, TrainArgs};
use crate::cohort::spec::Task;
use crate::evaluate::Evaluation;
use crate::model::bundle::{self, Model};
use crate::model::gru::{EpochLog, GruConfig};
use anyhow::Context;

pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<GruConfig> {
    match path {
        None => Ok(GruConfig::default()),
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a GRU configuration", p.display())),
    }
}

pub fn print_epoch(l: &EpochLog, outputs: &[String]) {
    let per: Vec<String> = outputs
        .iter()
        .zip(&l.tuning_auroc)
        .map(|(o, a)| match a {
            Some(a) => format!("{o} {a:.3}"),
            None => format!("{o} -"),
        })
        .collect();
    eprintln!(
        "epoch {:>2}  loss {:.4}  tuning loss {:.4}  AUROC mean {:.3} [{}]  {:.1}s",
        l.epoch,
        l.train_loss,
        l.tuning_loss,
        l.tuning_mean_auroc,
        per.join(", "),
        l.seconds
    );
}

pub fn train(a: TrainArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let task = Task::load(&a.task)?;
    let mut cfg = load_config(a.config.as_deref())?;
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(e) = a.epochs {
        cfg.max_epochs = e;
    }
    if let Some(d) = a.device {
        cfg.device = d;
    }
    if let Some(m) = a.max_train_rows {
        cfg.max_train_rows = m;
    }
    let outputs = bundle::output_names(&task);
    let t = bundle::train(&a.features, &a.cohort, &task, cfg, &a.out, &mut |l| {
        if !quiet {
            print_epoch(l, &outputs)
        }
    })
    .context("train")?;
    if !quiet {
        eprintln!(
            "trained on {} rows (tuning {}), best epoch {}, {:.0}s; weights {}",
            t.manifest.train_rows,
            t.manifest.tuning_rows,
            t.metrics.best_epoch,
            t.metrics.seconds,
            &t.manifest.weights_hash[..16]
        );
        eprintln!(
            "{:<12} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10}",
            "output", "tuning n", "events", "GRU AUROC", "GRU Brier", "LR AUROC", "LR Brier"
        );
        let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or("-".into());
        for o in &t.metrics.outputs {
            eprintln!(
                "{:<12} {:>8} {:>7} {:>10} {:>10.4} {:>10} {:>10.4}",
                o.output,
                o.tuning_n,
                o.tuning_events,
                f(o.gru_auroc),
                o.gru_brier,
                f(o.logistic_auroc),
                o.logistic_brier
            );
        }
    }
    println!("{}", a.out.display());
    Ok(ExitStatus::Success)
}

pub fn score(a: ScoreArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let model = Model::load(&a.model)?;
    let fm = bundle::read_feature_manifest(&a.features)?;
    let rules = match &a.rules {
        Some(d) => crate::recommend::RuleSet::load(d, Some(&fm.columns))
            .map_err(|m| anyhow::anyhow!("rules: {m}"))?,
        None => crate::recommend::RuleSet::builtin(),
    };
    let mut tiers = [0.0; 3];
    if a.tiers.len() != 3 || a.tiers.windows(2).any(|w| w[0] > w[1]) {
        anyhow::bail!(
            "--tiers {:?}: expected three increasing bounds, e.g. 0.05,0.075,0.2",
            a.tiers
        );
    }
    tiers.copy_from_slice(&a.tiers);
    let opts = crate::score::ScoreOptions {
        latest_only: a.latest,
        csv: a.csv,
        explain: a.explain,
        tiers,
        worklist_threshold: a.worklist_threshold,
        top_factors: a.top_factors,
        ..Default::default()
    };
    let mut wb = match (&a.lake, &a.fhir_target) {
        (Some(l), t) => crate::score::WriteBack::from_lake(l, t.as_deref(), &model)?,
        (None, Some(t)) => anyhow::bail!(
            "--fhir-target {t:?} needs --lake: the subject map there says how each patient is known to that system"
        ),
        (None, None) => Default::default(),
    };
    let s = crate::score::run(
        &model,
        &a.features,
        &rules,
        &mut wb,
        &a.out,
        &opts,
        &mut |i, n| {
            if !quiet && (i == n || i % 16 == 0) {
                eprintln!("scored shard {i}/{n}");
            }
        },
    )
    .context("score")?;
    if !quiet {
        eprintln!(
            "scored {} prediction times ({} rows by horizon) in {:.1}s = {:.0} prediction times/s",
            s.prediction_times,
            s.rows_written,
            s.seconds,
            s.prediction_times as f64 / s.seconds.max(1e-9)
        );
        eprintln!(
            "{} subjects: tiers {:?}; {} explained; worklist {} (>= {:.0}% at {} years)",
            s.subjects,
            s.tiers,
            s.explained,
            s.worklist,
            a.worklist_threshold * 100.0,
            s.reference_horizon_years
        );
    }
    println!("{}", a.out.join("scores.parquet").display());
    Ok(ExitStatus::Success)
}

/// A readable table of evaluations.
/// "min-max" of per-decile ratios, "-" when there are none.
fn ratio_range(r: &[f64]) -> String {
    if r.is_empty() {
        return "-".to_string();
    }
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(0.0, f64::max);
    format!("{lo:.2}-{hi:.2}")
}

pub fn print_evaluations(evals: &[Evaluation], subgroups: bool) {
    println!(
        "{:<11} {:<18} {:<12} {:>7} {:>6} {:>21} {:>7} {:>7} {:>6}",
        "output", "model", "subgroup", "n", "events", "AUROC (95% CI)", "AUPRC", "Brier", "slope"
    );
    for e in evals {
        for (model, groups) in &e.models {
            for (g, m) in groups {
                if !subgroups && g != "all" {
                    continue;
                }
                let au = m
                    .auroc
                    .map(|x| format!("{:.3} ({:.3}-{:.3})", x.value, x.lo, x.hi))
                    .unwrap_or_else(|| "-".into());
                let ap = m
                    .auprc
                    .map(|x| format!("{:.3}", x.value))
                    .unwrap_or_else(|| "-".into());
                let slope = m
                    .calibration_slope
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<11} {model:<18} {g:<12} {:>7} {:>6} {au:>21} {ap:>7} {:>7.4} {slope:>6}",
                    e.outcome, m.n, m.events, m.brier
                );
            }
        }
    }
    if evals.iter().any(|e| !e.censoring_aware.is_empty()) {
        println!();
        println!(
            "censoring-aware (IPCW): observed cumulative incidence against mean predicted risk"
        );
        println!(
            "{:<11} {:<18} {:>7} {:>6} {:>7} {:>9} {:>9} {:>6} {:>19} {:>14}",
            "output",
            "model",
            "n",
            "events",
            "AUROC",
            "observed",
            "expected",
            "O/E",
            "decile O/E (>=20 ev)",
            "in band / CI≠1"
        );
        for e in evals {
            for (model, c) in &e.censoring_aware {
                let r: Vec<f64> = c
                    .deciles
                    .iter()
                    .filter(|d| d.3 >= crate::evaluate::DECILE_MIN_EVENTS && d.0 > 0.0)
                    .map(|d| d.1 / d.0)
                    .collect();
                let range = ratio_range(&r);
                let au = c.auroc.map_or("-".to_string(), |a| format!("{a:.3}"));
                let k = c.decile_check(
                    crate::evaluate::DECILE_MIN_EVENTS,
                    crate::evaluate::DECILE_BAND,
                );
                let check = format!("{}/{} / {}", k.in_band, k.deciles, k.beyond_noise);
                println!(
                    "{:<11} {model:<18} {:>7} {:>6} {au:>7} {:>9.4} {:>9.4} {:>6.3} {range:>19} {check:>14}",
                    e.outcome, c.n, c.events, c.observed, c.expected, c.observed_over_expected
                );
            }
        }
    }
    if evals.iter().any(|e| !e.censoring_aware.is_empty()) {
        println!(
            "(in band: deciles with >= {} events whose O/E is within {:.2}-{:.2}; CI≠1: those whose 95 % interval excludes 1)",
            crate::evaluate::DECILE_MIN_EVENTS,
            crate::evaluate::DECILE_BAND.0,
            crate::evaluate::DECILE_BAND.1
        );
    }
    if evals.iter().any(|e| !e.against_truth.is_empty()) {
        println!();
        println!(
            "against the generator's true risk (every row the truth covers; the ASCVD equations at 10 years against the truth of MI or stroke)"
        );
        println!();
        println!(
            "{:<11} {:<18} {:>7} {:>10} {:>10} {:>9} {:>17} {:>10}",
            "output",
            "model",
            "n",
            "mean pred",
            "mean true",
            "pred/true",
            "deciles min-max",
            "h > next h"
        );
        for e in evals {
            for (model, c) in &e.against_truth {
                let r: Vec<f64> = c
                    .deciles
                    .iter()
                    .filter(|d| d.1 > 0.0)
                    .map(|d| d.0 / d.1)
                    .collect();
                let range = ratio_range(&r);
                let v = e
                    .horizon_violations
                    .get(model)
                    .map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:<11} {model:<18} {:>7} {:>10.4} {:>10.4} {:>9.3} {range:>17} {v:>10}",
                    e.outcome, c.n, c.mean_predicted, c.mean_true, c.ratio
                );
            }
        }
    }
}

pub fn write_evaluations(evals: &[Evaluation], out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    std::fs::write(
        out.join("evaluation.json"),
        serde_json::to_string_pretty(evals)?,
    )
    .with_context(|| format!("write {}", out.join("evaluation.json").display()))?;
    let b = crate::evaluate::metrics_table(evals);
    crate::lake::write::write_batches(&out.join("evaluation.parquet"), b.schema(), &[b])?;
    Ok(())
}

pub fn evaluate(a: EvaluateArgs) -> anyhow::Result<ExitStatus> {
    let truth = match &a.truth {
        Some(p) => Some(crate::synth::read_truth(p)?),
        None => None,
    };
    let evals = if let Some(mdir) = &a.model {
        let model = Model::load(mdir)?;
        crate::evaluate::with_model(
            &model,
            &a.features,
            &a.cohort,
            truth.as_ref(),
            &a.split,
            a.label.as_deref(),
            a.bootstrap,
            a.seed,
        )?
    } else {
        vec![fitted_baseline(&a, truth.as_ref())?]
    };
    write_evaluations(&evals, &a.out)?;
    println!("held-out evaluation on the {} split:", a.split);
    print_evaluations(&evals, true);
    println!("{}", a.out.join("evaluation.json").display());
    Ok(ExitStatus::Success)
}

/// Without a model: the logistic baseline fitted on the train split of one label, PCE, oracle.
fn fitted_baseline(
    a: &EvaluateArgs,
    truth: Option<&crate::synth::Truth>,
) -> anyhow::Result<Evaluation> {
    let label = a.label.clone().unwrap_or_else(|| "mi_5y".into());
    let (columns, keys, rows) = crate::features::read_tabular(&a.features)?;
    let manifest = bundle::read_feature_manifest(&a.features)?;
    let labels = crate::cohort::read_labels(&a.cohort.join("labels").join(&label))
        .with_context(|| format!("labels {label}"))?;
    let (outcome, horizon) = label
        .rsplit_once('_')
        .and_then(|(o, h)| Some((o.to_string(), h.trim_end_matches('y').parse::<i32>().ok()?)))
        .ok_or_else(|| {
            anyhow::anyhow!("--label {label:?}: expected <outcome>_<years>y, e.g. mi_5y")
        })?;
    let oracle = truth.map(|t| {
        t.iter()
            .filter(|((_, _, h), _)| *h == horizon)
            .filter_map(|((s, ti, _), r)| Some(((*s, *ti), r.of(&outcome)?)))
            .collect::<std::collections::HashMap<_, _>>()
    });
    let survival = crate::cohort::read_survival(&a.cohort, std::slice::from_ref(&outcome))?;
    let with_survival: Vec<_> = keys
        .iter()
        .map(|k| (survival.get(&(k.0, k.1)), k.2.as_str()))
        .collect();
    let ipcw: Vec<f64> =
        crate::cohort::censoring::grouped_weights(&with_survival, 0, &[horizon as f64])
            .into_iter()
            .map(|w| w[0])
            .collect();
    crate::evaluate::run(
        &label,
        &columns,
        &keys,
        &rows,
        &labels,
        &ipcw,
        oracle.as_ref(),
        &a.split,
        (&manifest.feature_spec_hash, &manifest.task_hash),
        a.bootstrap,
        a.seed,
    )
    .map_err(|m| anyhow::anyhow!(m))
}

pub fn report(a: crate::cli::model::ReportArgs) -> anyhow::Result<ExitStatus> {
    let inputs = crate::report::load(&a.scores, &a.evaluation, a.cohort.as_deref())
        .map_err(|m| anyhow::anyhow!("report inputs: {m}"))?;
    std::fs::write(&a.out, crate::report::render(&inputs))
        .with_context(|| format!("write {}", a.out.display()))?;
    println!("{}", a.out.display());
    Ok(ExitStatus::Success)
}
