//! Every applicable public set in ../shared/data ingested, with assertions on what came out.
//! Counts that a test compares against are derived independently from the raw files here.

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Distinct values of `key` in rows of a CSV (plain or gzip) where `filter` holds.
fn csv_distinct(
    path: &Path,
    key: &str,
    filter: impl Fn(&csv::StringRecord, &csv::StringRecord) -> bool,
) -> BTreeSet<String> {
    let f = std::fs::File::open(path).unwrap();
    let r: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut rd = csv::Reader::from_reader(r);
    let h = rd.headers().unwrap().clone();
    let k = h.iter().position(|c| c.eq_ignore_ascii_case(key)).unwrap();
    rd.records()
        .map(|r| r.unwrap())
        .filter(|r| filter(&h, r))
        .map(|r| r[k].to_string())
        .collect()
}

fn field<'a>(h: &csv::StringRecord, r: &'a csv::StringRecord, name: &str) -> &'a str {
    let i = h.iter().position(|c| c.eq_ignore_ascii_case(name)).unwrap();
    &r[i]
}

#[test]
fn synthea_csv_and_fhir_bundles_agree_per_person() {
    let Some(root) = shared("synthea-ca59-csv-fhir") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("csv"), d.path().join("fhir"));
    let ra = ingest(&a, &[root.join("csv")]);
    let rb = ingest(&b, &[root.join("fhir")]);
    assert_balanced(&ra);
    assert_balanced(&rb);
    valid(&a);
    valid(&b);
    let (va, vb) = (LakeView::load(&a), LakeView::load(&b));
    // 59 people in the CSV; the 15 bundles are the same people (same UUID -> same subject id).
    assert_eq!(
        va.events
            .iter()
            .map(|e| e.subject_id)
            .collect::<BTreeSet<_>>()
            .len(),
        59
    );
    let fhir_people: BTreeSet<i64> = vb.events.iter().map(|e| e.subject_id).collect();
    assert_eq!(fhir_people.len(), 15);
    assert!(
        fhir_people
            .iter()
            .all(|s| va.events.iter().any(|e| e.subject_id == *s))
    );
    // The uncompressed copy of one bundle adds nothing: every one of its events is a duplicate.
    let jackie: Vec<_> = rb
        .files
        .iter()
        .filter(|f| f.path.contains("Jackie93"))
        .collect();
    assert_eq!(jackie.len(), 2);
    assert_eq!(jackie[0].tally.events, jackie[1].tally.events);
    // Every event of the second copy is a duplicate (plus the bundle's own internal repeats).
    assert!(jackie[0].duplicates + jackie[1].duplicates >= jackie[0].tally.events);
    assert_eq!(rb.totals.rows_rejected, 0, "Synthea's bundles are clean");

    let pick =
        |v: &LakeView, s: i64, src: &str, codes: &[&str]| -> BTreeMap<(String, i64), Vec<u32>> {
            let mut m: BTreeMap<(String, i64), Vec<u32>> = BTreeMap::new();
            for e in v.events.iter().filter(|e| {
                e.subject_id == s && e.source.starts_with(src) && codes.contains(&e.code.as_str())
            }) {
                // The CSV writes values rounded to one decimal (74.5), FHIR keeps them whole (74.52):
                // compare at the CSV's precision.
                m.entry((e.code.clone(), e.time.unwrap()))
                    .or_default()
                    .push((e.numeric_value.unwrap() * 10.0).round() as u32);
            }
            m.values_mut().for_each(|v| v.sort());
            m
        };
    let bp = ["LOINC//8480-6", "LOINC//8462-4"];
    let lipids = [
        "LOINC//2093-3",
        "LOINC//2085-9",
        "LOINC//18262-6",
        "LOINC//2571-8",
    ];
    let mut compared = 0;
    for &s in &fhir_people {
        // Blood pressure: CSV rows vs the FHIR panel's components, same UTC instants, same values
        // (FHIR writes local offsets, the CSV writes Z).
        assert_eq!(
            pick(&va, s, "synthea", &bp),
            pick(&vb, s, "fhir", &bp),
            "BP differs for subject {s}"
        );
        assert_eq!(
            pick(&va, s, "synthea", &lipids),
            pick(&vb, s, "fhir", &lipids),
            "lipids differ for subject {s}"
        );
        compared += pick(&va, s, "synthea", &lipids).len() + pick(&va, s, "synthea", &bp).len();
        // Conditions: the same codes, the same number of times. Dates differ in form: the CSV
        // has the local calendar date only (read as midnight UTC), FHIR the local date-time with
        // its offset (-07:00/-08:00); so the FHIR instant falls on that local date: between
        // CSV midnight and 24 h + the offset later.
        let conds = |v: &LakeView, src: &str| -> BTreeMap<String, Vec<i64>> {
            let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for e in v
                .events
                .iter()
                .filter(|e| e.subject_id == s && e.source == src)
            {
                m.entry(e.code.clone()).or_default().push(e.time.unwrap());
            }
            m.values_mut().for_each(|v| v.sort());
            m
        };
        let (ca, cb) = (
            conds(&va, "synthea:conditions"),
            conds(&vb, "fhir:Condition"),
        );
        assert_eq!(
            ca.keys().collect::<Vec<_>>(),
            cb.keys().collect::<Vec<_>>(),
            "condition codes differ for {s}"
        );
        for (code, ta) in &ca {
            let tb = &cb[code];
            assert_eq!(ta.len(), tb.len(), "{code} count for {s}");
            for (x, y) in ta.iter().zip(tb) {
                let hour = 3_600_000_000i64;
                assert!(
                    (0..(24 + 14) * hour).contains(&(y - x)),
                    "{code} onset {x} vs {y}"
                );
            }
        }
    }
    assert!(
        compared > 100,
        "the comparison covered {compared} BP/lipid readings"
    );
}

