//! A trained model as a self-describing directory. In: a features folder, its cohort's labels,
//! the task and a [`GruConfig`]. Out (`train`): a directory with `weights.safetensors`,
//! `config.json`, `vocab.parquet` + `norm.parquet` (the sequence vocabulary and value
//! normalisation, copied from the features), `tabular_norm.json`, `calibration.json` (the
//! hazard scaling per cause, fitted on the tuning split's time-to-event likelihood),
//! `logistic.json` (the baseline per output),
//! `metrics.json` (training history and tuning metrics) and `model.json` (format, versions,
//! task and feature-spec hashes, training-data fingerprint, weights hash and a BLAKE3 checksum of
//! every other file). `Model::load` verifies every checksum and `check_features` refuses a
//! features folder built for another task, spec, column set or vocabulary.

use super::data::{self, Dataset};
use super::gru::{self, EpochLog, GruConfig, GruNet, TabNorm};
use super::logistic::{LogisticModel, LogisticParams};
use crate::cohort::spec::Task;
use crate::evaluate::metrics::{auroc, brier};
use crate::features::FeatureManifest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, nn};

/// 2: a discrete-time competing-risks network (hazard heads per yearly interval).
pub const FORMAT: u32 = 2;
/// Every file of a model directory besides `model.json` (which holds their checksums).
pub const MODEL_FILES: [&str; 8] = [
    "weights.safetensors",
    "config.json",
    "vocab.parquet",
    "norm.parquet",
    "tabular_norm.json",
    "calibration.json",
    "logistic.json",
    "metrics.json",
];
/// The libtorch the crate is built against (tch 0.26).
pub const LIBTORCH: &str = "2.13.0";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("model directory {dir} is corrupted: {message}")]
    Corrupt { dir: String, message: String },
    #[error("model {dir} does not fit these features: {message}")]
    Mismatch { dir: String, message: String },
    #[error(transparent)]
    Train(#[from] super::gru::TrainError),
    #[error(transparent)]
    Config(#[from] super::gru::GruConfigError),
    #[error(transparent)]
    Logistic(#[from] super::logistic::LogisticError),
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    #[error(transparent)]
    Cohort(#[from] crate::cohort::CohortError),
}

fn io_err(p: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelManifest {
    pub format: u32,
    pub ehr_risk_version: String,
    pub libtorch: String,
    pub task: String,
    pub task_hash: String,
    pub feature_spec_hash: String,
    pub lake_fingerprint: String,
    /// BLAKE3 over the features manifest and the label counts the model was trained on.
    pub training_data_fingerprint: String,
    pub vocab_hash: String,
    pub columns: Vec<String>,
    pub outcomes: Vec<String>,
    pub horizons_years: Vec<u32>,
    /// Yearly hazard intervals of the network (the longest horizon).
    pub intervals: usize,
    /// Output order of the network and of every per-output file: `<outcome>_<h>y`.
    pub outputs: Vec<String>,
    pub vocab_size: i64,
    pub weights_hash: String,
    pub best_epoch: usize,
    pub train_rows: usize,
    pub tuning_rows: usize,
    /// file name -> BLAKE3 of its bytes (every file but model.json).
    pub files: BTreeMap<String, String>,
}

/// Hazard scaling per cause (the outcomes, then death): every interval's logit becomes
/// `a + b * logit` before the cumulative incidence is taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    pub method: String,
    pub fitted_on: String,
    pub hazard_scale: Vec<(f64, f64)>,
    /// Tuning mean negative log-likelihood before and after.
    pub tuning_nll: (f64, f64),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputMetrics {
    pub output: String,
    pub tuning_n: usize,
    pub tuning_events: usize,
    pub gru_auroc: Option<f64>,
    pub gru_brier: f64,
    pub logistic_auroc: Option<f64>,
    pub logistic_brier: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainMetrics {
    pub epochs: Vec<EpochLog>,
    pub best_epoch: usize,
    pub outputs: Vec<OutputMetrics>,
    pub seconds: f64,
}

fn blake3_file(p: &Path) -> Result<String, ModelError> {
    let b = std::fs::read(p).map_err(|e| io_err(p, e))?;
    Ok(blake3::hash(&b).to_hex().to_string())
}

pub fn read_feature_manifest(features: &Path) -> Result<FeatureManifest, ModelError> {
    let p = features.join("manifest.json");
    let s = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
    serde_json::from_str(&s).map_err(|e| io_err(&p, e))
}

/// Output names of a task: `<outcome>_<h>y`, outcome-major.
pub fn output_names(task: &Task) -> Vec<String> {
    task.outcomes
        .iter()
        .flat_map(|o| {
            task.spec
                .window
                .horizons_years
                .iter()
                .map(move |h| format!("{}_{h}y", o.name))
        })
        .collect()
}

/// Deterministic keep-with-probability for sampling rows.
fn keep_sample(s: i64, t: i64, seed: u64, p: f64) -> bool {
    if p >= 1.0 {
        return true;
    }
    let mut h = blake3::Hasher::new();
    h.update(&s.to_le_bytes());
    h.update(&t.to_le_bytes());
    h.update(&seed.to_le_bytes());
    let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    (v as f64 / u64::MAX as f64) < p
}

/// Train rows and tuning rows of a features folder with their time to event.
pub fn training_data(
    features: &Path,
    cohort: &Path,
    task: &Task,
    columns: &[String],
    rows_total: u64,
    cfg: &GruConfig,
) -> Result<(Dataset, Dataset), ModelError> {
    let cap = |max: usize, share: f64| {
        if max == 0 {
            1.0
        } else {
            max as f64 / (rows_total as f64 * share).max(1.0)
        }
    };
    let (pt, pu) = (cap(cfg.max_train_rows, 0.8), cap(cfg.max_tuning_rows, 0.1));
    let seed = cfg.seed;
    let keep = move |s: i64, t: i64, sp: &str| match sp {
        "train" => keep_sample(s, t, seed, pt),
        "tuning" => keep_sample(s, t, seed, pu),
        _ => false,
    };
    let all = data::read_all(features, columns, &keep)?;
    let outcomes: Vec<String> = task.outcomes.iter().map(|o| o.name.clone()).collect();
    let survival = crate::cohort::read_survival(cohort, &outcomes)?;
    let (tr_rows, tu_rows): (Vec<usize>, Vec<usize>) =
        (0..all.len()).partition(|&r| all.split[r] == "train");
    let mut tr = all.select(&tr_rows);
    let mut tu = all.select(&tu_rows);
    let h = &task.spec.window.horizons_years;
    for d in [&mut tr, &mut tu] {
        d.attach_survival(&survival, outcomes.len(), h, intervals(h));
    }
    Ok((tr, tu))
}

/// The network's yearly intervals: up to the longest horizon.
pub fn intervals(horizons: &[u32]) -> usize {
    horizons.iter().copied().max().unwrap_or(1) as usize
}

/// Rows of `d` labelled for output j: (tabular rows, labels, logits or None).
fn labelled(d: &Dataset, j: usize) -> Vec<usize> {
    (0..d.len())
        .filter(|r| d.mask[r * d.n_out + j] > 0.0)
        .collect()
}

/// What a training run produced.
pub struct Trained {
    pub manifest: ModelManifest,
    pub metrics: TrainMetrics,
}

/// Train the network, calibrate it, fit the baseline and write the model directory.
pub fn train(
    features: &Path,
    cohort: &Path,
    task: &Task,
    cfg: GruConfig,
    out: &Path,
    progress: &mut dyn FnMut(&EpochLog),
) -> Result<Trained, ModelError> {
    let started = std::time::Instant::now();
    let fm = read_feature_manifest(features)?;
    if fm.task_hash != task.hash {
        return Err(ModelError::Mismatch {
            dir: features.display().to_string(),
            message: format!(
                "features were built for task {} ({}), not {} ({})",
                fm.task, fm.task_hash, task.spec.name, task.hash
            ),
        });
    }
    cfg.validate()?;
    // The cohort must be the one the features were built from (same lake, same task).
    crate::cohort::check_made_from(cohort, &fm.lake_fingerprint, &fm.task_hash)?;
    let device = cfg.device()?;
    let outputs = output_names(task);
    let (tr, tu) = training_data(features, cohort, task, &fm.columns, fm.rows, &cfg)?;
    tracing::info!(train = tr.len(), tuning = tu.len(), "training rows loaded");
    let norm = TabNorm::fit(&tr, &fm.columns);
    let horizons = task.spec.window.horizons_years.clone();
    let (vs, net, (epochs, best_epoch)) = gru::seeded(cfg.seed, cfg.threads, |lock| {
        let mut vs = nn::VarStore::new(device);
        let net = GruNet::new(
            lock,
            &vs.root(),
            &cfg,
            fm.vocab_size as i64,
            fm.columns.len() as i64,
            task.outcomes.len(),
            intervals(&horizons) as i64,
        );
        let r = gru::train(&mut vs, &net, &cfg, &tr, &tu, &norm, &horizons, progress);
        r.map(|r| (vs, net, r))
    })?;
    // The baseline hazards where the training split's events put them, given the network's
    // ranking; then recalibration (time to event, tuning split) and the baseline, per output.
    let logits_tr = gru::predict_logits(&net, &tr, &norm, device, 1024);
    let shift = gru::interval_shift(&tr, &logits_tr, 400);
    drop(logits_tr);
    tracing::info!(
        ?shift,
        "training split's baseline hazards against the network's"
    );
    net.shift_hazards(&shift);
    let logits = gru::predict_logits(&net, &tu, &norm, device, 1024);
    let n_outcomes = task.outcomes.len();
    let identity = gru::identity_scale(n_outcomes + 1);
    let scale = gru::fit_scale(&tu, &logits, 500, &gru::cause_events(&tr));
    let tuning_nll = (
        gru::mean_nll(&tu, &logits, &identity),
        gru::mean_nll(&tu, &logits, &scale),
    );
    let risks = gru::predict_risks(&logits, tu.len(), &scale, n_outcomes, &horizons);
    use rayon::prelude::*;
    let fitted: Vec<LogisticModel> = outputs
        .par_iter()
        .enumerate()
        .map(|(j, name)| {
            let trows = labelled(&tr, j);
            let tx: Vec<Vec<f32>> = trows.iter().map(|&r| tr.tab_row(r).to_vec()).collect();
            let ty: Vec<bool> = trows
                .iter()
                .map(|r| tr.labels[r * tr.n_out + j] > 0.5)
                .collect();
            // Each known status weighted by its inverse probability of censoring: the risk
            // without censoring, as the network's cumulative incidence is.
            let tw: Vec<f64> = trows.iter().map(|r| tr.ipcw[r * tr.n_out + j]).collect();
            let hashes = (fm.feature_spec_hash.as_str(), fm.task_hash.as_str());
            let p = LogisticParams::default();
            let has = |c: bool| ty.iter().zip(&tw).any(|(y, w)| *y == c && *w > 0.0);
            if !has(true) || !has(false) {
                tracing::warn!(output = %name, rows = ty.len(), "one class only: intercept-only baseline");
                return Ok(LogisticModel::constant(name, &fm.columns, &ty, &tw, p, hashes));
            }
            LogisticModel::fit(name, &fm.columns, &tx, &ty, &tw, p, hashes)
        })
        .collect::<Result<_, _>>()?;
    let mut logistic = Vec::new();
    let mut out_metrics = Vec::new();
    for (j, name) in outputs.iter().enumerate() {
        let rows = labelled(&tu, j);
        let y: Vec<bool> = rows
            .iter()
            .map(|r| tu.labels[r * tu.n_out + j] > 0.5)
            .collect();
        let cal: Vec<f64> = rows
            .iter()
            .map(|r| risks[r * tu.n_out + j] as f64)
            .collect();
        let lm = &fitted[j];
        let lp = lm.predict(
            &rows
                .iter()
                .map(|&r| tu.tab_row(r).to_vec())
                .collect::<Vec<_>>(),
        );
        out_metrics.push(OutputMetrics {
            output: name.clone(),
            tuning_n: rows.len(),
            tuning_events: y.iter().filter(|v| **v).count(),
            gru_auroc: auroc(&cal, &y),
            gru_brier: brier(&cal, &y),
            logistic_auroc: auroc(&lp, &y),
            logistic_brier: brier(&lp, &y),
        });
        logistic.push(lm.clone());
    }
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let write_json = |name: &str, v: &dyn erased::Json| -> Result<(), ModelError> {
        let p = out.join(name);
        std::fs::write(&p, v.json()).map_err(|e| io_err(&p, e))
    };
    vs.save(out.join("weights.safetensors"))
        .map_err(|e| io_err(&out.join("weights.safetensors"), e))?;
    for f in ["vocab.parquet", "norm.parquet"] {
        std::fs::copy(features.join(f), out.join(f)).map_err(|e| io_err(&features.join(f), e))?;
    }
    let metrics = TrainMetrics {
        epochs,
        best_epoch,
        outputs: out_metrics,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_json("config.json", &cfg)?;
    write_json("tabular_norm.json", &norm)?;
    write_json(
        "calibration.json",
        &Calibration {
            method: "hazard_scaling".into(),
            fitted_on: "tuning".into(),
            hazard_scale: scale,
            tuning_nll,
        },
    )?;
    write_json("logistic.json", &logistic)?;
    write_json("metrics.json", &metrics)?;
    let mut files = BTreeMap::new();
    for f in MODEL_FILES {
        files.insert(f.to_string(), blake3_file(&out.join(f))?);
    }
    let label_counts: Vec<(usize, usize)> = (0..tr.n_out)
        .map(|j| (labelled(&tr, j).len(), labelled(&tu, j).len()))
        .collect();
    let fingerprint = blake3::hash(
        format!(
            "{}|{label_counts:?}",
            serde_json::to_string(&fm).expect("json")
        )
        .as_bytes(),
    )
    .to_hex()
    .to_string();
    let manifest = ModelManifest {
        format: FORMAT,
        ehr_risk_version: env!("CARGO_PKG_VERSION").into(),
        libtorch: LIBTORCH.into(),
        task: fm.task.clone(),
        task_hash: fm.task_hash.clone(),
        feature_spec_hash: fm.feature_spec_hash.clone(),
        lake_fingerprint: fm.lake_fingerprint.clone(),
        training_data_fingerprint: fingerprint,
        vocab_hash: files["vocab.parquet"].clone(),
        columns: fm.columns.clone(),
        outcomes: task.outcomes.iter().map(|o| o.name.clone()).collect(),
        intervals: intervals(&horizons),
        horizons_years: horizons,
        outputs,
        vocab_size: fm.vocab_size as i64,
        weights_hash: gru::weights_hash(&vs),
        best_epoch,
        train_rows: tr.len(),
        tuning_rows: tu.len(),
        files,
    };
    write_json("model.json", &manifest)?;
    Ok(Trained { manifest, metrics })
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string_pretty(self).expect("serialisable")
        }
    }
}

/// A loaded, verified model.
pub struct Model {
    pub dir: PathBuf,
    pub manifest: ModelManifest,
    pub config: GruConfig,
    pub vs: nn::VarStore,
    pub net: GruNet,
    pub norm: TabNorm,
    pub calibration: Calibration,
    pub logistic: Vec<LogisticModel>,
    pub device: Device,
    /// Sequence vocabulary (code -> id) and value normalisation (code -> mean, std).
    pub vocab: HashMap<String, i32>,
    pub value_norm: HashMap<String, (f32, f32)>,
}

/// Read a per-code table (`code` then numeric columns) of a model directory.
fn read_code_table(p: &Path) -> Result<Vec<(String, Vec<f64>)>, String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float32Type, Int32Type};
    let f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in r {
        let b = b.map_err(|e| e.to_string())?;
        let codes = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or("code column is not text")?;
        for i in 0..b.num_rows() {
            let mut v = Vec::new();
            for c in b.columns().iter().skip(1) {
                if let Some(x) = c.as_primitive_opt::<Int32Type>() {
                    v.push(x.value(i) as f64);
                } else if let Some(x) = c.as_primitive_opt::<Float32Type>() {
                    v.push(x.value(i) as f64);
                } else {
                    return Err(format!("column type {} unexpected", c.data_type()));
                }
            }
            let _ = codes.is_null(i);
            out.push((codes.value(i).to_string(), v));
        }
    }
    Ok(out)
}

/// Risks for one row: calibrated network and baseline per output.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRisks {
    pub gru: Vec<f64>,
    pub logistic: Vec<f64>,
}

impl Model {
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let corrupt = |m: String| ModelError::Corrupt {
            dir: dir.display().to_string(),
            message: m,
        };
        let mp = dir.join("model.json");
        let text = std::fs::read_to_string(&mp).map_err(|e| {
            corrupt(format!(
                "model.json unreadable ({e}); is this a directory written by `ehr-risk train`?"
            ))
        })?;
        let manifest: ModelManifest = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("model.json does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!(
                "format {} (this build reads format {FORMAT})",
                manifest.format
            )));
        }
        for (f, want) in &manifest.files {
            let got = blake3_file(&dir.join(f))
                .map_err(|e| corrupt(format!("{f} is missing or unreadable: {e}")))?;
            if &got != want {
                return Err(corrupt(format!(
                    "{f} has checksum {got}, model.json expects {want}"
                )));
            }
        }
        let json = |f: &str| -> Result<String, ModelError> {
            std::fs::read_to_string(dir.join(f)).map_err(|e| corrupt(format!("{f}: {e}")))
        };
        let parse = |f: &str, e: serde_json::Error| corrupt(format!("{f} does not parse: {e}"));
        let config: GruConfig =
            serde_json::from_str(&json("config.json")?).map_err(|e| parse("config.json", e))?;
        let norm: TabNorm = serde_json::from_str(&json("tabular_norm.json")?)
            .map_err(|e| parse("tabular_norm.json", e))?;
        let calibration: Calibration = serde_json::from_str(&json("calibration.json")?)
            .map_err(|e| parse("calibration.json", e))?;
        let logistic: Vec<LogisticModel> =
            serde_json::from_str(&json("logistic.json")?).map_err(|e| parse("logistic.json", e))?;
        // Scoring runs where it is asked to: a model trained on a GPU scores on CPU by default.
        let device = Device::Cpu;
        let mut vs = nn::VarStore::new(device);
        let net = gru::exclusive(|lock| {
            GruNet::new(
                lock,
                &vs.root(),
                &config,
                manifest.vocab_size,
                manifest.columns.len() as i64,
                manifest.outcomes.len(),
                manifest.intervals as i64,
            )
        });
        vs.load(dir.join("weights.safetensors"))
            .map_err(|e| corrupt(format!("weights.safetensors: {e}")))?;
        let h = gru::weights_hash(&vs);
        if h != manifest.weights_hash {
            return Err(corrupt(format!(
                "weights hash {h} differs from model.json's {}",
                manifest.weights_hash
            )));
        }
        if calibration.hazard_scale.len() != manifest.outcomes.len() + 1
            || logistic.len() != manifest.outputs.len()
        {
            return Err(corrupt(
                "calibration or baseline does not cover every output".into(),
            ));
        }
        let vocab = read_code_table(&dir.join("vocab.parquet"))
            .map_err(|e| corrupt(format!("vocab.parquet: {e}")))?
            .into_iter()
            .map(|(c, v)| (c, v[0] as i32))
            .collect();
        let value_norm = read_code_table(&dir.join("norm.parquet"))
            .map_err(|e| corrupt(format!("norm.parquet: {e}")))?
            .into_iter()
            .map(|(c, v)| (c, (v[0] as f32, v[1] as f32)))
            .collect();
        Ok(Model {
            vocab,
            value_norm,
            dir: dir.to_path_buf(),
            manifest,
            config,
            vs,
            net,
            norm,
            calibration,
            logistic,
            device,
        })
    }

    /// Refuse a features folder this model was not built for.
    pub fn check_features(&self, features: &Path) -> Result<FeatureManifest, ModelError> {
        let fm = read_feature_manifest(features)?;
        let m = &self.manifest;
        let mismatch = |what: &str, want: &str, got: &str| ModelError::Mismatch {
            dir: self.dir.display().to_string(),
            message: format!(
                "{what}: the model expects {want}, {} has {got}",
                features.display()
            ),
        };
        if fm.feature_spec_hash != m.feature_spec_hash {
            return Err(mismatch(
                "feature spec hash",
                &m.feature_spec_hash,
                &fm.feature_spec_hash,
            ));
        }
        if fm.task_hash != m.task_hash {
            return Err(mismatch("task hash", &m.task_hash, &fm.task_hash));
        }
        if fm.columns != m.columns {
            return Err(mismatch(
                "tabular columns",
                &format!("{} columns", m.columns.len()),
                &format!("{} different columns", fm.columns.len()),
            ));
        }
        let vh = blake3_file(&features.join("vocab.parquet"))?;
        if vh != m.vocab_hash {
            return Err(mismatch("vocabulary (vocab.parquet)", &m.vocab_hash, &vh));
        }
        Ok(fm)
    }

    /// The task and the feature spec this model was trained for, resolved against `lake`'s
    /// codes (descendants, treatment code sets), as the features stage computes them: refused
    /// when this build's built-in task or spec differs from the model's (the features would).
    pub fn inputs_for(
        &self,
        lake: &crate::lake::Lake,
    ) -> Result<(Task, crate::features::spec::Compiled), ModelError> {
        use crate::features::spec::{Compiled, FeatureSpec};
        let m = &self.manifest;
        let mismatch = |message: String| ModelError::Mismatch {
            dir: self.dir.display().to_string(),
            message,
        };
        let task = Task::load(&m.task).map_err(|e| mismatch(format!("task {:?}: {e}", m.task)))?;
        if task.hash != m.task_hash {
            return Err(mismatch(format!(
                "the model was trained for task {:?} with hash {}, this build's is {}",
                m.task, m.task_hash, task.hash
            )));
        }
        let spec = FeatureSpec::builtin();
        if spec.hash() != m.feature_spec_hash {
            return Err(mismatch(format!(
                "the model's feature spec hash is {}, this build's is {}",
                m.feature_spec_hash,
                spec.hash()
            )));
        }
        let codes_path = lake.root.join("metadata/codes.parquet");
        let lake_err = |e: crate::lake::LakeError| io_err(&codes_path, e);
        let codes = crate::lake::write::read_codes(&codes_path).map_err(lake_err)?;
        let parents = crate::lake::write::read_code_parents(&codes_path).map_err(lake_err)?;
        let compiled = Compiled::new(spec.with_descendants(&parents), &codes)
            .map_err(|e| mismatch(e.to_string()))?;
        Ok((task.with_descendants(&parents), compiled))
    }

    /// Calibrated network risks (cumulative incidences) and baseline risks for every row of `d`.
    pub fn predict(&self, d: &Dataset) -> Vec<RowRisks> {
        let n_out = self.manifest.outputs.len();
        let logits = gru::predict_logits(&self.net, d, &self.norm, self.device, 1024);
        let risks = gru::predict_risks(
            &logits,
            d.len(),
            &self.calibration.hazard_scale,
            self.manifest.outcomes.len(),
            &self.manifest.horizons_years,
        );
        let logistic: Vec<Vec<f64>> = self
            .logistic
            .iter()
            .map(|m| {
                m.predict(
                    &(0..d.len())
                        .map(|r| d.tab_row(r).to_vec())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        (0..d.len())
            .map(|r| RowRisks {
                gru: (0..n_out).map(|j| risks[r * n_out + j] as f64).collect(),
                logistic: logistic.iter().map(|l| l[r]).collect(),
            })
            .collect()
    }

    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.manifest.outputs.iter().position(|o| o == name)
    }
}
