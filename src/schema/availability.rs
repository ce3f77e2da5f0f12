//! When each lake event became *known*, decided once at ingest and stored in the lake's
//! `available_time` column. In: events in lake order (grouped by subject), each with the
//! availability its reader gave it (the end of its time's precision) and the reader's
//! `coded_at_discharge` fact. Out: the same events with `available_time` set for every timed
//! event, a diagnosis coded for a stay delayed to that stay's discharge. Features and labels
//! read only the stored column ([`super::Event::known_at`]), so MEDS input, deduplication and
//! later exports cannot change what "known at t" means.

use super::Event;
use std::collections::HashMap;

/// Encounter codes that are stays: a hospital episode whose diagnoses are coded at its end
/// (HL7 v3 `IMP` with its `ACUTE` and `NONAC` children, short stay `SS`, observation `OBSENC`).
pub const STAY_CODES: [&str; 3] = ["ENCOUNTER//IMP", "ENCOUNTER//SS", "ENCOUNTER//OBSENC"];

/// Whether an event is a stay (an encounter of a stay class).
pub fn is_stay(e: &Event) -> bool {
    STAY_CODES.contains(&e.code.as_str())
}

/// Fill and delay `available_time` for every subject in `events` (lake order). Idempotent, and
/// monotone: an availability only ever moves later, so resolving again after a later export
/// brought a stay keeps every earlier decision that still holds.
pub fn resolve(events: &mut [Event]) {
    let mut start = 0;
    while start < events.len() {
        let sid = events[start].subject_id;
        let mut end = start;
        while end < events.len() && events[end].subject_id == sid {
            end += 1;
        }
        resolve_subject(&mut events[start..end]);
        start = end;
    }
}

/// One subject's events: a diagnosis coded for a visit is known at the discharge of a stay of
/// that visit which contains its time. Only stays that began no later than the diagnosis can
/// delay it, so events after a prediction time never change what is seen before it.
fn resolve_subject(events: &mut [Event]) {
    let mut stays: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for e in events.iter().filter(|e| is_stay(e)) {
        if let (Some(v), Some(start)) = (e.visit_id.as_deref(), e.time) {
            stays
                .entry(v.to_string())
                .or_default()
                .push((start, e.end_time.unwrap_or(start)));
        }
    }
    for e in events.iter_mut() {
        let Some(t) = e.time else {
            continue;
        };
        let mut known = e.available_time.unwrap_or(t).max(t);
        if e.coded_at_discharge
            && let Some(end) = e
                .visit_id
                .as_deref()
                .and_then(|v| stays.get(v))
                .and_then(|ss| {
                    ss.iter()
                        .filter(|(a, b)| *a <= t && t <= *b)
                        .map(|(_, b)| *b)
                        .max()
                })
        {
            known = known.max(end);
        }
        e.available_time = Some(known);
    }
}

/// Keep what duplicates of one fact know between them in the copy that is kept: the visit link,
/// the coded-at-discharge fact and the latest availability (`kept` absorbs `other`).
pub fn absorb(kept: &mut Event, other: &Event) {
    if kept.visit_id.is_none() {
        kept.visit_id = other.visit_id.clone();
    }
    kept.coded_at_discharge |= other.coded_at_discharge;
    kept.available_time = match (kept.available_time, other.available_time) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn ev(t: i64, code: &str, visit: Option<&str>) -> Event {
        Event {
            subject_id: 1,
            time: Some(t),
            code: code.into(),
            visit_id: visit.map(String::from),
            source: "test".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_diagnosis_coded_for_a_stay_is_known_at_its_discharge() {
        let mut stay = ev(10 * DAY, "ENCOUNTER//IMP", Some("v1"));
        stay.end_time = Some(15 * DAY);
        let mut dx = ev(10 * DAY, "ICD10CM/I21.4", Some("v1"));
        dx.coded_at_discharge = true;
        dx.available_time = Some(11 * DAY); // a date-only value
        let lab = ev(12 * DAY, "LAB//TROPONIN", Some("v1"));
        let mut out_of_stay = ev(30 * DAY, "ICD10CM/I10", Some("v1"));
        out_of_stay.coded_at_discharge = true;
        let mut v = vec![stay, dx, lab, out_of_stay];
        resolve(&mut v);
        assert_eq!(v[0].available_time, Some(10 * DAY));
        assert_eq!(v[1].available_time, Some(15 * DAY));
        assert_eq!(v[2].available_time, Some(12 * DAY));
        assert_eq!(v[3].available_time, Some(30 * DAY));
        // Idempotent.
        let again = v.clone();
        resolve(&mut v);
        assert_eq!(v, again);
    }

    #[test]
    fn short_stays_and_observation_stays_delay_too_but_ambulatory_visits_do_not() {
        for (code, delayed) in [
            ("ENCOUNTER//SS", true),
            ("ENCOUNTER//OBSENC", true),
            ("ENCOUNTER//AMB", false),
            ("ENCOUNTER//EMER", false),
        ] {
            let mut stay = ev(DAY, code, Some("v"));
            stay.end_time = Some(3 * DAY);
            let mut dx = ev(DAY, "ICD10CM/I21.4", Some("v"));
            dx.coded_at_discharge = true;
            let mut v = vec![stay, dx];
            resolve(&mut v);
            let want = if delayed { 3 * DAY } else { DAY };
            assert_eq!(v[1].available_time, Some(want), "{code}");
        }
    }

    #[test]
    fn the_kept_duplicate_keeps_the_visit_link_and_the_latest_availability() {
        let mut kept = ev(DAY, "ICD10CM/I21.4", None);
        kept.available_time = Some(DAY);
        let mut other = ev(DAY, "ICD10CM/I21.4", Some("v"));
        other.coded_at_discharge = true;
        other.available_time = Some(2 * DAY);
        absorb(&mut kept, &other);
        assert_eq!(kept.visit_id.as_deref(), Some("v"));
        assert!(kept.coded_at_discharge);
        assert_eq!(kept.available_time, Some(2 * DAY));
    }
}
