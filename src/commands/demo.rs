//! `ehr-risk demo`: the README's main command on its embedded default, the whole product in one
//! go. Generates the synthetic demo cohort (2,000 people by default, seed 42) into
//! `<out>/input`, ingests its three exports into `<out>/lake` (checking that ingest quarantined
//! exactly the defects the generator wrote) and validates it, labels the cohort, builds the
//! features, trains the network (with calibration and the baseline), evaluates every model on
//! the held-out split against the generator's true risks, scores every prediction time (with
//! explanations, recommendations, worklist and FHIR RiskAssessments for each subject's latest
//! one) and writes the HTML report. Progress goes to stderr; stdout lists where each output is.

use super::ExitStatus;
use super::progress::Bars;
use crate::cli::DemoArgs;
use crate::cohort::spec::Task;
use crate::features::spec::FeatureSpec;
use crate::ingest::driver::IngestOptions;
use crate::lake::{Lake, stats, validate};
use crate::model::bundle::{self, Model};
use crate::model::gru::GruConfig;
use crate::synth::SynthOptions;
use anyhow::Context;

fn stage(quiet: bool, what: &str) {
    if !quiet {
        eprintln!("== {what}");
    }
}

pub fn run(a: DemoArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let input = a.out.join("input");
    let lake_dir = a.out.join("lake");
    // The demo always starts from scratch so its output is the same on every run.
    for d in [
        "lake",
        "cohort",
        "features",
        "model",
        "evaluation",
        "scores",
        "report.html",
    ] {
        let p = a.out.join(d);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
        } else if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
        }
    }
    stage(quiet, "1/8 synthetic cohort");
    let defects = crate::synth::export::DefectRates::uniform(0.002);
    let opts = SynthOptions {
        patients: a.patients,
        seed: a.seed,
        defects,
        ..Default::default()
    };
    let m = super::synth::generate(&input, &opts, quiet)?;
    stage(quiet, "2/8 ingest");
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
    if !v.ok() {
        status = ExitStatus::Threshold;
    }

    stage(quiet, "3/8 cohort and labels");
    let task = Task::load("mi_stroke")?;
    let cohort_dir = a.out.join("cohort");
    let c = crate::cohort::run(&lake_dir, &task, &cohort_dir).context("demo cohort")?;
    if !quiet {
        eprintln!(
            "cohort: {} subjects, {} prediction times",
            c.subjects, c.prediction_times
        );
    }
    stage(quiet, "4/8 features");
    let features = a.out.join("features");
    let fm = crate::features::run(
        &lake_dir,
        &cohort_dir,
        &task,
        FeatureSpec::builtin(),
        &features,
    )
    .context("demo features")?;
    if !quiet {
        eprintln!(
            "features: {} rows x {} tabular columns, {} sequence steps",
            fm.rows,
            fm.columns.len(),
            fm.sequence_steps
        );
    }
    stage(quiet, "5/8 train");
    let model_dir = a.out.join("model");
    let cfg = GruConfig {
        seed: a.seed,
        max_epochs: a.epochs,
        ..Default::default()
    };
    let outputs = bundle::output_names(&task);
    bundle::train(&features, &cohort_dir, &task, cfg, &model_dir, &mut |l| {
        if !quiet {
            super::model::print_epoch(l, &outputs)
        }
    })
    .context("demo train")?;
    let model = Model::load(&model_dir)?;
    stage(
        quiet,
        "6/8 evaluate (held-out split, against the generator's true risk)",
    );
    let truth = crate::synth::read_truth(&input.join("truth/risk.parquet"))?;
    let evals = crate::evaluate::with_model(
        &model,
        &features,
        &cohort_dir,
        Some(&truth),
        "held_out",
        None,
        200,
        a.seed,
    )
    .context("demo evaluate")?;
    let eval_dir = a.out.join("evaluation");
    super::model::write_evaluations(&evals, &eval_dir)?;
    if !quiet {
        super::model::print_evaluations(&evals, false);
    }
    stage(quiet, "7/8 score, explain, recommend");
    let scores = a.out.join("scores");
    let sopts = crate::score::ScoreOptions {
        csv: true,
        ..Default::default()
    };
    let mut wb = crate::score::WriteBack::from_lake(&lake_dir, None, &model)?;
    let sum = crate::score::run(
        &model,
        &features,
        &crate::recommend::RuleSet::builtin(),
        &mut wb,
        &scores,
        &sopts,
        &mut |_, _| {},
    )
    .context("demo score")?;
    if !quiet {
        eprintln!(
            "scored {} prediction times of {} subjects in {:.1}s; tiers {:?}; worklist {}",
            sum.prediction_times, sum.subjects, sum.seconds, sum.tiers, sum.worklist
        );
    }
    stage(quiet, "8/8 report");
    let report = a.out.join("report.html");
    let inputs = crate::report::load(&scores, &eval_dir, Some(&cohort_dir))
        .map_err(|m| anyhow::anyhow!("report: {m}"))?;
    std::fs::write(&report, crate::report::render(&inputs))
        .with_context(|| format!("write {}", report.display()))?;

    println!("outputs:");
    let show = |what: &str, p: std::path::PathBuf| println!("  {what:<22} {}", p.display());
    show("synthetic exports", input.clone());
    show("ground truth", input.join("truth/risk.parquet"));
    show("lake (MEDS)", lake_dir.clone());
    show("quarantine", lake_dir.join("quarantine"));
    show("ingest report", lake_dir.join("reports"));
    show("cohort and labels", cohort_dir.clone());
    show("features", features.clone());
    show("model", model_dir.clone());
    show("evaluation", eval_dir.join("evaluation.json"));
    show("scores", scores.join("scores.parquet"));
    show("scores (CSV)", scores.join("scores.csv"));
    show("worklist", scores.join("worklist.csv"));
    show(
        "FHIR RiskAssessments",
        scores.join("risk_assessments.ndjson"),
    );
    show(
        "FHIR transaction",
        scores.join("risk_assessments.bundle.json"),
    );
    show("report", report);
    Ok(status)
}
