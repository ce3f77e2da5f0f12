//! Evaluation of risk predictions: the metrics every model is compared on (see `metrics`).

pub mod metrics;
