//! Censoring of a time to event, shared by the stages that weigh labels by it (training the
//! baseline, evaluating every model). In: each row's end of follow-up for one outcome (event,
//! death first, or censored) from the cohort's survival table. Out: the Kaplan-Meier estimate
//! of still being followed, G(t), and each row's inverse-probability-of-censoring weight (IPCW)
//! at a horizon. Why: a horizon's boolean label is known only for people followed to it or with
//! an event before it, a selection that favours events; weighting each known row by 1/G stands
//! it for the censored like it, so rates and fitted risks are those without censoring (when
//! censoring is independent of the outcome given the time).

use super::labels::Survival;

/// How a row's follow-up for one outcome ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Event,
    /// Death without the outcome first.
    Competing,
    Censored,
}

/// The time (years) and kind of the end of follow-up of `s` for outcome `o`.
pub fn end_of(s: &Survival, o: usize) -> (f64, End) {
    match (s.events[o], s.death) {
        (Some(e), d) if d.is_none_or(|d| e <= d) => (e, End::Event),
        (_, Some(d)) => (d, End::Competing),
        _ => (s.followup, End::Censored),
    }
}

/// The Kaplan-Meier estimate of the probability of still being followed, G(t) = P(C > t).
pub struct CensoringKm {
    /// (censoring time, G just after it), increasing in time.
    steps: Vec<(f64, f64)>,
}

impl CensoringKm {
    pub fn fit(ends: &[(f64, End)]) -> CensoringKm {
        let mut times: Vec<(f64, bool)> =
            ends.iter().map(|&(t, e)| (t, e == End::Censored)).collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut at_risk = times.len() as f64;
        let (mut g, mut steps) = (1.0, Vec::new());
        let mut i = 0;
        while i < times.len() {
            let t = times[i].0;
            let (mut n, mut censored) = (0.0, 0.0);
            while i < times.len() && times[i].0 == t {
                n += 1.0;
                censored += times[i].1 as u8 as f64;
                i += 1;
            }
            if censored > 0.0 {
                g *= 1.0 - censored / at_risk;
                steps.push((t, g));
            }
            at_risk -= n;
        }
        CensoringKm { steps }
    }

    /// G(t-): the probability of being followed up to just before `t`.
    pub fn before(&self, t: f64) -> f64 {
        let k = self.steps.partition_point(|s| s.0 < t);
        if k == 0 { 1.0 } else { self.steps[k - 1].1 }
    }
}

/// IPCW weight and case status of each row at horizon `h`: cases (event by h) and controls
/// (dead without it by h, or followed to h) weighted by 1/G(their time-), the rest 0.
pub fn weights(ends: &[(f64, End)], h: f64) -> Vec<(f64, bool)> {
    let km = CensoringKm::fit(ends);
    ends.iter()
        .map(|&(t, e)| {
            let w = |at: f64| {
                let g = km.before(at);
                if g > 0.0 { 1.0 / g } else { 0.0 }
            };
            match e {
                End::Event if t <= h => (w(t), true),
                End::Competing if t <= h => (w(t), false),
                _ if t >= h => (w(h), false),
                _ => (0.0, false),
            }
        })
        .collect()
}

/// The end of follow-up of `s` for outcome `o` when its status at `h` years could be known:
/// at risk of the outcome and the extract reaching `h` past the time. Rows the extract ends
/// before `h` are censored by the calendar for certain, whatever happens to them; counting
/// them in the censoring's Kaplan-Meier would weigh the rows that can be followed as if they
/// stood for those too (measured at 100,000 people: the 10-year baseline came out at half the
/// truth). The one rule of which rows a horizon's censoring-aware figures use.
pub fn eligible_end(s: &Survival, o: usize, h: f64) -> Option<(f64, End)> {
    (s.at_risk[o] && h <= s.extract_end).then(|| end_of(s, o))
}

/// IPCW weights of outcome `o` at each of `horizons` for rows given as (their survival, their
/// group): the censoring's Kaplan-Meier is fitted within each group (a split: the held-out
/// rows' censoring does not weigh the training rows) over the rows eligible at that horizon
/// ([`eligible_end`]). A row without survival, not at risk of the outcome, or that the extract
/// ends before the horizon weighs 0. Out: `weights[row][horizon]`.
pub fn grouped_weights(
    rows: &[(Option<&Survival>, &str)],
    o: usize,
    horizons: &[f64],
) -> Vec<Vec<f64>> {
    let mut out = vec![vec![0.0; horizons.len()]; rows.len()];
    let mut groups: Vec<&str> = rows.iter().map(|r| r.1).collect();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        for (hi, &h) in horizons.iter().enumerate() {
            let (idx, ends): (Vec<usize>, Vec<(f64, End)>) = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.1 == g)
                .filter_map(|(i, r)| Some((i, eligible_end(r.0?, o, h)?)))
                .unzip();
            for (&i, (w, _)) in idx.iter().zip(weights(&ends, h)) {
                out[i][hi] = w;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::labels::LabelValue;

    #[test]
    fn censoring_km_steps_at_censoring_times_only() {
        let ends = [
            (1.0, End::Censored),
            (2.0, End::Event),
            (3.0, End::Censored),
            (4.0, End::Event),
        ];
        let km = CensoringKm::fit(&ends);
        assert_eq!(km.before(1.0), 1.0);
        assert!((km.before(1.5) - 0.75).abs() < 1e-12);
        // at 3: 2 at risk, one censored: 0.75 * 0.5
        assert!((km.before(3.5) - 0.375).abs() < 1e-12);
    }

    /// Yearly prediction times from one population: early rows can be followed 10 years, late
    /// ones only 2 (the extract ends), no other censoring, a known 30 % 10-year risk. The
    /// weighted rate at 10 years over the rows that can reach it is the truth; fitting the
    /// censoring over every row (the late rows' calendar censoring included) gives about a
    /// third of it.
    #[test]
    fn rows_the_extract_ends_before_the_horizon_do_not_weigh_the_others() {
        let mut rng = crate::rng::Rng::new(9, 0, 1);
        let rate = -(0.7f64).ln() / 10.0;
        let survival: Vec<Survival> = (0..40_000)
            .map(|i| {
                let extract_end = if i % 5 == 0 { 10.5 } else { 2.0 };
                let t = -(1.0 - rng.uniform()).ln() / rate;
                Survival {
                    followup: extract_end,
                    death: None,
                    events: vec![(t <= extract_end).then_some(t)],
                    at_risk: vec![true],
                    extract_end,
                }
            })
            .collect();
        let rows: Vec<(Option<&Survival>, &str)> =
            survival.iter().map(|s| (Some(s), "train")).collect();
        let w = grouped_weights(&rows, 0, &[10.0]);
        let (mut cases, mut total) = (0.0, 0.0);
        for (s, w) in survival.iter().zip(&w) {
            total += w[0];
            if s.value(0, 10.0) == LabelValue::True {
                cases += w[0];
            }
        }
        let eligible = survival.iter().filter(|s| s.extract_end >= 10.0).count() as f64;
        assert!(
            (total - eligible).abs() < 1e-6 * eligible,
            "{total} vs {eligible}"
        );
        let rate10 = cases / total;
        assert!(
            (rate10 - 0.3).abs() < 0.02,
            "weighted 10-year rate {rate10}"
        );
    }
}
