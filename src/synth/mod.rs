//! The synthetic cohort: `ehr-risk synth --patients N --seed S --out DIR`. In: a size, a seed and
//! defect rates. Out: the same population fragmented across three exports (FHIR Bulk NDJSON,
//! OMOP CSV, Synthea CSV, see [`export`]), the ground-truth risk of every person at yearly
//! anchors (`truth/risk.parquet`) and a manifest of exactly what was written, defects included.
//! People are simulated in parallel in fixed-size chunks and written in index order, so the
//! output is the same bytes for the same seed and memory stays bounded by a few chunks.

pub mod export;
pub mod identity;
pub use crate::rng;
pub mod sim;

use crate::schema::subject_id_for;
use arrow::array::{
    Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use export::{DefectRates, FILES, Out};
use parquet::arrow::ArrowWriter;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sim::{MONTHS, Person, START_YEAR, SimOptions, micros, month_start};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    Parquet { path: PathBuf, err: String },
    #[error("invalid option: {0}")]
    Invalid(String),
}

/// Generator settings (validated by [`SynthOptions::check`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SynthOptions {
    pub patients: u64,
    pub seed: u64,
    pub defects: DefectRates,
    /// Probability that a visit is also recorded, identically, in a second export.
    pub duplicate_rate: f64,
    /// People per parallel chunk.
    pub chunk: u64,
    /// One patient id shared by every site, or each site's own MRNs and identity facts.
    #[serde(default)]
    pub identities: identity::Identities,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            patients: 2000,
            seed: 42,
            defects: DefectRates::default(),
            duplicate_rate: 0.05,
            chunk: 2000,
            identities: identity::Identities::Shared,
        }
    }
}

impl SynthOptions {
    pub fn check(&self) -> Result<(), SynthError> {
        let rates = [
            ("duplicate_rate", self.duplicate_rate),
            ("malformed_json", self.defects.malformed_json),
            ("unknown_unit", self.defects.unknown_unit),
            ("unknown_patient", self.defects.unknown_patient),
            ("future_event", self.defects.future_event),
            ("bad_date", self.defects.bad_date),
            ("implausible_value", self.defects.implausible_value),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                return Err(SynthError::Invalid(format!(
                    "{name} = {r}: a rate must be between 0 and 1"
                )));
            }
        }
        if let identity::Identities::Sites { national_id } = self.identities
            && !(0.0..=1.0).contains(&national_id)
        {
            return Err(SynthError::Invalid(format!(
                "national_id = {national_id}: a rate must be between 0 and 1"
            )));
        }
        if self.patients == 0 || self.chunk == 0 {
            return Err(SynthError::Invalid(
                "patients and chunk must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Prediction anchors of the ground truth: 1 January of 2011..=2021, horizons 1, 5 and 10 years
/// that end inside the generated window (which ends 2022-01-01).
pub fn anchors() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for year in 2011..=2021 {
        let m = ((year - START_YEAR) * 12) as u32;
        for h in [1u32, 5, 10] {
            if m + 12 * h <= MONTHS {
                v.push((m, h));
            }
        }
    }
    v
}

/// What was written, for tests and users: people per export, rows per file, defects per kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SynthManifest {
    pub generator: String,
    pub options: SynthOptions,
    pub people: u64,
    pub people_in: BTreeMap<String, u64>,
    pub rows: BTreeMap<String, u64>,
    /// Defect kind -> (file, rows written). The kind is the quarantine reason ingest must give.
    pub defects: BTreeMap<String, (String, u64)>,
    pub visits_copied_to_a_second_export: u64,
    pub mi_events: u64,
    pub stroke_events: u64,
    pub deaths: u64,
    pub truth_rows: u64,
    pub window: (String, String),
}

fn truth_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("subject_id", DataType::Int64, false),
        Field::new(
            "prediction_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("horizon_years", DataType::Int32, false),
        Field::new("p_mi", DataType::Float64, false),
        Field::new("p_stroke", DataType::Float64, false),
        Field::new("p_ascvd", DataType::Float64, false),
    ]))
}

/// Ground-truth rows of one person.
pub fn truth_rows(p: &Person) -> Vec<(i64, i32, TrueRisk)> {
    anchors()
        .into_iter()
        .filter_map(|(m, h)| {
            p.truth(m, 12 * h)
                .map(|r| (micros(month_start(m)), h as i32, r))
        })
        .collect()
}

struct ChunkResult {
    out: Out,
    truth: Option<RecordBatch>,
    people_in: [u64; 3],
    mi: u64,
    stroke: u64,
    deaths: u64,
}

