//! The recurrent risk network (libtorch through `tch`). In: a [`Dataset`] (monthly steps of
//! codes with normalised values, time gaps, age; the tabular features) and a [`GruConfig`].
//! Out: a trained [`GruNet`] in a `VarStore`, logits for every outcome x horizon, and the
//! per-input gradients explanations need.
//!
//! Architecture: each code occurrence contributes `E[code] + value * V[code]` (a bag of
//! embeddings per month, the value embedding carrying measurements); the bag plus the step's
//! time gap, recency and age goes through a one-layer GRU; the last valid hidden state is joined
//! with the standardised tabular features (static facts like sex and race have no time, and the
//! summaries anchor the network) and a shared layer feeds one head per outcome (MI, stroke), each
//! with one logit per horizon. Padded batches are masked by gathering each row's last valid
//! step; unlabelled (censored) outputs are masked out of the loss.
//!
//! Training: Adam with weight decay, dropout, gradient-norm clipping, class imbalance through a
//! per-output `pos_weight` of (negatives / positives)^`pos_weight_power`, early stopping on the
//! tuning split's mean AUROC, seeded shuffling and initialisation: same data + seed + threads =
//! same weights.

use super::data::{Dataset, STEP_INPUTS};
use crate::evaluate::metrics::auroc;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor, nn, nn::Module, nn::OptimizerConfig, nn::RNN};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GruConfig {
    pub embed_dim: i64,
    pub hidden: i64,
    pub head_hidden: i64,
    pub dropout: f64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better tuning AUROC (best weights are kept).
    pub patience: usize,
    /// Gradient-norm clipping threshold.
    pub grad_clip: f64,
    /// Each batch is sorted by sequence length and run in this many parts (same gradient as
    /// the padded batch, less padding computed).
    pub length_buckets: usize,
    /// pos_weight = (negatives / positives)^power per output; 0 = unweighted.
    pub pos_weight_power: f64,
    /// Training rows used (a seeded sample of the train split when it is larger; 0 = all).
    pub max_train_rows: usize,
    /// Tuning rows used for early stopping and calibration (0 = all).
    pub max_tuning_rows: usize,
    pub seed: u64,
    /// libtorch intra-op threads (0 = one per core).
    pub threads: i32,
    /// "cpu" or "cuda" (refused when CUDA is not present).
    pub device: String,
}

impl Default for GruConfig {
    fn default() -> Self {
        GruConfig {
            embed_dim: 32,
            hidden: 64,
            head_hidden: 64,
            dropout: 0.1,
            learning_rate: 2e-3,
            weight_decay: 1e-5,
            batch_size: 256,
            max_epochs: 8,
            patience: 2,
            grad_clip: 1.0,
            length_buckets: 4,
            pos_weight_power: 0.5,
            max_train_rows: 250_000,
            max_tuning_rows: 100_000,
            seed: 1,
            threads: 0,
            device: "cpu".into(),
        }
    }
}

impl GruConfig {
    /// Check every hyper-parameter once, before training: the message states the rule that
    /// was broken and the value that broke it (nothing is quietly turned into something else).
    pub fn validate(&self) -> Result<(), GruConfigError> {
        let mut broken = Vec::new();
        let mut rule = |ok: bool, what: String| {
            if !ok {
                broken.push(what);
            }
        };
        rule(
            self.embed_dim >= 1,
            format!("embed_dim must be >= 1 (got {})", self.embed_dim),
        );
        rule(
            self.hidden >= 1,
            format!("hidden must be >= 1 (got {})", self.hidden),
        );
        rule(
            self.head_hidden >= 1,
            format!("head_hidden must be >= 1 (got {})", self.head_hidden),
        );
        rule(
            (0.0..1.0).contains(&self.dropout),
            format!("dropout must be in [0, 1) (got {})", self.dropout),
        );
        rule(
            self.learning_rate > 0.0 && self.learning_rate.is_finite(),
            format!("learning_rate must be > 0 (got {})", self.learning_rate),
        );
        rule(
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            format!("weight_decay must be >= 0 (got {})", self.weight_decay),
        );
        rule(
            self.batch_size >= 1,
            format!("batch_size must be >= 1 (got {})", self.batch_size),
        );
        rule(
            self.max_epochs >= 1,
            format!("max_epochs must be >= 1 (got {})", self.max_epochs),
        );
        rule(
            self.patience >= 1,
            format!("patience must be >= 1 (got {})", self.patience),
        );
        rule(
            self.grad_clip > 0.0 && self.grad_clip.is_finite(),
            format!("grad_clip must be > 0 (got {})", self.grad_clip),
        );
        rule(
            self.length_buckets >= 1,
            format!("length_buckets must be >= 1 (got {})", self.length_buckets),
        );
        rule(
            self.pos_weight_power >= 0.0 && self.pos_weight_power.is_finite(),
            format!(
                "pos_weight_power must be >= 0 (got {})",
                self.pos_weight_power
            ),
        );
        rule(
            self.threads >= 0,
            format!(
                "threads must be >= 0, 0 meaning one per core (got {})",
                self.threads
            ),
        );
        if broken.is_empty() {
            self.device().map(|_| ())
        } else {
            Err(GruConfigError::Rules(broken))
        }
    }

