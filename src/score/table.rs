//! The scores table. In: assessed rows of one shard with their risks at every horizon and the
//! clinical equations. Out: a record batch long by horizon (`scores.parquet`, and the same rows
//! as CSV with list columns joined by " | "): the network's and the baseline's risk per outcome,
//! the equations (or why each does not apply), the tier, the top factors (treatments marked as
//! markers of known disease), the recommendations with the trials' what-if, and, for analysts,
//! the network's own response to each change, labelled as association.

use super::assess::{Assessment, describe, describe_association, reasons};
use crate::model::bundle::{Model, RowRisks};
use crate::model::data::Dataset;
use crate::model::equations::EquationRisks;
use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::sync::Arc;

pub fn schema(model: &Model) -> Arc<Schema> {
    let mut f = vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new(
            "prediction_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("split", DataType::Utf8, false),
        Field::new("horizon_years", DataType::Int32, false),
    ];
    for o in &model.manifest.outcomes {
        f.push(Field::new(format!("{o}_risk"), DataType::Float64, false));
        f.push(Field::new(
            format!("{o}_risk_logistic"),
            DataType::Float64,
            false,
        ));
    }
    for c in [
        "pce_ascvd_10y",
        "prevent_ascvd_10y",
        "prevent_cvd_10y",
        "cha2ds2vasc_stroke_risk",
    ] {
        f.push(Field::new(c, DataType::Float64, true));
    }
    f.push(Field::new("cha2ds2vasc_score", DataType::Int32, true));
    f.push(Field::new("equations_not_applicable", DataType::Utf8, true));
    f.push(Field::new("tier", DataType::Utf8, false));
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    f.push(Field::new("top_factors", list(), false));
    f.push(Field::new("recommendation_ids", list(), false));
    f.push(Field::new("recommendations", list(), false));
    f.push(Field::new("what_if_model_association", list(), false));
    Arc::new(Schema::new(f))
}

/// The scores of rows of `d` (long by horizon).
pub fn batch(
    model: &Model,
    d: &Dataset,
    risks: &[RowRisks],
    eqs: &[EquationRisks],
    assessments: &[Assessment],
    top: usize,
) -> RecordBatch {
    let m = &model.manifest;
    let nh = m.horizons_years.len();
    let (mut sid, mut pt, mut sp, mut hz) = (vec![], vec![], vec![], vec![]);
    let mut per_outcome: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); m.outcomes.len()];
    let (mut pce, mut pa, mut pc, mut cr, mut cs, mut why, mut tiers) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut f_b = ListBuilder::new(StringBuilder::new());
    let mut id_b = ListBuilder::new(StringBuilder::new());
    let mut rec_b = ListBuilder::new(StringBuilder::new());
    let mut assoc_b = ListBuilder::new(StringBuilder::new());
    for r in 0..d.len() {
        let a = &assessments[r];
        let factor_lines: Vec<String> = a
            .factors
            .iter()
            .flat_map(|(o, fs)| {
                fs.iter()
                    .take(top)
                    .map(move |f| format!("{o}: {}", f.line()))
            })
            .collect();
        let rec_lines: Vec<String> = a.recommendations.iter().map(describe).collect();
        let assoc_lines: Vec<String> = a
            .recommendations
            .iter()
            .filter_map(describe_association)
            .collect();
        for (hi, h) in m.horizons_years.iter().enumerate() {
            sid.push(d.keys[r].0);
            pt.push(d.keys[r].1);
            sp.push(d.split[r].clone());
            hz.push(*h as i32);
            for (oi, v) in per_outcome.iter_mut().enumerate() {
                v.0.push(risks[r].gru[oi * nh + hi]);
                v.1.push(risks[r].logistic[oi * nh + hi]);
            }
            let e = &eqs[r];
            pce.push(e.pce_ascvd_10y.clone().ok());
            pa.push(e.prevent_ascvd_10y.clone().ok());
            pc.push(e.prevent_cvd_10y.clone().ok());
            cr.push(
                e.cha2ds2vasc
                    .as_ref()
                    .ok()
                    .map(|(_, rate)| 1.0 - (1.0 - rate).powi(*h as i32)),
            );
            cs.push(e.cha2ds2vasc.as_ref().ok().map(|(s, _)| *s as i32));
            why.push(reasons(e));
            tiers.push(a.tier);
            f_b.append_value(factor_lines.iter().map(Some));
            id_b.append_value(a.recommendations.iter().map(|x| Some(x.id.as_str())));
            rec_b.append_value(rec_lines.iter().map(Some));
            assoc_b.append_value(assoc_lines.iter().map(Some));
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(sid)),
        Arc::new(TimestampMicrosecondArray::from(pt)),
        Arc::new(StringArray::from(sp)),
        Arc::new(Int32Array::from(hz)),
    ];
    for (g, l) in per_outcome {
        cols.push(Arc::new(Float64Array::from(g)));
        cols.push(Arc::new(Float64Array::from(l)));
    }
    for c in [pce, pa, pc, cr] {
        cols.push(Arc::new(Float64Array::from(c)));
    }
    cols.push(Arc::new(Int32Array::from(cs)));
    cols.push(Arc::new(StringArray::from(why)));
    cols.push(Arc::new(StringArray::from(tiers)));
    cols.push(Arc::new(f_b.finish()));
    cols.push(Arc::new(id_b.finish()));
    cols.push(Arc::new(rec_b.finish()));
    cols.push(Arc::new(assoc_b.finish()));
    RecordBatch::try_new(schema(model), cols).expect("columns match the schema")
}

/// The rows of the scores as CSV: list columns joined with " | ".
pub fn write_csv<W: std::io::Write>(w: &mut csv::Writer<W>, b: &RecordBatch) -> Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("");
    let fmts: Vec<Option<ArrayFormatter>> = b
        .columns()
        .iter()
        .map(|c| {
            (!matches!(c.data_type(), DataType::List(_)))
                .then(|| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
        })
        .collect();
    for i in 0..b.num_rows() {
        let mut rec = Vec::with_capacity(b.num_columns());
        for (c, f) in b.columns().iter().zip(&fmts) {
            rec.push(match f {
                Some(f) => f.value(i).to_string(),
                None => {
                    let l = c.as_list::<i32>().value(i);
                    let s = l.as_string::<i32>();
                    (0..s.len())
                        .map(|k| s.value(k).to_string())
                        .collect::<Vec<_>>()
                        .join(" | ")
                }
            });
        }
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    Ok(())
}
