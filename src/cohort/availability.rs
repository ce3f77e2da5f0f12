//! When each event became *available*: the one clock features and the labels' prior-outcome
//! flags share. In: one subject's events (lake order). Out: per event, the instant from which
//! a prediction may see it: its own time, except a diagnosis coded for an inpatient stay, which
//! becomes available at the stay's discharge. Kept below both the cohort and the features
//! stage so that "known at t" means the same thing in labels and in features.

use crate::schema::Event;
use std::collections::HashMap;

/// Sources whose events are diagnoses (coded for a stay, possibly dated at its discharge).
const DIAGNOSIS_SOURCES: [&str; 5] = [
    "fhir:Condition",
    "synthea:conditions",
    "omop:condition_occurrence",
    "mimic:diagnoses_icd",
    "mimic3:diagnoses_icd",
];

/// When each event became available, for one subject.
pub struct Visibility {
    /// `None` for static facts (always visible).
    avail: Vec<Option<i64>>,
}

impl Visibility {
    pub fn new(events: &[Event]) -> Visibility {
        // Stays by visit id: (admission, discharge). A diagnosis belongs to a stay of its visit
        // that contains its time; only such stays (which began no later than the diagnosis)
        // can delay it, so events after a prediction time never change what is seen before it.
        let mut stays: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
        for e in events.iter().filter(|e| e.code == "ENCOUNTER//IMP") {
            if let (Some(v), Some(start)) = (e.visit_id.as_deref(), e.time) {
                stays
                    .entry(v)
                    .or_default()
                    .push((start, e.end_time.unwrap_or(start)));
            }
        }
        let avail = events
            .iter()
            .map(|e| {
                let t = e.time?;
                if !DIAGNOSIS_SOURCES.contains(&e.source.as_ref()) {
                    return Some(t);
                }
                let end = e
                    .visit_id
                    .as_deref()
                    .and_then(|v| stays.get(v))
                    .and_then(|ss| {
                        ss.iter()
                            .filter(|(a, b)| *a <= t && t <= *b)
                            .map(|(_, b)| *b)
                            .max()
                    });
                Some(end.map_or(t, |end| t.max(end)))
            })
            .collect();
        Visibility { avail }
    }

    /// Availability time of event `i` (None: static).
    pub fn at(&self, i: usize) -> Option<i64> {
        self.avail[i]
    }

    /// Indices of the events visible at `t`, in order.
    pub fn visible(&self, t: i64, same_time_is_future: bool) -> Vec<usize> {
        (0..self.avail.len())
            .filter(|&i| match self.avail[i] {
                None => true,
                Some(a) => {
                    if same_time_is_future {
                        a < t
                    } else {
                        a <= t
                    }
                }
            })
            .collect()
    }
}
