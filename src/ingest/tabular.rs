//! CSV tables (Synthea, OMOP, MIMIC): header matched by name case-insensitively, required
//! columns checked once (a missing one stops the run with the file and column named), rows read
//! in batches and converted in parallel. Rows whose field count differs from the header are
//! quarantined (`bad_row`); a gzip stream that breaks off is quarantined (`truncated_gzip`).

use super::io::open;
use super::{Chunk, IngestError, Quarantined, Reject};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::path::Path;

/// A CSV header, with the column lookup.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
    /// Looked up for every field of every row: a fast hash, not SipHash.
    index: FxHashMap<String, usize>,
}

impl Header {
    pub fn new(names: Vec<String>) -> Header {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.trim().trim_start_matches('\u{feff}').to_ascii_lowercase(),
                    i,
                )
            })
            .collect();
        Header { names, index }
    }
    pub fn idx(&self, col: &str) -> Option<usize> {
        self.index.get(col).copied()
    }
    pub fn has(&self, col: &str) -> bool {
        self.index.contains_key(col)
    }
}

/// One data row: its line number and fields.
pub struct Row<'a> {
    pub line: u64,
    pub rec: &'a csv::StringRecord,
    pub header: &'a Header,
}

impl Row<'_> {
    /// A field by (lower-case) column name; empty strings are `None`.
    pub fn get(&self, col: &str) -> Option<&str> {
        self.header
            .idx(col)
            .and_then(|i| self.rec.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    /// A required field.
    pub fn req(&self, col: &str) -> Result<&str, Reject> {
        self.get(col).ok_or_else(|| Reject::missing(col))
    }
    /// The row re-serialised as CSV, for quarantine records.
    pub fn raw(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b' '))
            .from_writer(vec![]);
        let _ = w.write_record(self.rec);
        let mut s = String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default();
        s.pop();
        s
    }
}

/// Read the header of a CSV file (plain or gzip).
pub fn read_header(path: &Path) -> Result<Header, IngestError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(path)?);
    let h = r.headers().map_err(|e| IngestError::Schema {
        path: path.to_path_buf(),
        message: format!("cannot read the CSV header: {e}"),
    })?;
    Ok(Header::new(h.iter().map(String::from).collect()))
}

/// Check required columns are present.
pub fn require(path: &Path, h: &Header, required: &[&str]) -> Result<(), IngestError> {
    for c in required {
        if !h.has(c) {
            return Err(IngestError::MissingColumn {
                path: path.to_path_buf(),
                column: c.to_string(),
                expected: required.join(", "),
            });
        }
    }
    Ok(())
}

/// Stream a CSV table through `convert` (run in parallel on batches of rows) into `sink`.
pub fn stream<F>(
    path: &Path,
    file_label: &str,
    required: &[&str],
    convert: F,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError>
where
    F: Fn(&Row, &mut Chunk) + Sync,
{
    stream_from(
        open(path)?,
        path,
        file_label,
        &|_| required.to_vec(),
        convert,
        sink,
    )
}

/// [`stream`] over any byte source (`path` names it in errors), with the required columns
/// decided from the header (a table's schema version): the row path the fuzzers drive.
///
/// Two stages overlap: a framing thread cuts the next batch of records while the pool converts
/// the current one (one batch in flight), so the single-threaded CSV framing no longer leaves
/// the other core idle.
pub fn stream_from<'r, F>(
    source: impl std::io::Read + Send,
    path: &Path,
    file_label: &str,
    required: &dyn Fn(&Header) -> Vec<&'r str>,
    convert: F,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError>
where
    F: Fn(&Row, &mut Chunk) + Sync,
{
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(source);
    let header = {
        let h = reader.headers().map_err(|e| IngestError::Schema {
            path: path.to_path_buf(),
            message: format!("cannot read the CSV header: {e}"),
        })?;
        Header::new(h.iter().map(String::from).collect())
    };
    require(path, &header, &required(&header))?;
    let width = header.names.len();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Framed>(1);
        scope.spawn(move || frame(reader, file_label, tx));
        // The receiver is dropped on an early return, which stops the framing thread.
        for Framed {
            batch,
            failure,
            last,
        } in rx
        {
            let n = batch.len();
            let chunks: Vec<Chunk> = batch
                .par_chunks(2048)
                .map(|rows| {
                    let mut c = Chunk::default();
                    c.events.reserve(rows.len());
                    for (line, rec) in rows {
                        let row = Row {
                            line: *line,
                            rec,
                            header: &header,
                        };
                        if rec.len() != width {
                            c.reject(
                                file_label,
                                *line,
                                &row.raw(),
                                Reject::new(
                                    "*",
                                    "bad_row",
                                    rec.len().to_string(),
                                    format!("{width} fields as in the header"),
                                ),
                            );
                            continue;
                        }
                        convert(&row, &mut c);
                    }
                    c
                })
                .collect();
            let mut merged = Chunk::default();
            merged
                .events
                .reserve(chunks.iter().map(|c| c.events.len()).sum());
            for c in chunks {
                merged.merge(c);
            }
            // The records the CSV reader framed, counted apart from their outcomes.
            merged.tally.rows_read += n as u64 + failure.is_some() as u64;
            if let Some(q) = failure {
                merged.tally.rows_rejected += 1;
                *merged
                    .tally
                    .rejected_by_reason
                    .entry(q.reason.clone())
                    .or_default() += 1;
                merged.quarantine.push(q);
            }
            sink(merged)?;
            if last {
                break;
            }
        }
        Ok(())
    })
}