fn chunk(opts: &SynthOptions, lo: u64, hi: u64) -> ChunkResult {
    let sim = SimOptions {
        duplicate_rate: opts.duplicate_rate,
    };
    let mut out = Out::new();
    let (mut ids, mut sids, mut times, mut hs) = (vec![], vec![], vec![], vec![]);
    let (mut pm, mut ps, mut pa) = (vec![], vec![], vec![]);
    let mut people_in = [0u64; 3];
    let (mut mi, mut stroke, mut deaths) = (0, 0, 0);
    for i in lo..hi {
        let p = Person::simulate(opts.seed, i, &sim);
        export::write_person(&p, opts.seed, &opts.defects, opts.identities, &mut out);
        people_in[0] += p.in_fhir as u64;
        people_in[1] += p.in_omop as u64;
        people_in[2] += p.in_synthea as u64;
        mi += p.mi.len() as u64;
        stroke += p.strokes.len() as u64;
        deaths += p.death.is_some() as u64;
        let sid = subject_id_for(crate::ingest::fhir::PATIENT_ID_SYSTEM, &p.uuid);
        for (t, h, r) in truth_rows(&p) {
            ids.push(p.uuid.clone());
            sids.push(sid);
            times.push(t);
            hs.push(h);
            pm.push(r.mi);
            ps.push(r.stroke);
            pa.push(r.ascvd);
        }
    }
    let truth = (!ids.is_empty()).then(|| {
        RecordBatch::try_new(
            truth_schema(),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from(sids)),
                Arc::new(TimestampMicrosecondArray::from(times)),
                Arc::new(Int32Array::from(hs)),
                Arc::new(Float64Array::from(pm)),
                Arc::new(Float64Array::from(ps)),
                Arc::new(Float64Array::from(pa)),
            ],
        )
        .expect("schema matches")
    });
    ChunkResult {
        out,
        truth,
        people_in,
        mi,
        stroke,
        deaths,
    }
}

/// Generate the population into `dir` (created; existing generated files are replaced).
pub fn run(
    dir: &Path,
    opts: &SynthOptions,
    progress: &dyn Fn(u64),
) -> Result<SynthManifest, SynthError> {
    opts.check()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err| SynthError::Io { path, err }
    };
    let mut handles = Vec::new();
    for (rel, header) in FILES {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("has parent")).map_err(io(&p))?;
        let f = std::fs::File::create(&p).map_err(io(&p))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        if let Some(h) = export::header(rel, header, opts.identities) {
            writeln!(w, "{h}").map_err(io(&p))?;
        }
        handles.push((p, w));
    }
    // Per-site identities: the clinic's locations and who is who.
    let mut extra = Vec::new();
    if opts.identities != identity::Identities::Shared {
        for (rel, h) in [export::LOCATION_FILE, export::IDENTITY_TRUTH_FILE] {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("has parent")).map_err(io(&p))?;
            let f = std::fs::File::create(&p).map_err(io(&p))?;
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "{h}").map_err(io(&p))?;
            extra.push((p, w));
        }
    }
    let concept = dir.join("clinic_omop/concept.csv");
    std::fs::write(&concept, export::omop_concepts()).map_err(io(&concept))?;
    let tp = dir.join("truth/risk.parquet");
    std::fs::create_dir_all(tp.parent().expect("has parent")).map_err(io(&tp))?;
    let tf = std::fs::File::create(&tp).map_err(io(&tp))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_created_by(format!("ehr-risk {}", env!("CARGO_PKG_VERSION")))
        .build();
    let perr = |e: parquet::errors::ParquetError| SynthError::Parquet {
        path: tp.clone(),
        err: e.to_string(),
    };
    let mut truth = ArrowWriter::try_new(tf, truth_schema(), Some(props)).map_err(perr)?;

    let mut m = SynthManifest {
        generator: format!("ehr-risk {} synth", env!("CARGO_PKG_VERSION")),
        options: opts.clone(),
        people: opts.patients,
        people_in: BTreeMap::new(),
        rows: BTreeMap::new(),
        defects: export::DEFECT_FILES
            .iter()
            .map(|(k, f)| (k.to_string(), (f.to_string(), 0)))
            .collect(),
        visits_copied_to_a_second_export: 0,
        mi_events: 0,
        stroke_events: 0,
        deaths: 0,
        truth_rows: 0,
        window: (month_start(0).to_string(), month_start(MONTHS).to_string()),
    };
    let mut people_in = [0u64; 3];
    let mut rows = vec![0u64; FILES.len()];
    let chunks: Vec<(u64, u64)> = (0..opts.patients.div_ceil(opts.chunk))
        .map(|c| (c * opts.chunk, ((c + 1) * opts.chunk).min(opts.patients)))
        .collect();
    let batch = rayon::current_num_threads() * 2;
    for group in chunks.chunks(batch) {
        let results: Vec<ChunkResult> = group
            .par_iter()
            .map(|&(lo, hi)| chunk(opts, lo, hi))
            .collect();
        for (res, &(_, hi)) in results.into_iter().zip(group) {
            for (i, text) in res.out.files.iter().enumerate() {
                let (p, w) = &mut handles[i];
                w.write_all(text.as_bytes()).map_err(io(p))?;
                rows[i] += res.out.rows[i];
            }
            if let [(lp, lw), (tp, tw)] = &mut extra[..] {
                lw.write_all(res.out.locations.as_bytes()).map_err(io(lp))?;
                tw.write_all(res.out.identity_truth.as_bytes())
                    .map_err(io(tp))?;
            }
            for (k, n) in &res.out.defects {
                m.defects.get_mut(k).expect("known defect kind").1 += n;
            }
            m.visits_copied_to_a_second_export += res.out.copies;
            for (a, b) in people_in.iter_mut().zip(res.people_in) {
                *a += b;
            }
            m.mi_events += res.mi;
            m.stroke_events += res.stroke;
            m.deaths += res.deaths;
            if let Some(t) = res.truth {
                m.truth_rows += t.num_rows() as u64;
                truth.write(&t).map_err(perr)?;
            }
            progress(hi);
        }
    }
    for (p, mut w) in handles.into_iter().chain(extra) {
        w.flush().map_err(io(&p))?;
    }
    truth.close().map_err(perr)?;
    m.people_in = [
        ("fhir", people_in[0]),
        ("omop", people_in[1]),
        ("synthea", people_in[2]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    m.rows = FILES
        .iter()
        .zip(rows)
        .map(|((f, _), n)| (f.to_string(), n))
        .collect();
    let mp = dir.join("synth_manifest.json");
    std::fs::write(&mp, serde_json::to_string_pretty(&m).expect("json")).map_err(io(&mp))?;
    Ok(m)
}

/// The generator's exact risks of one prediction time and horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueRisk {
    pub mi: f64,
    pub stroke: f64,
    /// At least one MI or stroke: the composite the ASCVD equations (PCE, PREVENT) predict.
    pub ascvd: f64,
}

