//! Risk models. So far: the published clinical equations (`equations`), which the synthetic
//! cohort generator also uses to anchor its hazards.

pub mod equations;
