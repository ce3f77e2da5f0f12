//! Risk models: the published clinical equations (`equations`, also used by the synthetic
//! generator to anchor its hazards) and the logistic baseline (`logistic`). The recurrent network
//! is not built yet.

pub mod equations;
pub mod logistic;
