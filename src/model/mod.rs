//! Risk models: the published clinical equations (`equations`, also used by the synthetic
//! generator to anchor its hazards), the logistic baseline (`logistic`), the recurrent network
//! (`gru`) with its inputs (`data`), and the self-describing model directory (`bundle`) that
//! `train` writes and `score` / `evaluate` load.

pub mod bundle;
pub mod data;
pub mod equations;
pub mod gru;
pub mod logistic;
