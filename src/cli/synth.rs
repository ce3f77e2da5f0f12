//! `ehr-risk synth` arguments.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// How many people.
    #[arg(long, default_value_t = 2000)]
    pub patients: u64,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42, env = "EHR_RISK_SEED")]
    pub seed: u64,
    /// Output folder (hospital_fhir/, clinic_omop/, synthea_csv/, truth/, synth_manifest.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Per-person rate of each kind of injected defect (one number for all six kinds).
    #[arg(long, default_value_t = 0.001)]
    pub defect_rate: f64,
    /// Probability that a visit is also recorded in a second export.
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_rate: f64,
    /// People per parallel chunk (memory is a few chunks).
    #[arg(long, default_value_t = 2000)]
    pub chunk: u64,
    /// How the sites identify people: `shared` (one patient id everywhere, no identity facts)
    /// or `sites` (each site's own MRNs, with names, birth dates and addresses as typed there:
    /// linkage must find who is who; the truth goes to truth/identity.csv).
    #[arg(long, value_enum, default_value = "shared")]
    pub identities: IdentityArg,
    /// With `--identities sites`: the chance that a FHIR or claims record carries the SSN.
    #[arg(long, default_value_t = 0.5)]
    pub national_id_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdentityArg {
    Shared,
    Sites,
}