#[test]
fn mimic_raw_and_meds_give_the_same_outcome_subjects() {
    let (Some(raw), Some(meds)) = (shared("mimic-iv-demo-raw"), shared("mimic-iv-demo-meds"))
    else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("raw"), d.path().join("meds"));
    let ra = ingest(&a, std::slice::from_ref(&raw));
    // MEDS goes through the same time window as every source: its shifted dates need the
    // policy that says so (the raw MIMIC reader knows its dates are shifted).
    let shifted = ehr_risk::ingest::driver::IngestOptions {
        policy: ehr_risk::ingest::InputPolicy {
            dates_shifted: true,
            ..Default::default()
        },
        ..opts()
    };
    let rb = ingest_with(&b, &[meds], &shifted);
    assert_balanced(&ra);
    assert_balanced(&rb);
    valid(&a);
    valid(&b);
    let (va, vb) = (LakeView::load(&a), LakeView::load(&b));
    let ids = |v: &LakeView, set: BTreeSet<i64>| -> BTreeSet<String> {
        let m = v.value_of();
        set.iter().map(|s| m[s].clone()).collect()
    };
    let is_mi = |c: &str| {
        c.starts_with("ICD10CM//I21")
            || c.starts_with("ICD10CM//I22")
            || c.starts_with("ICD9CM//410")
    };
    let is_stroke = |c: &str| {
        [
            "ICD10CM//I60",
            "ICD10CM//I61",
            "ICD10CM//I62",
            "ICD10CM//I63",
            "ICD10CM//I64",
        ]
        .iter()
        .any(|p| c.starts_with(p))
            || [
                "ICD9CM//430",
                "ICD9CM//431",
                "ICD9CM//432",
                "ICD9CM//433",
                "ICD9CM//434",
                "ICD9CM//436",
            ]
            .iter()
            .any(|p| c.starts_with(p))
    };
    // Independently from the raw CSV: subjects with an MI diagnosis code.
    let raw_mi = csv_distinct(
        &raw.join("hosp/diagnoses_icd.csv.gz"),
        "subject_id",
        |h, r| {
            let c = field(h, r, "icd_code");
            let v = field(h, r, "icd_version");
            (v == "10" && (c.starts_with("I21") || c.starts_with("I22")))
                || (v == "9" && c.starts_with("410"))
        },
    );
    assert_eq!(raw_mi.len(), 11);
    assert_eq!(ids(&va, va.subjects_with(is_mi)), raw_mi);
    assert_eq!(ids(&vb, vb.subjects_with(is_mi)), raw_mi);
    let sa = ids(&va, va.subjects_with(is_stroke));
    assert_eq!(sa.len(), 7);
    assert_eq!(sa, ids(&vb, vb.subjects_with(is_stroke)));
    // Same 100 people.
    let people = |v: &LakeView| -> BTreeSet<String> {
        ids(v, v.events.iter().map(|e| e.subject_id).collect())
    };
    assert_eq!(people(&va).len(), 100);
    assert_eq!(people(&va), people(&vb));
    // Diagnoses are dated at discharge: each MI event time equals its admission's end time.
    let adm: BTreeMap<&str, i64> = va
        .events
        .iter()
        .filter(|e| e.code == "ENCOUNTER//IMP")
        .map(|e| (e.visit_id.as_deref().unwrap(), e.end_time.unwrap()))
        .collect();
    for e in va.events.iter().filter(|e| is_mi(&e.code)) {
        assert_eq!(
            Some(&e.time.unwrap()),
            adm.get(e.visit_id.as_deref().unwrap())
        );
    }
    // Lipid labs were mapped to LOINC and kept in mg/dL.
    assert!(
        va.events
            .iter()
            .any(|e| e.code == "LOINC//2093-3" && e.unit.as_deref() == Some("mg/dL"))
    );
}

