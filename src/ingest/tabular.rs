//! CSV tables (Synthea, OMOP, MIMIC): header matched by name case-insensitively, required
//! columns checked once (a missing one stops the run with the file and column named), rows read
//! in batches and converted in parallel. Rows whose field count differs from the header are
//! quarantined (`bad_row`); a gzip stream that breaks off is quarantined (`truncated_gzip`).

use super::io::open;
use super::{Chunk, IngestError, Quarantined, Reject};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// A CSV header, with the column lookup.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
    index: HashMap<String, usize>,
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
pub fn stream_from<'r, F>(
    source: impl std::io::Read,
    path: &Path,
    file_label: &str,
    required: &dyn Fn(&Header) -> Vec<&'r str>,
    convert: F,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError>
where
    F: Fn(&Row, &mut Chunk) + Sync,
{
    const BATCH: usize = 32 * 1024;
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
    let mut batch: Vec<(u64, csv::StringRecord)> = Vec::with_capacity(BATCH);
    let mut last_line = 1u64;
    loop {
        batch.clear();
        let mut failure: Option<Quarantined> = None;
        while batch.len() < BATCH {
            let mut rec = csv::StringRecord::new();
            match reader.read_record(&mut rec) {
                Ok(true) => {
                    last_line = rec.position().map(|p| p.line()).unwrap_or(last_line + 1);
                    batch.push((last_line, rec));
                }
                Ok(false) => break,
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
        let n = batch.len();
        let chunks: Vec<Chunk> = batch
            .par_chunks(2048)
            .map(|rows| {
                let mut c = Chunk::default();
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
        for c in chunks {
            merged.merge(c);
        }
        // The records the CSV reader framed, counted apart from their outcomes.
        merged.tally.rows_read += n as u64 + failure.is_some() as u64;
        if let Some(q) = failure.take() {
            let utf8 = q.reason == "bad_row";
            merged.tally.rows_rejected += 1;
            *merged
                .tally
                .rejected_by_reason
                .entry(q.reason.clone())
                .or_default() += 1;
            merged.quarantine.push(q);
            sink(merged)?;
            if utf8 {
                continue;
            }
            return Ok(());
        }
        sink(merged)?;
        if n < BATCH {
            return Ok(());
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
