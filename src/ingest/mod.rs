//! Ingest: fragmented EHR exports in, canonical events out. Each source format has one file
//! here (`fhir`, `synthea`, `omop`, `mimic`, `meds`) and nothing source-specific lives anywhere
//! else. Readers turn rows into [`Chunk`]s: events, quarantined rows (with file, row, field,
//! reason and raw text), new subject identities and code descriptions. The invariant every
//! reader keeps, and [`Tally`] checks: rows read = rows accepted + rows rejected + rows skipped
//! (skipped means "not a table or resource type this engine uses", always counted with the
//! reason). The driver ([`run`]) orders inputs (people first), routes events to the lake's
//! subject shards with bounded memory, and commits atomically through [`crate::lake`].

pub mod detect;
pub mod driver;
pub mod fhir;
pub mod io;
pub mod lookups;
pub mod meds;
pub mod mimic;
pub mod mimic3;
pub mod omop;
pub mod read;
pub mod synthea;
pub mod tabular;
pub mod time;
pub mod verdict;

use crate::schema::Event;
use crate::schema::units::units;
use std::collections::HashMap;
use std::path::PathBuf;

pub use detect::Format;
pub use driver::{IngestOptions, IngestOutcome, run};

/// Ingest errors that stop a run (exit code 2). Bad rows are not errors: they are quarantined.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: cannot tell the format ({why}); pass --format")]
    UnknownFormat { path: PathBuf, why: String },
    #[error(
        "{path}: column {column:?} is required but missing; expected columns include {expected}"
    )]
    MissingColumn {
        path: PathBuf,
        column: String,
        expected: String,
    },
    #[error("{path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("{path}: {err}")]
    Parquet { path: PathBuf, err: String },
    #[error(
        "{path}: {read} records read but {accounted} accounted for (accepted + rejected + skipped); a reader lost or invented rows, nothing was committed"
    )]
    Uncounted {
        path: PathBuf,
        read: u64,
        accounted: u64,
    },
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error("identity resolution: {0}")]
    Link(String),
}

/// What a reader says about one row it could not accept.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub field: String,
    pub reason: &'static str,
    pub value: String,
    pub message: String,
}

impl Reject {
    pub fn new(
        field: &str,
        reason: &'static str,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Reject {
            field: field.to_string(),
            reason,
            value: value.into(),
            message: message.into(),
        }
    }
    pub fn missing(field: &str) -> Self {
        Reject::new(
            field,
            "missing_field",
            "",
            format!("a value for required field {field}"),
        )
    }
}

pub use crate::schema::identity::{Identity, PersonRecord};
pub use crate::schema::records::{InputPolicy, NO_POLICY, Quarantined, SourceVocabulary, Tally};

impl Tally {
    /// The file's framing count against its outcomes: an error (in every build) when a
    /// reader lost or invented a row.
    pub fn check(&self, path: &std::path::Path) -> Result<(), IngestError> {
        if self.balanced() {
            return Ok(());
        }
        Err(IngestError::Uncounted {
            path: path.to_path_buf(),
            read: self.rows_read,
            accounted: self.rows_accepted + self.rows_rejected + self.rows_skipped,
        })
    }
}

/// Output of reading a run of rows.
#[derive(Debug, Default)]
pub struct Chunk {
    pub events: Vec<Event>,
    pub quarantine: Vec<Quarantined>,
    pub identities: Vec<Identity>,
    /// The identity facts of the records that identities come from (PHI: identity store only).
    pub persons: Vec<PersonRecord>,
    /// code -> description seen in the source (the smallest text wins, for determinism).
    pub descriptions: HashMap<String, String>,
    pub tally: Tally,
}

const RAW_LIMIT: usize = 64 * 1024;

fn truncate_raw(raw: &str) -> String {
    if raw.len() <= RAW_LIMIT {
        return raw.to_string();
    }
    let mut end = RAW_LIMIT;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated, {} bytes in all]", &raw[..end], raw.len())
}

