//! Timestamp parsing for every source: ISO-8601 with `Z` or an offset (honoured), date-only
//! values, partial FHIR dates (`2012`, `2012-09`), and zone-less local times (`2013-05-17 00:00:00`,
//! OMOP and MIMIC), which are read in the configured zone. Out: microseconds since the epoch, UTC,
//! which is what the lake's naive `timestamp[us]` column holds. Hand-written for speed: it runs
//! once per event on the ingest hot path.

use crate::schema::Stamp;
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// How zone-less local times are interpreted.
#[derive(Debug, Clone, Copy)]
pub struct TimeContext {
    pub zone: Tz,
}

impl Default for TimeContext {
    fn default() -> Self {
        TimeContext {
            zone: chrono_tz::UTC,
        }
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

const MICROS: i64 = 1_000_000;

impl TimeContext {
    /// Parse one timestamp. Errors name what was expected.
    pub fn parse(&self, s: &str) -> Result<i64, &'static str> {
        self.stamp(s).map(|s| s.at)
    }

    /// Parse one timestamp with its precision: a year, a year-month or a date is *known* only
    /// at the end of its interval (the next 1 January, 1st of the month, midnight), so that an
    /// event dated on the day of a prediction is not seen by it. A time of day is an instant.
    pub fn stamp(&self, s: &str) -> Result<Stamp, &'static str> {
        const EXPECTED: &str = "an ISO-8601 date or date-time (YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.f]][Z|±hh:mm])";
        let b = s.trim().as_bytes();
        if b.len() < 4 {
            return Err(EXPECTED);
        }
        let year = digits(&b[0..4]).ok_or(EXPECTED)? as i32;
        let (month, day, rest) = match b.len() {
            4 => {
                let start = NaiveDate::from_ymd_opt(year, 1, 1).ok_or("a real calendar date")?;
                return self.interval(start, NaiveDate::from_ymd_opt(year + 1, 1, 1));
            }
            7 if b[4] == b'-' => {
                let month = digits(&b[5..7]).ok_or(EXPECTED)?;
                let start =
                    NaiveDate::from_ymd_opt(year, month, 1).ok_or("a real calendar date")?;
                let next = if month == 12 {
                    NaiveDate::from_ymd_opt(year + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(year, month + 1, 1)
                };
                return self.interval(start, next);
            }
            n if n >= 10 && b[4] == b'-' && b[7] == b'-' => (
                digits(&b[5..7]).ok_or(EXPECTED)?,
                digits(&b[8..10]).ok_or(EXPECTED)?,
                &b[10..],
            ),
            _ => return Err(EXPECTED),
        };
        let date = NaiveDate::from_ymd_opt(year, month, day).ok_or("a real calendar date")?;
        if rest.is_empty() {
            return self.interval(date, date.succ_opt());
        }
        if rest[0] != b'T' && rest[0] != b' ' {
            return Err(EXPECTED);
        }
        let t = &rest[1..];
        if t.len() < 5 || t[2] != b':' {
            return Err(EXPECTED);
        }
        let hh = digits(&t[0..2]).ok_or(EXPECTED)?;
        let mm = digits(&t[3..5]).ok_or(EXPECTED)?;
        let mut i = 5;
        let mut ss = 0;
        let mut micros = 0i64;
        if t.len() >= 8 && t[5] == b':' {
            ss = digits(&t[6..8]).ok_or(EXPECTED)?;
            i = 8;
            if i < t.len() && t[i] == b'.' {
                i += 1;
                let start = i;
                while i < t.len() && t[i].is_ascii_digit() {
                    i += 1;
                }
                let frac = &t[start..i];
                if frac.is_empty() {
                    return Err(EXPECTED);
                }
                let mut m = 0i64;
                for k in 0..6 {
                    m = m * 10 + frac.get(k).map(|c| (c - b'0') as i64).unwrap_or(0);
                }
                micros = m;
            }
        }
        let naive = date
            .and_hms_opt(hh, mm, ss.min(59))
            .ok_or("a real time of day (hh 0-23, mm 0-59, ss 0-60)")?;
        let zone = &t[i..];
        let base = match zone {
            [] => self.local(naive)?,
            [b'Z'] | [b'z'] => naive.and_utc().timestamp() * MICROS,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
                let oh = digits(&[*h1, *h2]).ok_or(EXPECTED)? as i64;
                let om = digits(&[*m1, *m2]).ok_or(EXPECTED)? as i64;
                if oh > 14 || om > 59 {
                    return Err("a UTC offset within ±14:00");
                }
                let off = (oh * 3600 + om * 60) * if *sign == b'+' { 1 } else { -1 };
                (naive.and_utc().timestamp() - off) * MICROS
            }
            _ => return Err(EXPECTED),
        };
        let at = base + micros;
        Ok(Stamp { at, known: at })
    }

