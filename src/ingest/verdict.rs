//! Whether an ingest run may call itself a success. In: the run's report and the reject-rate
//! limit. Out: findings, each naming the input, the dominant reason and what to do; the CLI
//! exits non-zero when there is any. A run that accepted no row of an input it judged never
//! succeeds, whatever the limit (an input of skipped rows only fails a run that accepted
//! nothing): an export whose people were all rejected (every date in the future,
//! say) otherwise "succeeds" with an empty lake. The dominant reason is looked for first in the
//! people table, because when people are rejected every other row of the export follows as
//! `unknown_patient`, and that consequence is not the cause.

use super::Tally;
use super::driver::IngestReport;
use std::collections::BTreeMap;

/// The default `--max-reject-rate`: above this fraction of rejected rows an input fails.
pub const DEFAULT_MAX_REJECT_RATE: f64 = 0.05;

/// Tables whose rows register people (every other row refers to one of them).
const PEOPLE_TABLES: [&str; 3] = ["patients", "person", "Patient"];

/// rejected / (accepted + rejected): skipped rows (resource types or tables this engine does
/// not use) are not a verdict on the data.
pub fn reject_rate(t: &Tally) -> f64 {
    let judged = t.rows_accepted + t.rows_rejected;
    if judged == 0 {
        0.0
    } else {
        t.rows_rejected as f64 / judged as f64
    }
}

/// What is wrong with one input of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub input: String,
    pub kind: FindingKind,
    pub tally: Tally,
    /// The reason that explains most rejections, and how many rows it took.
    pub dominant: Option<(String, u64)>,
    /// The people table rejected its rows, so the rest of the export followed.
    pub people_rejected: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Rows were read but none accepted.
    NothingAccepted,
    /// More than the limit of rows rejected.
    RejectRate { limit_permille: u32 },
}

impl Finding {
    /// The export's dates look shifted: its people (or most rows) were rejected as future.
    pub fn looks_date_shifted(&self) -> bool {
        self.dominant
            .as_ref()
            .is_some_and(|(r, _)| r == "future_event")
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.tally;
        let judged = t.rows_accepted + t.rows_rejected;
        match self.kind {
            FindingKind::NothingAccepted => write!(
                f,
                "input {}: accepted none of its {} rows ({} rejected, {} skipped)",
                self.input, t.rows_read, t.rows_rejected, t.rows_skipped
            )?,
            FindingKind::RejectRate { limit_permille } => write!(
                f,
                "input {}: rejected {} of {} rows ({:.1} %), above the limit of {:.1} % (--max-reject-rate)",
                self.input,
                t.rows_rejected,
                judged,
                100.0 * reject_rate(t),
                limit_permille as f64 / 10.0
            )?,
        }
        if let Some((reason, n)) = &self.dominant {
            match self.people_rejected {
                Some((rej, read)) => write!(
                    f,
                    "; its people table rejected {rej} of {read} rows, mostly as {reason} ({n}), so rows referring to them were unknown_patient"
                )?,
                None => write!(f, "; mostly {reason} ({n} rows)")?,
            }
        }
        if self.looks_date_shifted() {
            write!(
                f,
                ". Its dates lie after --max-event-time: the export looks date-shifted (MIMIC and its OMOP conversions shift dates into 2100-2200). If it is, ingest it with --dates-shifted (recorded with the input in the manifest); otherwise its dates are wrong"
            )?;
        } else if t.rows_rejected == 0 && t.rows_accepted == 0 {
            write!(
                f,
                ". Nothing in it is a table or resource this engine reads (see skipped by reason)"
            )?;
        } else {
            write!(
                f,
                ". The rejected rows, with file, row, field and reason, are in the lake's quarantine/"
            )?;
        }
        Ok(())
    }
}

