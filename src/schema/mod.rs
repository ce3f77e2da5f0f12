//! The canonical event: one row per measurement, as MEDS 0.4 defines it, plus our extension
//! columns (unit, end time, visit, alternative source code, source and provenance). In: events
//! built by the readers. Out: Arrow record batches with exactly the lake schema, and back. The
//! sort order defined here (subject, time with nulls first, then every other column) is total,
//! so the lake's bytes do not depend on the order in which parallel readers produced events.

pub mod availability;
pub mod codes;
pub mod identity;
pub mod records;
pub mod units;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float32Array, Float32Builder, Int64Array,
    Int64Builder, LargeStringBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

/// One event in the lake.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub subject_id: i64,
    /// Microseconds since the epoch, UTC; `None` for static facts (sex, race).
    pub time: Option<i64>,
    pub code: String,
    pub numeric_value: Option<f32>,
    pub text_value: Option<String>,
    /// Canonical unit for measured concepts, else the unit as the source wrote it.
    pub unit: Option<String>,
    /// End of an interval event (encounter discharge, medication stop, condition abatement).
    pub end_time: Option<i64>,
    /// When the event became *known*: the end of its time's precision (a date-only value at
    /// the end of its day, a year-month at the end of its month), or the discharge of the stay
    /// it was coded for. Set at ingest ([`availability::resolve`]); `None` only for static facts
    /// and for events not yet resolved, which [`Event::known_at`] then takes as their time.
    pub available_time: Option<i64>,
    /// The reader's fact that this diagnosis was coded for its visit, so that it is known at
    /// the visit's discharge when the visit is a stay (resolved at ingest, kept in the lake so
    /// that a stay arriving in a later export still delays it).
    pub coded_at_discharge: bool,
    /// Source visit / encounter id, to tie a diagnosis to its admission.
    pub visit_id: Option<String>,
    /// A second coding of the same fact (OMOP source value, another FHIR coding).
    pub source_code: Option<String>,
    /// Format and table or resource type, e.g. `fhir:Observation`, `omop:measurement`.
    pub source: Cow<'static, str>,
    /// Which input row made this event; stored as `<input file id>:<row>`.
    pub provenance: Provenance,
    /// The source's own id of the record this event came from (a FHIR resource's `id`, an OMOP
    /// row's `*_id`), so outputs can point back at it (a RiskAssessment's `basis`); `None`
    /// where the source row has no id of its own.
    pub source_record_id: Option<String>,
    /// The subject id of the source record (identity) this event came from, when identity
    /// resolution joined that record to another person (`subject_id`); `None` when the event's
    /// subject is its own record. Lets a later linkage move a record's events to another person.
    pub source_subject_id: Option<i64>,
}

/// Input file id (the first 48 bits of its content hash) and row. Two integers rather than a
/// string: ingest makes one per event, and the hot path should not allocate for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Provenance {
    pub file: u64,
    pub row: u64,
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:012x}:{}", self.file, self.row)
    }
}

impl Provenance {
    /// Append `<12 hex digits>:<row>` to `out` without going through `fmt` (hot in `to_batch`).
    pub fn write_to(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..12).rev() {
            out.push(HEX[((self.file >> (shift * 4)) & 0xf) as usize] as char);
        }
        out.push(':');
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut r = self.row;
        loop {
            i -= 1;
            digits[i] = b'0' + (r % 10) as u8;
            r /= 10;
            if r == 0 {
                break;
            }
        }
        out.push_str(std::str::from_utf8(&digits[i..]).expect("ascii digits"));
    }

    /// Parse `<hex file id>:<row>`; anything else (another ETL's text) becomes file 0, row 0.
    pub fn parse(s: &str) -> Provenance {
        s.split_once(':')
            .and_then(|(f, r)| {
                Some(Provenance {
                    file: u64::from_str_radix(f, 16).ok()?,
                    row: r.parse().ok()?,
                })
            })
            .unwrap_or_default()
    }
}

/// A parsed timestamp: the instant it names and the instant from which it was certainly past
/// (the end of its precision: `2012-09-17` is known from the next midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub at: i64,
    pub known: i64,
}

