//! Exports as they come (issue 11): older Synthea CSV schemas, MIMIC-III 1.4, OMOP without
//! its vocabulary (the MIMIC-IV demo converted to OMOP the way OHDSI's conversion ships it:
//! dates shifted, only local concepts), CONCEPT_ANCESTOR descendants, and never an empty
//! success.

use crate::common::*;
use ehr_risk::cohort::spec::Task;
use ehr_risk::ingest::driver::IngestOptions;
use ehr_risk::ingest::verdict::{DEFAULT_MAX_REJECT_RATE, FindingKind, assess};
use ehr_risk::ingest::{InputPolicy, SourceVocabulary};
use ehr_risk::lake::write;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

fn policy(dates_shifted: bool, v: Option<SourceVocabulary>) -> IngestOptions {
    IngestOptions {
        policy: InputPolicy {
            dates_shifted,
            source_vocabulary: v,
        },
        ..opts()
    }
}

const MICROS_PER_YEAR: f64 = 365.25 * 86_400.0 * 1e6;

/// A task over shifted dates: every inpatient admission is a prediction time.
fn admissions_task(dir: &Path) -> Task {
    let p = dir.join("admissions_task.toml");
    std::fs::write(
        &p,
        r#"name = "mi_stroke_at_admission"
description = "MI and stroke within 5 years of an admission (shifted dates)"
[prediction_times]
kind = "encounters"
start = "2100-01-01"
end = "2300-01-01"
encounter_codes = ["ENCOUNTER//IMP"]
[window]
horizons_years = [5]
lookback_years = 5
min_history_days = 0
min_age = 18
max_age = 120
same_time_is_future = true
prior_outcome = "flag"
censoring = "mark"
[[outcome]]
name = "mi"
codesets = ["acute_mi"]
[[outcome]]
name = "stroke"
codesets = ["stroke_ischemic", "stroke_hemorrhagic", "stroke_unspecified"]
"#,
    )
    .unwrap();
    Task::load(p.to_str().unwrap()).expect("task loads")
}

/// Subjects (by source id) with a positive label of `outcome` at any time.
fn positive(cohort: &Path, outcome: &str, v: &LakeView) -> BTreeSet<String> {
    let m = v.value_of();
    ehr_risk::cohort::read_labels(&cohort.join(format!("labels/{outcome}")))
        .unwrap()
        .into_iter()
        .filter(|(_, b)| *b)
        .map(|((s, _), _)| m[&s].clone())
        .collect()
}

/// Subjects (by source id) with an event of the task's outcome `i`.
fn outcome_subjects(task: &Task, i: usize, v: &LakeView) -> BTreeSet<String> {
    let m = v.value_of();
    v.events
        .iter()
        .filter(|e| task.outcomes[i].matches(e))
        .map(|e| m[&e.subject_id].clone())
        .collect()
}

