//! Lake behaviour on the embedded demo exports: what the demo's defects become, identity
//! linking across exports, exact-duplicate removal, idempotent and incremental runs,
//! determinism, recovery from an interrupted commit, and the lake's own validation.

use crate::common::*;
use ehr_risk::lake::{Lake, validate::validate};

#[test]
fn demo_exports_link_people_and_quarantine_each_defect() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let r = ingest(
        &lake,
        &[
            demo().join("fhir"),
            demo().join("synthea"),
            demo().join("omop"),
        ],
    );
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    // The defects listed in examples/demo/README.md, one each.
    let mut got: Vec<(String, u64, String)> = v
        .quarantine
        .iter()
        .map(|q| {
            (
                q.file
                    .rsplit('/')
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("/"),
                q.row,
                q.reason.clone(),
            )
        })
        .collect();
    got.sort();
    let want = [
        ("fhir/Condition.ndjson", 3, "bad_date"),
        ("fhir/Observation.ndjson", 5, "unknown_unit"),
        ("fhir/Observation.ndjson", 6, "unknown_patient"),
        ("fhir/Observation.ndjson", 8, "malformed_json"),
        ("omop/condition_occurrence.csv", 3, "unknown_patient"),
        ("omop/measurement.csv", 4, "bad_date"),
        ("synthea/observations.csv", 6, "implausible_value"),
    ];
    let want: Vec<(String, u64, String)> = want
        .iter()
        .map(|(f, l, r)| (f.to_string(), *l, r.to_string()))
        .collect();
    assert_eq!(got, want);
    // Four people, whatever export they came from.
    let subjects: std::collections::BTreeSet<i64> = v.events.iter().map(|e| e.subject_id).collect();
    assert_eq!(subjects.len(), 4);
    let p1 = v
        .subject_of("a1f0c8e2-0001-4000-8000-000000000001")
        .unwrap();
    let p1_sources: std::collections::BTreeSet<&str> = v
        .events
        .iter()
        .filter(|e| e.subject_id == p1)
        .map(|e| e.source.split(':').next().unwrap())
        .collect();
    assert_eq!(
        p1_sources.into_iter().collect::<Vec<_>>(),
        ["fhir", "omop", "synthea"]
    );
    // Person 1's BP is in FHIR (-07:00) and Synthea (Z) at the same instant: stored once.
    let t = chrono::DateTime::parse_from_rfc3339("2019-04-10T16:15:00Z")
        .unwrap()
        .timestamp_micros();
    let sbp: Vec<_> = v
        .events
        .iter()
        .filter(|e| e.subject_id == p1 && e.code == "LOINC//8480-6" && e.time == Some(t))
        .collect();
    assert_eq!(sbp.len(), 1, "{sbp:?}");
    assert_eq!(sbp[0].numeric_value, Some(148.0));
    assert_eq!(sbp[0].unit.as_deref(), Some("mmHg"));
    assert!(
        r.duplicates >= 2,
        "systolic and diastolic duplicates removed: {}",
        r.duplicates
    );
    // SI units converted: 6.2 mmol/L total cholesterol = 239.754 mg/dL; HbA1c 58 mmol/mol = 7.458 %.
    let p4 = v
        .subject_of("a1f0c8e2-0004-4000-8000-000000000004")
        .unwrap();
    let tc = v
        .events
        .iter()
        .find(|e| e.subject_id == p4 && e.code == "LOINC//2093-3")
        .unwrap();
    assert!((tc.numeric_value.unwrap() - 239.754).abs() < 0.01);
    let a1c = v
        .events
        .iter()
        .find(|e| e.subject_id == p4 && e.code == "LOINC//4548-4")
        .unwrap();
    assert!((a1c.numeric_value.unwrap() - 7.4578).abs() < 0.01);
    assert_eq!(a1c.unit.as_deref(), Some("%"));
    // The OMOP MI keeps its SNOMED concept and its ICD-10 source.
    let p2 = v
        .subject_of("a1f0c8e2-0002-4000-8000-000000000002")
        .unwrap();
    let mi = v
        .events
        .iter()
        .find(|e| e.subject_id == p2 && e.code == "SNOMED//22298006")
        .unwrap();
    assert_eq!(mi.source_code.as_deref(), Some("ICD10CM//I21.4"));
    assert!(validate(&Lake::open(&lake).unwrap()).unwrap().ok());
}

