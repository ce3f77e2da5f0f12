//! The records ingest and the lake share: a quarantined row, an input's counts (`Tally`) and the
//! policy it was read under. In: what readers decide per row. Out: what the lake's manifest,
//! reports and quarantine files store. They live here, below both, so the lake does not depend
//! on ingest.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One rejected input row (or field), with everything needed to find and fix it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quarantined {
    /// Input file path as given.
    pub file: String,
    /// 1-based line (NDJSON, CSV data row counting the header as line 1) or entry index (Bundle).
    pub row: u64,
    pub field: String,
    /// Stable snake_case reason, e.g. `unknown_unit`, `bad_date`, `unknown_patient`.
    pub reason: String,
    /// The offending value.
    pub value: String,
    /// What was expected, in words.
    pub message: String,
    /// The raw row text (truncated to 64 KiB, marked).
    pub raw: String,
}

/// How the ICD source values of an export that does not name their vocabulary are read (OMOP
/// `*_source_value` without a known `*_source_concept_id`). Nothing is guessed unless the
/// export is configured to say so: without a policy such a value stays `SOURCE//<value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceVocabulary {
    /// Every such value is ICD-9-CM.
    Icd9cm,
    /// Every such value is ICD-10-CM.
    Icd10cm,
    /// ICD-9-CM or ICD-10-CM told apart by shape: digits (and E9xx) are ICD-9-CM, a letter
    /// other than V, or E0-E7, is ICD-10-CM; V codes and E8x exist in both and stay
    /// unresolved (counted).
    Icd,
}

impl SourceVocabulary {
    /// The ICD vocabulary of `value` under this policy, or `None` when the shape is ambiguous.
    pub fn vocabulary_of(self, value: &str) -> Option<&'static str> {
        let v = value.trim();
        let mut ch = v.chars();
        let first = ch.next()?.to_ascii_uppercase();
        match self {
            SourceVocabulary::Icd9cm => Some("ICD9CM"),
            SourceVocabulary::Icd10cm => Some("ICD10CM"),
            SourceVocabulary::Icd => match first {
                '0'..='9' => Some("ICD9CM"),
                'V' => None,
                'E' => match ch.next() {
                    Some('9') => Some("ICD9CM"),
                    Some('0'..='7') => Some("ICD10CM"),
                    _ => None,
                },
                c if c.is_ascii_alphabetic() => Some("ICD10CM"),
                _ => None,
            },
        }
    }
}

/// What an input was read under, recorded with it in the manifest: whether its dates were
/// accepted as shifted (no future-event check) and how its vocabulary-less source values
/// were read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputPolicy {
    /// The export's dates are shifted on purpose (de-identification): no future-event check.
    #[serde(default)]
    pub dates_shifted: bool,
    #[serde(default)]
    pub source_vocabulary: Option<SourceVocabulary>,
}

/// The default policy: dates checked, source values never interpreted.
pub static NO_POLICY: InputPolicy = InputPolicy {
    dates_shifted: false,
    source_vocabulary: None,
};

/// Row and event counts for one input file, by outcome and reason. `rows_read` is counted by
/// the layer that frames the input into records (lines, CSV records, Bundle entries, Parquet
/// rows), independently of the readers that decide each record's outcome, and the two must
/// agree: `rows_read == rows_accepted + rows_rejected + rows_skipped`, or the run fails.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    /// Records in the input, counted as they are framed (not as they are decided).
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub rows_skipped: u64,
    /// Single fields quarantined inside accepted rows (e.g. a death flag without a date).
    pub fields_rejected: u64,
    pub events: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Values read under an input policy, by kind (e.g. `source_icd_by_shape`,
    /// `source_icd_ambiguous`): what the report must show was interpreted, not guessed.
    #[serde(default)]
    pub interpreted: BTreeMap<String, u64>,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.rows_read += o.rows_read;
        self.rows_accepted += o.rows_accepted;
        self.rows_rejected += o.rows_rejected;
        self.rows_skipped += o.rows_skipped;
        self.fields_rejected += o.fields_rejected;
        self.events += o.events;
        for (k, v) in &o.rejected_by_reason {
            *self.rejected_by_reason.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.skipped_by_reason {
            *self.skipped_by_reason.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.interpreted {
            *self.interpreted.entry(k.clone()).or_default() += v;
        }
    }
    pub fn balanced(&self) -> bool {
        self.rows_read == self.rows_accepted + self.rows_rejected + self.rows_skipped
    }
}
