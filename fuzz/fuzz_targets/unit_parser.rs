//! Values and units as sources write them, through the strict number parser and the unit
//! catalog: no panic, every accepted value finite, every canonical value inside its concept's
//! plausible range, every rejection with a reason.
#![no_main]

use ehr_risk::ingest::{measurement, parse_number};
use ehr_risk::schema::Event;
use ehr_risk::schema::units::units;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (value, unit) = text.split_once('|').unwrap_or((text, ""));
    let concepts = units().concepts();
    // One pick beyond the catalog: a code that is not a measured concept.
    let code = concepts
        .get(pick as usize % (concepts.len() + 1))
        .map(|c| c.code.clone())
        .unwrap_or_else(|| "LOINC//0000-0".into());
    let Ok(v) = parse_number("value", value) else {
        return;
    };
    let e = Event {
        code: code.clone(),
        ..Default::default()
    };
    let unit = (!unit.is_empty()).then_some(unit);
    match measurement(e, "value", v, unit) {
        Ok(e) => {
            let x = e.numeric_value.expect("a measurement has a value");
            assert!(x.is_finite(), "{value:?} {unit:?} became {x}");
            if let Some(c) = units().concept(&e.code) {
                let x = x as f64;
                let slack = 1e-6 * c.max.abs().max(1.0);
                assert!(
                    x >= c.min - slack && x <= c.max + slack,
                    "{x} outside {}..{}",
                    c.min,
                    c.max
                );
                assert_eq!(e.unit.as_deref(), Some(c.unit.as_str()));
            }
        }
        Err(r) => assert!(!r.reason.is_empty()),
    }
});
