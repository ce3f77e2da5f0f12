//! Every CSV reader's row path (Synthea, OMOP, MIMIC-IV, MIMIC-III), over the lookups of a
//! real fixture export. The input's first line names the table (`omop/measurement`), the rest
//! is the table's CSV, header included. No panic; the records the CSV layer framed equal
//! accepted + rejected + skipped; every rejection quarantined; events inside the window.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let Ok(name) = std::str::from_utf8(&data[..nl]) else {
        return;
    };
    let Some(t) = ehr_risk_fuzz::csv::table(name) else {
        return;
    };
    let ctx = ehr_risk_fuzz::ctx(ehr_risk_fuzz::policy());
    let mut all = ehr_risk::ingest::Chunk::default();
    let mut sink = |c: ehr_risk::ingest::Chunk| {
        all.merge(c);
        Ok(())
    };
    // A header the reader refuses is an error naming the file, not a panic.
    if ehr_risk::ingest::read::read_table(&t.file, &data[nl + 1..], &t.lookups, &ctx, &mut sink)
        .is_err()
    {
        return;
    }
    let tally = all.tally.clone();
    ehr_risk_fuzz::check_chunk(&all, &tally, t.shifted);
});
