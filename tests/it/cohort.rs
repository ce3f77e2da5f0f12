//! Cohorts, labels and features on real data and crafted cases: label counts equal counts
//! derived independently from the raw CSV files; labels pass the `meds` label validator; a
//! diagnosis dated at an admission's discharge never reaches a prediction made inside it; and
//! the leakage law (features do not move when only later events change) holds under proptest.

use crate::common::*;
use ehr_risk::cohort::labels::MICROS_PER_YEAR;
use ehr_risk::cohort::spec::{CensorRule, Task, TimesKind};
use ehr_risk::features::compute::{Visibility, Vocab, features_at};
use ehr_risk::features::spec::{Compiled, FeatureSpec};
use ehr_risk::ingest::time::TimeContext;
use ehr_risk::schema::Event;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

fn ts(s: &str) -> i64 {
    TimeContext::default().parse(s).unwrap()
}

fn task(f: impl Fn(&mut ehr_risk::cohort::spec::TaskSpec)) -> Task {
    let mut s = Task::load("mi_stroke").unwrap().spec;
    f(&mut s);
    Task::from_spec(s, None).unwrap()
}

/// Labels written for one outcome/horizon: (subject, time) -> value.
fn read_labels(dir: &Path) -> BTreeMap<(i64, i64), bool> {
    use arrow::array::{BooleanArray, Int64Array, TimestampMicrosecondArray};
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let f = std::fs::File::open(e.path()).unwrap();
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let s = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let t = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let v = b.column(2).as_any().downcast_ref::<BooleanArray>().unwrap();
            for i in 0..b.num_rows() {
                out.insert((s.value(i), t.value(i)), v.value(i));
            }
        }
    }
    out
}

