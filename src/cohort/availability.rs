//! When each event became *available*: the one clock features and the labels' prior-outcome
//! flags share. In: one subject's events (lake order). Out: per event, the instant from which
//! a prediction may see it, which is the lake's `available_time` ([`Event::known_at`]), decided
//! once at ingest (end of the time's precision; a diagnosis coded for a stay at its discharge).
//! Kept below both the cohort and the features stage so that "known at t" means the same thing
//! in labels and in features.

use crate::schema::Event;

/// When each event became available, for one subject.
pub struct Visibility {
    /// `None` for static facts (always visible).
    avail: Vec<Option<i64>>,
}

impl Visibility {
    pub fn new(events: &[Event]) -> Visibility {
        Visibility {
            avail: events.iter().map(Event::known_at).collect(),
        }
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
