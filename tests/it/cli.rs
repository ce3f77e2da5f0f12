//! The binary end to end: the demo, exit statuses, and the `meds` package's own validator on
//! our output (Python, installed by scripts/setup.sh into .pydeps).

use crate::common::*;

#[test]
fn demo_runs_and_reports_where_outputs_are() {
    let d = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["demo", "-q", "--patients", "500", "--out"])
        .arg(d.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lake validation: valid"), "{stdout}");
    assert!(stdout.contains("subjects  500"), "{stdout}");
    assert!(
        stdout.contains("defects written = quarantined: yes"),
        "{stdout}"
    );
    for f in [
        "model/model.json",
        "evaluation/evaluation.json",
        "evaluation/evaluation.parquet",
        "scores/scores.parquet",
        "scores/scores.csv",
        "scores/worklist.csv",
        "scores/risk_assessments.ndjson",
        "scores/risk_assessments.bundle.json",
        "report.html",
    ] {
        assert!(d.path().join(f).exists(), "{f}");
    }
    let redacted = stdout.replace(&d.path().display().to_string(), "[OUT]");
    insta::assert_snapshot!("demo_stdout", redacted);
}

#[test]
fn reject_rate_threshold_exits_1_and_bad_path_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let out = bin()
        .args(["ingest", "-q", "--max-reject-rate", "0.01", "--lake"])
        .arg(&lake)
        .arg(demo().join("fhir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reject rate"));
    let out = bin()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(d.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("no such file"),
        "{err}"
    );
    let out = bin()
        .args(["lake", "validate"])
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn summary_names_no_patient() {
    let d = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["ingest", "-v", "--lake"])
        .arg(d.path().join("lake"))
        .arg(demo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rows:"), "{err}");
    for secret in ["a1f0c8e2", "Ada", "1958-03-02"] {
        assert!(!err.contains(secret), "stderr leaks {secret}: {err}");
    }
}

#[test]
fn meds_validator_accepts_our_lake() {
    let pydeps = repo().join(".pydeps");
    if !pydeps.join("meds").exists() {
        skip(".pydeps/meds missing (run scripts/setup.sh)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(
        &lake,
        &[
            demo().join("fhir"),
            demo().join("synthea"),
            demo().join("omop"),
        ],
    );
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/meds_validate.py"))
        .arg(&lake)
        .env("PYTHONPATH", &pydeps)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meds validation failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MEDS OK"));
}

/// Issue 10: `ehr-risk lake stats LAKE | head` exits 0. Every `println!` used to panic on the
/// closed pipe (status 101); the panic hook turns a broken pipe into a quiet 0.
#[test]
fn a_closed_stdout_pipe_exits_0() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo()]);
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let out = bin()
        .args(["lake", "stats"])
        .arg(&lake)
        .stdout(w)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 10: no subject ids or source identifiers in terminal output. Every subcommand runs on
/// a synthetic population whose ids we know (the lake's subject ids and every source id in its
/// subject map), with `-v`, and neither stdout nor stderr names one of them.
#[test]
fn no_subcommand_prints_a_subject_or_source_identifier() {
    let d = tempfile::tempdir().unwrap();
    let p = |x: &str| d.path().join(x).display().to_string();
    let mut all = String::new();
    let mut run = |args: &[&str]| {
        let out = bin().arg("-v").args(args).output().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {e}");
        all.push_str(&o);
        all.push_str(&e);
    };
    run(&[
        "synth",
        "--patients",
        "300",
        "--seed",
        "5",
        "--out",
        &p("in"),
    ]);
    run(&[
        "ingest",
        "--lake",
        &p("lake"),
        &p("in/hospital_fhir"),
        &p("in/clinic_omop"),
        &p("in/synthea_csv"),
    ]);
    run(&["lake", "stats", &p("lake")]);
    run(&["lake", "validate", &p("lake")]);
    run(&[
        "cohort",
        "--lake",
        &p("lake"),
        "--task",
        "mi_stroke",
        "--out",
        &p("cohort"),
    ]);
    run(&[
        "features",
        "--lake",
        &p("lake"),
        "--cohort",
        &p("cohort"),
        "--out",
        &p("features"),
    ]);
    run(&[
        "audit",
        "--lake",
        &p("lake"),
        "--cohort",
        &p("cohort"),
        "--sample",
        "50",
    ]);
    std::fs::write(
        d.path().join("gru.json"),
        r#"{"embed_dim": 4, "hidden": 8, "head_hidden": 8, "max_epochs": 1, "threads": 1}"#,
    )
    .unwrap();
    run(&[
        "train",
        "--features",
        &p("features"),
        "--cohort",
        &p("cohort"),
        "--out",
        &p("model"),
        "--config",
        &p("gru.json"),
    ]);
    run(&[
        "evaluate",
        "--model",
        &p("model"),
        "--features",
        &p("features"),
        "--cohort",
        &p("cohort"),
        "--truth",
        &p("in/truth/risk.parquet"),
        "--bootstrap",
        "5",
        "--out",
        &p("evaluation"),
    ]);
    run(&[
        "score",
        "--model",
        &p("model"),
        "--features",
        &p("features"),
        "--out",
        &p("scores"),
        "--csv",
    ]);
    run(&[
        "report",
        "--scores",
        &p("scores"),
        "--evaluation",
        &p("evaluation"),
        "--cohort",
        &p("cohort"),
        "--out",
        &p("report.html"),
    ]);
    let v = LakeView::load(&d.path().join("lake"));
    assert!(v.identities.len() >= 300);
    for id in &v.identities {
        assert!(
            !all.contains(&id.subject_id.to_string()),
            "a subject id is in the output"
        );
        assert!(!all.contains(&id.value), "a source id is in the output");
    }
    assert!(all.contains("leakage audit"), "the commands ran: {all}");
}
