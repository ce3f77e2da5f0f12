//! A crafted bad input per quarantine reason: each row is rejected with file, line, field,
//! value, reason and raw text, and the counts still add up.

use crate::common::*;
use std::path::{Path, PathBuf};

const P1: &str =
    r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1960-01-01"}"#;

fn obs(extra: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/p1"}},"code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}}{extra}}}"#
    )
}

/// Write a FHIR bulk export (Patient.ndjson + Observation.ndjson) and ingest it.
fn fhir_case(
    obs_lines: &[String],
) -> (
    tempfile::TempDir,
    LakeView,
    ehr_risk::ingest::driver::IngestReport,
    PathBuf,
) {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("Patient.ndjson"), format!("{P1}\n")).unwrap();
    let op = input.join("Observation.ndjson");
    std::fs::write(&op, obs_lines.join("\n") + "\n").unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, &[input]);
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    (d, v, r, op)
}

fn only_quarantine(
    v: &LakeView,
    reason: &str,
    field: &str,
    line: u64,
    file: &Path,
) -> ehr_risk::ingest::Quarantined {
    let q: Vec<_> = v.quarantine.iter().filter(|q| q.reason == reason).collect();
    assert_eq!(
        q.len(),
        1,
        "one {reason} row expected, got {:?}",
        v.quarantine
    );
    let q = q[0].clone();
    assert_eq!(q.field, field);
    assert_eq!(q.row, line);
    assert_eq!(q.file, file.display().to_string());
    assert!(!q.raw.is_empty() || reason == "truncated_gzip");
    assert!(!q.message.is_empty());
    q
}