    /// A whole-day interval from local midnight of `start` to local midnight of `next` (a day
    /// without a local midnight, after a DST jump, starts at its earliest local time).
    fn interval(&self, start: NaiveDate, next: Option<NaiveDate>) -> Result<Stamp, &'static str> {
        let at = self.midnight(start)?;
        let known = match next {
            Some(n) => self.midnight(n)?,
            None => return Err("a date before the year 262143"),
        };
        Ok(Stamp { at, known })
    }

    fn midnight(&self, d: NaiveDate) -> Result<i64, &'static str> {
        let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        self.local(naive).or_else(|_| {
            // Midnight inside a DST gap (e.g. America/Santiago): the day starts an hour later.
            self.local(naive + chrono::Duration::hours(1))
        })
    }

    fn local(&self, naive: NaiveDateTime) -> Result<i64, &'static str> {
        // In a DST gap there is no such local time; in an overlap take the earlier instant,
        // which is the documented, deterministic choice.
        match self.zone.from_local_datetime(&naive).earliest() {
            Some(dt) => Ok(dt.timestamp() * MICROS),
            None => Err("a local time that exists in the configured zone (not inside a DST gap)"),
        }
    }
}

/// Format microseconds since the epoch as an ISO-8601 UTC string (for messages and tests).
pub fn format_micros(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| format!("<invalid {us}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn offsets_are_honoured() {
        let c = TimeContext::default();
        assert_eq!(
            c.parse("2021-08-22T20:26:50-07:00").unwrap(),
            utc("2021-08-23T03:26:50Z")
        );
        assert_eq!(
            c.parse("2021-08-23T03:26:50Z").unwrap(),
            utc("2021-08-23T03:26:50Z")
        );
        assert_eq!(
            c.parse("2021-08-23T03:26:50.5+0100").unwrap(),
            utc("2021-08-23T02:26:50.5Z")
        );
    }

    #[test]
    fn dates_and_local_times() {
        let c = TimeContext::default();
        assert_eq!(c.parse("2012-09-17").unwrap(), utc("2012-09-17T00:00:00Z"));
        assert_eq!(c.parse("2012").unwrap(), utc("2012-01-01T00:00:00Z"));
        assert_eq!(c.parse("2012-09").unwrap(), utc("2012-09-01T00:00:00Z"));
        assert_eq!(
            c.parse("2013-05-17 10:00:00").unwrap(),
            utc("2013-05-17T10:00:00Z")
        );
        let ny = TimeContext {
            zone: chrono_tz::America::New_York,
        };
        assert_eq!(
            ny.parse("2013-05-17 10:00:00").unwrap(),
            utc("2013-05-17T14:00:00Z")
        );
        assert_eq!(ny.parse("2013-01-17").unwrap(), utc("2013-01-17T05:00:00Z"));
        // 02:30 does not exist on the spring-forward day in New York.
        assert!(ny.parse("2021-03-14 02:30:00").is_err());
    }

    #[test]
    fn dates_are_known_at_the_end_of_their_interval() {
        let c = TimeContext::default();
        let s = c.stamp("2012-09-17").unwrap();
        assert_eq!(s.at, utc("2012-09-17T00:00:00Z"));
        assert_eq!(s.known, utc("2012-09-18T00:00:00Z"));
        let s = c.stamp("2012-12").unwrap();
        assert_eq!(
            (s.at, s.known),
            (utc("2012-12-01T00:00:00Z"), utc("2013-01-01T00:00:00Z"))
        );
        let s = c.stamp("2012").unwrap();
        assert_eq!(
            (s.at, s.known),
            (utc("2012-01-01T00:00:00Z"), utc("2013-01-01T00:00:00Z"))
        );
        let s = c.stamp("2012-02-29").unwrap();
        assert_eq!(s.known, utc("2012-03-01T00:00:00Z"));
        // A time of day is an instant, whatever its zone.
        let s = c.stamp("2013-05-17 10:00:00").unwrap();
        assert_eq!(s.at, s.known);
        let s = c.stamp("2013-05-17T10:00:00+02:00").unwrap();
        assert_eq!(s.at, s.known);
        // In a zone, the day ends at local midnight (23 hours on the spring-forward day).
        let ny = TimeContext {
            zone: chrono_tz::America::New_York,
        };
        let s = ny.stamp("2021-03-14").unwrap();
        assert_eq!(s.at, utc("2021-03-14T05:00:00Z"));
        assert_eq!(s.known, utc("2021-03-15T04:00:00Z"));
    }

    #[test]
    fn garbage_is_rejected() {
        let c = TimeContext::default();
        for bad in [
            "",
            "yesterday",
            "2021-13-01",
            "2021-02-30",
            "2021-08-23T25:00:00Z",
            "20210823",
            "2021-08-23T03:26:50+25:00",
        ] {
            assert!(c.parse(bad).is_err(), "{bad}");
        }
    }
}