    pub fn device(&self) -> Result<Device, GruConfigError> {
        match self.device.as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            "cuda" => Err(GruConfigError::NoCuda),
            d => Err(GruConfigError::UnknownDevice(d.to_string())),
        }
    }
}

/// Why a training run stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("training needs rows in both splits: train {train}, tuning {tuning}")]
    EmptySplit { train: usize, tuning: usize },
    #[error("libtorch: {0}")]
    Torch(String),
}

/// A GRU configuration refused before training, with the rules it breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GruConfigError {
    #[error("GRU configuration: {}", .0.join("; "))]
    Rules(Vec<String>),
    #[error(
        "device \"cuda\" asked for, but libtorch sees no CUDA device (the default set-up installs the CPU build; see docs/GPU.md)"
    )]
    NoCuda,
    #[error("device {0:?}: expected \"cpu\" or \"cuda\"")]
    UnknownDevice(String),
}

/// Standardisation of the tabular inputs (train split): NaN becomes the mean (0).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TabNorm {
    pub columns: Vec<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl TabNorm {
    pub fn fit(d: &Dataset, columns: &[String]) -> TabNorm {
        let k = d.n_tab;
        let (mut s, mut ss, mut n) = (vec![0f64; k], vec![0f64; k], vec![0u64; k]);
        for r in 0..d.len() {
            for (j, v) in d.tab_row(r).iter().enumerate() {
                if !v.is_nan() {
                    s[j] += *v as f64;
                    ss[j] += (*v as f64).powi(2);
                    n[j] += 1;
                }
            }
        }
        let mut mean = vec![0f32; k];
        let mut std = vec![1f32; k];
        for j in 0..k {
            if n[j] > 0 {
                let m = s[j] / n[j] as f64;
                let var = (ss[j] / n[j] as f64 - m * m).max(0.0);
                mean[j] = m as f32;
                std[j] = if var.sqrt() > 1e-6 {
                    var.sqrt() as f32
                } else {
                    1.0
                };
            }
        }
        TabNorm {
            columns: columns.to_vec(),
            mean,
            std,
        }
    }

    pub fn apply(&self, row: &[f32], out: &mut Vec<f32>) {
        out.extend(row.iter().enumerate().map(|(j, v)| {
            if v.is_nan() {
                0.0
            } else {
                ((v - self.mean[j]) / self.std[j]).clamp(-10.0, 10.0)
            }
        }));
    }
}

/// A padded mini-batch on the model's device.
pub struct Batch {
    pub rows: Vec<usize>,
    /// Vocabulary id of every code occurrence, its value, and its slot (row * steps + step).
    pub codes: Tensor,
    pub vals: Tensor,
    pub slot: Tensor,
    /// [B, T, STEP_INPUTS]
    pub step_x: Tensor,
    /// Index of each row's last valid step.
    pub last: Tensor,
    /// [B, n_tab] standardised
    pub tab: Tensor,
    pub steps: i64,
    /// Per code occurrence: (row in batch, step) for attribution.
    pub code_pos: Vec<(usize, usize)>,
    pub y: Option<(Tensor, Tensor)>,
}