impl Chunk {
    pub fn merge(&mut self, mut o: Chunk) {
        self.events.append(&mut o.events);
        self.quarantine.append(&mut o.quarantine);
        self.identities.append(&mut o.identities);
        self.persons.append(&mut o.persons);
        for (code, d) in o.descriptions.drain() {
            self.describe(&code, &d);
        }
        self.tally.add(&o.tally);
    }

    /// Remember a code's description; allocation only for a code not seen in this chunk.
    pub fn describe(&mut self, code: &str, desc: &str) {
        match self.descriptions.get_mut(code) {
            Some(old) if desc < old.as_str() => *old = desc.to_string(),
            Some(_) => {}
            None => {
                self.descriptions.insert(code.to_string(), desc.to_string());
            }
        }
    }

    /// Record an accepted row and its events.
    pub fn accept(&mut self, events: Vec<Event>) {
        self.tally.rows_accepted += 1;
        self.tally.events += events.len() as u64;
        self.events.extend(events);
    }

    /// Record a rejected row.
    pub fn reject(&mut self, file: &str, row: u64, raw: &str, r: Reject) {
        self.tally.rows_rejected += 1;
        self.quarantine_record(file, row, raw, r);
    }

    /// Record one quarantined field inside a row that is otherwise accepted.
    pub fn reject_field(&mut self, file: &str, row: u64, raw: &str, r: Reject) {
        self.tally.fields_rejected += 1;
        self.quarantine_record(file, row, raw, r);
    }

    fn quarantine_record(&mut self, file: &str, row: u64, raw: &str, r: Reject) {
        *self
            .tally
            .rejected_by_reason
            .entry(r.reason.to_string())
            .or_default() += 1;
        self.quarantine.push(Quarantined {
            file: file.to_string(),
            row,
            field: r.field,
            reason: r.reason.to_string(),
            value: r.value,
            message: r.message,
            raw: truncate_raw(raw),
        });
    }

    /// Count a value read under an input policy (see [`Tally::interpreted`]).
    pub fn interpreted(&mut self, kind: &str) {
        *self.tally.interpreted.entry(kind.to_string()).or_default() += 1;
    }

    /// Record a row this engine does not use (counted, not quarantined).
    pub fn skip(&mut self, reason: &str) {
        self.tally.rows_skipped += 1;
        *self
            .tally
            .skipped_by_reason
            .entry(reason.to_string())
            .or_default() += 1;
    }
}

/// A set of subject ids (Fx hashing: the ids are already hashes).
pub type SubjectSet = rustc_hash::FxHashSet<i64>;

/// Shared per-run context for readers: time rules, plausibility limits and who is known.
pub struct Ctx<'a> {
    pub time: time::TimeContext,
    /// Events after this instant are quarantined as `future_event` (unless the source shifts
    /// dates on purpose, as MIMIC does).
    pub max_event_time: i64,
    /// Events before this instant are quarantined as `bad_date`.
    pub min_event_time: i64,
    /// Subjects already in the lake or registered earlier in this run.
    pub known: &'a SubjectSet,
    /// The input's policy (shifted dates, vocabulary of bare source values).
    pub policy: &'a InputPolicy,
    /// Input file id used in provenance (first 48 bits of the content hash).
    pub file_id: u64,
    /// Input path as given (for quarantine records).
    pub file: &'a str,
}

