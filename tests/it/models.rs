//! The whole pipeline on a synthetic cohort, compared with the truth: synth -> ingest -> cohort
//! -> features -> logistic baseline and PCE on the held-out split, next to the oracle AUROC the
//! generator's exact risks give. Numbers are printed (run with --nocapture).

use crate::common::*;
use ehr_risk::cohort::spec::Task;
use ehr_risk::evaluate::metrics::{auroc, calibration};
use ehr_risk::model::logistic::{LogisticModel, LogisticParams};

#[test]
fn logistic_and_pce_on_synthetic_cohort_against_the_oracle() {
    let d = tempfile::tempdir().unwrap();
    let opts = ehr_risk::synth::SynthOptions {
        patients: 5000,
        seed: 5,
        ..Default::default()
    };
    ehr_risk::synth::run(&d.path().join("in"), &opts, &|_| {}).unwrap();
    let lake = d.path().join("lake");
    ingest(
        &lake,
        &["hospital_fhir", "clinic_omop", "synthea_csv"].map(|x| d.path().join("in").join(x)),
    );
    let task = Task::load("mi_stroke").unwrap();
    ehr_risk::cohort::run(&lake, &task, &d.path().join("cohort")).unwrap();
    let spec = ehr_risk::features::spec::FeatureSpec::builtin();
    let spec_hash = spec.hash();
    ehr_risk::features::run(
        &lake,
        &d.path().join("cohort"),
        &task,
        spec,
        &d.path().join("features"),
    )
    .unwrap();
    let (columns, keys, rows) =
        ehr_risk::features::read_tabular(&d.path().join("features")).unwrap();
    let labels = ehr_risk::cohort::read_labels(&d.path().join("cohort/labels/mi_5y")).unwrap();
    let truth = ehr_risk::synth::read_truth(&d.path().join("in/truth/risk.parquet")).unwrap();
    let (mut train_x, mut train_y) = (vec![], vec![]);
    let (mut test_x, mut test_y, mut test_oracle) = (vec![], vec![], vec![]);
    for (k, r) in keys.iter().zip(&rows) {
        let Some(&y) = labels.get(&(k.0, k.1)) else {
            continue;
        };
        // Truth exists for anchors whose 5-year window ends inside the generated history.
        let Some(p_mi) = truth.get(&(k.0, k.1, 5)).map(|r| r.mi) else {
            continue;
        };
        if k.2 == "train" {
            train_x.push(r.clone());
            train_y.push(y);
        } else if k.2 == "held_out" {
            test_x.push(r.clone());
            test_y.push(y);
            test_oracle.push(p_mi);
        }
    }
    assert!(
        test_y.iter().filter(|v| **v).count() > 20,
        "enough held-out events"
    );
    let m = LogisticModel::fit(
        "mi_5y",
        &columns,
        &train_x,
        &train_y,
        &vec![1.0; train_y.len()],
        LogisticParams::default(),
        (&spec_hash, &task.hash),
    )
    .unwrap();
    let p = m.predict(&test_x);
    let (a_log, a_oracle) = (
        auroc(&p, &test_y).unwrap(),
        auroc(&test_oracle, &test_y).unwrap(),
    );
    // PCE where it applies (ages 40-79 with lipids and BP measured), MI share 55 % of ASCVD.
    let (mut pp, mut py, mut po) = (vec![], vec![], vec![]);
    for ((r, y), o) in test_x.iter().zip(&test_y).zip(&test_oracle) {
        if let Ok(risk) = ehr_risk::model::equations::pce_on(&ehr_risk::model::equations::Row {
            columns: &columns,
            values: r,
        }) {
            pp.push(risk);
            py.push(*y);
            po.push(*o);
        }
    }
    eprintln!(
        "PCE applies to {} of {} held-out rows ({} events of {})",
        pp.len(),
        test_x.len(),
        py.iter().filter(|v| **v).count(),
        test_y.iter().filter(|v| **v).count()
    );
    let a_pce = auroc(&pp, &py).unwrap();
    let a_oracle_pce = auroc(&po, &py).unwrap();
    let (ci, cs) = calibration(&p, &test_y).unwrap();
    eprintln!(
        "held-out MI 5y: n={} events={}; AUROC logistic {a_log:.3} (calibration intercept {ci:.2} slope {cs:.2}), oracle {a_oracle:.3}; PCE {a_pce:.3} vs oracle {a_oracle_pce:.3} on its n={}",
        test_y.len(),
        test_y.iter().filter(|v| **v).count(),
        pp.len()
    );
    // The evaluate stage gives the same comparison, per subgroup, with intervals.
    let oracle: std::collections::HashMap<(i64, i64), f64> = truth
        .iter()
        .filter(|(k, _)| k.2 == 5)
        .map(|(k, v)| ((k.0, k.1), v.mi))
        .collect();
    let e = ehr_risk::evaluate::run(
        "mi_5y",
        &columns,
        &keys,
        &rows,
        &labels,
        &vec![1.0; rows.len()],
        Some(&oracle),
        "held_out",
        (&spec_hash, &task.hash),
        30,
        1,
    )
    .unwrap();
    assert_eq!(
        e.models.keys().collect::<Vec<_>>(),
        ["logistic", "oracle", "pce"]
    );
    let all = &e.models["oracle"]["all"];
    assert_eq!(all.n, test_y.len());
    let au = all.auroc.unwrap();
    assert!((au.value - a_oracle).abs() < 1e-12 && au.lo < au.value && au.value < au.hi);
    assert!(
        e.models["logistic"].contains_key("sex=F") && e.models["logistic"].contains_key("age=65+")
    );
    assert!(a_oracle > 0.7, "the truth discriminates: {a_oracle}");
    assert!(
        a_log > 0.6 && a_log > a_oracle - 0.1,
        "the baseline learns: {a_log} against the oracle's {a_oracle}"
    );
    assert!(
        a_log <= a_oracle + 0.03,
        "no model beats the oracle by more than noise: {a_log} vs {a_oracle}"
    );
    assert!(a_pce > 0.6 && a_pce <= a_oracle_pce + 0.03);
}
