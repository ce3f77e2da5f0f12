//! `report.html`: one self-contained file (inline CSS and SVG, no scripts, no network) for
//! analysts and clinical leads. In: the score folder (`scores.parquet`, `score_summary.json`),
//! the evaluation (`evaluation.json`) and optionally the cohort summary. Out: cohort summary,
//! risk distributions (each subject's latest prediction time, reference horizon), ROC and
//! calibration plots per output with every model, a subgroup table, recommendation counts.
//! Only aggregates appear: no subject identifiers.

use crate::evaluate::Evaluation;
use crate::score::ScoreSummary;
use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

pub struct ReportInputs {
    pub summary: ScoreSummary,
    pub evaluations: Vec<Evaluation>,
    pub cohort: Option<serde_json::Value>,
    /// outcome -> each subject's latest risk at the reference horizon
    pub latest_risks: BTreeMap<String, Vec<f64>>,
    pub tiers: BTreeMap<String, u64>,
}

/// An input of the report that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Unreadable { path: String, message: String },
}

fn err(p: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Unreadable {
        path: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Read what the report needs.
pub fn load(
    scores: &Path,
    evaluation: &Path,
    cohort: Option<&Path>,
) -> Result<ReportInputs, ReportError> {
    let sp = scores.join("score_summary.json");
    let summary: ScoreSummary =
        serde_json::from_str(&std::fs::read_to_string(&sp).map_err(|e| err(&sp, e))?)
            .map_err(|e| err(&sp, e))?;
    let ep = evaluation.join("evaluation.json");
    let evaluations: Vec<Evaluation> =
        serde_json::from_str(&std::fs::read_to_string(&ep).map_err(|e| err(&ep, e))?)
            .map_err(|e| err(&ep, e))?;
    let cohort = match cohort {
        Some(c) => {
            let p = c.join("summary.json");
            Some(
                serde_json::from_str(&std::fs::read_to_string(&p).map_err(|e| err(&p, e))?)
                    .map_err(|e| err(&p, e))?,
            )
        }
        None => None,
    };
    let p = scores.join("scores.parquet");
    let f = std::fs::File::open(&p).map_err(|e| err(&p, e))?;
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| err(&p, e))?
        .build()
        .map_err(|e| err(&p, e))?;
    let h = summary.reference_horizon_years as i32;
    // subject -> (time, risks by outcome column)
    let mut latest: HashMap<i64, (i64, Vec<f64>)> = HashMap::new();
    let mut outcomes: Vec<String> = vec![];
    for b in r {
        let b = b.map_err(|e| err(&p, e))?;
        if outcomes.is_empty() {
            let schema = b.schema();
            let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
            outcomes = names
                .iter()
                .filter_map(|n| n.strip_suffix("_risk_logistic").map(String::from))
                .filter(|o| names.iter().any(|n| **n == format!("{o}_risk")))
                .collect();
        }
        let col = |n: &str| {
            b.column_by_name(n)
                .ok_or_else(|| err(&p, format!("no column {n}")))
        };
        let s = col("subject_id")?.as_primitive::<Int64Type>();
        let t = col("prediction_time")?.as_primitive::<TimestampMicrosecondType>();
        let hz = col("horizon_years")?.as_primitive::<Int32Type>();
        let risks: Vec<_> = outcomes
            .iter()
            .map(|o| col(&format!("{o}_risk")).map(|c| c.as_primitive::<Float64Type>().clone()))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            if hz.value(i) != h {
                continue;
            }
            let e = latest.entry(s.value(i)).or_insert((i64::MIN, vec![]));
            if t.value(i) > e.0 {
                *e = (t.value(i), risks.iter().map(|c| c.value(i)).collect());
            }
        }
    }
    let mut latest_risks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (_, (_, r)) in latest {
        for (o, v) in outcomes.iter().zip(r) {
            latest_risks.entry(o.clone()).or_default().push(v);
        }
    }
    Ok(ReportInputs {
        tiers: summary.tiers.clone(),
        summary,
        evaluations,
        cohort,
        latest_risks,
    })
}

const COLORS: [&str; 7] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f",
];

/// One line of a chart, with an optional confidence band: (x, low, high) per point.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    band: Vec<(f64, f64, f64)>,
}