impl TrueRisk {
    /// The true risk of a task outcome by name (`mi`, `stroke`, `ascvd`).
    pub fn of(&self, outcome: &str) -> Option<f64> {
        match outcome {
            "mi" => Some(self.mi),
            "stroke" => Some(self.stroke),
            "ascvd" => Some(self.ascvd),
            _ => None,
        }
    }
}

/// Ground truth: (lake subject id, prediction time, horizon years) -> true risks.
pub type Truth = std::collections::HashMap<(i64, i64, i32), TrueRisk>;

/// Read `truth/risk.parquet`.
pub fn read_truth(path: &Path) -> Result<Truth, SynthError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let perr = |e: &dyn std::fmt::Display| SynthError::Parquet {
        path: path.to_path_buf(),
        err: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(|err| SynthError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let mut out = std::collections::HashMap::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| perr(&e))?
        .build()
        .map_err(|e| perr(&e))?
    {
        let b = b.map_err(|e| perr(&e))?;
        if b.num_columns() != truth_schema().fields().len() {
            return Err(perr(&format!(
                "{} columns, expected {} ({}): written by an older synth? re-run it",
                b.num_columns(),
                truth_schema().fields().len(),
                truth_schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let col = |i: usize| b.column(i).clone();
        let (s, t, h, a, c, j) = (col(1), col(2), col(3), col(4), col(5), col(6));
        let s = s
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| perr(&"subject_id"))?;
        let t = t
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| perr(&"prediction_time"))?;
        let h = h
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(|| perr(&"horizon_years"))?;
        let a = a
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| perr(&"p_mi"))?;
        let c = c
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| perr(&"p_stroke"))?;
        let j = j
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| perr(&"p_ascvd"))?;
        for i in 0..b.num_rows() {
            out.insert(
                (s.value(i), t.value(i), h.value(i)),
                TrueRisk {
                    mi: a.value(i),
                    stroke: c.value(i),
                    ascvd: j.value(i),
                },
            );
        }
    }
    Ok(out)
}
