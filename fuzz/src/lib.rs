//! What every fuzz target shares: a fixed reading context (time window, policy, known
//! subjects), the invariants a reader must keep on any input (counts balance, every event is
//! inside the window, every number finite), and the fixture exports whose lookups the CSV
//! target reads under. In: bytes from libFuzzer. Out: a panic when an invariant breaks.

use ehr_risk::ingest::{Chunk, Ctx, InputPolicy, NO_POLICY, SubjectSet, Tally};
use std::sync::OnceLock;

/// 1850-01-01 and 2030-01-01, fixed so that a run is reproducible whatever the date.
pub const MIN_TIME: i64 = -3_786_825_600_000_000;
pub const MAX_TIME: i64 = 1_893_456_000_000_000;

/// Subjects the readers treat as known: ids "0".."63" in every identity system, so that rows
/// referring to them reach their conversion instead of stopping at `unknown_subject`.
pub fn known() -> &'static SubjectSet {
    static K: OnceLock<SubjectSet> = OnceLock::new();
    K.get_or_init(|| {
        let systems = [
            ehr_risk::ingest::fhir::PATIENT_ID_SYSTEM,
            ehr_risk::ingest::mimic::SYSTEM,
            ehr_risk::ingest::mimic3::SYSTEM,
        ];
        let mut k = SubjectSet::default();
        for s in systems {
            for v in 0..64 {
                k.insert(ehr_risk::schema::subject_id_for(s, &v.to_string()));
            }
        }
        k
    })
}

/// The reading context every target uses.
pub fn ctx(policy: &'static InputPolicy) -> Ctx<'static> {
    Ctx {
        time: Default::default(),
        max_event_time: MAX_TIME,
        min_event_time: MIN_TIME,
        known: known(),
        policy,
        file_id: 1,
        file: "fuzz-input",
    }
}

/// The default policy (dates checked, source values not interpreted).
pub fn policy() -> &'static InputPolicy {
    &NO_POLICY
}

/// What every reader promises on any input: the framing count equals the outcomes, each
/// rejection is quarantined, each event's times lie in the window (or the input shifts dates)
/// and are never before the event's own time where availability is concerned, and every
/// number is finite.
pub fn check_chunk(c: &Chunk, t: &Tally, shifted: bool) {
    assert!(
        t.balanced(),
        "counts do not balance: read {} != accepted {} + rejected {} + skipped {}",
        t.rows_read,
        t.rows_accepted,
        t.rows_rejected,
        t.rows_skipped
    );
    assert_eq!(
        t.rows_rejected + t.fields_rejected,
        c.quarantine.len() as u64,
        "every rejected row and field is quarantined once"
    );
    assert_eq!(t.events, c.events.len() as u64, "events counted as emitted");
    for e in &c.events {
        if let Some(v) = e.numeric_value {
            assert!(v.is_finite(), "non-finite value {v} for {}", e.code);
        }
        if let Some(at) = e.time
            && !shifted
        {
            assert!(
                (MIN_TIME..=MAX_TIME).contains(&at),
                "event time {at} outside the window"
            );
        }
        if let (Some(at), Some(known)) = (e.time, e.available_time) {
            assert!(known >= at, "known at {known} before it happened at {at}");
        }
        assert!(!e.code.is_empty(), "an event without a code");
    }
}

/// The CSV tables the fuzzers reach, each with the lookups of a fixture export of its format.
pub mod csv {
    use ehr_risk::ingest::detect::{InputFile, plan};
    use ehr_risk::ingest::lookups::SetLookups;
    use ehr_risk::ingest::{Format, IngestOptions, mimic, mimic3, omop, synthea};
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    /// One table: a file of that table of the fixture's format, under its lookups.
    pub struct Table {
        pub name: String,
        pub file: InputFile,
        pub lookups: &'static SetLookups,
        /// The format shifts dates on purpose (MIMIC): no time window.
        pub shifted: bool,
    }

    /// The fixture export of each format: the repository's own, and the MIMIC-IV demo from
    /// `../shared/data` where it is present (else MIMIC-IV tables run over empty lookups).
    fn fixtures() -> Vec<(Format, PathBuf)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        vec![
            (Format::Synthea, root.join("tests/data/mini/synthea")),
            (Format::Omop, root.join("tests/data/mini/omop")),
            (Format::Mimic3, root.join("tests/data/mimic3")),
            (Format::Mimic, root.join("../shared/data/mimic-iv-demo-raw")),
        ]
    }

    /// The tables each reader takes, people first, from the readers' own lists.
    fn tables(format: Format) -> Vec<String> {
        match format {
            Format::Synthea => synthea::TABLES.iter().map(|t| t.0.to_string()).collect(),
            Format::Omop => ["person", "visit_occurrence", "death"]
                .into_iter()
                .map(String::from)
                .chain(omop::EVENT_TABLES.iter().map(|t| t.name.to_string()))
                .collect(),
            Format::Mimic => mimic::TABLES.iter().map(|t| t.0.to_string()).collect(),
            Format::Mimic3 => mimic3::TABLES.iter().map(|t| t.to_string()).collect(),
            Format::Fhir | Format::Meds => Vec::new(),
        }
    }

    fn load() -> Vec<Table> {
        let opts = IngestOptions {
            max_event_time: crate::MAX_TIME,
            min_event_time: crate::MIN_TIME,
            ..Default::default()
        };
        let mut out = Vec::new();
        for (format, dir) in fixtures() {
            let mut loaded = match plan(&[dir.clone()], Some(format)) {
                Ok(p) if !p.sets.is_empty() => SetLookups::load(&p.sets[0], &opts)
                    .unwrap_or_else(|e| panic!("fixture {}: {e}", dir.display())),
                _ if format == Format::Mimic => SetLookups {
                    mimic: Some(Default::default()),
                    ..Default::default()
                },
                Ok(_) => panic!("fixture {}: no export found", dir.display()),
                Err(e) => panic!("fixture {}: {e}", dir.display()),
            };
            // The dictionaries' descriptions go out once with a people table, not per row:
            // sending the MIMIC-IV demo's 100,000 of them on every input would be most of
            // the work and none of the row path.
            loaded.descriptions.clear();
            let lookups: &'static SetLookups = Box::leak(Box::new(loaded));
            let people = tables(format)[0].clone();
            for table in tables(format) {
                out.push(Table {
                    name: format!("{format}/{table}"),
                    file: InputFile {
                        path: PathBuf::from(format!("fuzz/{table}.csv")),
                        format,
                        people: table == people,
                        table,
                    },
                    lookups,
                    shifted: matches!(format, Format::Mimic | Format::Mimic3),
                });
            }
        }
        out
    }

    /// Every table, loaded once.
    pub fn all() -> &'static [Table] {
        static T: OnceLock<Vec<Table>> = OnceLock::new();
        T.get_or_init(load)
    }

    /// The table called `name` (`format/table`).
    pub fn table(name: &str) -> Option<&'static Table> {
        all().iter().find(|t| t.name == name)
    }
}
