//! Field comparisons. In: two records' normalised identity facts and a comparison of the spec.
//! Out: the pair's level for it, as a small code: 0 when either value is missing (weighs
//! nothing), 1..=L for the comparison's levels in order, L+1 for `else`.

use super::spec::{Comparison, Level, LinkSpec};
use crate::schema::identity::PersonRecord;

/// The level code for `else` of a comparison with `levels` levels.
pub fn else_code(c: &Comparison) -> u8 {
    c.levels.len() as u8 + 1
}

/// Codes per comparison: null, each level, else.
pub fn codes(c: &Comparison) -> usize {
    c.levels.len() + 2
}

/// A human label for a level code.
pub fn code_label(c: &Comparison, code: u8) -> String {
    match code as usize {
        0 => "missing".into(),
        k if k <= c.levels.len() => c.levels[k - 1].label(),
        _ => "else".into(),
    }
}

/// The level of one comparison for the pair `(a, b)`.
pub fn level(spec: &LinkSpec, c: &Comparison, a: &PersonRecord, b: &PersonRecord) -> u8 {
    let (Some(x), Some(y)) = (a.get(c.field), b.get(c.field)) else {
        return 0;
    };
    // Each similarity is computed once per pair, however many levels test it.
    let mut jw: Option<f64> = None;
    let mut edits: Option<Option<usize>> = None;
    let max_edits = c
        .levels
        .iter()
        .filter_map(|l| match l {
            Level::DamerauLevenshtein { at_most } => Some(*at_most),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for (k, l) in c.levels.iter().enumerate() {
        let holds = match l {
            Level::Exact => x == y,
            Level::ExactWith { also } => {
                x == y && a.get(*also).is_some() && a.get(*also) == b.get(*also)
            }
            Level::OtherExact { field } => {
                a.get(*field).is_some() && a.get(*field) == b.get(*field)
            }
            // Names swapped: one record's `with` field is the other's value, and the other
            // crossing agrees too, exactly or but for a typo (Jaro-Winkler >= 0.88).
            Level::Swapped { with } => {
                let near = |p: Option<&str>, q: &str| p.is_some_and(|p| jaro_winkler(p, q) >= 0.88);
                (a.get(*with) == Some(y) && near(b.get(*with), x))
                    || (b.get(*with) == Some(x) && near(a.get(*with), y))
            }
            Level::Nickname => nickname(spec, x, y),
            Level::JaroWinkler { at_least } => {
                *jw.get_or_insert_with(|| jaro_winkler(x, y)) >= *at_least
            }
            Level::DamerauLevenshtein { at_most } => edits
                .get_or_insert_with(|| edits_within(x, y, max_edits))
                .is_some_and(|d| d <= *at_most),
            Level::DayMonthSwapped => {
                x.len() == 8
                    && y.len() == 8
                    && x[..4] == y[..4]
                    && x[4..6] == y[6..8]
                    && x[6..8] == y[4..6]
            }
            Level::Prefix { chars } => {
                x.len() >= *chars
                    && y.len() >= *chars
                    && x.as_bytes()[..*chars] == y.as_bytes()[..*chars]
            }
        };
        if holds {
            return k as u8 + 1;
        }
    }
    else_code(c)
}

/// Jaro-Winkler similarity (prefix scale 0.1, up to 4 characters, boost above 0.7), as
/// `strsim::jaro_winkler` computes it, on bytes without allocating when both values are ASCII
/// and up to 64 bytes (nearly every name; the test checks both agree).
pub fn jaro_winkler(x: &str, y: &str) -> f64 {
    let (a, b) = (x.as_bytes(), y.as_bytes());
    if !(x.is_ascii() && y.is_ascii() && a.len() <= 64 && b.len() <= 64) {
        return strsim::jaro_winkler(x, y);
    }
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    // Where each byte occurs in `b`, as a bit set: the first free match in the window is
    // then one mask and one count of trailing zeros.
    let mut at = [0u64; 128];
    for (j, &c) in b.iter().enumerate() {
        at[c as usize] |= 1 << j;
    }
    let (mut af, mut bf) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &c) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = (i + range + 1).min(b.len());
        if lo >= hi {
            continue;
        }
        let window = (u64::MAX >> (64 - (hi - lo))) << lo;
        let free = at[c as usize] & window & !bf;
        if free != 0 {
            af |= 1 << i;
            bf |= free & free.wrapping_neg();
            matches += 1;
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut t = 0usize;
    let mut j = 0usize;
    for (i, &c) in a.iter().enumerate() {
        if af & (1 << i) == 0 {
            continue;
        }
        while bf & (1 << j) == 0 {
            j += 1;
        }
        if c != b[j] {
            t += 1;
        }
        j += 1;
    }
    let m = matches as f64;
    let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - (t / 2) as f64) / m) / 3.0;
    if jaro > 0.7 {
        let prefix = a.iter().zip(b).take(4).take_while(|(p, q)| p == q).count();
        jaro + 0.1 * prefix as f64 * (1.0 - jaro)
    } else {
        jaro
    }
}

