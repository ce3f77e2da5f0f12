//! One clock, decided at ingest (issue 10): each event's `available_time` is the end of its
//! time's precision, or the discharge of the stay it was coded for, set by the readers, kept
//! through deduplication and MEDS, and the only thing features and labels read. Each test here
//! fails on the engine that inferred availability at feature time from source names.

use crate::common::*;
use ehr_risk::cohort::availability::Visibility;
use ehr_risk::ingest::driver::IngestOptions;
use ehr_risk::ingest::{InputPolicy, time::TimeContext};
use ehr_risk::schema::Event;
use std::path::Path;

const DAY: i64 = 86_400_000_000;

fn ts(s: &str) -> i64 {
    TimeContext::default().parse(s).unwrap()
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A MIMIC-IV export of one patient: a stay from 10:00 on 1 March to 2 days later, a PCI
/// (procedures_icd, dated by day only) on the day of admission, an MI coded for the stay.
fn mimic_iv(dir: &Path) {
    let tables = [
        (
            "patients",
            "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n1,M,60,2150,2011 - 2013,",
        ),
        (
            "admissions",
            "subject_id,hadm_id,admittime,dischtime,race\n1,11,2150-03-01 10:00:00,2150-03-03 12:00:00,WHITE",
        ),
        (
            "procedures_icd",
            "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version\n1,11,1,2150-03-01,0270346,10",
        ),
        (
            "diagnoses_icd",
            "subject_id,hadm_id,seq_num,icd_code,icd_version\n1,11,1,I214,10",
        ),
    ];
    for (table, text) in tables {
        write(&dir.join(format!("hosp/{table}.csv")), &format!("{text}\n"));
    }
}

fn shifted() -> IngestOptions {
    IngestOptions {
        policy: InputPolicy {
            dates_shifted: true,
            ..Default::default()
        },
        ..opts()
    }
}

fn visible_codes(events: &[Event], t: i64) -> Vec<String> {
    let vis = Visibility::new(events);
    vis.visible(t, false)
        .into_iter()
        .map(|i| events[i].code.clone())
        .collect()
}

#[test]
fn a_procedure_dated_on_the_admission_day_is_not_known_at_the_admission() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("mimic");
    mimic_iv(&src);
    let lake = d.path().join("lake");
    let r = ingest_with(&lake, std::slice::from_ref(&src), &shifted());
    assert_balanced(&r);
    valid(&lake);
    let v = LakeView::load(&lake);
    let pci = v
        .events
        .iter()
        .find(|e| e.code.starts_with("ICD10PCS//"))
        .expect("the procedure is in the lake");
    assert_eq!(pci.time, Some(ts("2150-03-01")));
    assert_eq!(pci.available_time, Some(ts("2150-03-02")), "end of its day");
    let admission = ts("2150-03-01 10:00:00");
    let seen = visible_codes(&v.events, admission);
    assert!(seen.iter().any(|c| c == "ENCOUNTER//IMP"));
    assert!(
        !seen.iter().any(|c| c.starts_with("ICD10PCS//")),
        "a PCI dated by day is not visible at 10:00 that day: {seen:?}"
    );
    assert!(
        visible_codes(&v.events, ts("2150-03-02"))
            .iter()
            .any(|c| c.starts_with("ICD10PCS//"))
    );
}

