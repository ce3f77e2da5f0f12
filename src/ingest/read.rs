//! Reading one input file: the reader its format names, over the export's lookups, feeding
//! [`Chunk`]s to the driver's sink (NDJSON in parallel blocks of lines, CSV in parallel
//! batches of rows, documents whole).

use super::detect::{InputFile, InputSet};
use super::driver::{IngestOptions, Reporter};
use super::io::{LineBlocks, split_lines};
use super::lookups::SetLookups;
use super::tabular;
use super::{
    Chunk, Ctx, Format, IngestError, InputPolicy, fhir, meds, mimic, mimic3, omop, synthea,
};
use rayon::prelude::*;
use std::path::Path;

/// Read `f` of `set` into `sink`, under the input's policy.
#[allow(clippy::too_many_arguments)]
pub fn read_file(
    f: &InputFile,
    set: &InputSet,
    lookups: &SetLookups,
    opts: &IngestOptions,
    policy: &InputPolicy,
    known: &super::SubjectSet,
    fid: u64,
    label: &str,
    reporter: &dyn Reporter,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let ctx = Ctx {
        time: opts.time,
        max_event_time: opts.max_event_time,
        min_event_time: opts.min_event_time,
        known,
        policy,
        file_id: fid,
        file: label,
    };
    match f.format {
        Format::Fhir => read_fhir(&f.path, &ctx, &lookups.medications, opts, reporter, sink),
        Format::Meds => {
            let name = meds::dataset_name(&set.root);
            meds::read_shard(&f.path, &name, &ctx, sink)
        }
        _ => read_table(f, super::io::open(&f.path)?, lookups, &ctx, sink),
    }
}

/// Read CSV table `f` (Synthea, OMOP, MIMIC) from any byte source (`f.path` names it in
/// errors), over the export's lookups: the row path of every CSV reader, which the fuzzers
/// drive with arbitrary bytes.
pub fn read_table(
    f: &InputFile,
    source: impl std::io::Read + Send,
    lookups: &SetLookups,
    ctx: &Ctx,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let label = ctx.file;
    let path = &f.path;
    match f.format {
        Format::Synthea => tabular::stream_from(
            source,
            path,
            label,
            &|h| synthea::required(&f.table, h),
            |row, c| synthea::convert(&f.table, ctx, row, c),
            sink,
        ),
        Format::Omop => {
            let o = lookups.omop.as_ref().expect("loaded for omop sets");
            let req = omop::required(&f.table);
            if f.people {
                tabular::stream_from(
                    source,
                    path,
                    label,
                    &|_| req.clone(),
                    |row, c| omop::person(o, ctx, row, c),
                    sink,
                )
            } else {
                tabular::stream_from(
                    source,
                    path,
                    label,
                    &|_| req.clone(),
                    |row, c| omop::convert(o, &f.table, ctx, row, c),
                    sink,
                )
            }
        }
        Format::Mimic => {
            let m = lookups.mimic.as_ref().expect("loaded for mimic sets");
            let req = mimic::TABLES
                .iter()
                .find(|t| t.0 == f.table)
                .map(|t| t.1)
                .unwrap_or(&[]);
            if f.people {
                dictionary_descriptions(lookups, sink)?;
            }
            tabular::stream_from(
                source,
                path,
                label,
                &|_| req.to_vec(),
                |row, c| mimic::convert(m, &f.table, ctx, row, c),
                sink,
            )
        }
        Format::Mimic3 => {
            let m = lookups.mimic3.as_ref().expect("loaded for mimic3 sets");
            if f.people {
                dictionary_descriptions(lookups, sink)?;
            }
            tabular::stream_from(
                source,
                path,
                label,
                &|_| mimic3::required(&f.table).to_vec(),
                |row, c| mimic3::convert(m, &f.table, ctx, row, c),
                sink,
            )
        }
        Format::Fhir | Format::Meds => unreachable!("{:?} is not a CSV format", f.format),
    }
}

pub fn read_fhir(
    path: &Path,
    ctx: &Ctx,
    meds: &fhir::Medications,
    opts: &IngestOptions,
    reporter: &dyn Reporter,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let lines =
        name.ends_with(".ndjson") || name.ends_with(".ndjson.gz") || name.ends_with(".jsonl");
    if !lines {
        use std::io::Read;
        let mut text = String::new();
        let mut r = super::io::open(path)?;
        if let Err(e) = r.read_to_string(&mut text) {
            let mut c = Chunk::default();
            c.tally.rows_read = 1;
            c.reject(
                ctx.file,
                1,
                &text,
                super::Reject::new("*", "truncated_gzip", "", format!("a complete file ({e})")),
            );
            return sink(c);
        }
        reporter.progress(text.len() as u64);
        let mut c = fhir::read_document(&text, ctx, meds);
        c.tally.rows_read = fhir::count_records(&text);
        return sink(c);
    }
    let parts = rayon::current_num_threads() * 4;
    let mut blocks = LineBlocks::new(super::io::open(path)?, opts.block_bytes);
    while let Some(block) = blocks.next_block() {
        let pieces = split_lines(&block, parts);
        let chunks: Vec<Chunk> = pieces
            .par_iter()
            .map(|(line, data)| fhir::read_lines(data, *line, ctx, meds))
            .collect();
        let mut merged = Chunk::default();
        for c in chunks {
            merged.merge(c);
        }
        // Lines framed by the block reader (a Bundle on a line: its entries), counted apart
        // from their outcomes.
        let lines = memchr::memchr_iter(b'\n', &block.data).count();
        merged.tally.rows_read = block
            .data
            .split(|b| *b == b'\n')
            .take(lines)
            .map(fhir::line_records)
            .sum();
        reporter.progress(block.data.len() as u64);
        sink(merged)?;
    }
    if let Some(t) = blocks.truncation.take() {
        let mut c = Chunk::default();
        c.tally.rows_read = 1;
        c.reject(
            ctx.file,
            t.line,
            &t.partial,
            super::Reject::new(
                "*",
                "truncated_gzip",
                "",
                format!(
                    "a complete gzip stream; it broke off at this line ({})",
                    t.error
                ),
            ),
        );
        sink(c)?;
    }
    Ok(())
}

/// The code descriptions an export's dictionaries give, sent once, with its people table.
fn dictionary_descriptions(
    lookups: &SetLookups,
    sink: &mut dyn FnMut(Chunk) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    if lookups.descriptions.is_empty() {
        return Ok(());
    }
    let mut c = Chunk::default();
    for (code, d) in &lookups.descriptions {
        c.describe(code, d);
    }
    sink(c)
}
