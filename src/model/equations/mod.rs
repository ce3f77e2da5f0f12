//! Published clinical risk equations, with coefficients as data in `schemas/equations/`.

pub mod pce;