/// The findings of a run: one per input that accepted nothing or rejected too much.
pub fn assess(report: &IngestReport, max_reject_rate: f64) -> Vec<Finding> {
    let mut inputs: BTreeMap<&str, (Tally, Option<Tally>)> = BTreeMap::new();
    for fr in report.files.iter().filter(|f| f.status == "read") {
        let slot = inputs.entry(fr.input.as_str()).or_default();
        slot.0.add(&fr.tally);
        if PEOPLE_TABLES.contains(&fr.table.as_str()) {
            slot.1.get_or_insert_with(Tally::default).add(&fr.tally);
        }
    }
    // An input whose rows were all skipped (resource types this engine does not read: a Bulk
    // export's Practitioner or Device files) is no verdict on the data while the run accepted
    // rows elsewhere; it fails only a run that accepted nothing at all.
    let run_accepted: u64 = inputs.values().map(|(t, _)| t.rows_accepted).sum();
    let mut out = Vec::new();
    for (input, (tally, people)) in inputs {
        let judged = tally.rows_accepted + tally.rows_rejected;
        let kind =
            if tally.rows_read > 0 && tally.rows_accepted == 0 && (judged > 0 || run_accepted == 0)
            {
                FindingKind::NothingAccepted
            } else if reject_rate(&tally) > max_reject_rate {
                FindingKind::RejectRate {
                    limit_permille: (max_reject_rate * 1000.0).round() as u32,
                }
            } else {
                continue;
            };
        let top = |t: &Tally| {
            t.rejected_by_reason
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(r, n)| (r.clone(), *n))
        };
        let people_failed = people
            .as_ref()
            .filter(|p| p.rows_rejected > 0 && 2 * p.rows_rejected >= p.rows_read);
        let (dominant, people_rejected) = match people_failed {
            Some(p) => (top(p), Some((p.rows_rejected, p.rows_read))),
            None => (top(&tally), None),
        };
        out.push(Finding {
            input: if input.is_empty() {
                "the FHIR files given".into()
            } else {
                input.to_string()
            },
            kind,
            tally,
            dominant,
            people_rejected,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::driver::FileReport;

    fn file(input: &str, table: &str, accepted: u64, rejected: &[(&str, u64)]) -> FileReport {
        let mut t = Tally {
            rows_accepted: accepted,
            ..Default::default()
        };
        for (r, n) in rejected {
            t.rows_rejected += n;
            t.rejected_by_reason.insert(r.to_string(), *n);
        }
        t.rows_read = t.rows_accepted + t.rows_rejected;
        FileReport {
            path: format!("{input}/{table}.csv"),
            input: input.into(),
            format: "omop".into(),
            table: table.into(),
            status: "read".into(),
            tally: t,
            duplicates: 0,
        }
    }

    fn report(files: Vec<FileReport>) -> IngestReport {
        IngestReport {
            run_id: "r".into(),
            files,
            ignored: vec![],
            totals: Tally::default(),
            duplicates: 0,
            events_written: 0,
            quarantined: 0,
            reject_rate: 0.0,
            subjects_added: 0,
            events_moved: 0,
            linkage: None,
            committed: true,
        }
    }

    #[test]
    fn people_rejected_as_future_names_the_cause_and_the_flag() {
        let r = report(vec![
            file("omop", "person", 0, &[("future_event", 100)]),
            file(
                "omop",
                "condition_occurrence",
                0,
                &[("unknown_patient", 5000)],
            ),
            file("ok", "person", 10, &[]),
        ]);
        let f = assess(&r, DEFAULT_MAX_REJECT_RATE);
        assert_eq!(f.len(), 1, "the healthy input passes");
        assert_eq!(f[0].kind, FindingKind::NothingAccepted);
        assert_eq!(f[0].dominant, Some(("future_event".into(), 100)));
        assert!(f[0].looks_date_shifted());
        let msg = f[0].to_string();
        assert!(
            msg.contains("--dates-shifted") && msg.contains("unknown_patient"),
            "{msg}"
        );
    }

    #[test]
    fn reject_rate_ignores_skipped_rows_and_applies_per_input() {
        let mut a = file("a", "observations", 90, &[("unknown_unit", 10)]);
        a.tally.rows_skipped = 900;
        a.tally.rows_read += 900;
        assert!((reject_rate(&a.tally) - 0.1).abs() < 1e-12);
        let f = assess(&report(vec![a.clone()]), 0.05);
        assert!(matches!(
            f[0].kind,
            FindingKind::RejectRate { limit_permille: 50 }
        ));
        assert!(!f[0].looks_date_shifted());
        assert!(assess(&report(vec![a]), 0.2).is_empty());
    }

    #[test]
    fn an_input_of_skipped_rows_only_accepted_nothing() {
        let mut a = file("a", "Practitioner", 0, &[]);
        a.tally.rows_skipped = 3;
        a.tally.rows_read = 3;
        let f = assess(&report(vec![a]), 0.05);
        assert_eq!(f[0].kind, FindingKind::NothingAccepted);
        assert!(f[0].to_string().contains("Nothing in it is a table"));
    }

    /// A Bulk export's files of unused resource types beside the ones read: the run accepted
    /// rows, so they are skipped (and counted), not failures; an input whose judged rows were
    /// all rejected still fails beside them.
    #[test]
    fn skipped_only_files_beside_accepted_ones_do_not_fail_the_run() {
        let mut skipped = file("bulk/Practitioner.ndjson", "Practitioner", 0, &[]);
        skipped.tally.rows_skipped = 3;
        skipped.tally.rows_read = 3;
        let read = file("bulk/Patient.ndjson", "Patient", 10, &[]);
        assert!(assess(&report(vec![skipped.clone(), read.clone()]), 0.05).is_empty());
        let bad = file(
            "bulk/Observation.ndjson",
            "Observation",
            0,
            &[("bad_date", 4)],
        );
        let f = assess(&report(vec![skipped, read, bad]), 0.05);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].input, "bulk/Observation.ndjson");
    }
}