impl Batch {
    pub fn new(d: &Dataset, rows: &[usize], norm: &TabNorm, device: Device) -> Batch {
        let t = rows
            .iter()
            .map(|&r| (d.step_off[r + 1] - d.step_off[r]).max(1))
            .max()
            .unwrap_or(1);
        let (mut codes, mut vals, mut slot, mut pos) = (vec![], vec![], vec![], vec![]);
        let mut sx = vec![0f32; rows.len() * t * STEP_INPUTS];
        let mut last = Vec::with_capacity(rows.len());
        let mut tab = Vec::with_capacity(rows.len() * d.n_tab);
        for (b, &r) in rows.iter().enumerate() {
            let (s0, s1) = (d.step_off[r], d.step_off[r + 1]);
            last.push((s1 - s0).max(1) as i64 - 1);
            for (k, s) in (s0..s1).enumerate() {
                let base = (b * t + k) * STEP_INPUTS;
                sx[base..base + STEP_INPUTS].copy_from_slice(&d.step_x[s]);
                for c in d.code_off[s]..d.code_off[s + 1] {
                    codes.push(d.codes[c] as i64);
                    vals.push(d.vals[c]);
                    slot.push((b * t + k) as i64);
                    pos.push((b, k));
                }
            }
            norm.apply(d.tab_row(r), &mut tab);
        }
        let bsz = rows.len() as i64;
        let y = (d.n_out > 0).then(|| {
            let mut y = Vec::with_capacity(rows.len() * d.n_out);
            let mut m = Vec::with_capacity(rows.len() * d.n_out);
            for &r in rows {
                y.extend_from_slice(&d.labels[r * d.n_out..(r + 1) * d.n_out]);
                m.extend_from_slice(&d.mask[r * d.n_out..(r + 1) * d.n_out]);
            }
            let shape = [bsz, d.n_out as i64];
            (
                Tensor::from_slice(&y).view(shape).to_device(device),
                Tensor::from_slice(&m).view(shape).to_device(device),
            )
        });
        Batch {
            rows: rows.to_vec(),
            codes: Tensor::from_slice(&codes).to_device(device),
            vals: Tensor::from_slice(&vals).view([-1, 1]).to_device(device),
            slot: Tensor::from_slice(&slot).to_device(device),
            step_x: Tensor::from_slice(&sx)
                .view([bsz, t as i64, STEP_INPUTS as i64])
                .to_device(device),
            last: Tensor::from_slice(&last).to_device(device),
            tab: Tensor::from_slice(&tab)
                .view([bsz, d.n_tab as i64])
                .to_device(device),
            steps: t as i64,
            code_pos: pos,
            y,
        }
    }
}

#[derive(Debug)]
pub struct GruNet {
    emb: Tensor,
    val_emb: Tensor,
    gru: nn::GRU,
    fc: nn::Linear,
    heads: Vec<nn::Linear>,
    hidden: i64,
    embed_dim: i64,
    dropout: f64,
}

impl GruNet {
    /// `outcomes` heads of `horizons` logits each.
    pub fn new(
        _lock: &TorchLock,
        vs: &nn::Path,
        cfg: &GruConfig,
        vocab_size: i64,
        n_tab: i64,
        outcomes: usize,
        horizons: i64,
    ) -> GruNet {
        let e = cfg.embed_dim;
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        GruNet {
            emb: vs.var("code_embedding", &[vocab_size, e], init),
            val_emb: vs.var("value_embedding", &[vocab_size, e], init),
            gru: nn::gru(
                vs / "gru",
                e + STEP_INPUTS as i64,
                cfg.hidden,
                Default::default(),
            ),
            fc: nn::linear(
                vs / "fc",
                cfg.hidden + n_tab,
                cfg.head_hidden,
                Default::default(),
            ),
            heads: (0..outcomes)
                .map(|o| {
                    nn::linear(
                        vs / format!("head_{o}"),
                        cfg.head_hidden,
                        horizons,
                        Default::default(),
                    )
                })
                .collect(),
            hidden: cfg.hidden,
            embed_dim: e,
            dropout: cfg.dropout,
        }
    }

    /// Each code occurrence's input vector [N, E].
    pub fn code_contrib(&self, b: &Batch) -> Tensor {
        self.emb.index_select(0, &b.codes) + self.val_emb.index_select(0, &b.codes) * &b.vals
    }