/// One batch of framed records, the record that failed to frame after them (if any), and
/// whether the stream ends here.
struct Framed {
    batch: Vec<(u64, csv::StringRecord)>,
    failure: Option<Quarantined>,
    last: bool,
}

/// The framing stage: cut batches of records and hand them over until the end of the stream,
/// a stream that breaks off, or a receiver that stopped listening. A row that is not UTF-8 or
/// not well-formed CSV is quarantined and framing goes on; a broken stream ends it.
fn frame<R: std::io::Read>(
    mut reader: csv::Reader<R>,
    file_label: &str,
    tx: std::sync::mpsc::SyncSender<Framed>,
) {
    const BATCH: usize = 32 * 1024;
    let mut last_line = 1u64;
    loop {
        let mut batch: Vec<(u64, csv::StringRecord)> = Vec::with_capacity(BATCH);
        let mut failure: Option<Quarantined> = None;
        let mut end = false;
        while batch.len() < BATCH {
            let mut rec = csv::StringRecord::new();
            match reader.read_record(&mut rec) {
                Ok(true) => {
                    last_line = rec.position().map(|p| p.line()).unwrap_or(last_line + 1);
                    batch.push((last_line, rec));
                }
                Ok(false) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    let (reason, message) = match e.kind() {
                        csv::ErrorKind::Io(ioe) => (
                            "truncated_gzip",
                            format!("the input stream broke off ({ioe}); rows before it were read"),
                        ),
                        csv::ErrorKind::Utf8 { .. } => ("bad_row", format!("valid UTF-8 ({e})")),
                        _ => ("bad_row", format!("a well-formed CSV row ({e})")),
                    };
                    let line = e.position().map(|p| p.line()).unwrap_or(last_line + 1);
                    // A bad row is passed over; a stream that broke off ends the file.
                    end = reason != "bad_row";
                    failure = Some(Quarantined {
                        file: file_label.to_string(),
                        row: line,
                        field: "*".into(),
                        reason: reason.into(),
                        value: String::new(),
                        message,
                        raw: String::new(),
                    });
                    break;
                }
            }
        }
        let last = end || (failure.is_none() && batch.len() < BATCH);
        if tx
            .send(Framed {
                batch,
                failure,
                last,
            })
            .is_err()
            || last
        {
            return;
        }
    }
}

/// Load a small lookup table (dictionary) fully: returns rows as maps of the wanted columns.
pub fn load_lookup(path: &Path, cols: &[&str]) -> Result<Vec<Vec<Option<String>>>, IngestError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(path)?);
    let header = Header::new(
        reader
            .headers()
            .map_err(|e| IngestError::Schema {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .iter()
            .map(String::from)
            .collect(),
    );
    require(path, &header, cols)?;
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| header.idx(c).expect("checked"))
        .collect();
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| IngestError::Schema {
            path: path.to_path_buf(),
            message: format!("lookup table unreadable: {e}"),
        })?;
        out.push(
            idx.iter()
                .map(|&i| {
                    rec.get(i)
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                })
                .collect(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framing thread runs ahead of the conversion: a sink that fails on the first batch
    /// ends the file there (the framing thread stops instead of blocking the scope), and an
    /// honest sink sees every record, in order, across batches.
    #[test]
    fn framing_ahead_stops_with_the_sink_and_keeps_order() {
        let mut csv = String::from("a,b\n");
        for i in 0..70_000 {
            csv.push_str(&format!("{i},x\n"));
        }
        let p = Path::new("t.csv");
        let mut calls = 0;
        let r = stream_from(
            csv.as_bytes(),
            p,
            "t.csv",
            &|_| vec!["a"],
            |_, c| c.accept(vec![]),
            &mut |_| {
                calls += 1;
                Err(IngestError::Schema {
                    path: p.to_path_buf(),
                    message: "stop".into(),
                })
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut lines = Vec::new();
        stream_from(
            csv.as_bytes(),
            p,
            "t.csv",
            &|_| vec!["a"],
            |row, c| {
                assert_eq!(row.get("a").unwrap(), (row.line - 2).to_string());
                c.accept(vec![])
            },
            &mut |c| {
                lines.push(c.tally.rows_read);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(lines.iter().sum::<u64>(), 70_000);
        assert!(lines.len() >= 3, "{lines:?}");
    }

    /// A converter that forgets rows cannot make the counts balance: the CSV framing counts
    /// every record itself, and [`crate::ingest::Tally::check`] refuses the file.
    #[test]
    fn a_reader_that_forgets_a_row_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        std::fs::write(&p, "a,b\n1,2\n3,4\n5,6\n7\n").unwrap();
        let run = |forget: bool| {
            let mut total = crate::ingest::Tally::default();
            stream(
                &p,
                "t.csv",
                &["a"],
                |row, c| {
                    if !(forget && row.line == 3) {
                        c.accept(vec![]);
                    }
                },
                &mut |c| {
                    total.add(&c.tally);
                    Ok(())
                },
            )
            .unwrap();
            total
        };
        let honest = run(false);
        assert_eq!(honest.rows_read, 4);
        assert_eq!((honest.rows_accepted, honest.rows_rejected), (3, 1));
        assert!(honest.check(&p).is_ok());
        let lossy = run(true);
        assert_eq!(lossy.rows_read, 4);
        let e = lossy.check(&p).unwrap_err().to_string();
        assert!(e.contains("4 records read but 3 accounted for"), "{e}");
    }
}
