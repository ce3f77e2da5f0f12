//! The tch half of the GRU side-by-side benchmark (the PyTorch half is
//! ../shared/bench/gru_torch.py; `benches/side_by_side_gru.sh` runs both in one go). Same model:
//! a one-layer GRU over a padded [batch, seq, input] tensor, each row's hidden state at its last
//! valid step (through `ehr_risk::model::gru::last_hidden`, the engine's own recurrent core)
//! into two linear heads, BCE-with-logits summed, Adam; lengths uniform in [seq/4, seq], one
//! row at full length, 4 pre-made batches cycled. Prints one JSON line.
//!
//! `cargo bench --profile dev --bench gru_side_by_side -- train|infer [--threads 2]
//!  [--batch N] [--steps N] [--sorted]`: `--sorted` (infer) runs the engine's scoring layout:
//! rows sorted by length and cut into sub-batches of 256, each padded to its own maximum.

use ehr_risk::model::gru::last_hidden;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor, nn, nn::Module, nn::OptimizerConfig};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = if args.iter().any(|a| a == "infer") {
        "infer"
    } else {
        "train"
    };
    let threads: i32 = arg(&args, "--threads", 2);
    let batch: i64 = arg(&args, "--batch", if mode == "train" { 256 } else { 1024 });
    let seq: i64 = arg(&args, "--seq", 64);
    let d_in: i64 = arg(&args, "--input", 128);
    let hidden: i64 = arg(&args, "--hidden", 128);
    let steps: usize = arg(&args, "--steps", if mode == "train" { 40 } else { 20 });
    let sorted = args.iter().any(|a| a == "--sorted");
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let gru = nn::gru(vs.root() / "gru", d_in, hidden, Default::default());
    let head_mi = nn::linear(vs.root() / "mi", hidden, 1, Default::default());
    let head_st = nn::linear(vs.root() / "st", hidden, 1, Default::default());
    let batches: Vec<(Tensor, Tensor, Tensor, Tensor)> = (0..4)
        .map(|_| {
            let lengths =
                Tensor::randint_low(seq / 4, seq + 1, [batch], (Kind::Int64, Device::Cpu));
            let _ = lengths.get(0).fill_(seq);
            (
                Tensor::randn([batch, seq, d_in], (Kind::Float, Device::Cpu)),
                lengths,
                Tensor::randint(2, [batch], (Kind::Float, Device::Cpu)),
                Tensor::randint(2, [batch], (Kind::Float, Device::Cpu)),
            )
        })
        .collect();
    let forward = |x: &Tensor, lengths: &Tensor| {
        let h = last_hidden(&gru, x, &(lengths - 1), hidden);
        (
            head_mi.forward(&h).squeeze_dim(1),
            head_st.forward(&h).squeeze_dim(1),
        )
    };
    let mut res = serde_json::json!({
        "tool": "ehr-risk (tch)", "mode": mode, "batch": batch, "seq": seq, "input": d_in,
        "hidden": hidden, "threads": tch::get_num_threads(), "libtorch": "2.13.0",
    });
    if mode == "train" {
        let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
        let mut step = |i: usize| {
            let (x, l, ym, ys) = &batches[i % 4];
            let (lm, ls) = forward(x, l);
            let loss =
                lm.binary_cross_entropy_with_logits::<Tensor>(ym, None, None, Reduction::Mean)
                    + ls.binary_cross_entropy_with_logits::<Tensor>(
                        ys,
                        None,
                        None,
                        Reduction::Mean,
                    );
            opt.zero_grad();
            loss.backward();
            opt.step();
            loss.double_value(&[])
        };
        for i in 0..3 {
            step(i);
        }
        let t0 = Instant::now();
        let losses: Vec<f64> = (0..steps).map(&mut step).collect();
        let secs = t0.elapsed().as_secs_f64();
        res["steps"] = steps.into();
        res["seconds"] = secs.into();
        res["steps_per_s"] = (steps as f64 / secs).into();
        res["loss_first"] = losses[0].into();
        res["loss_last"] = losses[steps - 1].into();
    } else {
        let _g = tch::no_grad_guard();
        let run = |i: usize| -> f64 {
            let (x, l, _, _) = &batches[i % 4];
            if !sorted {
                let (a, b) = forward(x, l);
                return Tensor::stack(&[a, b], 1)
                    .sigmoid()
                    .sum(Kind::Float)
                    .double_value(&[]);
            }
            let (ls, order) = l.sort(0, true);
            let mut total = 0.0;
            for start in (0..batch).step_by(256) {
                let n = 256.min(batch - start);
                let idx = order.narrow(0, start, n);
                let len = ls.narrow(0, start, n);
                let t = len.max().int64_value(&[]);
                let xs = x.index_select(0, &idx).narrow(1, 0, t);
                let (a, b) = forward(&xs, &len);
                total += Tensor::stack(&[a, b], 1)
                    .sigmoid()
                    .sum(Kind::Float)
                    .double_value(&[]);
            }
            total
        };
        for i in 0..3 {
            run(i);
        }
        let t0 = Instant::now();
        let checksum: f64 = (0..steps).map(run).sum();
        let secs = t0.elapsed().as_secs_f64();
        res["sorted_sub_batches"] = sorted.into();
        res["batches"] = steps.into();
        res["seconds"] = secs.into();
        res["patients_per_s"] = (steps as f64 * batch as f64 / secs).into();
        res["checksum"] = checksum.into();
    }
    println!("{res}");
}