/// Wilson 95 % interval of a proportion `p` observed in `n`.
fn wilson(p: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, z) = (n as f64, 1.96f64);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

/// Width of the legend column right of a chart's plot area (the legend never covers a curve).
const LEGEND_W: f64 = 175.0;

/// An SVG line chart of several series on [0, xmax] x [0, ymax]: bands drawn under their
/// lines, the legend in its own column right of the plot.
fn line_chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    max: (f64, f64),
    diagonal: bool,
) -> String {
    let (pw0, h, m) = (360.0, 300.0, 45.0);
    let (pw, ph) = (pw0 - m - 20.0, h - m - 30.0);
    let w = pw0 + LEGEND_W;
    let x = |v: f64| m + v / max.0 * pw;
    let y = |v: f64| 30.0 + ph - v / max.1 * ph;
    let mut s = format!(
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{title}"><text x="{}" y="18" class="t">{title}</text>"#,
        pw0 / 2.0
    );
    let _ = write!(
        s,
        r##"<rect x="{m}" y="30" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick">{:.2}</text><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{:.2}</text>"#,
            x(f * max.0),
            30.0 + ph + 14.0,
            f * max.0,
            m - 4.0,
            y(f * max.1) + 4.0,
            f * max.1
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" class="lab">{xlabel}</text><text x="12" y="{:.1}" class="lab" transform="rotate(-90 12 {:.1})">{ylabel}</text>"#,
        m + pw / 2.0,
        h - 4.0,
        30.0 + ph / 2.0,
        30.0 + ph / 2.0
    );
    if diagonal {
        let d = max.0.min(max.1);
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 3"/>"##,
            x(0.0),
            y(0.0),
            x(d),
            y(d)
        );
    }
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        if se.band.len() >= 2 {
            let up = se
                .band
                .iter()
                .map(|(a, _, hi)| format!("{:.1},{:.1}", x(a.min(max.0)), y(hi.min(max.1))));
            let down = se
                .band
                .iter()
                .rev()
                .map(|(a, lo, _)| format!("{:.1},{:.1}", x(a.min(max.0)), y(lo.min(max.1))));
            let _ = write!(
                s,
                r#"<polygon class="band" points="{}" fill="{c}" fill-opacity="0.12" stroke="none"/>"#,
                up.chain(down).collect::<Vec<_>>().join(" ")
            );
        }
    }
    let lx = m + pw + 14.0;
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(a.min(max.0)), y(b.min(max.1))))
            .collect();
        let ly = 40.0 + 15.0 * i as f64;
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.8"/><line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2.5"/><text x="{:.1}" y="{ly:.1}" class="leg" fill="{c}">{}</text>"#,
            path.join(" "),
            ly - 4.0,
            lx + 14.0,
            ly - 4.0,
            lx + 18.0,
            se.name
        );
    }
    if series.iter().any(|se| se.band.len() >= 2) {
        let _ = write!(
            s,
            r#"<text x="{lx:.1}" y="{:.1}" class="tick">shaded: 95 % interval</text>"#,
            40.0 + 15.0 * series.len() as f64 + 6.0
        );
    }
    s.push_str("</svg>");
    s
}

