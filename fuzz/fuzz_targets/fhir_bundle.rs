//! Whole FHIR documents (a Bundle, a resource, anything) through the document reader: no
//! panic, and entries counted apart equal accepted + rejected + skipped.
#![no_main]

use ehr_risk::ingest::fhir::{Medications, count_records, read_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = ehr_risk_fuzz::ctx(ehr_risk_fuzz::policy());
    let meds = Medications::default();
    let mut c = read_document(text, &ctx, &meds);
    c.tally.rows_read = count_records(text);
    let t = c.tally.clone();
    ehr_risk_fuzz::check_chunk(&c, &t, false);
});