/// An FHIR export with a short stay (`SS`), an observation stay (`OBSENC`) and an inpatient
/// non-acute stay (`NONAC`), each with a Condition coded for it, a Condition recorded a week
/// after its onset and an Observation issued a day after it was taken.
fn fhir(dir: &Path) {
    write(&dir.join("Patient.ndjson"), &format!("{PATIENT}\n"));
    let mut lines = vec![];
    for (i, class) in ["SS", "OBSENC", "NONAC"].iter().enumerate() {
        let day = 10 + 5 * i;
        lines.push(format!(
            r#"{{"resourceType":"Encounter","id":"e{i}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"{class}"}},"subject":{{"reference":"Patient/p1"}},"period":{{"start":"2015-03-{day}T10:00:00Z","end":"2015-03-{}T12:00:00Z"}}}}"#,
            day + 2
        ));
        lines.push(format!(
            r#"{{"resourceType":"Condition","id":"c{i}","subject":{{"reference":"Patient/p1"}},"encounter":{{"reference":"Encounter/e{i}"}},"code":{{"coding":[{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I48.91"}}]}},"onsetDateTime":"2015-03-{day}T11:00:00Z"}}"#
        ));
    }
    lines.push(r#"{"resourceType":"Condition","id":"late","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I10"}]},"onsetDateTime":"2015-05-01","recordedDate":"2015-05-08T09:00:00Z"}"#.to_string());
    lines.push(r#"{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"2093-3"}]},"effectiveDateTime":"2015-06-01T08:00:00Z","issued":"2015-06-02T08:00:00Z","valueQuantity":{"value":212,"unit":"mg/dL"}}"#.to_string());
    write(&dir.join("export.ndjson"), &(lines.join("\n") + "\n"));
}

const PATIENT: &str =
    r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-02-03"}"#;

fn known(v: &LakeView, code: &str, time: &str) -> Option<i64> {
    v.events
        .iter()
        .find(|e| e.code == code && e.time == Some(ts(time)))
        .unwrap_or_else(|| {
            panic!(
                "{code} at {time} in {:?}",
                v.events
                    .iter()
                    .map(|e| (&e.code, e.time))
                    .collect::<Vec<_>>()
            )
        })
        .available_time
}

#[test]
fn every_kind_of_stay_delays_its_diagnoses_and_recorded_or_issued_times_count() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("fhir");
    fhir(&src);
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&src));
    assert_balanced(&r);
    valid(&lake);
    let v = LakeView::load(&lake);
    assert!(v.quarantine.is_empty(), "{:?}", v.quarantine);
    for day in [10, 15, 20] {
        assert_eq!(
            known(&v, "ICD10CM//I48.91", &format!("2015-03-{day}T11:00:00Z")),
            Some(ts(&format!("2015-03-{}T12:00:00Z", day + 2))),
            "the stay of 2015-03-{day} delays its diagnosis to its discharge"
        );
    }
    assert_eq!(
        known(&v, "ICD10CM//I10", "2015-05-01"),
        Some(ts("2015-05-08T09:00:00Z"))
    );
    assert_eq!(
        known(&v, "LOINC//2093-3", "2015-06-01T08:00:00Z"),
        Some(ts("2015-06-02T08:00:00Z"))
    );

    // The lake is a MEDS dataset: read back as MEDS input, it keeps every availability (the
    // old engine switched the discharge rule off for source "meds").
    let again = d.path().join("again");
    let r = ingest(&again, std::slice::from_ref(&lake));
    assert_balanced(&r);
    valid(&again);
    let w = LakeView::load(&again);
    assert!(w.events.iter().all(|e| e.source == "meds"));
    let clock = |v: &LakeView| {
        let mut c: Vec<(String, Option<i64>, Option<i64>)> = v
            .events
            .iter()
            .map(|e| (e.code.clone(), e.time, e.available_time))
            .collect();
        c.sort();
        c
    };
    assert_eq!(clock(&v), clock(&w));
}

#[test]
fn a_duplicate_without_the_visit_link_does_not_make_a_diagnosis_known_earlier() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("fhir");
    fhir(&src);
    // A second export with the same Condition, without its encounter link.
    let line = r#"{"resourceType":"Condition","id":"c0b","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I48.91"}]},"onsetDateTime":"2015-03-10T11:00:00Z"}"#;
    write(
        &d.path().join("second/Patient.ndjson"),
        &format!("{PATIENT}\n"),
    );
    write(
        &d.path().join("second/Condition.ndjson"),
        &format!("{line}\n"),
    );
    let lake = d.path().join("lake");
    // The unlinked copy comes first, in its own run, and is what the lake keeps.
    let first = ingest(&lake, &[d.path().join("second")]);
    assert_eq!(first.totals.rows_rejected, 0);
    let r = ingest(&lake, std::slice::from_ref(&src));
    assert!(r.duplicates >= 1);
    valid(&lake);
    let v = LakeView::load(&lake);
    let copies: Vec<&Event> = v
        .events
        .iter()
        .filter(|e| e.code == "ICD10CM//I48.91" && e.time == Some(ts("2015-03-10T11:00:00Z")))
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].visit_id.as_deref(), Some("e0"));
    assert_eq!(copies[0].available_time, Some(ts("2015-03-12T12:00:00Z")));
}