impl Ctx<'_> {
    /// Parse a timestamp field, applying the plausibility window.
    pub fn time(&self, field: &str, value: &str, shifted: bool) -> Result<i64, Reject> {
        self.stamp(field, value, shifted).map(|s| s.at)
    }

    /// Parse an event's timestamp with its precision ([`time::TimeContext::stamp`]), applying
    /// the plausibility window; set it with [`crate::schema::Event::set_time`].
    pub fn stamp(
        &self,
        field: &str,
        value: &str,
        shifted: bool,
    ) -> Result<crate::schema::Stamp, Reject> {
        let s = self
            .time
            .stamp(value)
            .map_err(|exp| Reject::new(field, "bad_date", value, format!("expected {exp}")))?;
        self.check_time(field, s.at, value, shifted)?;
        Ok(s)
    }

    /// The plausibility window for an instant already parsed (`value` is what the source
    /// wrote, for the quarantine): not before `min_event_time`, not after `max_event_time`
    /// unless the input's dates are shifted.
    pub fn check_time(
        &self,
        field: &str,
        t: i64,
        value: &str,
        shifted: bool,
    ) -> Result<(), Reject> {
        if t < self.min_event_time {
            return Err(Reject::new(
                field,
                "bad_date",
                value,
                format!("a date after {}", time::format_micros(self.min_event_time)),
            ));
        }
        if !shifted && !self.policy.dates_shifted && t > self.max_event_time {
            return Err(Reject::new(
                field,
                "future_event",
                value,
                format!(
                    "a time no later than {}",
                    time::format_micros(self.max_event_time)
                ),
            ));
        }
        Ok(())
    }

    /// Optional timestamp: empty means absent; anything else must parse.
    pub fn opt_time(
        &self,
        field: &str,
        value: Option<&str>,
        shifted: bool,
    ) -> Result<Option<i64>, Reject> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => self.time(field, v, shifted).map(Some),
        }
    }

    pub fn provenance(&self, row: u64) -> crate::schema::Provenance {
        crate::schema::Provenance {
            file: self.file_id,
            row,
        }
    }

    /// The subject must be known (registered from a person/patient row).
    pub fn require_known(&self, field: &str, id: &Identity) -> Result<i64, Reject> {
        if self.known.contains(&id.subject_id) {
            Ok(id.subject_id)
        } else {
            Err(Reject::new(
                field,
                "unknown_patient",
                id.value.clone(),
                "a reference to a patient present in this export or already in the lake",
            ))
        }
    }
}

/// Parse a numeric field strictly (no silent coercion of text to numbers).
pub fn parse_number(field: &str, v: &str) -> Result<f64, Reject> {
    let t = v.trim();
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(Reject::new(
            field,
            "bad_number",
            v,
            "a finite decimal number",
        )),
    }
}

/// Parse a whole number in `lo..=hi` strictly (`7`, not `7.5` or `7e0`): counts such as ages
/// and years, which arithmetic then combines and must not overflow.
pub fn parse_whole(field: &str, v: &str, lo: i64, hi: i64) -> Result<i64, Reject> {
    match v.trim().parse::<i64>() {
        Ok(x) if (lo..=hi).contains(&x) => Ok(x),
        _ => Err(Reject::new(
            field,
            "bad_number",
            v,
            format!("a whole number from {lo} to {hi}"),
        )),
    }
}

/// Build a measurement event: canonical code/unit/value for known concepts (or the reason it
/// is rejected), the value and unit as written for everything else.
pub fn measurement(
    mut e: Event,
    field: &str,
    value: f64,
    unit: Option<&str>,
) -> Result<Event, Reject> {
    match units().canonicalize(&e.code, value, unit) {
        Ok(Some(c)) => {
            if c.code != e.code && e.source_code.is_none() {
                // keep the code the source wrote (e.g. LOINC 35200-5) beside the canonical one
                e.source_code = Some(std::mem::take(&mut e.code));
            }
            e.code = c.code;
            e.numeric_value = Some(c.value as f32);
            e.unit = Some(c.unit);
        }
        Ok(None) => {
            // The lake stores values as f32: a finite f64 beyond its range would become
            // infinite (found by the unit_parser fuzzer: 1.1e45 of an unmeasured code).
            if value.abs() > f32::MAX as f64 {
                return Err(Reject::new(
                    field,
                    "bad_number",
                    value.to_string(),
                    format!("a number within +/-{:e} (stored as 32-bit float)", f32::MAX),
                ));
            }
            e.numeric_value = Some(value as f32);
            e.unit = unit
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from);
        }
        Err(p) => {
            let value = match &p {
                crate::schema::units::UnitProblem::UnknownUnit { unit, .. } => unit.clone(),
                crate::schema::units::UnitProblem::Implausible { .. } => {
                    format!("{value} {}", unit.unwrap_or(""))
                }
            };
            return Err(Reject::new(field, p.reason(), value, p.to_string()));
        }
    }
    Ok(e)
}