#[test]
fn eunomia_gibleed_outcomes_match_the_raw_tables() {
    let Some(root) = shared("eunomia-gibleed-omop53") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let r = ingest(&d.path().join("lake"), std::slice::from_ref(&root));
    assert_balanced(&r);
    valid(&d.path().join("lake"));
    let v = LakeView::load(&d.path().join("lake"));
    let co = root.join("condition_occurrence.csv");
    let raw_mi = csv_distinct(&co, "person_id", |h, r| {
        field(h, r, "condition_concept_id") == "4329847"
    });
    let raw_stroke = csv_distinct(&co, "person_id", |h, r| {
        field(h, r, "condition_concept_id") == "381316"
    });
    assert_eq!((raw_mi.len(), raw_stroke.len()), (67, 224));
    assert_eq!(
        v.subjects_with(|c| c == "SNOMED//22298006").len(),
        raw_mi.len()
    );
    assert_eq!(
        v.subjects_with(|c| c == "SNOMED//230690007").len(),
        raw_stroke.len()
    );
    let people: BTreeSet<i64> = v
        .events
        .iter()
        .filter(|e| e.code == "MEDS_BIRTH")
        .map(|e| e.subject_id)
        .collect();
    assert_eq!(people.len(), 500);
    let cond = r
        .files
        .iter()
        .find(|f| f.table == "condition_occurrence")
        .unwrap();
    let raw_rows = csv_distinct(&co, "condition_occurrence_id", |_, _| true).len() as u64;
    assert_eq!(cond.tally.rows_read, raw_rows);
}

#[test]
fn eunomia_synthea_omop54_measurements_in_canonical_units() {
    let Some(root) = shared("eunomia-synthea27nj-omop54") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&root));
    assert_balanced(&r);
    valid(&lake);
    let v = LakeView::load(&lake);
    assert_eq!(
        v.events.iter().filter(|e| e.code == "MEDS_BIRTH").count(),
        28
    );
    // person_source_value is the Synthea UUID, so identities use the shared patient-id system.
    assert!(v.identities.iter().all(|i| i.system == "patient-id"));
    let raw_sbp = csv_distinct(&root.join("MEASUREMENT.csv"), "measurement_id", |h, r| {
        field(h, r, "measurement_source_value") == "8480-6"
    });
    let sbp: Vec<_> = v
        .events
        .iter()
        .filter(|e| e.code == "LOINC//8480-6")
        .collect();
    let rejected_sbp = v
        .quarantine
        .iter()
        .filter(|q| q.raw.contains(",8480-6,"))
        .count();
    assert_eq!(sbp.len() + rejected_sbp, raw_sbp.len());
    assert!(sbp.len() > 20);
    assert!(
        sbp.iter().all(|e| e.unit.as_deref() == Some("mmHg")
            && (40.0..=300.0).contains(&e.numeric_value.unwrap()))
    );
    for code in ["LOINC//2093-3", "LOINC//4548-4", "LOINC//39156-5"] {
        assert!(v.events.iter().any(|e| e.code == code), "{code} present");
    }
}