/// The sources whose events are medication records (prescriptions, orders, statements).
pub const MEDICATION_SOURCES: [&str; 6] = [
    "fhir:MedicationRequest",
    "fhir:MedicationStatement",
    "synthea:medications",
    "omop:drug_exposure",
    "mimic:prescriptions",
    "mimic3:prescriptions",
];

/// Every source name the readers write, so events can carry a `&'static str`.
const SOURCES: &[&str] = &[
    "fhir:Patient",
    "fhir:Encounter",
    "fhir:Condition",
    "fhir:Observation",
    "fhir:MedicationRequest",
    "fhir:MedicationStatement",
    "fhir:Procedure",
    "synthea:patients",
    "synthea:encounters",
    "synthea:conditions",
    "synthea:observations",
    "synthea:medications",
    "synthea:procedures",
    "omop:person",
    "omop:visit_occurrence",
    "omop:death",
    "omop:condition_occurrence",
    "omop:measurement",
    "omop:observation",
    "omop:drug_exposure",
    "omop:procedure_occurrence",
    "mimic:patients",
    "mimic:admissions",
    "mimic:diagnoses_icd",
    "mimic:labevents",
    "mimic:prescriptions",
    "mimic:procedures_icd",
    "mimic3:patients",
    "mimic3:admissions",
    "mimic3:diagnoses_icd",
    "mimic3:labevents",
    "mimic3:prescriptions",
    "mimic3:procedures_icd",
    "meds",
];

/// The source name `<format>:<table>`, borrowed from a static list when it is a known one.
pub fn source_name(format: &str, table: &str) -> Cow<'static, str> {
    for s in SOURCES {
        if s.len() == format.len() + 1 + table.len()
            && s.starts_with(format)
            && s.as_bytes()[format.len()] == b':'
            && s.ends_with(table)
        {
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(format!("{format}:{table}"))
}

/// Names of the lake's columns, in order.
pub const COLUMNS: [&str; 15] = [
    "subject_id",
    "time",
    "code",
    "numeric_value",
    "text_value",
    "unit",
    "end_time",
    "available_time",
    "coded_at_discharge",
    "visit_id",
    "source_code",
    "source",
    "provenance",
    "source_record_id",
    "source_subject_id",
];

/// Extension columns beyond MEDS' core five, as listed in `dataset.json`.
pub const EXTENSION_COLUMNS: [&str; 10] = [
    "unit",
    "end_time",
    "available_time",
    "coded_at_discharge",
    "visit_id",
    "source_code",
    "source",
    "provenance",
    "source_record_id",
    "source_subject_id",
];

/// The lake's Arrow schema. `code` is `utf8` (the MEDS validator rejects `large_utf8` there);
/// `text_value` is `large_utf8`, which is what `meds` 0.4's `DataSchema` declares.
pub fn event_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        Arc::new(Schema::new(vec![
            Field::new("subject_id", DataType::Int64, false),
            Field::new("time", ts.clone(), true),
            Field::new("code", DataType::Utf8, false),
            Field::new("numeric_value", DataType::Float32, true),
            Field::new("text_value", DataType::LargeUtf8, true),
            Field::new("unit", DataType::Utf8, true),
            Field::new("end_time", ts.clone(), true),
            Field::new("available_time", ts, true),
            Field::new("coded_at_discharge", DataType::Boolean, false),
            Field::new("visit_id", DataType::Utf8, true),
            Field::new("source_code", DataType::Utf8, true),
            Field::new("source", DataType::Utf8, false),
            Field::new("provenance", DataType::Utf8, false),
            Field::new("source_record_id", DataType::Utf8, true),
            Field::new("source_subject_id", DataType::Int64, true),
        ]))
    })
    .clone()
}

fn cmp_opt<T: PartialOrd>(a: &Option<T>, b: &Option<T>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
    }
}

impl Event {
    /// The total lake order: subject, time (nulls first), then the rest so ties are broken
    /// deterministically.
    pub fn lake_cmp(&self, o: &Event) -> Ordering {
        self.subject_id
            .cmp(&o.subject_id)
            .then_with(|| cmp_opt(&self.time, &o.time))
            .then_with(|| self.dedupe_cmp(o))
            .then_with(|| cmp_opt(&self.end_time, &o.end_time))
            .then_with(|| cmp_opt(&self.available_time, &o.available_time))
            .then_with(|| self.coded_at_discharge.cmp(&o.coded_at_discharge))
            .then_with(|| self.source.cmp(&o.source))
            .then_with(|| self.provenance.cmp(&o.provenance))
            .then_with(|| cmp_opt(&self.visit_id, &o.visit_id))
            .then_with(|| cmp_opt(&self.source_code, &o.source_code))
            .then_with(|| cmp_opt(&self.source_record_id, &o.source_record_id))
            .then_with(|| cmp_opt(&self.source_subject_id, &o.source_subject_id))
    }