#[test]
fn synthea_2017_schema_is_read_faithfully() {
    let d = tempfile::tempdir().unwrap();
    let src = repo().join("tests/data/synthea2017");
    let r = ingest(d.path(), std::slice::from_ref(&src));
    assert_balanced(&r);
    valid(d.path());
    let enc = r.files.iter().find(|f| f.table == "encounters").unwrap();
    assert_eq!((enc.tally.rows_accepted, enc.tally.rows_rejected), (4, 0));
    assert_eq!(enc.tally.interpreted["encounter_class_unknown"], 1);
    let v = LakeView::load(d.path());
    let codes: BTreeSet<&str> = v
        .events
        .iter()
        .filter(|e| e.code.starts_with("ENCOUNTER//"))
        .map(|e| e.code.as_str())
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from([
            "ENCOUNTER//AMB",
            "ENCOUNTER//EMER",
            "ENCOUNTER//IMP",
            "ENCOUNTER//UNKNOWN"
        ])
    );
    let unknown = v
        .events
        .iter()
        .find(|e| e.code == "ENCOUNTER//UNKNOWN")
        .unwrap();
    assert_eq!(unknown.source_code.as_deref(), Some("SNOMED//999999999"));
    // Observations without TYPE: numbers measured, text kept; the impossible BP quarantined.
    let obs = r.files.iter().find(|f| f.table == "observations").unwrap();
    assert_eq!((obs.tally.rows_accepted, obs.tally.rows_rejected), (4, 1));
    assert_eq!(v.reasons()["implausible_value"], 1);
    assert!(v.events.iter().any(|e| e.code == "LOINC//8480-6"
        && e.numeric_value == Some(142.0)
        && e.unit.as_deref() == Some("mmHg")));
    assert!(
        v.events
            .iter()
            .any(|e| e.text_value.as_deref() == Some("Former smoker"))
    );
    // Procedures with DATE, the MI, the death.
    assert!(v.events.iter().any(|e| e.code == "SNOMED//415070008"));
    let mi = Task::load("mi_stroke").unwrap();
    assert_eq!(outcome_subjects(&mi, 0, &v).len(), 1);
    assert_eq!(outcome_subjects(&mi, 1, &v).len(), 1);
    assert_eq!(
        v.events.iter().filter(|e| e.code == "MEDS_DEATH").count(),
        1
    );
    // careplans.csv is not a table this engine reads: it is not in the report.
    assert!(r.files.iter().all(|f| f.table != "careplans"));
}

#[test]
fn mimic3_is_read_with_discharge_dated_codes_and_top_coded_ages() {
    let d = tempfile::tempdir().unwrap();
    let src = repo().join("tests/data/mimic3");
    // `--format mimic` names the family; the header picks the release.
    let plan = ehr_risk::ingest::detect::plan(
        std::slice::from_ref(&src),
        Some(ehr_risk::ingest::Format::Mimic),
    )
    .unwrap();
    assert_eq!(plan.sets[0].format, ehr_risk::ingest::Format::Mimic3);
    let r = ingest(d.path(), std::slice::from_ref(&src));
    assert_balanced(&r);
    valid(d.path());
    assert!(r.files.iter().all(|f| f.format == "mimic3"));
    assert!(
        assess(&r, DEFAULT_MAX_REJECT_RATE)
            .iter()
            .all(|f| f.kind != FindingKind::NothingAccepted),
        "shifted MIMIC-III dates are not future events"
    );
    let v = LakeView::load(d.path());
    let reasons = v.reasons();
    assert_eq!(reasons.get("unresolved_reference"), Some(&1));
    assert_eq!(reasons.get("bad_number"), Some(&1));
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let sid = |s: &str| v.subject_of(s).unwrap();
    let disch = |h: &str| {
        v.events
            .iter()
            .find(|e| e.code == "ENCOUNTER//IMP" && e.visit_id.as_deref() == Some(h))
            .unwrap()
            .end_time
            .unwrap()
    };
    // The MI (41071) and the PCI (36.06) are coded for admission 191001: dated at discharge.
    let mi = v
        .events
        .iter()
        .find(|e| e.code == "ICD9CM//410.71")
        .unwrap();
    assert_eq!(
        (mi.subject_id, mi.time),
        (sid("91001"), Some(disch("191001")))
    );
    let pci = v
        .events
        .iter()
        .find(|e| e.code == "ICD9PROC//36.06")
        .unwrap();
    assert_eq!(pci.time, Some(disch("191001")));
    // Over 89: DOB 300 years before the first admission becomes the documented median, 91.4.
    let birth = v
        .events
        .iter()
        .find(|e| e.subject_id == sid("91002") && e.code == "MEDS_BIRTH")
        .unwrap()
        .time
        .unwrap();
    let first = v
        .events
        .iter()
        .find(|e| e.subject_id == sid("91002") && e.code == "ENCOUNTER//IMP")
        .unwrap()
        .time
        .unwrap();
    let age = (first - birth) as f64 / MICROS_PER_YEAR;
    assert!((age - 91.4).abs() < 1e-6, "{age}");
    let pat = r.files.iter().find(|f| f.table == "patients").unwrap();
    assert_eq!(pat.tally.interpreted["age_over_89_top_coded"], 1);
    // Labs: LOINC from D_LABITEMS, else by itemid; canonical units.
    assert!(v.events.iter().any(|e| e.code == "LOINC//2093-3"
        && e.numeric_value == Some(212.0)
        && e.unit.as_deref() == Some("mg/dL")));
    assert!(v.events.iter().any(|e| e.code == "LOINC//4548-4"));
    assert!(v.events.iter().any(|e| e.code == "LOINC//2160-0"));
    // The statin by NDC, the V and E codes as ICD-9-CM, descriptions from D_ICD_DIAGNOSES.
    assert!(v.events.iter().any(|e| e.code == "NDC//00071015723"));
    assert!(v.events.iter().any(|e| e.code == "ICD9CM//V45.81"));
    assert!(v.events.iter().any(|e| e.code == "ICD9CM//E849.7"));
    let codes = write::read_codes(&d.path().join("metadata/codes.parquet")).unwrap();
    assert_eq!(
        codes["ICD9CM//410.71"].as_deref(),
        Some("Subendocardial infarction, initial episode of care")
    );
    // The cohort labels them: a stroke within 5 years of the MI admission, and a haemorrhage.
    let cohort = d.path().join("cohort");
    let task = admissions_task(d.path());
    ehr_risk::cohort::run(d.path(), &task, &cohort).unwrap();
    assert_eq!(
        positive(&cohort, "stroke_5y", &v),
        BTreeSet::from(["91001".to_string(), "91003".to_string()])
    );
    assert_eq!(
        positive(&cohort, "mi_5y", &v),
        BTreeSet::from(["91001".to_string()])
    );
}