#[test]
fn smart_bulk_ndjson_export() {
    let Some(root) = shared("smart-bulk-fhir-10-patients") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&root));
    assert_balanced(&r);
    valid(&lake);
    let v = LakeView::load(&lake);
    assert_eq!(
        v.events.iter().filter(|e| e.code == "MEDS_BIRTH").count(),
        13
    );
    assert_eq!(
        v.events.iter().filter(|e| e.code == "MEDS_DEATH").count(),
        3
    );
    let tally = |t: &str| r.files.iter().find(|f| f.table == t).unwrap().tally.clone();
    assert_eq!(tally("Condition").rows_read, 555);
    assert_eq!(tally("MedicationRequest").rows_read, 1745);
    assert_eq!(
        tally("Immunization").rows_skipped,
        161,
        "unused types are counted as skipped, not dropped"
    );
    assert!(
        r.ignored.iter().any(|(p, _)| p.ends_with("log.ndjson")),
        "the client log is not FHIR and is listed as ignored"
    );
    assert_eq!(
        v.subjects_with(|c| c == "SNOMED//414545008").len(),
        2,
        "ischemic heart disease patients"
    );
}

#[test]
fn hl7_examples_every_observation_is_ingested_or_quarantined_with_a_reason() {
    let Some(root) = shared("fhir-r4-examples") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&root));
    assert_balanced(&r);
    valid(&lake);
    let v = LakeView::load(&lake);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for f in r.files.iter().filter(|f| f.table == "Observation") {
        n += 1;
        let t = &f.tally;
        assert_eq!(t.rows_read, 1, "{}", f.path);
        if t.rows_accepted == 1 {
            *outcomes.entry("ingested").or_default() += 1;
        } else if t.rows_rejected == 1 {
            let q = v
                .quarantine
                .iter()
                .find(|q| q.file == f.path)
                .expect("quarantine row for a rejected file");
            assert!(!q.reason.is_empty() && !q.message.is_empty());
            *outcomes.entry("quarantined").or_default() += 1;
        } else {
            assert_eq!(t.rows_skipped, 1);
            assert!(
                t.skipped_by_reason.keys().all(|k| k.contains("status")),
                "{:?}",
                t.skipped_by_reason
            );
            *outcomes.entry("skipped (status)").or_default() += 1;
        }
    }
    assert_eq!(n, 64);
    // 35 ingested, 26 quarantined (unknown or contained patients, a Group subject, no coding,
    // no effective time, SampledData), 3 skipped as cancelled / entered-in-error.
    assert!(outcomes["ingested"] >= 30, "{outcomes:?}");
    // Observation-f001: glucose 6.3 mmol/l (lower-case l) becomes 113.5 mg/dL.
    let glucose = v
        .events
        .iter()
        .find(|e| e.source_code.as_deref() == Some("LOINC//15074-8"))
        .expect("f001 glucose");
    assert_eq!(
        glucose.code, "LOINC//2345-7",
        "canonical glucose code, source code kept"
    );
    assert!(
        (glucose.numeric_value.unwrap() - 113.5).abs() < 0.1
            && glucose.unit.as_deref() == Some("mg/dL")
    );
    // Bundle-lipids' Observations carry no effective[x]: each is quarantined, not placed at a guessed time.
    let lipids = v
        .quarantine
        .iter()
        .filter(|q| q.file.ends_with("Bundle-lipids.json"))
        .count();
    assert_eq!(lipids, 4);
    // The BP example: components 107/60 mmHg from a date-only effectiveDateTime.
    assert!(
        v.events
            .iter()
            .any(|e| e.code == "LOINC//8480-6" && e.numeric_value == Some(107.0))
    );
}