    /// Logits [B, outcomes x horizons] from the (possibly scaled) inputs.
    pub fn forward_from(
        &self,
        b: &Batch,
        contrib: &Tensor,
        step_x: &Tensor,
        tab: &Tensor,
        train: bool,
    ) -> Tensor {
        let bsz = b.last.size()[0];
        let bags = Tensor::zeros(
            [bsz * b.steps, self.embed_dim],
            (Kind::Float, contrib.device()),
        )
        .index_add(0, &b.slot, contrib)
        .view([bsz, b.steps, self.embed_dim]);
        let x = Tensor::cat(&[bags, step_x.shallow_clone()], 2).dropout(self.dropout, train);
        let (out, _) = self.gru.seq(&x);
        let idx = b
            .last
            .view([bsz, 1, 1])
            .expand([bsz, 1, self.hidden], false);
        let h = out.gather(1, &idx, false).squeeze_dim(1);
        let z = Tensor::cat(&[h, tab.shallow_clone()], 1)
            .apply(&self.fc)
            .relu()
            .dropout(self.dropout, train);
        Tensor::cat(
            &self.heads.iter().map(|l| l.forward(&z)).collect::<Vec<_>>(),
            1,
        )
    }

    pub fn forward(&self, b: &Batch, train: bool) -> Tensor {
        let c = self.code_contrib(b);
        self.forward_from(b, &c, &b.step_x, &b.tab, train)
    }
}

/// Run `gru` over the padded [B, T, in] input and take each row's hidden state at its last
/// valid step (`last`, [B]): the recurrent core shared with the PyTorch side-by-side bench.
pub fn last_hidden(gru: &nn::GRU, x: &Tensor, last: &Tensor, hidden: i64) -> Tensor {
    let bsz = x.size()[0];
    let (out, _) = gru.seq(x);
    let idx = last.view([bsz, 1, 1]).expand([bsz, 1, hidden], false);
    out.gather(1, &idx, false).squeeze_dim(1)
}

/// libtorch's process-wide state: the one random generator (weight initialisation, dropout)
/// and the intra-op thread count (which decides the order of float reductions).
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Proof that this thread holds libtorch's process-wide state. A [`GruNet`] can only be built
/// with one, so no weight initialisation (a draw from the global generator) can run while a
/// seeded training elsewhere in the process holds it: a model loaded for scoring on another
/// thread, a test, a server request. Before this, loading a model during someone else's
/// training advanced the generator under it and changed its dropout masks (the determinism
/// test failed when the suite ran in parallel).
pub struct TorchLock<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

/// Run `f` holding libtorch's state, without reseeding (building a net to load weights into).
pub fn exclusive<T>(f: impl FnOnce(&TorchLock) -> T) -> T {
    let g = TorchLock(TORCH.lock().unwrap_or_else(|e| e.into_inner()));
    f(&g)
}

/// Run `f` with libtorch's global generator seeded and its intra-op thread count set (when
/// `threads` > 0), holding the process-wide lock: two trainings in one process (parallel
/// tests, a server) cannot interleave, and nothing can draw from the generator meanwhile.
pub fn seeded<T>(seed: u64, threads: i32, f: impl FnOnce(&TorchLock) -> T) -> T {
    exclusive(|g| {
        if threads > 0 {
            tch::set_num_threads(threads);
        }
        tch::manual_seed(seed as i64);
        f(g)
    })
}

/// One epoch's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub tuning_auroc: Vec<Option<f64>>,
    pub tuning_mean_auroc: f64,
    pub seconds: f64,
}

/// Raw logits for every row of `d`, `n_out` per row, in row order.
pub fn predict_logits(
    net: &GruNet,
    d: &Dataset,
    norm: &TabNorm,
    device: Device,
    batch: usize,
) -> Vec<f32> {
    let _g = tch::no_grad_guard();
    // Rows sorted by length so each batch is padded only to its own longest sequence; a row's
    // result does not depend on its batch-mates.
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.sort_by_key(|&r| (d.step_off[r + 1] - d.step_off[r], r));
    let n_out = net.heads.len() * net.heads.first().map_or(0, |h| h.ws.size()[0] as usize);
    let mut out = vec![0f32; d.len() * n_out];
    for chunk in idx.chunks(batch.max(1)) {
        let b = Batch::new(d, chunk, norm, device);
        let z = net.forward(&b, false).to_device(Device::Cpu).contiguous();
        let z = Vec::<f32>::try_from(z.view([-1])).expect("float logits");
        for (k, &r) in chunk.iter().enumerate() {
            out[r * n_out..(r + 1) * n_out].copy_from_slice(&z[k * n_out..(k + 1) * n_out]);
        }
    }
    out
}