/// Write `rows` (header first) as a CSV file.
fn csv(path: &Path, rows: &[Vec<String>]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

fn read_gz(p: &Path) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let f = flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap());
    let mut r = csv::Reader::from_reader(f);
    let h = r.headers().unwrap().clone();
    let rows = r.records().map(|x| x.unwrap()).collect();
    (h, rows)
}

fn col(h: &csv::StringRecord, name: &str) -> usize {
    h.iter().position(|c| c == name).unwrap()
}

/// The MIMIC-IV demo as an OMOP CDM 5.3 export like OHDSI's published conversion: dates kept
/// as shifted, conditions with no standard concept (no vocabulary here to map ICD to SNOMED)
/// and their ICD codes, without dots and without saying which ICD, in
/// `condition_source_value`; a concept table of local concepts only.
fn mimic_iv_as_omop(raw: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let s = |x: &str| x.to_string();
    let (h, pats) = read_gz(&raw.join("hosp/patients.csv.gz"));
    let mut person = vec![vec![
        s("person_id"),
        s("gender_concept_id"),
        s("year_of_birth"),
        s("month_of_birth"),
        s("day_of_birth"),
        s("race_concept_id"),
        s("ethnicity_concept_id"),
        s("person_source_value"),
        s("gender_source_value"),
    ]];
    let mut death = vec![vec![
        s("person_id"),
        s("death_date"),
        s("death_type_concept_id"),
    ]];
    for p in &pats {
        let id = &p[col(&h, "subject_id")];
        let g = &p[col(&h, "gender")];
        let yob = p[col(&h, "anchor_year")].parse::<i64>().unwrap()
            - p[col(&h, "anchor_age")].parse::<i64>().unwrap();
        person.push(vec![
            s(id),
            s(if g == "F" { "8532" } else { "8507" }),
            yob.to_string(),
            s(""),
            s(""),
            s("0"),
            s("0"),
            s(id),
            s(g),
        ]);
        let dod = &p[col(&h, "dod")];
        if !dod.is_empty() {
            death.push(vec![s(id), s(&dod[..10]), s("32817")]);
        }
    }
    csv(&out.join("person.csv"), &person);
    csv(&out.join("death.csv"), &death);
    let (h, adm) = read_gz(&raw.join("hosp/admissions.csv.gz"));
    let mut visit = vec![vec![
        s("visit_occurrence_id"),
        s("person_id"),
        s("visit_concept_id"),
        s("visit_start_date"),
        s("visit_start_datetime"),
        s("visit_end_date"),
        s("visit_end_datetime"),
        s("visit_type_concept_id"),
        s("visit_source_value"),
        s("visit_source_concept_id"),
    ]];
    let mut admit: BTreeMap<String, String> = BTreeMap::new();
    for a in &adm {
        let (hadm, t0, t1) = (
            &a[col(&h, "hadm_id")],
            &a[col(&h, "admittime")],
            &a[col(&h, "dischtime")],
        );
        admit.insert(s(hadm), s(t0));
        visit.push(vec![
            s(hadm),
            s(&a[col(&h, "subject_id")]),
            s("9201"),
            s(&t0[..10]),
            s(t0),
            s(&t1[..10]),
            s(t1),
            s("32817"),
            s(hadm),
            s("2000001001"),
        ]);
    }
    csv(&out.join("visit_occurrence.csv"), &visit);
    let (h, dx) = read_gz(&raw.join("hosp/diagnoses_icd.csv.gz"));
    let mut cond = vec![vec![
        s("condition_occurrence_id"),
        s("person_id"),
        s("condition_concept_id"),
        s("condition_start_date"),
        s("condition_start_datetime"),
        s("condition_type_concept_id"),
        s("visit_occurrence_id"),
        s("condition_source_value"),
        s("condition_source_concept_id"),
    ]];
    let concept_row = |id: &str, vocab: &str, code: &str| {
        vec![
            s(id),
            s(code),
            s("Condition"),
            s(vocab),
            s("Condition"),
            s(""),
            s(code),
            s("1970-01-01"),
            s("2099-12-31"),
            s(""),
        ]
    };
    let mut concepts = vec![
        [
            "concept_id",
            "concept_name",
            "domain_id",
            "vocabulary_id",
            "concept_class_id",
            "standard_concept",
            "concept_code",
            "valid_start_date",
            "valid_end_date",
            "invalid_reason",
        ]
        .map(s)
        .to_vec(),
        concept_row("2000001001", "mimiciv_vis_admission_type", "ADMISSION"),
    ];
    // Diagnoses of odd rows point at a local source concept (the export's own vocabulary,
    // which does not say which ICD), even rows at none.
    let mut local: BTreeMap<String, String> = BTreeMap::new();
    for (i, r) in dx.iter().enumerate() {
        let hadm = &r[col(&h, "hadm_id")];
        let t0 = &admit[hadm];
        let code = &r[col(&h, "icd_code")];
        let source_concept = if i % 2 == 1 {
            let n = local.len();
            local
                .entry(s(code))
                .or_insert_with(|| {
                    let id = (2_000_100_000 + n).to_string();
                    concepts.push(concept_row(&id, "mimiciv_cond_icd", code));
                    id
                })
                .clone()
        } else {
            s("0")
        };
        cond.push(vec![
            (i + 1).to_string(),
            s(&r[col(&h, "subject_id")]),
            s("0"),
            s(&t0[..10]),
            s(t0),
            s("32821"),
            s(hadm),
            s(code),
            source_concept,
        ]);
    }
    csv(&out.join("condition_occurrence.csv"), &cond);
    csv(&out.join("concept.csv"), &concepts);
}