#[test]
fn meds_input_passes_the_same_checks_as_every_source() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("meds");
    write(
        &src.join("metadata/dataset.json"),
        r#"{"dataset_name":"checks","meds_version":"0.4"}"#,
    );
    let ev = |t: Option<i64>, code: &str, v: Option<f32>| Event {
        subject_id: 7,
        time: t,
        code: code.into(),
        numeric_value: v,
        source: "x".into(),
        ..Default::default()
    };
    let ok = ts("2015-01-01T00:00:00Z");
    let mut early_known = ev(Some(ok), "LOINC//2093-3", Some(200.0));
    early_known.unit = Some("mg/dL".into());
    early_known.available_time = Some(ok - DAY);
    let mut mmol = ev(Some(ok + DAY), "LOINC//2093-3", Some(5.0));
    mmol.unit = Some("mmol/L".into());
    let mut absurd = ev(Some(ok + 2 * DAY), "LOINC//2093-3", Some(90_000.0));
    absurd.unit = Some("mg/dL".into());
    let rows = vec![
        ev(None, "MEDS_BIRTH", None),
        ev(Some(ok), "ICD10CM//I10", None),
        ev(Some(ok), "LOINC//8480-6", Some(f32::NAN)),
        ev(Some(ts("1700-01-01")), "ICD10CM//I10", None),
        ev(Some(ts("2999-01-01")), "ICD10CM//I10", None),
        early_known,
        mmol,
        absurd,
        ev(Some(ok), " ", None),
    ];
    let shard = src.join("data/0.parquet");
    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
    ehr_risk::lake::write::write_events(&shard, &rows).unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&src));
    assert_balanced(&r);
    let t = &r.totals;
    assert_eq!(t.rows_read, rows.len() as u64);
    valid(&lake);
    let v = LakeView::load(&lake);
    let mut reasons: Vec<(String, String)> = v
        .quarantine
        .iter()
        .map(|q| (q.field.clone(), q.reason.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("available_time".to_string(), "bad_date".to_string()),
            ("code".to_string(), "missing_field".to_string()),
            ("numeric_value".to_string(), "bad_number".to_string()),
            ("numeric_value".to_string(), "implausible_value".to_string()),
            ("time".to_string(), "bad_date".to_string()),
            ("time".to_string(), "future_event".to_string()),
        ]
    );
    // The cholesterol in mmol/L is in canonical units now, as from any other source.
    let chol: Vec<&Event> = v
        .events
        .iter()
        .filter(|e| e.code == "LOINC//2093-3")
        .collect();
    assert_eq!(chol.len(), 1);
    assert_eq!(chol[0].unit.as_deref(), Some("mg/dL"));
    assert!((chol[0].numeric_value.unwrap() - 193.35).abs() < 0.5);
}

#[test]
fn a_lake_of_another_format_version_is_refused_with_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo()]);
    let mp = lake.join("manifest.json");
    let text = std::fs::read_to_string(&mp).unwrap();
    let old = text.replace("\"lake_format_version\": 2", "\"lake_format_version\": 1");
    assert_ne!(old, text, "the manifest records its version");
    std::fs::write(&mp, old).unwrap();
    let Err(e) = ehr_risk::lake::Lake::open(&lake) else {
        panic!("a version 1 lake opened");
    };
    let e = e.to_string();
    assert!(e.contains("version 1") && e.contains("re-ingest"), "{e}");
}

/// The audit can see a clock that leaks: on a lake where a diagnosis coded for a stay was
/// made known at its own time (what the old engine did, or another tool's lake), `audit` names
/// the shard and row and exits 1; on the lake as ingested it finds nothing.
#[test]
fn audit_reports_a_diagnosis_known_before_its_discharge_on_a_crafted_lake() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("fhir");
    fhir(&src);
    let lake = d.path().join("lake");
    ingest(&lake, &[demo(), src]);
    let audit = |tag: &str| {
        let p = |x: &str| d.path().join(format!("{x}-{tag}")).display().to_string();
        let l = lake.display().to_string();
        let o = bin()
            .args(["cohort", "-q", "--lake", &l, "--out", &p("cohort")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = bin()
            .args([
                "audit",
                "--lake",
                &l,
                "--cohort",
                &p("cohort"),
                "--sample",
                "50",
            ])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, out) = audit("clean");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("; 0 events known earlier"), "{out}");

    let l = ehr_risk::lake::Lake::open(&lake).unwrap();
    let mut tampered = 0;
    for p in l.shard_files().unwrap() {
        let mut events = ehr_risk::lake::read_events(&p).unwrap();
        let mut hit = false;
        for e in events.iter_mut() {
            if e.code == "ICD10CM//I48.91" && e.time == Some(ts("2015-03-10T11:00:00Z")) {
                e.available_time = e.time;
                hit = true;
                tampered += 1;
            }
        }
        if hit {
            ehr_risk::lake::write::write_events(&p, &events).unwrap();
        }
    }
    assert_eq!(tampered, 1);
    let (code, out) = audit("tampered");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("; 1 events known earlier"), "{out}");
    assert!(
        out.contains("lake shard ") && out.contains(" row "),
        "{out}"
    );
}