/// Per-output AUROC of logits against labels (masked).
pub fn output_aurocs(d: &Dataset, logits: &[f32]) -> Vec<Option<f64>> {
    (0..d.n_out)
        .map(|j| {
            let (mut p, mut y) = (vec![], vec![]);
            for r in 0..d.len() {
                if d.mask[r * d.n_out + j] > 0.0 {
                    p.push(logits[r * d.n_out + j] as f64);
                    y.push(d.labels[r * d.n_out + j] > 0.5);
                }
            }
            auroc(&p, &y)
        })
        .collect()
}

/// pos_weight per output from the training labels.
fn pos_weights(d: &Dataset, power: f64) -> Vec<f32> {
    (0..d.n_out)
        .map(|j| {
            let (mut pos, mut n) = (0.0, 0.0);
            for r in 0..d.len() {
                if d.mask[r * d.n_out + j] > 0.0 {
                    n += 1.0;
                    pos += d.labels[r * d.n_out + j] as f64;
                }
            }
            if pos == 0.0 || power == 0.0 {
                1.0
            } else {
                ((n - pos) / pos).max(1.0).powf(power) as f32
            }
        })
        .collect()
}

/// Train on `train`, early-stopping on `tune`. `vs` must be fresh; the best epoch's weights are
/// left in it. `progress` sees every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train(
    vs: &mut nn::VarStore,
    net: &GruNet,
    cfg: &GruConfig,
    train: &Dataset,
    tune: &Dataset,
    norm: &TabNorm,
    progress: &mut dyn FnMut(&EpochLog),
) -> Result<(Vec<EpochLog>, usize), TrainError> {
    if train.is_empty() || tune.is_empty() {
        return Err(TrainError::EmptySplit {
            train: train.len(),
            tuning: tune.len(),
        });
    }
    let device = vs.device();
    let pw = Tensor::from_slice(&pos_weights(train, cfg.pos_weight_power)).to_device(device);
    let mut opt = nn::Adam {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(vs, cfg.learning_rate)
    .map_err(|e| TrainError::Torch(e.to_string()))?;
    let mut rng = Rng::new(cfg.seed, 0, 0x0067_7275);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut logs = Vec::new();
    let (mut best, mut best_epoch, mut since) = (f64::NEG_INFINITY, 0, 0);
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    for epoch in 1..=cfg.max_epochs {
        let started = std::time::Instant::now();
        for i in (1..order.len()).rev() {
            let j = rng.range(0, i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let (mut loss_sum, mut batches) = (0.0, 0);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            // One optimiser step per batch; its rows sorted by length and cut into
            // `length_buckets` parts, each padded only to its own longest sequence. A row's
            // output does not depend on padding after its last step, so the gradient is the
            // padded batch's, for less work.
            let mut rows = chunk.to_vec();
            rows.sort_by_key(|&r| (train.step_off[r + 1] - train.step_off[r], r));
            let labelled: f32 = rows
                .iter()
                .map(|&r| {
                    train.mask[r * train.n_out..(r + 1) * train.n_out]
                        .iter()
                        .sum::<f32>()
                })
                .sum::<f32>()
                .max(1.0);
            let part = rows.len().div_ceil(cfg.length_buckets.max(1));
            opt.zero_grad();
            let mut l_batch = 0.0;
            for p in rows.chunks(part) {
                let b = Batch::new(train, p, norm, device);
                let (y, m) = b.y.as_ref().expect("training rows carry labels");
                let logits = net.forward(&b, true);
                let l =
                    logits.binary_cross_entropy_with_logits(y, Some(m), Some(&pw), Reduction::Sum)
                        / labelled as f64;
                l.backward();
                l_batch += l.double_value(&[]);
            }
            opt.clip_grad_norm(cfg.grad_clip);
            opt.step();
            loss_sum += l_batch;
            batches += 1;
        }
        let logits = predict_logits(net, tune, norm, device, 1024);
        let au = output_aurocs(tune, &logits);
        let known: Vec<f64> = au.iter().flatten().copied().collect();
        let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            tuning_auroc: au,
            tuning_mean_auroc: mean,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress(&log);
        logs.push(log);
        if mean > best {
            best = mean;
            best_epoch = epoch;
            since = 0;
            best_weights = Some(snapshot(vs));
        } else {
            since += 1;
            if since >= cfg.patience {
                break;
            }
        }
    }
    if let Some(w) = best_weights {
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, t) in w {
                vars[&name].shallow_clone().copy_(&t);
            }
        });
    }
    Ok((logs, best_epoch))
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// BLAKE3 of every variable (sorted by name) as little-endian f32: the determinism check.
pub fn weights_hash(vs: &nn::VarStore) -> String {
    let mut h = blake3::Hasher::new();
    for (name, t) in snapshot(vs) {
        h.update(name.as_bytes());
        let v: Vec<f32> =
            Vec::try_from(t.to_device(Device::Cpu).contiguous().view([-1])).expect("float weights");
        for x in v {
            h.update(&x.to_le_bytes());
        }
    }
    h.finalize().to_hex().to_string()
}