#[test]
fn mimic_iv_in_omop_without_vocabulary_finds_the_raw_outcomes() {
    let Some(raw) = shared("mimic-iv-demo-raw") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let omop = d.path().join("mimic_iv_omop");
    mimic_iv_as_omop(&raw, &omop);

    // As it comes: every person is a future event, everything else follows as unknown
    // patient. Never an empty success: the verdict names the cause and the flag.
    let plain = ingest(&d.path().join("plain"), std::slice::from_ref(&omop));
    assert_balanced(&plain);
    assert_eq!(plain.totals.rows_accepted, 0);
    let f = assess(&plain, DEFAULT_MAX_REJECT_RATE);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, FindingKind::NothingAccepted);
    assert!(f[0].looks_date_shifted(), "{}", f[0]);
    assert_eq!(f[0].people_rejected, Some((100, 100)));

    // Dates accepted as shifted, but the source values are not read as ICD: no outcome.
    let mi_stroke = Task::load("mi_stroke").unwrap();
    let shifted = d.path().join("shifted");
    let r = ingest_with(&shifted, std::slice::from_ref(&omop), &policy(true, None));
    assert_balanced(&r);
    assert!(assess(&r, DEFAULT_MAX_REJECT_RATE).is_empty());
    let v = LakeView::load(&shifted);
    assert!(outcome_subjects(&mi_stroke, 0, &v).is_empty());
    assert!(v.events.iter().any(|e| e.code.starts_with("SOURCE//")));
    assert!(
        v.events
            .iter()
            .any(|e| e.code.starts_with("MIMICIV_COND_ICD//"))
    );
    assert!(r.totals.interpreted.is_empty());

    // Configured: ICD told apart by shape. The same 11 MI and 7 stroke people as read raw.
    let lake = d.path().join("icd");
    let r = ingest_with(
        &lake,
        std::slice::from_ref(&omop),
        &policy(true, Some(SourceVocabulary::Icd)),
    );
    assert_balanced(&r);
    valid(&lake);
    assert!(r.totals.interpreted["source_value_as_icd9cm"] > 0);
    assert!(r.totals.interpreted["source_value_as_icd10cm"] > 0);
    assert!(r.totals.interpreted["source_value_icd_version_ambiguous"] > 0);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lake.join("manifest.json")).unwrap())
            .unwrap();
    for i in manifest["inputs"].as_array().unwrap() {
        assert_eq!(i["policy"]["dates_shifted"], true);
        assert_eq!(i["policy"]["source_vocabulary"], "icd");
    }
    let raw_lake = d.path().join("raw");
    assert_balanced(&ingest(&raw_lake, std::slice::from_ref(&raw)));
    let (vo, vr) = (LakeView::load(&lake), LakeView::load(&raw_lake));
    let mi = outcome_subjects(&mi_stroke, 0, &vo);
    assert_eq!(mi.len(), 11);
    assert_eq!(mi, outcome_subjects(&mi_stroke, 0, &vr));
    let stroke = outcome_subjects(&mi_stroke, 1, &vo);
    assert_eq!(stroke.len(), 7);
    assert_eq!(stroke, outcome_subjects(&mi_stroke, 1, &vr));

    // `cohort` labels them from both lakes. An outcome is seen while the person is under
    // observation, which routine records (not the outcome's own admission) establish: the raw
    // lake has ED stays, transfers and labs that this conditions-only OMOP export lacks, so it
    // observes more people; every outcome the OMOP lake labels, the raw lake labels too.
    let task = admissions_task(d.path());
    let (co, cr) = (d.path().join("cohort_omop"), d.path().join("cohort_raw"));
    ehr_risk::cohort::run(&lake, &task, &co).unwrap();
    ehr_risk::cohort::run(&raw_lake, &task, &cr).unwrap();
    for o in ["mi_5y", "stroke_5y"] {
        let (a, b) = (positive(&co, o, &vo), positive(&cr, o, &vr));
        eprintln!(
            "{o}: {} people labelled from OMOP, {} from raw",
            a.len(),
            b.len()
        );
        assert!(!a.is_empty(), "{o}");
        assert!(a.is_subset(&b), "{o}: {a:?} not within {b:?}");
    }
}