/// An SVG histogram of values in [0, 1] (percent axis).
fn histogram(title: &str, values: &[f64], bins: usize) -> String {
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[((v * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, h, m) = (360.0, 220.0, 40.0);
    let (pw, ph) = (w - m - 22.0, h - m - 30.0);
    let bw = pw / bins as f64;
    let mut s = format!(
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{title}"><text x="{}" y="18" class="t">{title}</text>"#,
        w / 2.0
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = *c as f64 / top * ph;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"><title>{}-{}%: {c}</title></rect>"##,
            m + i as f64 * bw,
            30.0 + ph - bh,
            (bw - 1.0).max(0.5),
            bh,
            i * 100 / bins,
            (i + 1) * 100 / bins
        );
    }
    for k in 0..=5 {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick">{}%</text>"#,
            m + k as f64 / 5.0 * pw,
            30.0 + ph + 14.0,
            k * 20
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" class="lab">predicted risk</text><text x="{}" y="44" class="tick" text-anchor="end">max {}</text></svg>"#,
        m + pw / 2.0,
        h - 4.0,
        w - 14.0,
        top
    );
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render(r: &ReportInputs) -> String {
    let mut h = String::new();
    let s = &r.summary;
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ehr-risk report</title><style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}}
h1{{font-size:22px}}h2{{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}}
table{{border-collapse:collapse;font-size:13px;margin:8px 0}}td,th{{border:1px solid #ddd;padding:3px 7px;text-align:right}}
th{{background:#f4f4f4}}td.l,th.l{{text-align:left}}.cards{{display:flex;gap:12px;flex-wrap:wrap}}
.card{{border:1px solid #ddd;border-radius:6px;padding:8px 14px}}.card b{{font-size:20px;display:block}}
.charts{{display:flex;flex-wrap:wrap;gap:8px}}svg .t{{font-size:13px;text-anchor:middle;font-weight:600}}
svg .tick{{font-size:10px;fill:#555}}svg .lab{{font-size:11px;text-anchor:middle}}svg .leg{{font-size:11px}}.few{{color:#aaa}}
</style></head><body><h1>ehr-risk: heart-attack and stroke risk</h1>"#
    );
    // Cohort summary
    let _ = write!(
        h,
        r#"<h2 id="summary">Cohort summary</h2><div class="cards"><div class="card" id="subjects"><b>{}</b>subjects scored</div><div class="card"><b>{}</b>prediction times</div><div class="card"><b>{}</b>explained</div><div class="card" id="worklist"><b>{}</b>on the worklist</div><div class="card"><b>{} years</b>reference horizon</div></div>"#,
        s.subjects, s.prediction_times, s.explained, s.worklist, s.reference_horizon_years
    );
    if let Some(c) = &r.cohort {
        let _ = write!(
            h,
            r#"<p>Task <b>{}</b>: {} subjects, {} prediction times in the cohort; censoring: {}; data end {}.</p><table id="labels"><tr><th class="l">label</th><th>labelled</th><th>positive</th><th>prevalence</th><th>censored</th></tr>"#,
            esc(c["task"].as_str().unwrap_or("")),
            c["subjects"],
            c["prediction_times"],
            esc(c["censoring"].as_str().unwrap_or("")),
            esc(c["data_end"].as_str().unwrap_or(""))
        );
        if let Some(labels) = c["labels"].as_object() {
            for (name, by) in labels {
                let a = &by["all"];
                let _ = write!(
                    h,
                    r#"<tr><td class="l">{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{}</td></tr>"#,
                    esc(name),
                    a["labelled"],
                    a["positive"],
                    a["prevalence"].as_f64().unwrap_or(0.0) * 100.0,
                    a["censored"]
                );
            }
        }
        h.push_str("</table>");
    }
    // Risk distributions and tiers
    let _ = write!(
        h,
        r#"<h2 id="distributions">Risk distributions</h2><p>Each subject's latest prediction time, {}-year calibrated network risk.</p><div class="charts">"#,
        s.reference_horizon_years
    );
    for (o, v) in &r.latest_risks {
        h.push_str(&histogram(
            &format!(
                "{o}: {}-year risk (n={})",
                s.reference_horizon_years,
                v.len()
            ),
            v,
            25,
        ));
    }
    h.push_str(r#"</div><table id="tiers"><tr><th class="l">tier</th><th>subjects</th><th>share</th></tr>"#);
    let all = r.tiers.values().sum::<u64>().max(1) as f64;
    for t in crate::score::TIERS {
        let n = r.tiers.get(t).copied().unwrap_or(0);
        let _ = write!(
            h,
            r#"<tr><td class="l">{t}</td><td>{n}</td><td>{:.1}%</td></tr>"#,
            n as f64 / all * 100.0
        );
    }
    h.push_str("</table>");
    // Model performance
    h.push_str(r#"<h2 id="performance">Discrimination and calibration (held-out split)</h2><table id="models"><tr><th class="l">output</th><th class="l">model</th><th>n</th><th>events</th><th>AUROC (95% CI)</th><th>AUPRC</th><th>Brier</th><th>cal. intercept</th><th>cal. slope</th></tr>"#);
    let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or("-".into());
    for e in &r.evaluations {
        for (model, groups) in &e.models {
            if let Some(m) = groups.get("all") {
                let _ = write!(
                    h,
                    r#"<tr><td class="l">{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>"#,
                    esc(&e.outcome),
                    esc(model),
                    m.n,
                    m.events,
                    m.auroc
                        .map(|a| format!("{:.3} ({:.3}-{:.3})", a.value, a.lo, a.hi))
                        .unwrap_or("-".into()),
                    f(m.auprc.map(|a| a.value)),
                    m.brier,
                    f(m.calibration_intercept),
                    f(m.calibration_slope)
                );
            }
        }
    }
    h.push_str("</table><p>PCE and PREVENT give 10-year ASCVD risk: compare their ranking at other horizons, not their calibration. CHA2DS2-VASc covers people with atrial fibrillation only.</p>");
    for e in &r.evaluations {
        let _ = write!(h, r#"<h3>{}</h3><div class="charts">"#, esc(&e.outcome));
        let roc: Vec<Series> = e
            .models
            .iter()
            .filter_map(|(m, g)| {
                let a = g.get("all")?;
                (!a.roc_curve.is_empty()).then(|| Series {
                    name: format!("{m} {}", f(a.auroc.map(|x| x.value))),
                    points: a.roc_curve.clone(),
                    band: vec![],
                })
            })
            .collect();
        h.push_str(&line_chart(
            &format!("ROC {}", e.outcome),
            "false-positive rate",
            "true-positive rate",
            &roc,
            (1.0, 1.0),
            true,
        ));
        // Each decile's observed rate with its Wilson 95 % interval: how far a curve may wander
        // from the diagonal by chance alone.
        let cal: Vec<Series> = e
            .models
            .iter()
            .filter_map(|(m, g)| {
                let a = g.get("all")?;
                Some(Series {
                    name: m.clone(),
                    points: a.calibration_curve.iter().map(|c| (c.0, c.1)).collect(),
                    band: a
                        .calibration_curve
                        .iter()
                        .map(|c| {
                            let (lo, hi) = wilson(c.1, c.2);
                            (c.0, lo, hi)
                        })
                        .collect(),
                })
            })
            .collect();
        let top = cal
            .iter()
            .flat_map(|se| se.points.iter().flat_map(|(a, b)| [*a, *b]))
            .fold(0.01f64, f64::max)
            .min(1.0);
        h.push_str(&line_chart(
            &format!("Calibration {}", e.outcome),
            "mean predicted risk",
            "observed rate",
            &cal,
            (top, top),
            true,
        ));
        h.push_str("</div>");
    }
    // Censoring-aware calibration: what a risk means (issue 17).
    if r.evaluations.iter().any(|e| !e.censoring_aware.is_empty()) {
        h.push_str(r#"<h2 id="censoring-aware">Risks against what happened (censoring-aware) and against the truth</h2><p>Observed: the inverse-probability-of-censoring weighted cumulative incidence at the horizon (deaths compete, people not followed that long are weighted, never dropped). O/E per decile of predicted risk, lowest first; a decile with fewer than 20 events is in grey; one whose 95 % interval (Poisson on its events) excludes 1 is in bold: miscalibrated beyond what the sampling of its events explains. True: the generator's exact risk (synthetic data only).</p><table id="oe-table"><tr><th class="l">output</th><th class="l">model</th><th>n</th><th>events</th><th>IPCW AUROC</th><th>observed</th><th>expected</th><th>O/E</th><th class="l">O/E by decile</th><th>mean pred / true</th></tr>"#);
        for e in &r.evaluations {
            for (model, c) in &e.censoring_aware {
                // The equations are 10-year risks: held against what happened at 10 years only.
                let ten_year_equation = model.starts_with("pce") || model.starts_with("prevent");
                if ten_year_equation && !e.outcome.ends_with("_10y") {
                    continue;
                }
                let deciles: Vec<String> = c
                    .deciles
                    .iter()
                    .map(|(exp, obs, _, ev)| {
                        // (a weighted rate of no events can come out as -0.0)
                        let oe = if *exp > 0.0 {
                            (obs / exp).max(0.0)
                        } else {
                            f64::NAN
                        };
                        if *ev >= crate::evaluate::DECILE_MIN_EVENTS {
                            if crate::evaluate::censored::beyond_noise(oe, *ev) {
                                format!(r#"<b class="off">{oe:.2}</b>"#)
                            } else {
                                format!("{oe:.2}")
                            }
                        } else {
                            format!(r#"<span class="few">{oe:.2}</span>"#)
                        }
                    })
                    .collect();
                let truth = e
                    .against_truth
                    .get(model)
                    .map(|t| format!("{:.2}", t.ratio))
                    .unwrap_or("-".into());
                let _ = write!(
                    h,
                    r#"<tr><td class="l">{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.2}</td><td class="l">{}</td><td>{truth}</td></tr>"#,
                    esc(&e.outcome),
                    esc(model),
                    c.n,
                    c.events,
                    f(c.auroc),
                    c.observed,
                    c.expected,
                    c.observed_over_expected,
                    deciles.join(" ")
                );
            }
        }
        h.push_str("</table>");
    }
    // Subgroups
    h.push_str(r#"<h2 id="subgroups">Subgroups (AUROC, calibration slope; held-out)</h2><table id="subgroup-table"><tr><th class="l">output</th><th class="l">model</th><th class="l">subgroup</th><th>n</th><th>events</th><th>AUROC</th><th>slope</th></tr>"#);
    for e in &r.evaluations {
        for (model, groups) in &e.models {
            if model != "gru" && model != "logistic" && model != "oracle" {
                continue;
            }
            for (g, m) in groups {
                let _ = write!(
                    h,
                    r#"<tr><td class="l">{}</td><td class="l">{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    esc(&e.outcome),
                    esc(model),
                    esc(g),
                    m.n,
                    m.events,
                    f(m.auroc.map(|a| a.value)),
                    f(m.calibration_slope)
                );
            }
        }
    }
    h.push_str("</table>");
    // Recommendations
    h.push_str(r#"<h2 id="recommendations">Recommendations (latest prediction time per subject)</h2><table id="recommendation-counts"><tr><th class="l">rule</th><th>subjects</th></tr>"#);
    let mut recs: Vec<(&String, &u64)> = s.recommendations.iter().collect();
    recs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (id, n) in recs {
        let _ = write!(h, r#"<tr><td class="l">{}</td><td>{n}</td></tr>"#, esc(id));
    }
    h.push_str("</table><p>Generated by ehr-risk; aggregates only, no patient identifiers.</p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The x coordinates of every `<text class="leg">` and the plot's right edge.
    fn legend_xs(svg: &str) -> Vec<f64> {
        svg.split("<text x=\"")
            .skip(1)
            .filter(|t| t.contains("class=\"leg\""))
            .map(|t| t.split('"').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn legends_sit_beside_the_plot_and_bands_under_the_curves() {
        let s = |name: &str, band| Series {
            name: name.into(),
            points: vec![(0.0, 0.0), (0.5, 0.9), (1.0, 1.0)],
            band,
        };
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[
                s(
                    "gru",
                    vec![(0.0, 0.0, 0.1), (0.5, 0.8, 1.0), (1.0, 0.9, 1.0)],
                ),
                s("logistic", vec![]),
            ],
            (1.0, 1.0),
            true,
        );
        // The plot spans x in [45, 45 + 295]: every legend entry starts right of it.
        let xs = legend_xs(&svg);
        assert_eq!(xs.len(), 2);
        assert!(xs.iter().all(|x| *x > 45.0 + 295.0), "{xs:?}");
        assert_eq!(svg.matches("class=\"band\"").count(), 1);
        assert!(
            svg.find("class=\"band\"") < svg.find("<polyline"),
            "band under the lines"
        );
        assert!(svg.contains("95 % interval"));
    }

    #[test]
    fn wilson_interval_covers_the_rate_and_narrows_with_n() {
        let (lo, hi) = wilson(0.1, 100);
        assert!(lo < 0.1 && 0.1 < hi);
        let (lo2, hi2) = wilson(0.1, 10_000);
        assert!(hi2 - lo2 < (hi - lo) / 5.0);
        assert_eq!(wilson(0.0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0.0, 50);
        assert_eq!(lo, 0.0);
    }
}