#[test]
fn same_export_twice_changes_nothing_and_new_export_adds_only_new_rows() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let first = ingest(&lake, &[demo().join("fhir")]);
    let before = lake_bytes(&lake);
    let again = ingest(&lake, &[demo().join("fhir")]);
    assert!(!again.committed);
    assert!(again.files.iter().all(|f| f.status == "already_ingested"));
    assert_eq!(
        lake_bytes(&lake),
        before,
        "re-running the same export leaves every byte as it was"
    );
    // Adding Synthea: only its rows are read. Person 1's birth, sex and race and her two BP
    // readings are already in the lake from FHIR: 5 duplicates counted, not written.
    let second = ingest(&lake, &[demo().join("fhir"), demo().join("synthea")]);
    assert_balanced(&second);
    assert_eq!(
        second.files.iter().filter(|f| f.status == "read").count(),
        4
    );
    assert_eq!(second.duplicates, 5);
    let v = LakeView::load(&lake);
    assert_eq!(
        v.events.len() as u64,
        first.events_written + second.events_written
    );
    let m = Lake::open(&lake).unwrap().manifest;
    assert_eq!(m.runs.len(), 2);
    assert!(validate(&Lake::open(&lake).unwrap()).unwrap().ok());
}

#[test]
fn same_inputs_give_the_same_lake_bytes() {
    let d = tempfile::tempdir().unwrap();
    let inputs = [
        demo().join("omop"),
        demo().join("fhir"),
        demo().join("synthea"),
    ];
    ingest(&d.path().join("a"), &inputs);
    let mut o = opts();
    o.buffer_events = 3; // force many spills: the result must not depend on buffering
    ingest_with(&d.path().join("b"), &inputs, &o);
    assert_eq!(
        lake_bytes(&d.path().join("a")),
        lake_bytes(&d.path().join("b"))
    );
}

#[test]
fn interrupted_run_leaves_previous_lake_intact() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo().join("fhir")]);
    let before = lake_bytes(&lake);
    // A run killed while staging: half-written files and no journal.
    std::fs::create_dir_all(lake.join(".staging/data")).unwrap();
    std::fs::write(
        lake.join(".staging/data/shard-0000.parquet"),
        b"half a file",
    )
    .unwrap();
    std::fs::write(lake.join(".staging/manifest.json"), b"{").unwrap();
    let l = Lake::open(&lake).unwrap();
    assert!(validate(&l).unwrap().ok());
    assert_eq!(lake_bytes(&lake), before);
}

#[test]
fn validate_catches_a_broken_lake() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo().join("fhir")]);
    // Reverse a shard's rows: subjects stay contiguous but times go backwards.
    let l = Lake::open(&lake).unwrap();
    let p = l
        .shard_files()
        .unwrap()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut ev = ehr_risk::lake::read_events(&p).unwrap();
    ev.reverse();
    ehr_risk::lake::write::write_events(&p, &ev).unwrap();
    let v = validate(&l).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("not sorted by time")),
        "{:?}",
        v.problems
    );
}

/// Issue 10: a deleted or truncated shard is an error, not an empty shard; `lake validate`
/// finds both, and every stage reading the lake refuses it naming the file.
#[test]
fn a_missing_or_truncated_shard_is_an_error_not_an_empty_shard() {
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    ingest(&lake, &[demo()]);
    let l = Lake::open(&lake).unwrap();
    assert!(validate(&l).unwrap().ok());
    let files = l.shard_files().unwrap();
    assert!(files.len() >= 2);
    let task = ehr_risk::cohort::spec::Task::load("mi_stroke").unwrap();
    // Truncated: one event fewer than the manifest records.
    let original = ehr_risk::lake::read_events(&files[0]).unwrap();
    let mut ev = original.clone();
    ev.pop();
    ehr_risk::lake::write::write_events(&files[0], &ev).unwrap();
    let v = validate(&l).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("the manifest records")),
        "{:?}",
        v.problems
    );
    let e = ehr_risk::cohort::run(&lake, &task, &d.path().join("c1")).unwrap_err();
    assert!(e.to_string().contains("truncated or altered"), "{e}");
    // Missing (the truncated one restored).
    ehr_risk::lake::write::write_events(&files[0], &original).unwrap();
    assert!(validate(&l).unwrap().ok());
    std::fs::remove_file(&files[1]).unwrap();
    let v = validate(&l).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("missing")),
        "{:?}",
        v.problems
    );
    let e = ehr_risk::cohort::run(&lake, &task, &d.path().join("c2")).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(l.shard_files().is_err());
}
