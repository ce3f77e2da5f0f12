//! The time parser on any string, in zones with DST gaps and odd offsets: it never panics, an
//! instant is known when it happens and a date at the end of its interval (never before), and
//! an instant written back as UTC parses to itself.
#![no_main]

use ehr_risk::ingest::time::{TimeContext, format_micros};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for zone in [
        chrono_tz::UTC,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Pacific::Chatham,
    ] {
        let c = TimeContext { zone };
        if let Ok(st) = c.stamp(s) {
            assert!(
                st.known >= st.at,
                "{s:?}: known {} before {}",
                st.known,
                st.at
            );
            assert_eq!(c.parse(s), Ok(st.at));
            if st.known == st.at {
                let back = format_micros(st.at);
                assert_eq!(
                    TimeContext::default().parse(&back),
                    Ok(st.at),
                    "{s:?} -> {back}"
                );
            }
        }
    }
});