    /// The source record (identity) the event came from.
    pub fn record_subject(&self) -> i64 {
        self.source_subject_id.unwrap_or(self.subject_id)
    }

    /// Give the event to `person`, remembering its own record.
    pub fn assign_person(&mut self, person: i64) {
        let record = self.record_subject();
        self.subject_id = person;
        self.source_subject_id = (record != person).then_some(record);
    }

    /// Order on the fields that define an exact duplicate (after subject and time).
    fn dedupe_cmp(&self, o: &Event) -> Ordering {
        self.code
            .cmp(&o.code)
            .then_with(|| {
                cmp_opt(
                    &self.numeric_value.map(f32::to_bits),
                    &o.numeric_value.map(f32::to_bits),
                )
            })
            .then_with(|| cmp_opt(&self.text_value, &o.text_value))
            .then_with(|| cmp_opt(&self.unit, &o.unit))
    }

    /// The instant from which a prediction may see this event (`None`: static, always seen).
    pub fn known_at(&self) -> Option<i64> {
        self.available_time.or(self.time)
    }

    /// Set the event's time and when it became known from a parsed timestamp.
    pub fn set_time(&mut self, s: Stamp) {
        self.time = Some(s.at);
        self.available_time = Some(s.known);
    }

    /// Two events are exact duplicates when subject, time, code, value and unit agree; where
    /// the row came from does not matter.
    pub fn same_fact(&self, o: &Event) -> bool {
        self.subject_id == o.subject_id
            && self.time == o.time
            && self.dedupe_cmp(o) == Ordering::Equal
    }
}

/// Sort into lake order and remove exact duplicates, keeping the first. Returns the number removed.
pub fn sort_dedupe(events: &mut Vec<Event>) -> u64 {
    use rayon::slice::ParallelSliceMut;
    events.par_sort_unstable_by(|a, b| a.lake_cmp(b));
    let before = events.len();
    events.dedup_by(|later, earlier| {
        let same = later.same_fact(earlier);
        if same {
            availability::absorb(earlier, later);
        }
        same
    });
    (before - events.len()) as u64
}

/// Events to one record batch with the lake schema.
pub fn to_batch(events: &[Event]) -> RecordBatch {
    let n = events.len();
    let mut subject = Int64Builder::with_capacity(n);
    let mut time = TimestampMicrosecondBuilder::with_capacity(n);
    let mut code = StringBuilder::with_capacity(n, n * 16);
    let mut num = Float32Builder::with_capacity(n);
    let mut text = LargeStringBuilder::new();
    let mut unit = StringBuilder::new();
    let mut end = TimestampMicrosecondBuilder::with_capacity(n);
    let mut avail = TimestampMicrosecondBuilder::with_capacity(n);
    let mut coded = BooleanBuilder::with_capacity(n);
    let mut visit = StringBuilder::new();
    let mut scode = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut prov = StringBuilder::with_capacity(n, n * 20);
    let mut record = StringBuilder::new();
    let mut ssid = Int64Builder::with_capacity(n);
    let mut pbuf = String::with_capacity(32);
    for e in events {
        subject.append_value(e.subject_id);
        time.append_option(e.time);
        code.append_value(&e.code);
        num.append_option(e.numeric_value);
        text.append_option(e.text_value.as_deref());
        unit.append_option(e.unit.as_deref());
        end.append_option(e.end_time);
        avail.append_option(e.available_time);
        coded.append_value(e.coded_at_discharge);
        visit.append_option(e.visit_id.as_deref());
        scode.append_option(e.source_code.as_deref());
        source.append_value(&e.source);
        pbuf.clear();
        e.provenance.write_to(&mut pbuf);
        prov.append_value(&pbuf);
        record.append_option(e.source_record_id.as_deref());
        ssid.append_option(e.source_subject_id);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(subject.finish()),
        Arc::new(time.finish()),
        Arc::new(code.finish()),
        Arc::new(num.finish()),
        Arc::new(text.finish()),
        Arc::new(unit.finish()),
        Arc::new(end.finish()),
        Arc::new(avail.finish()),
        Arc::new(coded.finish()),
        Arc::new(visit.finish()),
        Arc::new(scode.finish()),
        Arc::new(source.finish()),
        Arc::new(prov.finish()),
        Arc::new(record.finish()),
        Arc::new(ssid.finish()),
    ];
    RecordBatch::try_new(event_schema(), cols).expect("columns match the lake schema")
}

