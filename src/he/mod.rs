//! CKKS deployment model: parameter presets (`preset`), the level model of a network and the
//! bootstrap placement on it.
//!
//! The packing and rotation assumptions of the level model are documented here, in one place,
//! as the model grows.

pub mod preset;

pub use preset::{CkksPreset, PresetError, SecretDist, load_preset, preset_names, shipped_presets};
pub mod inject;
pub mod noise;
pub mod noise_rng;

pub use inject::{NoisePlan, NoiseRun, NoisySite};
pub use noise::{NoiseError, NoiseModel, NoiseParams};