/// Records in a file, counted here a third way (the csv crate, newlines, serde_json values,
/// Parquet metadata), to check the engine's framing count against.
fn records_in(path: &Path) -> u64 {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let open = || -> Box<dyn std::io::Read> {
        let f = std::fs::File::open(path).unwrap();
        if name.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        }
    };
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        let mut rd = csv::ReaderBuilder::new().flexible(true).from_reader(open());
        return rd.records().count() as u64;
    }
    if name.ends_with(".parquet") {
        let f = std::fs::File::open(path).unwrap();
        let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
        use parquet::file::reader::FileReader;
        return r.metadata().file_metadata().num_rows() as u64;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut open(), &mut text).unwrap();
    if name.ends_with(".ndjson") || name.ends_with(".ndjson.gz") || name.ends_with(".jsonl") {
        return text.lines().count() as u64;
    }
    fn entries(v: &serde_json::Value) -> u64 {
        let bundle = v["resourceType"] == "Bundle";
        match v["entry"].as_array() {
            Some(es) if bundle && !es.is_empty() => es
                .iter()
                .map(|e| {
                    if e["resource"]["resourceType"] == "Bundle" {
                        entries(&e["resource"])
                    } else {
                        1
                    }
                })
                .sum(),
            _ => 1,
        }
    }
    serde_json::from_str::<serde_json::Value>(&text).map_or(1, |v| entries(&v))
}

/// Issue 10: on every public data set, each file's `rows_read` (counted by the engine as it
/// frames records) equals a count made here from the raw file, and equals accepted + rejected
/// + skipped; the export folders' files no reader takes are reported with a reason.
#[test]
fn every_public_data_set_balances_by_independent_counting() {
    let sets = [
        "eunomia-gibleed-omop53",
        "eunomia-synthea27nj-omop54",
        "fhir-r4-examples",
        "mimic-iv-demo-meds",
        "mimic-iv-demo-raw",
        "smart-bulk-fhir-10-patients",
        "synthea-ca59-csv-fhir",
        "synthea-dbt27-csv",
    ];
    let d = tempfile::tempdir().unwrap();
    let mut files = 0;
    for (k, name) in sets.iter().enumerate() {
        let Some(root) = shared(name) else {
            return;
        };
        let shifted = name.starts_with("mimic");
        let o = ehr_risk::ingest::driver::IngestOptions {
            policy: ehr_risk::ingest::InputPolicy {
                dates_shifted: shifted,
                ..Default::default()
            },
            ..opts()
        };
        let r = ingest_with(&d.path().join(format!("lake{k}")), &[root], &o);
        assert_balanced(&r);
        for f in r.files.iter().filter(|f| f.status == "read") {
            let n = records_in(Path::new(&f.path));
            assert_eq!(f.tally.rows_read, n, "{name}: {}", f.path);
            files += 1;
        }
        let ignored: BTreeMap<String, String> = r
            .ignored
            .iter()
            .map(|(p, why)| {
                let file = Path::new(p).file_name().unwrap().to_string_lossy();
                (file.to_ascii_lowercase(), why.clone())
            })
            .collect();
        let expect: &[(&str, &str)] = match *name {
            "mimic-iv-demo-raw" => &[
                ("omr.csv.gz", "mimic table omr is not read"),
                ("icustays.csv.gz", "mimic table icustays is not read"),
                ("license.txt", "not a table"),
            ],
            "synthea-dbt27-csv" => &[
                ("allergies.csv", "synthea table allergies is not read"),
                ("careplans.csv", "synthea table careplans is not read"),
            ],
            "eunomia-gibleed-omop53" => &[(
                "observation_period.csv",
                "omop table observation_period is not read",
            )],
            _ => &[],
        };
        for (file, why) in expect {
            let got = ignored
                .get(*file)
                .unwrap_or_else(|| panic!("{name}: {file} not reported in {ignored:?}"));
            assert!(got.contains(why), "{name}: {file}: {got}");
        }
        // A dictionary read as a lookup is read, not ignored.
        assert!(!ignored.contains_key("concept.csv"), "{name}");
        assert!(!ignored.contains_key("d_icd_diagnoses.csv.gz"), "{name}");
    }
    assert!(files > 40, "{files} files compared");
}