/// Why a record batch cannot be read as lake events.
#[derive(Debug, thiserror::Error)]
#[error("column {column:?}: {problem}")]
pub struct SchemaMismatch {
    pub column: String,
    pub problem: String,
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    b.schema().index_of(name).ok().map(|i| b.column(i))
}

fn strings(
    b: &RecordBatch,
    name: &str,
    required: bool,
) -> Result<Vec<Option<String>>, SchemaMismatch> {
    let Some(a) = col(b, name) else {
        if required {
            return Err(SchemaMismatch {
                column: name.into(),
                problem: "missing".into(),
            });
        }
        return Ok(vec![None; b.num_rows()]);
    };
    let a = arrow::compute::cast(a, &DataType::Utf8).map_err(|e| SchemaMismatch {
        column: name.into(),
        problem: format!("expected a string column, got {} ({e})", a.data_type()),
    })?;
    let s = a
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to utf8");
    Ok((0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect())
}

fn times(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, SchemaMismatch> {
    let Some(a) = col(b, name) else {
        return Ok(vec![None; b.num_rows()]);
    };
    let a = arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(
        |e| SchemaMismatch {
            column: name.into(),
            problem: format!("expected a timestamp, got {} ({e})", a.data_type()),
        },
    )?;
    let t = a
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("cast to timestamp");
    Ok((0..t.len())
        .map(|i| (!t.is_null(i)).then(|| t.value(i)))
        .collect())
}

/// A record batch (ours, or any MEDS data shard) back to events. Columns are matched by name;
/// MEDS' core columns are required, extension columns optional.
pub fn from_batch(b: &RecordBatch) -> Result<Vec<Event>, SchemaMismatch> {
    let n = b.num_rows();
    let sid = col(b, "subject_id").ok_or(SchemaMismatch {
        column: "subject_id".into(),
        problem: "missing".into(),
    })?;
    let sid = arrow::compute::cast(sid, &DataType::Int64).map_err(|e| SchemaMismatch {
        column: "subject_id".into(),
        problem: e.to_string(),
    })?;
    let sid = sid.as_any().downcast_ref::<Int64Array>().expect("int64");
    let time = times(b, "time")?;
    let code = strings(b, "code", true)?;
    let num: Vec<Option<f32>> = match col(b, "numeric_value") {
        Some(a) => {
            let a = arrow::compute::cast(a, &DataType::Float32).map_err(|e| SchemaMismatch {
                column: "numeric_value".into(),
                problem: e.to_string(),
            })?;
            let f = a.as_any().downcast_ref::<Float32Array>().expect("f32");
            (0..n)
                .map(|i| (!f.is_null(i)).then(|| f.value(i)))
                .collect()
        }
        None => vec![None; n],
    };
    let text = strings(b, "text_value", false)?;
    let unit = strings(b, "unit", false)?;
    let end = times(b, "end_time")?;
    let avail = times(b, "available_time")?;
    let coded: Vec<bool> = match col(b, "coded_at_discharge") {
        Some(a) => {
            let f = a
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| SchemaMismatch {
                    column: "coded_at_discharge".into(),
                    problem: format!("expected a boolean column, got {}", a.data_type()),
                })?;
            (0..n).map(|i| !f.is_null(i) && f.value(i)).collect()
        }
        None => vec![false; n],
    };
    let visit = strings(b, "visit_id", false)?;
    let scode = strings(b, "source_code", false)?;
    let source = strings(b, "source", false)?;
    let prov = strings(b, "provenance", false)?;
    let record = strings(b, "source_record_id", false)?;
    let ssid: Vec<Option<i64>> = match col(b, "source_subject_id") {
        Some(a) => {
            let a = arrow::compute::cast(a, &DataType::Int64).map_err(|e| SchemaMismatch {
                column: "source_subject_id".into(),
                problem: e.to_string(),
            })?;
            let f = a.as_any().downcast_ref::<Int64Array>().expect("int64");
            (0..n)
                .map(|i| (!f.is_null(i)).then(|| f.value(i)))
                .collect()
        }
        None => vec![None; n],
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if sid.is_null(i) {
            return Err(SchemaMismatch {
                column: "subject_id".into(),
                problem: format!("null at row {i}"),
            });
        }
        let Some(code) = code[i].clone() else {
            return Err(SchemaMismatch {
                column: "code".into(),
                problem: format!("null at row {i}"),
            });
        };
        out.push(Event {
            subject_id: sid.value(i),
            time: time[i],
            code,
            numeric_value: num[i],
            text_value: text[i].clone(),
            unit: unit[i].clone(),
            end_time: end[i],
            available_time: avail[i],
            coded_at_discharge: coded[i],
            visit_id: visit[i].clone(),
            source_code: scode[i].clone(),
            source: Cow::Owned(source[i].clone().unwrap_or_default()),
            provenance: prov[i]
                .as_deref()
                .map(Provenance::parse)
                .unwrap_or_default(),
            source_record_id: record[i].clone(),
            source_subject_id: ssid[i],
        });
    }
    Ok(out)
}

/// Stable 64-bit FNV-1a, used for subject ids and split assignment: the same bytes give the
/// same number on every machine and every run.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The lake subject id of a person identity (`system`, `value`): a positive 62-bit hash, so the
/// same person gets the same id in every export and every incremental run, without a counter.
pub fn subject_id_for(system: &str, value: &str) -> i64 {
    let mut key = Vec::with_capacity(system.len() + value.len() + 1);
    key.extend_from_slice(system.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(value.as_bytes());
    (fnv1a(&key) >> 2) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sid: i64, t: Option<i64>, code: &str, v: Option<f32>, prov: &str) -> Event {
        Event {
            subject_id: sid,
            time: t,
            code: code.into(),
            numeric_value: v,
            source: "test".into(),
            provenance: Provenance::parse(prov),
            ..Default::default()
        }
    }

    #[test]
    fn sort_puts_static_first_and_dedupes_exact_facts() {
        let mut v = vec![
            ev(2, Some(5), "A", Some(1.0), "f:3"),
            ev(1, Some(5), "A", Some(1.0), "f:2"),
            ev(1, None, "GENDER//F", None, "f:1"),
            ev(1, Some(5), "A", Some(1.0), "1a:9"),
            ev(1, Some(5), "A", Some(2.0), "1a:10"),
        ];
        let removed = sort_dedupe(&mut v);
        assert_eq!(removed, 1);
        assert_eq!(v[0].code, "GENDER//F");
        assert_eq!(
            v[1].provenance.to_string(),
            "00000000000f:2",
            "first by provenance is kept"
        );
        assert_eq!(v[2].numeric_value, Some(2.0));
        assert_eq!(v[3].subject_id, 2);
    }

    #[test]
    fn provenance_text_round_trips() {
        let p = Provenance {
            file: 0xabc,
            row: 1234567,
        };
        let mut s = String::new();
        p.write_to(&mut s);
        assert_eq!(s, p.to_string());
        assert_eq!(s, "000000000abc:1234567");
        assert_eq!(Provenance::parse(&s), p);
    }

    #[test]
    fn batch_round_trip() {
        let mut e = ev(7, Some(1), "LOINC//8480-6", Some(120.0), "abc:1");
        e.unit = Some("mmHg".into());
        e.text_value = Some("t".into());
        e.end_time = Some(9);
        let b = to_batch(std::slice::from_ref(&e));
        assert_eq!(from_batch(&b).unwrap(), vec![e]);
    }

    #[test]
    fn subject_ids_are_stable_and_positive() {
        let a = subject_id_for("person", "593aaa05-d864-1df7-5b96-155fbdb19f28");
        assert_eq!(
            a,
            subject_id_for("person", "593aaa05-d864-1df7-5b96-155fbdb19f28")
        );
        assert!(a > 0);
        assert_ne!(
            a,
            subject_id_for("mimic", "593aaa05-d864-1df7-5b96-155fbdb19f28")
        );
    }
}
