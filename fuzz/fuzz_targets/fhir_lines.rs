//! FHIR NDJSON lines (resources, Bundles on a line, garbage) through the line reader: no
//! panic, and the framing count (records per line, counted apart) equals accepted + rejected
//! + skipped, with every rejection quarantined.
#![no_main]

use ehr_risk::ingest::fhir::{Medications, line_records, read_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data.to_vec();
    if data.last() != Some(&b'\n') {
        data.push(b'\n');
    }
    let ctx = ehr_risk_fuzz::ctx(ehr_risk_fuzz::policy());
    let meds = Medications::default();
    let mut c = read_lines(&data, 1, &ctx, &meds);
    let lines = data.iter().filter(|b| **b == b'\n').count();
    c.tally.rows_read = data
        .split(|b| *b == b'\n')
        .take(lines)
        .map(line_records)
        .sum();
    let t = c.tally.clone();
    ehr_risk_fuzz::check_chunk(&c, &t, false);
});
