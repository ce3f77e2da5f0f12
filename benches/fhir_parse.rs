//! Criterion benchmark of the FHIR NDJSON hot path (parse + normalise, no disk): elements are
//! resources. Input: Observation and Condition lines made deterministically here. The 1 GB
//! side-by-side run against the Python reader is `benches/side_by_side_fhir.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ehr_risk::ingest::time::TimeContext;
use ehr_risk::ingest::{Ctx, fhir};

fn lines(n: usize) -> (Vec<u8>, ehr_risk::ingest::SubjectSet) {
    let mut out = String::new();
    let mut known = ehr_risk::ingest::SubjectSet::default();
    for i in 0..n {
        let pid = format!("p{}", i % 500);
        known.insert(ehr_risk::schema::subject_id_for(
            fhir::PATIENT_ID_SYSTEM,
            &pid,
        ));
        if i % 3 == 0 {
            out.push_str(&format!(
                r#"{{"resourceType":"Condition","id":"c{i}","subject":{{"reference":"Patient/{pid}"}},"onsetDateTime":"2015-03-{:02}T10:00:00-05:00","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"59621000","display":"Essential hypertension"}}]}}}}"#,
                1 + i % 28
            ));
        } else {
            out.push_str(&format!(
                r#"{{"resourceType":"Observation","id":"o{i}","status":"final","subject":{{"reference":"Patient/{pid}"}},"effectiveDateTime":"2019-04-{:02}T09:15:00-07:00","code":{{"coding":[{{"system":"http://loinc.org","code":"85354-9"}}]}},"component":[{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}},"valueQuantity":{{"value":{},"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}},{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8462-4"}}]}},"valueQuantity":{{"value":{},"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}}]}}"#,
                1 + i % 28,
                100 + i % 60,
                60 + i % 30
            ));
        }
        out.push('\n');
    }
    (out.into_bytes(), known)
}

fn bench(c: &mut Criterion) {
    let n = 20_000;
    let (data, known) = lines(n);
    let ctx = Ctx {
        time: TimeContext::default(),
        max_event_time: i64::MAX,
        min_event_time: i64::MIN,
        known: &known,
        policy: &ehr_risk::ingest::NO_POLICY,
        file_id: 1,
        file: "bench.ndjson",
    };
    let mut g = c.benchmark_group("fhir_ndjson");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("parse_normalise_20k_resources", |b| {
        b.iter(|| {
            let c = fhir::read_lines(&data, 1, &ctx, &Default::default());
            assert_eq!(c.tally.rows_accepted as usize, n);
            c.events.len()
        })
    });
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parse_normalise_bytes", |b| {
        b.iter(|| {
            fhir::read_lines(&data, 1, &ctx, &Default::default())
                .events
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