fn csv_rows(p: &Path) -> Vec<HashMap<String, String>> {
    let f = std::fs::File::open(p).unwrap();
    let r: Box<dyn std::io::Read> = if p.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut rd = csv::Reader::from_reader(r);
    let h: Vec<String> = rd
        .headers()
        .unwrap()
        .iter()
        .map(|x| x.to_ascii_lowercase())
        .collect();
    rd.records()
        .map(|r| {
            h.iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn eunomia_mi_labels_match_an_independent_count_from_the_raw_tables() {
    let Some(root) = shared("eunomia-gibleed-omop53") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, std::slice::from_ref(&root));
    let t = task(|s| {
        s.prediction_times.kind = TimesKind::Fixed;
        s.prediction_times.start = "2010-01-01".into();
        s.prediction_times.end = None;
        s.window.horizons_years = vec![5];
        s.window.min_age = 18.0;
        s.window.max_age = 100.0;
        s.window.censoring = CensorRule::Mark;
    });
    let summary = ehr_risk::cohort::run(&lake, &t, &d.path().join("cohort")).unwrap();
    let labels = read_labels(&d.path().join("cohort/labels/mi_5y"));
    // Independently, from the CSV files: birth from year/month/day of birth; the first dated
    // record over the clinical tables; MI = condition concept 4329847; observation from the
    // records (a visit until its end date, a drug or condition at its start: a stop date is
    // not a contact) to 730 days after the last one not within 30 days after an MI, or the
    // extract's last date; eligible = age 18-100, a record a year before, observed after; an
    // MI counts in (2010-01-01, 2015-01-01] when observed.
    let t0 = ts("2010-01-01");
    let end = t0 + 5 * MICROS_PER_YEAR;
    let day = 86_400_000_000i64;
    let mut first: HashMap<String, i64> = HashMap::new();
    let mut records: HashMap<String, Vec<i64>> = HashMap::new();
    let mut mi: HashMap<String, Vec<i64>> = HashMap::new();
    let tables = [
        ("condition_occurrence.csv", "condition_start_date", None),
        ("drug_exposure.csv", "drug_exposure_start_date", None),
        ("procedure_occurrence.csv", "procedure_date", None),
        (
            "visit_occurrence.csv",
            "visit_start_date",
            Some("visit_end_date"),
        ),
        ("measurement.csv", "measurement_date", None),
        ("observation.csv", "observation_date", None),
    ];
    let mut extract_end = i64::MIN;
    for (file, start_col, end_col) in &tables {
        for r in csv_rows(&root.join(file)) {
            let p = r["person_id"].clone();
            let Some(x) = r.get(*start_col).filter(|v| !v.is_empty()).map(|v| ts(v)) else {
                continue;
            };
            let f = first.entry(p.clone()).or_insert(x);
            *f = (*f).min(x);
            let until = end_col
                .and_then(|c| r.get(c).filter(|v| !v.is_empty()).map(|v| ts(v)))
                .map_or(x, |e| e.max(x));
            extract_end = extract_end.max(until);
            records.entry(p.clone()).or_default().push(x);
            records.entry(p.clone()).or_default().push(until);
            if *file == "condition_occurrence.csv" && r["condition_concept_id"] == "4329847" {
                mi.entry(p.clone()).or_default().push(x);
            }
        }
    }
    let (mut eligible, mut positive) = (0, 0);
    for r in csv_rows(&root.join("person.csv")) {
        let p = &r["person_id"];
        let birth = ts(&format!(
            "{:0>4}-{:0>2}-{:0>2}",
            r["year_of_birth"], r["month_of_birth"], r["day_of_birth"]
        ));
        let age = (t0 - birth) as f64 / MICROS_PER_YEAR as f64;
        let mis = mi.get(p).cloned().unwrap_or_default();
        let observed = records
            .get(p)
            .into_iter()
            .flatten()
            .filter(|&&x| !mis.iter().any(|&m| (m..=m + 30 * day).contains(&x)))
            .max()
            .map(|l| (l + 730 * day).min(extract_end));
        let ok = (18.0..=100.0).contains(&age)
            && first
                .get(p)
                .is_some_and(|f| *f <= t0 - 365 * 86_400_000_000)
            && observed.is_some_and(|o| o > t0);
        if ok {
            eligible += 1;
            let seen = observed.unwrap().min(end);
            positive += mis.iter().any(|x| (t0..=seen).contains(x)) as usize;
        }
    }
    assert!(positive > 3, "the window holds MIs: {positive}");
    assert_eq!(labels.len(), eligible, "{:?}", summary.excluded_by_reason);
    assert_eq!(labels.values().filter(|v| **v).count(), positive);
    assert_eq!(summary.labels["mi_5y"]["all"].positive as usize, positive);
}

#[test]
fn mimic_admission_labels_match_an_independent_count() {
    let Some(raw) = shared("mimic-iv-demo-raw") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, std::slice::from_ref(&raw));
    let t = task(|s| {
        s.prediction_times.kind = TimesKind::Encounters;
        s.prediction_times.encounter_codes = vec!["ENCOUNTER//IMP".into()];
        s.prediction_times.start = "2100-01-01".into();
        s.prediction_times.end = Some("2300-01-01".into());
        s.window.horizons_years = vec![1];
        s.window.min_history_days = 0;
        s.window.min_age = 18.0;
        s.window.max_age = 120.0;
        s.window.censoring = CensorRule::Mark;
    });
    ehr_risk::cohort::run(&lake, &t, &d.path().join("cohort")).unwrap();
    let labels = read_labels(&d.path().join("cohort/labels/mi_1y"));
    // Independently: each admission is a prediction time; positive when an MI diagnosis
    // (ICD-9 410*, ICD-10 I21*/I22*) belongs to an admission discharged within a year of it.
    let tc = TimeContext::default();
    let adm = csv_rows(&raw.join("hosp/admissions.csv.gz"));
    let disch: HashMap<String, i64> = adm
        .iter()
        .map(|r| (r["hadm_id"].clone(), tc.parse(&r["dischtime"]).unwrap()))
        .collect();
    let mut mi_times: HashMap<String, Vec<i64>> = HashMap::new();
    for r in csv_rows(&raw.join("hosp/diagnoses_icd.csv.gz")) {
        let c = &r["icd_code"];
        if (r["icd_version"] == "10" && (c.starts_with("I21") || c.starts_with("I22")))
            || (r["icd_version"] == "9" && c.starts_with("410"))
        {
            mi_times
                .entry(r["subject_id"].clone())
                .or_default()
                .push(disch[&r["hadm_id"]]);
        }
    }
    let patients: HashMap<String, HashMap<String, String>> =
        csv_rows(&raw.join("hosp/patients.csv.gz"))
            .into_iter()
            .map(|r| (r["subject_id"].clone(), r))
            .collect();
    let mut times: BTreeSet<(String, i64)> = BTreeSet::new();
    for r in &adm {
        let p = &patients[&r["subject_id"]];
        let t = tc.parse(&r["admittime"]).unwrap();
        let birth = tc
            .parse(&format!(
                "{}-01-01",
                p["anchor_year"].parse::<i64>().unwrap() - p["anchor_age"].parse::<i64>().unwrap()
            ))
            .unwrap();
        let age = (t - birth) as f64 / MICROS_PER_YEAR as f64;
        let dead = p
            .get("dod")
            .filter(|x| !x.is_empty())
            .is_some_and(|x| tc.parse(x).unwrap() < t);
        if (18.0..=120.0).contains(&age) && !dead {
            times.insert((r["subject_id"].clone(), t));
        }
    }
    let positive = times
        .iter()
        .filter(|(s, t)| {
            mi_times
                .get(s)
                .is_some_and(|v| v.iter().any(|x| *x >= *t && *x <= t + MICROS_PER_YEAR))
        })
        .count();
    assert!(
        positive >= 11,
        "every MI admission is itself a positive prediction time: {positive}"
    );
    assert_eq!(labels.len(), times.len());
    assert_eq!(labels.values().filter(|v| **v).count(), positive);
}

#[test]
fn labels_pass_the_meds_label_validator() {
    let pydeps = repo().join(".pydeps");
    if !pydeps.join("meds").exists() {
        skip(".pydeps/meds missing (run scripts/setup.sh)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let m = ehr_risk::synth::run(
        &d.path().join("in"),
        &ehr_risk::synth::SynthOptions {
            patients: 300,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(m.people, 300);
    let lake = d.path().join("lake");
    ingest(
        &lake,
        &["hospital_fhir", "clinic_omop", "synthea_csv"].map(|x| d.path().join("in").join(x)),
    );
    ehr_risk::cohort::run(
        &lake,
        &Task::load("mi_stroke").unwrap(),
        &d.path().join("cohort"),
    )
    .unwrap();
    let script = "import glob,sys,pyarrow.parquet as pq,meds\nn=0\nfor f in glob.glob(sys.argv[1]+'/labels/*/*.parquet'):\n    t=pq.read_table(f); meds.LabelSchema.validate(t); n+=t.num_rows\nprint('LABELS OK', n)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(d.path().join("cohort"))
        .env("PYTHONPATH", &pydeps)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("LABELS OK"));
}

fn compiled() -> Compiled {
    let mut codes = BTreeMap::new();
    codes.insert(
        "RXNORM//617312".to_string(),
        Some("atorvastatin 20 MG Oral Tablet".to_string()),
    );
    Compiled::new(FeatureSpec::builtin(), &codes).unwrap()
}

fn ev(t: &str, code: &str) -> Event {
    Event {
        subject_id: 1,
        time: Some(ts(t)),
        code: code.into(),
        source: "test".into(),
        ..Default::default()
    }
}

#[test]
fn discharge_dated_diagnosis_does_not_reach_a_prediction_inside_the_stay() {
    let c = compiled();
    let t = task(|_| {});
    let mut stay = ev("2015-03-01T10:00:00Z", "ENCOUNTER//IMP");
    stay.end_time = Some(ts("2015-03-06T12:00:00Z"));
    stay.visit_id = Some("h1".into());
    // OMOP-style: the diagnosis carries the admission date but is coded at discharge.
    let mut dx = ev("2015-03-01T10:00:00Z", "ICD10CM//I48.91");
    dx.source = "omop:condition_occurrence".into();
    dx.visit_id = Some("h1".into());
    dx.coded_at_discharge = true;
    let mut events = vec![
        ev("1950-01-01", "MEDS_BIRTH"),
        ev("2010-01-01", "ENCOUNTER//AMB"),
        stay,
        dx,
    ];
    events.sort_by(|a, b| a.lake_cmp(b));
    ehr_risk::schema::availability::resolve(&mut events);
    let vis = Visibility::new(&events);
    let cols = ehr_risk::features::compute::tabular_columns(&c, &t);
    let af = cols
        .iter()
        .position(|x| x == "dx_atrial_fibrillation")
        .unwrap();
    let during = features_at(
        &events,
        &vis,
        ts("2015-03-03T00:00:00Z"),
        &c,
        &t,
        &Vocab::default(),
    );
    assert_eq!(
        during.0[af], 0.0,
        "inside the stay the diagnosis is not yet available"
    );
    let after = features_at(
        &events,
        &vis,
        ts("2015-03-07T00:00:00Z"),
        &c,
        &t,
        &Vocab::default(),
    );
    assert_eq!(after.0[af], 1.0, "after discharge it is");
}

/// Issue 10: a treatment's stop date is future information. A statin started 500 days before
/// the prediction time is not active because the export, written later, says it stopped 30
/// days after it (the old rule, `end_time >= t`, made it active).
#[test]
fn a_stop_date_written_later_does_not_make_a_treatment_active() {
    let c = compiled();
    let t = task(|_| {});
    let mut rx = ev("2013-09-01", "RXNORM//617312");
    rx.source = "fhir:MedicationRequest".into();
    rx.end_time = Some(ts("2015-02-01"));
    let mut events = vec![
        ev("1950-01-01", "MEDS_BIRTH"),
        ev("2010-01-01", "ENCOUNTER//AMB"),
        rx.clone(),
    ];
    events.sort_by(|a, b| a.lake_cmp(b));
    let cols = ehr_risk::features::compute::tabular_columns(&c, &t);
    let statin = cols.iter().position(|x| x == "rx_statin").unwrap();
    let at = |events: &[Event], when: &str| {
        features_at(
            events,
            &Visibility::new(events),
            ts(when),
            &c,
            &t,
            &Vocab::default(),
        )
        .0[statin]
    };
    assert_eq!(at(&events, "2015-01-01"), 0.0, "started 487 days before");
    assert_eq!(at(&events, "2014-06-01"), 1.0, "started within the year");
    // The same with the stop date unknown (an export written at the time): same answer.
    events.iter_mut().for_each(|e| e.end_time = None);
    assert_eq!(at(&events, "2015-01-01"), 0.0);
}

mod leakage {
    use super::*;
    use proptest::prelude::*;

    fn arb_events() -> impl Strategy<Value = Vec<Event>> {
        let codes = prop::sample::select(vec![
            "LOINC//8480-6",
            "LOINC//2093-3",
            "SNOMED//22298006",
            "ICD10CM//I10",
            "RXNORM//617312",
            "ENCOUNTER//AMB",
            "ENCOUNTER//IMP",
            "LOINC//72166-2",
        ]);
        prop::collection::vec(
            (
                0i64..5000,
                codes,
                prop::option::of(50.0f32..250.0),
                any::<bool>(),
                0i64..20,
            ),
            1..60,
        )
        .prop_map(|v| {
            let base = ts("2008-01-01");
            let day = 86_400_000_000i64;
            let mut out = vec![
                ev("1955-06-01", "MEDS_BIRTH"),
                Event {
                    subject_id: 1,
                    code: "GENDER//F".into(),
                    source: "test".into(),
                    ..Default::default()
                },
            ];
            for (k, (d, code, val, diag, len)) in v.into_iter().enumerate() {
                let mut e = Event {
                    subject_id: 1,
                    time: Some(base + d * day),
                    code: code.into(),
                    source: "test".into(),
                    ..Default::default()
                };
                e.numeric_value =
                    val.filter(|_| code.starts_with("LOINC//") && code != "LOINC//72166-2");
                if code == "LOINC//72166-2" {
                    e.text_value = Some(
                        if diag {
                            "Current every day smoker"
                        } else {
                            "Never smoker"
                        }
                        .into(),
                    );
                }
                e.visit_id = Some(format!("v{}", k % 4));
                if code == "ENCOUNTER//IMP" {
                    e.end_time = Some(base + (d + len) * day);
                }
                // Prescriptions with a stop date, possibly long after they started.
                if code == "RXNORM//617312" && diag {
                    e.end_time = Some(base + (d + 40 * len) * day);
                }
                if diag && code.starts_with("ICD10CM") {
                    e.source = "fhir:Condition".into();
                    e.coded_at_discharge = true;
                }
                // Date-only values are known at the end of their day.
                if len % 3 == 0 {
                    e.available_time = Some(base + (d + 1) * day);
                }
                e.provenance.row = k as u64;
                out.push(e);
            }
            out.sort_by(|a, b| a.lake_cmp(b));
            ehr_risk::schema::availability::resolve(&mut out);
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]
        #[test]
        fn features_do_not_depend_on_events_after_the_prediction_time(events in arb_events(), at in 100i64..5000, seed in any::<u64>(), same_time in any::<bool>()) {
            let c = compiled();
            let t = task(|s| s.window.same_time_is_future = same_time);
            let vocab = Vocab::learn(events.iter(), 1);
            let when = ts("2008-01-01") + at * 86_400_000_000;
            let before = features_at(&events, &Visibility::new(&events), when, &c, &t, &vocab);
            let mut rng = ehr_risk::rng::Rng::new(seed, 0, 0);
            let perturbed = ehr_risk::features::perturb_after(&events, when, same_time, &mut rng);
            let after = features_at(&perturbed, &Visibility::new(&perturbed), when, &c, &t, &vocab);
            prop_assert!(ehr_risk::features::same_features(&before, &after));
        }
    }
}

#[test]
fn audit_command_on_the_demo_finds_no_leak() {
    let d = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_ehr-risk");
    let ok = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let p = |x: &str| d.path().join(x).display().to_string();
    ok(&["demo", "-q", "--patients", "400", "--out", &p("demo")]);
    ok(&[
        "cohort",
        "-q",
        "--lake",
        &p("demo/lake"),
        "--out",
        &p("cohort"),
    ]);
    ok(&[
        "features",
        "-q",
        "--lake",
        &p("demo/lake"),
        "--cohort",
        &p("cohort"),
        "--out",
        &p("features"),
    ]);
    let out = ok(&[
        "audit",
        "--lake",
        &p("demo/lake"),
        "--cohort",
        &p("cohort"),
        "--sample",
        "300",
    ]);
    assert!(
        out.contains("300 prediction times perturbed") && out.contains(", 0 changed"),
        "{out}"
    );
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("features/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["vocab_learned_on"], "train");
    assert!(m["rows"].as_u64().unwrap() > 1000);
}

/// Issue 10: stages check each other. Features refuse a cohort made from another lake (the
/// lake changed since: a new export was ingested) or from another task, saying what differs.
#[test]
fn features_refuse_a_cohort_of_another_lake_or_task() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo().join("fhir")]);
    let other = task(|s| s.window.min_age = 40.0);
    let task = Task::load("mi_stroke").unwrap();
    let cohort = d.path().join("cohort");
    ehr_risk::cohort::run(&lake, &task, &cohort).unwrap();
    let spec = ehr_risk::features::spec::FeatureSpec::builtin;
    // Another task (same lake): refused.
    let e = ehr_risk::features::run(&lake, &cohort, &other, spec(), &d.path().join("f1"))
        .expect_err("refused");
    assert!(e.to_string().contains("the task with hash"), "{e}");
    // The lake moved on: refused, and the message says what to do.
    ingest(&lake, &[demo().join("synthea")]);
    let e = ehr_risk::features::run(&lake, &cohort, &task, spec(), &d.path().join("f2"))
        .expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("the lake with fingerprint") && msg.contains("ehr-risk cohort"),
        "{msg}"
    );
    // A fresh cohort of the same lake is accepted.
    ehr_risk::cohort::run(&lake, &task, &cohort).unwrap();
    ehr_risk::features::run(&lake, &cohort, &task, spec(), &d.path().join("f3")).unwrap();
}
