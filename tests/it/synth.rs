//! The synthetic cohort: determinism, exact defect accounting through ingest, identity linking
//! across the three exports, plausibility against published incidence, and calibration of the
//! ground truth against the events the generator draws.

use crate::common::*;
use ehr_risk::model::equations::pce::Sex;
use ehr_risk::synth::export::DefectRates;
use ehr_risk::synth::sim::{Dx, MONTHS, Person, Rx, SimOptions, micros, month_start};
use ehr_risk::synth::{SynthOptions, run};
use std::collections::{BTreeMap, BTreeSet};

fn opts(patients: u64, seed: u64, rate: f64) -> SynthOptions {
    let d = DefectRates::uniform(rate);
    SynthOptions {
        patients,
        seed,
        defects: d,
        chunk: 97,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let d = tempfile::tempdir().unwrap();
    run(&d.path().join("a"), &opts(300, 7, 0.01), &|_| {}).unwrap();
    // A different chunk size changes the parallel schedule, not the bytes.
    let mut o = opts(300, 7, 0.01);
    o.chunk = 1000;
    let mb = run(&d.path().join("b"), &o, &|_| {}).unwrap();
    run(&d.path().join("c"), &opts(300, 8, 0.01), &|_| {}).unwrap();
    let (a, b, c) = (
        lake_bytes(&d.path().join("a")),
        lake_bytes(&d.path().join("b")),
        lake_bytes(&d.path().join("c")),
    );
    let strip = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| *k != "synth_manifest.json")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_ne!(
        a["hospital_fhir/Observation.ndjson"],
        c["hospital_fhir/Observation.ndjson"]
    );
    assert_eq!(mb.people, 300);
}

#[test]
fn ingest_quarantines_exactly_the_written_defects_and_links_people() {
    let d = tempfile::tempdir().unwrap();
    let m = run(&d.path().join("in"), &opts(600, 11, 0.02), &|_| {}).unwrap();
    assert!(
        m.defects.values().all(|(_, n)| *n > 0),
        "every kind written at least once: {:?}",
        m.defects
    );
    let lake = d.path().join("lake");
    let paths: Vec<_> = ["hospital_fhir", "clinic_omop", "synthea_csv"]
        .iter()
        .map(|x| d.path().join("in").join(x))
        .collect();
    let r = ingest(&lake, &paths);
    assert_balanced(&r);
    let v = LakeView::load(&lake);
    let mut by_reason_file: BTreeMap<(String, String), u64> = BTreeMap::new();
    for q in &v.quarantine {
        let rel = q.file.split("/in/").nth(1).unwrap().to_string();
        *by_reason_file.entry((q.reason.clone(), rel)).or_default() += 1;
    }
    let want: BTreeMap<(String, String), u64> = m
        .defects
        .iter()
        .map(|(k, (f, n))| ((k.clone(), f.clone()), *n))
        .collect();
    assert_eq!(
        by_reason_file, want,
        "ingest quarantined exactly what the generator wrote, where it wrote it"
    );
    // One subject per person, whatever exports they are in.
    let subjects: BTreeSet<i64> = v.events.iter().map(|e| e.subject_id).collect();
    assert_eq!(subjects.len() as u64, m.people);
    let sim = SimOptions {
        duplicate_rate: 0.05,
    };
    let everywhere = (0..600)
        .map(|i| Person::simulate(11, i, &sim))
        .find(|p| p.in_fhir && p.in_omop && p.in_synthea && p.visits.len() > 5)
        .unwrap();
    let sid = v.subject_of(&everywhere.uuid).unwrap();
    let sources: BTreeSet<&str> = v
        .events
        .iter()
        .filter(|e| e.subject_id == sid)
        .map(|e| e.source.split(':').next().unwrap())
        .collect();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        ["fhir", "omop", "synthea"]
    );
    assert!(
        r.duplicates > 0,
        "visits copied into a second export and demographics in several come out once"
    );
    // Every MI the generator drew is in the lake, coded SNOMED or ICD-10-CM.
    let mi_events = v
        .events
        .iter()
        .filter(|e| {
            e.subject_id == sid && (e.code == "SNOMED//22298006" || e.code == "ICD10CM//I21.9")
        })
        .count();
    assert_eq!(mi_events, everywhere.mi.len());
}