/// The optimal-string-alignment distance (edits: insert, delete, substitute, swap two
/// neighbours) when it is at most `k`, else `None`; on bytes, stopping as soon as every
/// alignment needs more than `k`, when both values are ASCII.
pub fn edits_within(x: &str, y: &str, k: usize) -> Option<usize> {
    if x.len().abs_diff(y.len()) > k {
        return None;
    }
    if !(x.is_ascii() && y.is_ascii()) || x.len() > 62 || y.len() > 62 {
        return Some(strsim::osa_distance(x, y)).filter(|&d| d <= k);
    }
    let (a, b) = (x.as_bytes(), y.as_bytes());
    let big = usize::MAX / 4;
    // Three rows of the OSA table (row i-2, i-1, i), each b.len()+1 long.
    let mut rows = [[big; 64]; 3];
    for (j, v) in rows[0].iter_mut().enumerate().take(b.len() + 1) {
        *v = j;
    }
    for i in 1..=a.len() {
        let (cur, prev, pprev) = (i % 3, (i + 2) % 3, (i + 1) % 3);
        // Only cells within `k` of the diagonal can end at most `k` edits away.
        let (lo, hi) = (i.saturating_sub(k).max(1), (i + k).min(b.len()));
        rows[cur][0] = if i <= k { i } else { big };
        rows[cur][lo - 1] = if lo == 1 { rows[cur][0] } else { big };
        if hi < b.len() {
            rows[cur][hi + 1] = big;
        }
        let mut best = if i <= k { i } else { big };
        for j in lo..=hi {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[prev][j] + 1)
                .min(rows[cur][j - 1] + 1)
                .min(rows[prev][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[pprev][j - 2] + 1);
            }
            rows[cur][j] = d;
            best = best.min(d);
        }
        if best > k {
            return None;
        }
    }
    Some(rows[a.len() % 3][b.len()]).filter(|&d| d <= k)
}

fn nickname(spec: &LinkSpec, x: &str, y: &str) -> bool {
    match (spec.nicknames.get(x), spec.nicknames.get(y)) {
        (Some(gx), Some(gy)) => gx.iter().any(|g| gy.contains(g)),
        _ => false,
    }
}

/// Every comparison's level code for a pair, five bits each (the spec allows at most 12
/// comparisons of at most 29 levels): a pattern is a number, so counting patterns over millions
/// of pairs allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(pub u64);

impl Pattern {
    pub fn get(self, c: usize) -> u8 {
        ((self.0 >> (5 * c)) & 31) as u8
    }
}

pub fn pattern(spec: &LinkSpec, a: &PersonRecord, b: &PersonRecord) -> Pattern {
    let mut p = 0u64;
    for (c, cmp) in spec.comparisons.iter().enumerate() {
        p |= (level(spec, cmp, a, b) as u64) << (5 * c);
    }
    Pattern(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::identity::{IdField, Identity};

    fn rec(given: &str, family: &str, dob: &str) -> PersonRecord {
        let mut r = PersonRecord::new(Identity::new("t", given));
        r.set(IdField::GivenName, given);
        r.set(IdField::FamilyName, family);
        r.set(IdField::BirthDate, dob);
        r
    }

    #[test]
    fn fast_similarities_agree_with_strsim() {
        let mut rng = crate::rng::Rng::new(5, 0, 0);
        let alphabet = b"abcde ";
        for _ in 0..20_000 {
            let mut word = |n: u64| -> String {
                let len = (rng.next_u64() % n) as usize;
                (0..len)
                    .map(|_| alphabet[(rng.next_u64() % 6) as usize] as char)
                    .collect()
            };
            let (x, y) = (word(12), word(12));
            assert_eq!(
                jaro_winkler(&x, &y),
                strsim::jaro_winkler(&x, &y),
                "{x:?} {y:?}"
            );
            let d = strsim::osa_distance(&x, &y);
            for k in 0..4 {
                assert_eq!(
                    edits_within(&x, &y, k),
                    Some(d).filter(|&d| d <= k),
                    "{x:?} {y:?} {k}"
                );
            }
        }
        assert_eq!(edits_within("19560409", "19650409", 1), Some(1));
        assert_eq!(edits_within("19560409", "19651409", 1), None);
    }

    #[test]
    fn levels_follow_the_spec_in_order() {
        let s = LinkSpec::default_spec();
        let given = &s.comparisons[0];
        let dob = s
            .comparisons
            .iter()
            .find(|c| c.field == IdField::BirthDate)
            .unwrap();
        let a = rec("William", "Smith", "1956-04-09");
        let lv = |b: &PersonRecord, c| level(&s, c, &a, b);
        assert_eq!(
            code_label(given, lv(&rec("william", "x", ""), given)),
            "exact"
        );
        assert_eq!(
            code_label(given, lv(&rec("Smith", "William", ""), given)),
            "swapped with family_name"
        );
        assert_eq!(
            code_label(given, lv(&rec("Bill", "x", ""), given)),
            "nickname"
        );
        assert_eq!(
            code_label(given, lv(&rec("Willaim", "x", ""), given)),
            "jaro-winkler >= 0.92"
        );
        assert_eq!(code_label(given, lv(&rec("Zoe", "x", ""), given)), "else");
        let mut blank = rec("", "x", "");
        blank.fields[IdField::GivenName.index()] = None;
        assert_eq!(lv(&blank, given), 0);
        for (written, level) in [
            ("1956-09-04", "day and month swapped"),
            ("1965-04-09", "damerau-levenshtein <= 1"),
            ("1956-04-28", "first 6 characters"),
            ("1956-11-28", "first 4 characters"),
            ("1971-11-28", "else"),
        ] {
            assert_eq!(code_label(dob, lv(&rec("x", "x", written), dob)), level);
        }
    }
}