#[test]
fn cli_refuses_an_empty_success_and_says_which_flag_accepts_it() {
    let Some(raw) = shared("mimic-iv-demo-raw") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let omop = d.path().join("omop");
    mimic_iv_as_omop(&raw, &omop);
    let out = bin()
        .args(["ingest", "-q", "--lake"])
        .arg(d.path().join("a"))
        .arg(&omop)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("accepted none")
            && err.contains("future_event")
            && err.contains("--dates-shifted"),
        "{err}"
    );
    let out = bin()
        .args([
            "ingest",
            "-q",
            "--dates-shifted",
            "--source-vocabulary",
            "icd",
            "--lake",
        ])
        .arg(d.path().join("b"))
        .arg(&omop)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tiny OMOP export whose conditions carry standard concepts the export does not describe,
/// with a CONCEPT_ANCESTOR that places them under MI, under "old MI", or nowhere.
fn ancestor_export(dir: &Path) -> PathBuf {
    let root = dir.join("omop_ancestor");
    std::fs::create_dir_all(&root).unwrap();
    let w = |name: &str, text: &str| {
        let mut f = std::fs::File::create(root.join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    w(
        "person.csv",
        "person_id,gender_concept_id,year_of_birth,person_source_value\n1,8507,1950,p-1\n2,8532,1955,p-2\n3,8507,1960,p-3\n4,8532,1962,p-4\n",
    );
    // 1: a descendant of MI; 2: old MI (a descendant of MI too, but excepted);
    // 3: MI itself; 4: unrelated.
    w(
        "condition_occurrence.csv",
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date\n1,1,4296653,2015-03-01\n2,2,314666,2015-03-01\n3,3,4329847,2015-03-01\n4,4,201826,2015-03-01\n",
    );
    let mut visits =
        String::from("visit_occurrence_id,person_id,visit_concept_id,visit_start_date\n");
    for p in 1..=4 {
        visits.push_str(&format!(
            "{p}1,{p},9202,2014-01-01\n{p}2,{p},9202,2018-01-01\n"
        ));
    }
    w("visit_occurrence.csv", &visits);
    w(
        "CONCEPT_ANCESTOR.csv",
        "ancestor_concept_id,descendant_concept_id,min_levels_of_separation,max_levels_of_separation\n4329847,4296653,1,1\n4329847,314666,1,1\n4329847,4329847,0,0\n441840,4329847,3,4\n",
    );
    root
}

#[test]
fn concept_ancestor_reaches_descendants_and_respects_exceptions() {
    let d = tempfile::tempdir().unwrap();
    let src = ancestor_export(d.path());
    let lake = d.path().join("lake");
    let r = ingest(&lake, std::slice::from_ref(&src));
    assert_balanced(&r);
    valid(&lake);
    let parents = write::read_code_parents(&lake.join("metadata/codes.parquet")).unwrap();
    assert_eq!(
        parents["OMOP//4296653"],
        BTreeSet::from(["OMOP//4329847".to_string()])
    );
    assert!(
        !parents.contains_key("OMOP//201826"),
        "only codes with ancestors"
    );
    let v = LakeView::load(&lake);
    let task = Task::load("mi_stroke").unwrap();
    // Without the hierarchy only the listed concept matches; with it, its descendant too,
    // and never the excepted "old MI".
    assert_eq!(
        outcome_subjects(&task, 0, &v),
        BTreeSet::from(["p-3".to_string()])
    );
    let resolved = task.with_descendants(&parents);
    assert_eq!(
        outcome_subjects(&resolved, 0, &v),
        BTreeSet::from(["p-1".to_string(), "p-3".to_string()])
    );
    // The feature conditions reach OMOP concepts too (type 2 diabetes, 201826).
    let spec = ehr_risk::features::spec::FeatureSpec::builtin().with_descendants(&parents);
    let diabetes = spec
        .condition
        .iter()
        .find(|c| c.name == "diabetes")
        .unwrap();
    assert!(ehr_risk::features::spec::rules_match(
        &diabetes.codes,
        "OMOP//201826"
    ));
    // The cohort resolves the hierarchy itself: MI within a year of 2015-01-01 for p-1, p-3.
    let p = d.path().join("t.toml");
    std::fs::write(
        &p,
        r#"name = "t"
description = "fixed time after the conditions"
[prediction_times]
kind = "fixed"
start = "2015-01-01"
[window]
horizons_years = [1]
lookback_years = 5
min_history_days = 0
min_age = 18
max_age = 100
same_time_is_future = true
prior_outcome = "flag"
censoring = "mark"
[[outcome]]
name = "mi"
codesets = ["acute_mi"]
"#,
    )
    .unwrap();
    let t = Task::load(p.to_str().unwrap()).unwrap();
    let cohort = d.path().join("cohort");
    ehr_risk::cohort::run(&lake, &t, &cohort).unwrap();
    assert_eq!(
        positive(&cohort, "mi_1y", &v),
        BTreeSet::from(["p-1".to_string(), "p-3".to_string()])
    );
    let all = ehr_risk::cohort::read_labels(&cohort.join("labels/mi_1y")).unwrap();
    assert_eq!(all.len(), 4, "every person labelled");
}

/// Issue 13: every event carries the id its source gave the record it came from (FHIR `id`,
/// an OMOP table's `<table>_id`, Synthea's `Id` on patients and encounters, MIMIC-III's
/// `ROW_ID`), and only that: the id is one of that table's ids in the export.
#[test]
fn events_carry_their_source_records_ids() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mini = demo();
    ingest(
        &lake,
        &[
            mini.join("fhir"),
            mini.join("omop"),
            mini.join("synthea"),
            repo().join("tests/data/mimic3"),
        ],
    );
    let v = LakeView::load(&lake);
    let lower = |h: &csv::StringRecord| -> Vec<String> {
        h.iter().map(|c| c.to_ascii_lowercase()).collect()
    };
    let ids_of = |path: &Path, column: &str| -> BTreeSet<String> {
        let mut r = csv::Reader::from_path(path).unwrap();
        let h = lower(r.headers().unwrap());
        let i = h.iter().position(|c| c == column).unwrap();
        r.records().map(|x| x.unwrap()[i].to_string()).collect()
    };
    let mut fhir_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in std::fs::read_dir(mini.join("fhir")).unwrap() {
        for l in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            let Ok(r) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if let (Some(t), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
                fhir_ids.entry(t.into()).or_default().insert(id.into());
            }
        }
    }
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in &v.events {
        let (format, table) = e.source.split_once(':').unwrap();
        let id = e.source_record_id.as_deref();
        let c = seen.entry(e.source.to_string()).or_default();
        c.0 += 1;
        c.1 += id.is_some() as usize;
        match (format, table, id) {
            ("fhir", t, Some(id)) => assert!(fhir_ids[t].contains(id), "{t}/{id}"),
            ("omop", "death", None) => {}
            ("omop", t, Some(id)) => assert!(
                ids_of(&mini.join(format!("omop/{t}.csv")), &format!("{t}_id")).contains(id),
                "{t} {id}"
            ),
            ("synthea", t @ ("patients" | "encounters"), Some(id)) => {
                assert!(ids_of(&mini.join(format!("synthea/{t}.csv")), "id").contains(id))
            }
            ("synthea", _, None) => {}
            ("mimic3", t, Some(id)) => {
                let file = std::fs::read_dir(repo().join("tests/data/mimic3"))
                    .unwrap()
                    .map(|f| f.unwrap().path())
                    .find(|p| {
                        p.file_stem()
                            .unwrap()
                            .to_string_lossy()
                            .to_ascii_lowercase()
                            == t
                    })
                    .unwrap();
                assert!(ids_of(&file, "row_id").contains(id), "{t} {id}");
            }
            (f, t, id) => panic!("{f}:{t} with record id {id:?}"),
        }
    }
    for s in [
        "fhir:Observation",
        "fhir:Patient",
        "omop:measurement",
        "omop:person",
        "mimic3:labevents",
    ] {
        let (n, with) = seen.get(s).copied().unwrap_or_default();
        assert!(n > 0 && with == n, "{s}: {with} of {n} events carry an id");
    }
}