#[test]
fn malformed_json_line() {
    let (_d, v, r, f) = fhir_case(&[
        obs(r#","effectiveDateTime":"2020-01-01","valueQuantity":{"value":120,"unit":"mmHg"}"#),
        r#"{"resourceType":"Observation","#.to_string(),
    ]);
    only_quarantine(&v, "malformed_json", "*", 2, &f);
    assert_eq!(r.totals.rows_rejected, 1);
    assert_eq!(
        v.events
            .iter()
            .filter(|e| e.code == "LOINC//8480-6")
            .count(),
        1,
        "the good line is kept"
    );
}

#[test]
fn missing_required_field() {
    let no_time = obs(r#","valueQuantity":{"value":120,"unit":"mmHg"}"#);
    let (_d, v, _, f) = fhir_case(&[no_time]);
    only_quarantine(&v, "missing_field", "effective[x]", 1, &f);
}

#[test]
fn unparseable_date() {
    let (_d, v, _, f) = fhir_case(&[obs(
        r#","effectiveDateTime":"2021-13-45","valueQuantity":{"value":120,"unit":"mmHg"}"#,
    )]);
    let q = only_quarantine(&v, "bad_date", "effectiveDateTime", 1, &f);
    assert_eq!(q.value, "2021-13-45");
}

#[test]
fn impossible_values() {
    let (_d, v, _, _) = fhir_case(&[
        obs(r#","effectiveDateTime":"2020-01-01","valueQuantity":{"value":0,"unit":"mmHg"}"#),
        obs(r#","effectiveDateTime":"2020-01-02","valueQuantity":{"value":900,"unit":"mmHg"}"#),
        obs(r#","effectiveDateTime":"2020-01-03","valueQuantity":{"value":121,"unit":"mmHg"}"#),
    ]);
    let q: Vec<_> = v
        .quarantine
        .iter()
        .filter(|q| q.reason == "implausible_value")
        .collect();
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].row, q[1].row), (1, 2));
    assert!(q[1].message.contains("40..300"), "{}", q[1].message);
    assert_eq!(
        v.events
            .iter()
            .filter(|e| e.code == "LOINC//8480-6")
            .count(),
        1
    );
}

#[test]
fn events_far_in_the_future() {
    let (_d, v, _, f) = fhir_case(&[obs(
        r#","effectiveDateTime":"2999-01-01","valueQuantity":{"value":120,"unit":"mmHg"}"#,
    )]);
    only_quarantine(&v, "future_event", "effectiveDateTime", 1, &f);
}

#[test]
fn unknown_unit_is_not_guessed() {
    let line = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01","code":{"coding":[{"system":"http://loinc.org","code":"2093-3"}]},"valueQuantity":{"value":2.1,"unit":"g/L"}}"#;
    let (_d, v, _, f) = fhir_case(&[line.to_string()]);
    let q = only_quarantine(&v, "unknown_unit", "valueQuantity", 1, &f);
    assert_eq!(q.value, "g/L");
    assert!(
        q.message.contains("mmol/l") && q.message.contains("mg/dl"),
        "{}",
        q.message
    );
    assert!(v.events.iter().all(|e| e.code != "LOINC//2093-3"));
}

#[test]
fn reference_to_unknown_patient() {
    let line =
        obs(r#","effectiveDateTime":"2020-01-01","valueQuantity":{"value":120,"unit":"mmHg"}"#)
            .replace("Patient/p1", "Patient/nobody");
    let (_d, v, _, f) = fhir_case(&[line]);
    let q = only_quarantine(&v, "unknown_patient", "subject.reference", 1, &f);
    assert_eq!(q.value, "Patient/nobody");
}

#[test]
fn unsupported_value_type() {
    let (_d, v, _, f) = fhir_case(&[obs(
        r#","effectiveDateTime":"2020-01-01","valueRange":{"low":{"value":1}}"#,
    )]);
    only_quarantine(&v, "unsupported_value_type", "valueRange", 1, &f);
}

#[test]
fn birth_after_death() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Patient.ndjson");
    std::fs::write(&p, r#"{"resourceType":"Patient","id":"x","birthDate":"2000-01-01","deceasedDateTime":"1990-01-01"}"#).unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&p));
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    only_quarantine(&v, "birth_after_death", "deceasedDateTime", 1, &p);
    assert!(v.events.is_empty());
}

#[test]
fn truncated_gzip_keeps_rows_before_the_break() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("Patient.ndjson"), format!("{P1}\n")).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    for i in 0..3000 {
        let day = 1 + i % 28;
        writeln!(enc, "{}", obs(&format!(r#","effectiveDateTime":"2020-02-{day:02}T00:00:{:02}Z","valueQuantity":{{"value":{},"unit":"mmHg"}}"#, i % 60, 100 + i % 50))).unwrap();
    }
    let gz = enc.finish().unwrap();
    let f = input.join("Observation.ndjson.gz");
    std::fs::write(&f, &gz[..gz.len() * 2 / 3]).unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, &[input]);
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    let q: Vec<_> = v
        .quarantine
        .iter()
        .filter(|q| q.reason == "truncated_gzip")
        .collect();
    assert_eq!(q.len(), 1);
    let obs_file = r
        .files
        .iter()
        .find(|x| x.path.ends_with("Observation.ndjson.gz"))
        .unwrap();
    assert_eq!(
        q[0].row, obs_file.tally.rows_read,
        "the break is reported at the line after the last complete one"
    );
    assert!(obs_file.tally.rows_accepted > 100 && obs_file.tally.rows_accepted < 3000);
}

#[test]
fn csv_missing_required_column_stops_the_run() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("synthea");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("patients.csv"),
        "Id,BIRTHDATE,GENDER\np1,1960-01-01,F\n",
    )
    .unwrap();
    std::fs::write(
        input.join("observations.csv"),
        "DATE,PATIENT_ID,CODE,VALUE\n2020-01-01,p1,8480-6,120\n",
    )
    .unwrap();
    let lake = d.path().join("lake");
    let err = ehr_risk::ingest::run(&lake, &[input], &opts(), &ehr_risk::ingest::driver::Silent)
        .err()
        .expect("fails");
    let msg = err.to_string();
    assert!(
        msg.contains("observations.csv") && msg.contains("\"patient\"") && msg.contains("required"),
        "{msg}"
    );
    assert!(
        !lake.join("manifest.json").exists(),
        "nothing was committed"
    );
}

#[test]
fn csv_row_with_wrong_field_count_and_bad_number() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("synthea");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("patients.csv"),
        "Id,BIRTHDATE,GENDER\np1,1960-01-01,F\n",
    )
    .unwrap();
    std::fs::write(
        input.join("observations.csv"),
        "DATE,PATIENT,CODE,VALUE,UNITS,TYPE\n2020-01-01,p1,8480-6,120,mmHg,numeric\n2020-01-02,p1,8480-6\n2020-01-03,p1,8480-6,abc,mmHg,numeric\n",
    )
    .unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&input));
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    let f = input.join("observations.csv");
    only_quarantine(&v, "bad_row", "*", 3, &f);
    let q = only_quarantine(&v, "bad_number", "VALUE", 4, &f);
    assert_eq!(q.value, "abc");
    assert_eq!(
        v.events
            .iter()
            .filter(|e| e.code == "LOINC//8480-6")
            .count(),
        1
    );
}

#[test]
fn unreadable_input_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let err = ehr_risk::ingest::run(
        &d.path().join("lake"),
        &[d.path().join("nope")],
        &opts(),
        &ehr_risk::ingest::driver::Silent,
    )
    .err()
    .expect("fails");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_file_of_unknown_format_is_an_error_when_named() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    let err = ehr_risk::ingest::run(
        &d.path().join("lake"),
        &[f],
        &opts(),
        &ehr_risk::ingest::driver::Silent,
    )
    .err()
    .expect("fails");
    assert!(
        err.to_string().contains("notes.txt") && err.to_string().contains("--format"),
        "{err}"
    );
}
