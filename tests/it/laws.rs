//! Property tests for the laws ingest keeps: readers never panic and always account for every
//! line; timestamps either parse or are rejected (never panic); events round-trip through
//! Parquet exactly; sorting and deduplication are idempotent and order-independent.

use ehr_risk::ingest::time::TimeContext;
use ehr_risk::ingest::{Ctx, fhir};
use ehr_risk::schema::{Event, sort_dedupe};
use proptest::prelude::*;

fn ctx(known: &ehr_risk::ingest::SubjectSet) -> Ctx<'_> {
    Ctx {
        time: TimeContext::default(),
        max_event_time: i64::MAX,
        min_event_time: i64::MIN,
        known,
        policy: &ehr_risk::ingest::NO_POLICY,
        file_id: 1,
        file: "p.ndjson",
    }
}

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\{\"resourceType\":\"(Observation|Patient|Condition|Bundle|Claim)\"[ -~]{0,80}\\}",
        Just(r#"{"resourceType":"Observation","subject":{"reference":"Patient/x"},"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"effectiveDateTime":"2020-01-01","valueQuantity":{"value":1e308,"unit":"mmHg"}}"#.to_string()),
        Just(r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Bundle","entry":[{}]}}]}"#.to_string()),
    ]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        0i64..5,
        proptest::option::of(-1_000_000i64..1_000_000),
        "[A-Z]{1,3}//[0-9]{1,2}",
        proptest::option::of(-1000.0f32..1000.0),
        proptest::option::of("[a-z ]{0,6}"),
        proptest::option::of("mg/dL|mmHg"),
        (0u64..4, 0u64..1000),
    )
        .prop_map(|(s, t, code, v, text, unit, prov)| Event {
            subject_id: s,
            time: t,
            code,
            numeric_value: v,
            text_value: text,
            unit,
            source: "p".into(),
            provenance: ehr_risk::schema::Provenance {
                file: prov.0,
                row: prov.1,
            },
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fhir_reader_never_panics_and_accounts_for_every_line(lines in proptest::collection::vec(line_strategy(), 0..20)) {
        let known = ehr_risk::ingest::SubjectSet::default();
        let text: String = lines.iter().map(|l| l.replace('\n', " ") + "\n").collect();
        let c = fhir::read_lines(text.as_bytes(), 1, &ctx(&known), &Default::default());
        // The framing count (a record per line, a Bundle's entries for a Bundle line), made
        // apart from the reader, equals what the reader decided.
        let framed: u64 = text.lines().map(|l| fhir::line_records(l.as_bytes())).sum();
        let t = &c.tally;
        prop_assert_eq!(framed, t.rows_accepted + t.rows_rejected + t.rows_skipped);
        prop_assert!(framed >= lines.len() as u64 - lines.iter().filter(|l| l.contains("Bundle")).count() as u64);
        prop_assert_eq!(c.quarantine.len() as u64, c.tally.rows_rejected + c.tally.fields_rejected);
    }

    #[test]
    fn time_parser_never_panics(s in any::<String>()) {
        let _ = TimeContext::default().parse(&s);
    }

    #[test]
    fn events_round_trip_through_parquet(events in proptest::collection::vec(event_strategy(), 0..50)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.parquet");
        ehr_risk::lake::write::write_events(&p, &events).unwrap();
        prop_assert_eq!(ehr_risk::lake::read_events(&p).unwrap(), events);
    }

    #[test]
    fn sort_dedupe_is_order_independent_and_idempotent(mut events in proptest::collection::vec(event_strategy(), 0..60), seed in any::<u64>()) {
        let mut shuffled = events.clone();
        // deterministic shuffle from the seed
        let n = shuffled.len();
        let mut x = seed | 1;
        for i in (1..n).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        sort_dedupe(&mut events);
        sort_dedupe(&mut shuffled);
        prop_assert_eq!(&events, &shuffled);
        let again = events.clone();
        prop_assert_eq!(sort_dedupe(&mut events), 0);
        prop_assert_eq!(events, again);
    }
}

/// Inputs the fuzzers (fuzz/, docs/FUZZING.md) found breaking an invariant, pinned.
mod fuzz_findings {
    use super::*;

    /// unit_parser: a finite value beyond f32's range for a code that is not a measured
    /// concept was stored as +inf (`value as f32`). Now it is rejected as a bad number.
    #[test]
    fn a_value_beyond_f32_is_rejected_not_stored_as_infinity() {
        let v = ehr_risk::ingest::parse_number(
            "value",
            "111111111111111111111111111111111111111111111",
        )
        .unwrap();
        let e = Event {
            code: "LOINC//0000-0".into(),
            ..Default::default()
        };
        let r = ehr_risk::ingest::measurement(e, "value", v, None).unwrap_err();
        assert_eq!(r.reason, "bad_number");
        // Through a reader: the FHIR Observation is quarantined, counted, not accepted.
        let id = ehr_risk::schema::subject_id_for(fhir::PATIENT_ID_SYSTEM, "p1");
        let known: ehr_risk::ingest::SubjectSet = [id].into_iter().collect();
        let line = r#"{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01T10:00:00Z","code":{"coding":[{"system":"http://loinc.org","code":"0000-0"}]},"valueQuantity":{"value":1.1e45,"unit":"1"}}"#;
        let c = fhir::read_lines(
            format!("{line}\n").as_bytes(),
            1,
            &ctx(&known),
            &Default::default(),
        );
        assert!(
            c.events
                .iter()
                .all(|e| e.numeric_value.is_none_or(f32::is_finite))
        );
        assert_eq!(
            c.tally.rows_accepted + c.tally.rows_rejected + c.tally.rows_skipped,
            1
        );
        assert_eq!(c.tally.rows_accepted, 0, "{:?}", c.tally);
    }
}

/// csv_rows: a MIMIC-IV `patients` row whose anchor year or age was not a small whole number
/// (`1e300` read as a float, then `as i64`) overflowed `anchor_year - anchor_age` and panicked;
/// a fractional age was silently truncated. Now each is quarantined as a bad number.
#[test]
fn mimic_anchor_fields_are_whole_numbers_or_rejected() {
    use ehr_risk::ingest::detect::InputFile;
    use ehr_risk::ingest::lookups::SetLookups;
    use ehr_risk::ingest::{Chunk, Format};
    let csv = "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n\
               1,F,52,1e300,2008 - 2010,\n\
               2,M,-9223372036854775808,2150,2008 - 2010,\n\
               3,F,30.5,2150,2008 - 2010,\n\
               4,M,52,2180,2008 - 2010,\n";
    let f = InputFile {
        path: "patients.csv".into(),
        format: Format::Mimic,
        table: "patients".into(),
        people: true,
    };
    let lookups = SetLookups {
        mimic: Some(Default::default()),
        ..Default::default()
    };
    let known = ehr_risk::ingest::SubjectSet::default();
    let mut all = Chunk::default();
    ehr_risk::ingest::read::read_table(&f, csv.as_bytes(), &lookups, &ctx(&known), &mut |c| {
        all.merge(c);
        Ok(())
    })
    .unwrap();
    let t = &all.tally;
    assert_eq!(
        (t.rows_read, t.rows_accepted, t.rows_rejected),
        (4, 1, 3),
        "{t:?}"
    );
    assert_eq!(t.rejected_by_reason.get("bad_number"), Some(&3), "{t:?}");
}

/// fhir_bundle: a Bundle-level field of an unexpected shape (`"component": "<a string>"`)
/// failed the parse of the whole Bundle, so it became one malformed row while its entries were
/// counted (the file would have failed its count check). Now only the envelope is read: the
/// entries are decided one by one and the counts balance.
#[test]
fn a_bundle_field_of_another_shape_does_not_hide_its_entries() {
    let known = ehr_risk::ingest::SubjectSet::default();
    let doc = r#"{"resourceType":"Bundle","type":"document","component":"2013-05-28T22:12:21Z",
        "entry":[{"resource":{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1960-02-03"}},
                 {"resource":{"resourceType":"Claim","id":"c1"}}]}"#;
    let c = fhir::read_document(doc, &ctx(&known), &Default::default());
    let t = &c.tally;
    assert_eq!(fhir::count_records(doc), 2);
    assert_eq!(
        (t.rows_accepted, t.rows_rejected, t.rows_skipped),
        (1, 0, 1),
        "{t:?}"
    );
    // A Bundle whose entries themselves cannot be read is one row, for both counts.
    let broken = r#"{"resourceType":"Bundle","entry":{"resource":{}}}"#;
    let c = fhir::read_document(broken, &ctx(&known), &Default::default());
    assert_eq!(fhir::count_records(broken), 1);
    assert_eq!((c.tally.rows_rejected, c.tally.rows_accepted), (1, 0));
}
