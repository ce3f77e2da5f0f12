//! Published clinical risk equations (PCE, PREVENT, CHA2DS2-VASc), coefficients as data in
//! `schemas/equations/`, each tested against its published vectors.

pub mod cha2ds2vasc;
pub mod pce;
pub mod prevent;