/// Integrated gradients of each row's calibrated risk for output `j` along the straight path
/// from the baseline (no events, tabular features at the train mean) to the input, with `steps`
/// midpoint-rule points. Returns, per row in the batch, the attribution of every code
/// occurrence (in `b.code_pos` order), of every step's timing inputs and age input, and of every
/// tabular feature, plus the risk at the input and at the baseline.
pub struct Attribution {
    pub codes: Vec<f32>,
    /// per step: the time-gap and recency inputs
    pub steps: Vec<f32>,
    /// per step: the age input
    pub step_age: Vec<f32>,
    pub tab: Vec<f32>,
    pub risk: f32,
    pub baseline: f32,
}

pub fn integrated_gradients(
    net: &GruNet,
    b: &Batch,
    j: i64,
    platt: (f64, f64),
    steps: usize,
) -> Vec<Attribution> {
    let contrib = net.code_contrib(b).detach();
    let bsz = b.last.size()[0];
    let risk_of = |c: &Tensor, s: &Tensor, t: &Tensor| {
        let z = net.forward_from(b, c, s, t, false).select(1, j);
        (z * platt.1 + platt.0).sigmoid()
    };
    let (mut gc, mut gs, mut gt) = (
        contrib.zeros_like(),
        b.step_x.zeros_like(),
        b.tab.zeros_like(),
    );
    for k in 0..steps {
        let a = (k as f64 + 0.5) / steps as f64;
        let c = (&contrib * a).set_requires_grad(true);
        let s = (&b.step_x * a).set_requires_grad(true);
        let t = (&b.tab * a).set_requires_grad(true);
        let r = risk_of(&c, &s, &t);
        let g = Tensor::run_backward(&[r.sum(Kind::Float)], &[&c, &s, &t], false, false);
        gc += &g[0];
        gs += &g[1];
        gt += &g[2];
    }
    let inv = 1.0 / steps as f64;
    let ac = (gc * inv * &contrib).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let gx = gs * inv * &b.step_x;
    let as_ = gx
        .narrow(2, 0, 2)
        .sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
    let aa = gx.select(2, 2);
    let at = gt * inv * &b.tab;
    let (risk, base) = tch::no_grad(|| {
        (
            risk_of(&contrib, &b.step_x, &b.tab),
            risk_of(
                &contrib.zeros_like(),
                &b.step_x.zeros_like(),
                &b.tab.zeros_like(),
            ),
        )
    });
    let to_vec = |t: Tensor| -> Vec<f32> {
        Vec::try_from(t.to_device(Device::Cpu).contiguous().view([-1])).expect("float")
    };
    let (ac, as_, aa, at, risk, base) = (
        to_vec(ac),
        to_vec(as_),
        to_vec(aa),
        to_vec(at),
        to_vec(risk),
        to_vec(base),
    );
    let n_tab = b.tab.size()[1] as usize;
    let t = b.steps as usize;
    let mut out: Vec<Attribution> = (0..bsz as usize)
        .map(|r| Attribution {
            codes: vec![],
            steps: as_[r * t..(r + 1) * t].to_vec(),
            step_age: aa[r * t..(r + 1) * t].to_vec(),
            tab: at[r * n_tab..(r + 1) * n_tab].to_vec(),
            risk: risk[r],
            baseline: base[r],
        })
        .collect();
    for (i, (r, _)) in b.code_pos.iter().enumerate() {
        out[*r].codes.push(ac[i]);
    }
    out
}