struct Cohort {
    people: Vec<Person>,
}

fn cohort(n: u64) -> Cohort {
    use rayon::prelude::*;
    let sim = SimOptions {
        duplicate_rate: 0.0,
    };
    Cohort {
        people: (0..n)
            .into_par_iter()
            .map(|i| Person::simulate(2024, i, &sim))
            .collect(),
    }
}

/// Incidence of a first event per 1,000 person-years at ages [lo, hi), by sex, over the whole
/// window: person-time counts from 2008 (or the birthday that enters the band) until the first
/// event, death, leaving the band or the end, as community surveillance (ARIC) reports it.
fn incidence(
    c: &Cohort,
    events: impl Fn(&Person) -> &Vec<i64>,
    sex: Sex,
    lo: f64,
    hi: f64,
) -> (f64, f64) {
    let year = 365.25 * 86_400e6;
    let (start, end) = (
        micros(month_start(0)) as f64,
        micros(month_start(MONTHS)) as f64,
    );
    let (mut cases, mut years) = (0usize, 0.0);
    for p in c.people.iter().filter(|p| p.sex == sex) {
        let birth = micros(p.birth) as f64;
        let first = events(p).iter().min().map(|&t| t as f64);
        let stop = [
            Some(end),
            p.death.map(|d| d as f64),
            first,
            Some(birth + hi * year),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
        let from = start.max(birth + lo * year);
        if stop > from {
            years += (stop - from) / year;
        }
        if let Some(t) = first {
            let age = (t - birth) / year;
            if (lo..hi).contains(&age) && t >= start {
                cases += 1;
            }
        }
    }
    (1000.0 * cases as f64 / years, years)
}

#[test]
fn incidence_treatment_and_risk_factors_are_plausible() {
    let c = cohort(40_000);
    // The age and sex structure of US adults 30-84 in the 2010 Census: 19.6 % aged 65 or over,
    // 51.6 % women (more with age: 59 % of those 75-84).
    let start = month_start(0);
    let share = |f: &dyn Fn(&Person) -> bool| {
        c.people.iter().filter(|p| f(p)).count() as f64 / c.people.len() as f64
    };
    let old = share(&|p| p.age_at(start) >= 65.0);
    let women = share(&|p| p.sex == Sex::Female);
    let women_75 = share(&|p| p.sex == Sex::Female && p.age_at(start) >= 75.0)
        / share(&|p| p.age_at(start) >= 75.0);
    eprintln!("aged 65+: {old:.3}; women: {women:.3}; women among 75+: {women_75:.3}");
    assert!((0.185..=0.207).contains(&old), "aged 65+ {old}");
    assert!((0.505..=0.527).contains(&women), "women {women}");
    assert!(
        (0.56..=0.62).contains(&women_75),
        "women among 75+ {women_75}"
    );
    // Published rates of a first event per 1,000 person-years (AHA Heart Disease and Stroke
    // Statistics 2023 Update: MI or fatal CHD, ARIC community surveillance 2005-2014; first
    // stroke, GCNKSS/ARIC), against person-time by current age in the synthetic world:
    //   MI men 45-54: 3.9, 55-64: 7.0, 65-74: 10.7; women 45-54: 1.3, 55-64: 2.8, 65-74: 5.5.
    //   Stroke (both sexes) 45-54: 2.0, 55-64: 3.5, 65-74: 7.0.
    let mut rows = Vec::new();
    for (sex, lo, hi, published) in [
        (Sex::Male, 45.0, 55.0, 3.9),
        (Sex::Male, 55.0, 65.0, 7.0),
        (Sex::Male, 65.0, 75.0, 10.7),
        (Sex::Female, 45.0, 55.0, 1.3),
        (Sex::Female, 55.0, 65.0, 2.8),
        (Sex::Female, 65.0, 75.0, 5.5),
    ] {
        let (rate, years) = incidence(&c, |p| &p.mi, sex, lo, hi);
        rows.push((format!("MI {sex:?} {lo}-{hi}"), rate, years, published));
    }
    for (lo, hi, published) in [(45.0, 55.0, 2.0), (55.0, 65.0, 3.5), (65.0, 75.0, 7.0)] {
        let (m, ym) = incidence(&c, |p| &p.strokes, Sex::Male, lo, hi);
        let (f, yf) = incidence(&c, |p| &p.strokes, Sex::Female, lo, hi);
        let rate = (m * ym + f * yf) / (ym + yf);
        rows.push((format!("stroke {lo}-{hi}"), rate, ym + yf, published));
    }
    for (what, rate, years, published) in &rows {
        eprintln!(
            "{what}: {rate:.2} per 1,000 person-years ({years:.0} years), published {published:.1}, ratio {:.2}",
            rate / published
        );
        assert!(*years > 20_000.0, "{what}: {years} person-years");
        assert!(
            (0.75 * published..=1.25 * published).contains(rate),
            "{what}: {rate:.2} vs published {published:.1}"
        );
    }
    // Risk factors at visits and treatment rates.
    let sbp: Vec<f64> = c
        .people
        .iter()
        .flat_map(|p| {
            p.visits.iter().flat_map(|v| {
                v.measurements
                    .iter()
                    .filter(|m| matches!(m.0, ehr_risk::synth::sim::Meas::Sbp))
                    .map(|m| m.1)
            })
        })
        .collect();
    let mean_sbp = sbp.iter().sum::<f64>() / sbp.len() as f64;
    assert!((118.0..=138.0).contains(&mean_sbp), "mean SBP {mean_sbp}");
    let has = |p: &Person, d: Dx| p.visits.iter().any(|v| v.diagnoses.contains(&d));
    let treated = |p: &Person, rx: &[Rx]| {
        p.visits
            .iter()
            .any(|v| v.treatments.iter().any(|t| rx.contains(t)))
    };
    let htn: Vec<&Person> = c
        .people
        .iter()
        .filter(|p| has(p, Dx::Hypertension))
        .collect();
    let htn_share = htn.len() as f64 / c.people.len() as f64;
    assert!((0.2..=0.6).contains(&htn_share), "hypertension {htn_share}");
    let bp_treated = htn
        .iter()
        .filter(|p| treated(p, &[Rx::Lisinopril, Rx::Amlodipine]))
        .count() as f64
        / htn.len() as f64;
    assert!(
        (0.5..=0.98).contains(&bp_treated),
        "treated hypertensives {bp_treated}"
    );
    let dm: Vec<&Person> = c.people.iter().filter(|p| has(p, Dx::Diabetes)).collect();
    let dm_share = dm.len() as f64 / c.people.len() as f64;
    assert!((0.05..=0.3).contains(&dm_share), "diabetes {dm_share}");
    let dm_statin = dm
        .iter()
        .filter(|p| treated(p, &[Rx::Atorvastatin]))
        .count() as f64
        / dm.len() as f64;
    assert!(dm_statin > 0.4, "statins in diabetes {dm_statin}");
    let af: Vec<&Person> = c
        .people
        .iter()
        .filter(|p| has(p, Dx::AtrialFibrillation))
        .collect();
    let anticoag =
        af.iter().filter(|p| treated(p, &[Rx::Apixaban])).count() as f64 / af.len() as f64;
    assert!(
        (0.3..=0.9).contains(&anticoag),
        "anticoagulated AF {anticoag}"
    );
    eprintln!(
        "mean SBP {mean_sbp:.1}; hypertension {htn_share:.3} (treated {bp_treated:.3}); diabetes {dm_share:.3} (statin {dm_statin:.3}); AF {} (anticoagulated {anticoag:.3})",
        af.len()
    );
    let smokers = c
        .people
        .iter()
        .filter(|p| {
            p.visits.first().and_then(|v| v.smoking) == Some(ehr_risk::synth::sim::Smoking::Current)
        })
        .count() as f64
        / c.people.iter().filter(|p| !p.visits.is_empty()).count() as f64;
    assert!(
        (0.08..=0.25).contains(&smokers),
        "current smokers {smokers}"
    );
}

#[test]
fn ground_truth_is_calibrated_against_drawn_events() {
    let c = cohort(40_000);
    for (anchor, years) in [(36u32, 10u32), (72, 5)] {
        let (a, b) = (
            micros(month_start(anchor)),
            micros(month_start(anchor + 12 * years)),
        );
        for outcome in ["mi", "stroke", "ascvd"] {
            let mut rows: Vec<(f64, bool)> = c
                .people
                .iter()
                .filter_map(|p| {
                    let r = p.truth(anchor, 12 * years)?;
                    let in_window = |ev: &[i64]| ev.iter().any(|&t| t >= a && t < b);
                    let hit = match outcome {
                        "mi" => in_window(&p.mi),
                        "stroke" => in_window(&p.strokes),
                        _ => in_window(&p.mi) || in_window(&p.strokes),
                    };
                    Some((r.of(outcome)?, hit))
                })
                .collect();
            rows.sort_by(|x, y| x.0.total_cmp(&y.0));
            // Overall and per quintile of predicted risk: observed within 3.5 standard errors.
            for q in rows
                .chunks(rows.len() / 5 + 1)
                .chain(std::iter::once(&rows[..]))
            {
                let expected: f64 = q.iter().map(|r| r.0).sum();
                let observed = q.iter().filter(|r| r.1).count() as f64;
                let se = q.iter().map(|r| r.0 * (1.0 - r.0)).sum::<f64>().sqrt();
                eprintln!(
                    "{outcome} anchor {anchor} +{years}y n={}: observed {observed} expected {expected:.1} se {se:.1}",
                    q.len()
                );
                assert!(
                    (observed - expected).abs() <= 3.5 * se + 1.0,
                    "{outcome} anchor {anchor} +{years}y: observed {observed} expected {expected:.1} se {se:.1}"
                );
            }
        }
    }
}

/// The lake carries exactly the heart attacks and strokes the generator drew, person by person
/// and day by day, whichever exports they landed in and however often they were copied (a
/// population-level check: an outcome the lake adds or loses would bias every label).
#[test]
fn the_lake_holds_exactly_the_outcomes_the_generator_drew() {
    let d = tempfile::tempdir().unwrap();
    let (n, seed) = (1500, 13);
    run(&d.path().join("in"), &opts(n, seed, 0.0), &|_| {}).unwrap();
    let lake = d.path().join("lake");
    let paths: Vec<_> = ["hospital_fhir", "clinic_omop", "synthea_csv"]
        .iter()
        .map(|x| d.path().join("in").join(x))
        .collect();
    assert_balanced(&ingest(&lake, &paths));
    let v = LakeView::load(&lake);
    let day = |t: i64| t.div_euclid(86_400_000_000);
    let mi_codes = ["SNOMED//22298006", "ICD10CM//I21.9"];
    let stroke_codes = [
        "SNOMED//422504002",
        "ICD10CM//I63.9",
        "SNOMED//274100004",
        "ICD10CM//I61.9",
    ];
    let mut lake_days: BTreeMap<(i64, &str), BTreeSet<i64>> = BTreeMap::new();
    for e in &v.events {
        let outcome = if mi_codes.contains(&e.code.as_str()) {
            "mi"
        } else if stroke_codes.contains(&e.code.as_str()) {
            "stroke"
        } else {
            continue;
        };
        lake_days
            .entry((e.subject_id, outcome))
            .or_default()
            .insert(day(e.time.expect("outcome events are timed")));
    }
    let sim = SimOptions {
        duplicate_rate: SynthOptions::default().duplicate_rate,
    };
    let (mut drawn, mut found) = ([0usize; 2], [0usize; 2]);
    for i in 0..n {
        let p = Person::simulate(seed, i, &sim);
        let sid = v.subject_of(&p.uuid).unwrap();
        for (k, (outcome, times)) in [("mi", &p.mi), ("stroke", &p.strokes)]
            .into_iter()
            .enumerate()
        {
            let want: BTreeSet<i64> = times.iter().map(|&t| day(t)).collect();
            let got = lake_days.remove(&(sid, outcome)).unwrap_or_default();
            assert_eq!(
                got, want,
                "person {i}: {outcome} days in the lake against the generator's"
            );
            drawn[k] += want.len();
            found[k] += got.len();
        }
    }
    eprintln!(
        "MI days drawn {} found {}; stroke days drawn {} found {}",
        drawn[0], found[0], drawn[1], found[1]
    );
    assert!(
        lake_days.is_empty(),
        "outcomes for no person: {}",
        lake_days.len()
    );
    assert!(drawn[0] > 20 && drawn[1] > 20, "{drawn:?}");
}
