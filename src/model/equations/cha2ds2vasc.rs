//! CHA2DS2-VASc (Lip GYH et al., Chest 2010;137:263-272): stroke risk score in atrial
//! fibrillation. In: heart failure, hypertension, age, diabetes, prior stroke/TIA/thromboembolism,
//! vascular disease (prior MI, PAD, aortic plaque), sex. Out: the score (0-9) and the adjusted
//! stroke rate per year from `schemas/equations/cha2ds2vasc_adjusted_stroke_rate.csv`.

#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs {
    pub heart_failure: bool,
    pub hypertension: bool,
    pub age: f64,
    pub diabetes: bool,
    pub prior_stroke: bool,
    pub vascular_disease: bool,
    pub female: bool,
}

pub fn score(x: &Inputs) -> u32 {
    let age = if x.age >= 75.0 {
        2
    } else if x.age >= 65.0 {
        1
    } else {
        0
    };
    x.heart_failure as u32
        + x.hypertension as u32
        + age
        + x.diabetes as u32
        + 2 * x.prior_stroke as u32
        + x.vascular_disease as u32
        + x.female as u32
}

/// Adjusted stroke rate (% per year) for a score, as published (scores 0-8).
pub fn adjusted_stroke_rate(score: u32) -> Option<f64> {
    include_str!("../../../schemas/equations/cha2ds2vasc_adjusted_stroke_rate.csv")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((
                f.next()?.parse::<u32>().ok()?,
                f.next()?.parse::<f64>().ok()?,
            ))
        })
        .find(|(s, _)| *s == score)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_rates() {
        assert_eq!(
            score(&Inputs {
                age: 50.0,
                ..Default::default()
            }),
            0
        );
        let all = Inputs {
            heart_failure: true,
            hypertension: true,
            age: 80.0,
            diabetes: true,
            prior_stroke: true,
            vascular_disease: true,
            female: true,
        };
        assert_eq!(score(&all), 9, "published maximum");
        assert_eq!(
            score(&Inputs {
                age: 70.0,
                female: true,
                hypertension: true,
                ..Default::default()
            }),
            3
        );
        assert_eq!(adjusted_stroke_rate(0), Some(0.0));
        assert_eq!(adjusted_stroke_rate(2), Some(2.2));
        assert_eq!(adjusted_stroke_rate(6), Some(9.8));
        assert_eq!(adjusted_stroke_rate(9), None, "not in the published table");
    }
}
