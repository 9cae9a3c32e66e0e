//! CKKS parameter presets: the published bootstrapping parameter sets of Lattigo and OpenFHE, and
//! custom sets read from JSON with the same fields (`--ckks NAME` or `--ckks FILE.json`).
//!
//! A "level" here is one rescale by the scale Δ = 2^scale_bits: the unit a multiplication by a
//! plaintext weight or a ciphertext product consumes. `levels_after_bootstrap` is the number of
//! such rescales a freshly bootstrapped ciphertext can still afford; `bootstrap_levels` is what the
//! bootstrapping circuit itself consumes (CoeffsToSlots + EvalMod + SlotsToCoeffs), given for
//! reference and for the noise model (the placement only needs `levels_after_bootstrap`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

/// The secret key distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretDist {
    /// Ternary secret with exactly `hamming_weight` non-zero coefficients.
    Sparse { hamming_weight: u32 },
    /// Uniform ternary secret (the HE standard's; about 2N/3 non-zero coefficients).
    UniformTernary,
}

/// One CKKS parameter set with bootstrapping, as a deployment would configure it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CkksPreset {
    pub name: String,
    /// Where the numbers come from (library, file, version).
    pub source: String,
    /// log2 of the ring degree N.
    pub log_ring_degree: u32,
    /// Slots per ciphertext (at most N/2).
    pub slots: u64,
    /// log2 of the scale Δ.
    pub scale_bits: u32,
    /// Bits of the base (first) modulus q0, which holds the message at level 0.
    pub first_modulus_bits: u32,
    /// Levels (rescales by Δ) available between two bootstraps.
    pub levels_after_bootstrap: u32,
    /// Levels the bootstrapping circuit consumes (CtS + EvalMod + StC).
    pub bootstrap_levels: u32,
    /// −log2 of the bootstrapping error relative to the message scale, as published; `None` where
    /// the source publishes none.
    pub bootstrap_precision_bits: Option<f64>,
    /// What the precision figure measures (e.g. "mean over 2^15 slots", "std", "max").
    pub precision_kind: Option<String>,
    pub secret: SecretDist,
    /// Hamming weight of the sparse ephemeral secret used inside bootstrapping (sparse-secret
    /// encapsulation), where used.
    pub ephemeral_hamming_weight: Option<u32>,
    /// Standard deviation σ of the discrete Gaussian error.
    pub error_std: f64,
    /// Key-switching decomposition number (dnum, "large digits"), where published.
    pub dnum: Option<u32>,
    /// Total bits of the special (key-switching) modulus P, where published.
    pub special_modulus_bits: Option<u32>,
    /// OpenFHE's level budget [CoeffsToSlots, SlotsToCoeffs], where the source is OpenFHE.
    pub level_budget: Option<[u32; 2]>,
    /// Whether the set targets 128-bit security (false: an example / measurement set).
    pub secure: bool,
}

#[derive(Debug)]
pub enum PresetError {
    /// Neither a shipped preset nor a readable file.
    Unknown {
        name: String,
        known: Vec<String>,
    },
    Io {
        path: String,
        why: String,
    },
    /// The file is not a JSON object.
    Json {
        path: String,
        why: String,
    },
    /// A field is missing, of the wrong type, or out of range.
    Field {
        path: String,
        field: String,
        why: String,
    },
}

impl fmt::Display for PresetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresetError::Unknown { name, known } => write!(
                f,
                "unknown CKKS preset `{name}` (not a file either); shipped presets: {}",
                known.join(", ")
            ),
            PresetError::Io { path, why } => write!(f, "{path}: {why}"),
            PresetError::Json { path, why } => write!(f, "{path}: not a CKKS preset JSON object: {why}"),
            PresetError::Field { path, field, why } => write!(f, "{path}: field `{field}`: {why}"),
        }
    }
}

impl std::error::Error for PresetError {}

/// Lattigo's default error standard deviation (rlwe.DefaultSigma) and OpenFHE's (3.19).
const LATTIGO_SIGMA: f64 = 3.2;
const OPENFHE_SIGMA: f64 = 3.19;

/// Lattigo v6 `circuits/ckks/bootstrapping/default_parameters.go` (same sets as v3-v5's
/// `ckks/bootstrapping/default_params.go`; the parameters of Bossuat et al., eprint 2022/024).
const LATTIGO_SOURCE: &str = "Lattigo v6 circuits/ckks/bootstrapping/default_parameters.go";

/// One Lattigo default set. `residual_log_q` is the residual modulus chain (q0 first); the
/// levels are the residual bits above q0 divided by the scale bits (for the 2^30-scale sets each
/// 60-bit prime absorbs two rescales by 2^30, as Lattigo does). `boot_moduli` counts the StC,
/// EvalMod and CtS primes. dnum = ceil(all Q primes / P primes).
#[allow(clippy::too_many_arguments)]
fn lattigo(
    name: &str,
    log_n: u32,
    log_slots: u32,
    scale_bits: u32,
    residual_log_q: &[u32],
    boot_moduli: u32,
    log_p: &[u32],
    hamming_weight: u32,
    precision: f64,
) -> CkksPreset {
    let residual_above_q0: u32 = residual_log_q[1..].iter().sum();
    let q_primes = residual_log_q.len() as u32 + boot_moduli;
    let p_primes = log_p.len() as u32;
    CkksPreset {
        name: name.to_string(),
        source: format!(
            "{LATTIGO_SOURCE}: {name}, residual Q {residual_log_q:?}, P {log_p:?}, \
             {boot_moduli} bootstrapping primes, precision {precision} bits for 2^{log_slots} slots"
        ),
        log_ring_degree: log_n,
        slots: 1 << log_slots,
        scale_bits,
        first_modulus_bits: residual_log_q[0],
        levels_after_bootstrap: residual_above_q0 / scale_bits,
        bootstrap_levels: boot_moduli,
        bootstrap_precision_bits: Some(precision),
        precision_kind: Some("Lattigo's published bootstrapping precision (log2 of the mean error)".into()),
        secret: SecretDist::Sparse { hamming_weight },
        ephemeral_hamming_weight: Some(32),
        error_std: LATTIGO_SIGMA,
        dnum: Some(q_primes.div_ceil(p_primes)),
        special_modulus_bits: Some(log_p.iter().sum()),
        level_budget: None,
        secure: true,
    }
}

/// One OpenFHE example configuration: UNIFORM_TERNARY secret, HEStd_NotSet with ring 2^12 (the
/// examples' own choice, insecure), FLEXIBLEAUTO with 64-bit native integers, first modulus 60
/// bits, HYBRID key switching with 3 large digits (the default), full packing (N/2 slots).
/// Bootstrap depth = GetBootstrapDepth(levelBudget, UNIFORM_TERNARY) = EvalMod depth + budget:
/// the uniform-secret Chebyshev series has degree 88 (depth 7 by OpenFHE's Paterson-Stockmeyer
/// table) plus R_UNIFORM = 6 double-angle steps, 13 in all.
fn openfhe(
    name: &str,
    example: &str,
    scale_bits: u32,
    level_budget: [u32; 2],
    precision: Option<(f64, &str)>,
) -> CkksPreset {
    const EVAL_MOD_DEPTH_UNIFORM: u32 = 7 + 6;
    let log_n = 12;
    CkksPreset {
        name: name.to_string(),
        source: format!(
            "OpenFHE src/pke/examples/{example}: ring 2^12 (HEStd_NotSet), scaling mod size {scale_bits}, \
             first mod 60, levelBudget {level_budget:?}, levelsAvailableAfterBootstrap 10, UNIFORM_TERNARY"
        ),
        log_ring_degree: log_n,
        slots: 1 << (log_n - 1),
        scale_bits,
        first_modulus_bits: 60,
        levels_after_bootstrap: 10,
        bootstrap_levels: EVAL_MOD_DEPTH_UNIFORM + level_budget[0] + level_budget[1],
        bootstrap_precision_bits: precision.map(|p| p.0),
        precision_kind: precision.map(|p| p.1.to_string()),
        secret: SecretDist::UniformTernary,
        ephemeral_hamming_weight: None,
        error_std: OPENFHE_SIGMA,
        dnum: Some(3),
        special_modulus_bits: None,
        level_budget: Some(level_budget),
        secure: false,
    }
}

/// The shipped presets, Lattigo's default sets first.
pub fn shipped_presets() -> Vec<CkksPreset> {
    vec![
        // Sparse secret (H = 192) with an H = 32 ephemeral secret for bootstrapping.
        // Residual 420 bits; StC 3 x 39, EvalMod 8 x 60, CtS 4 x 56; 26.6 bits for 2^15 slots.
        lattigo(
            "N16QP1546H192H32",
            16,
            15,
            40,
            &[60, 40, 40, 40, 40, 40, 40, 40, 40, 40],
            3 + 8 + 4,
            &[61; 5],
            192,
            26.6,
        ),
        // Residual 285 bits; StC 3 x 42, EvalMod 11 x 60 (with arcsine), CtS 4 x 58; 32.1 bits.
        lattigo(
            "N16QP1547H192H32",
            16,
            15,
            45,
            &[60, 45, 45, 45, 45, 45],
            3 + 11 + 4,
            &[61; 4],
            192,
            32.1,
        ),
        // Residual {55, 7 x 60, 30} = 505 bits at scale 2^30; StC 2 primes, EvalMod 8 x 55,
        // CtS 4 x 53; 19.1 bits.
        lattigo(
            "N16QP1553H192H32",
            16,
            15,
            30,
            &[55, 60, 60, 60, 60, 60, 60, 60, 30],
            2 + 8 + 4,
            &[61; 5],
            192,
            19.1,
        ),
        // Residual {32, 50, 25} = 110 bits at scale 2^25 (v3: q0 32 bits); StC 1 x 60, EvalMod
        // 8 x 50, CtS 2 x 49; 15.4 bits for 2^14 slots.
        lattigo(
            "N15QP768H192H32",
            15,
            14,
            25,
            &[33, 50, 25],
            1 + 8 + 2,
            &[51; 2],
            192,
            15.4,
        ),
        // Dense secret (H = N/2) with an H = 32 ephemeral secret.
        // Residual {60, 13 x 40} = 580 bits; StC 3, EvalMod 9, CtS 4; 23.8 bits.
        lattigo(
            "N16QP1767H32768H32",
            16,
            15,
            40,
            &[60, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40],
            3 + 9 + 4,
            &[61; 6],
            32768,
            23.8,
        ),
        // Residual {60, 9 x 45} = 465 bits; StC 3, EvalMod 11, CtS 4; 29.8 bits.
        lattigo(
            "N16QP1788H32768H32",
            16,
            15,
            45,
            &[60, 45, 45, 45, 45, 45, 45, 45, 45, 45],
            3 + 11 + 4,
            &[61; 5],
            32768,
            29.8,
        ),
        // OpenFHE simple-ckks-bootstrapping.cpp: levelBudget {4, 4}, scaling mod size 59. No
        // precision is published for it.
        openfhe("openfhe-simple", "simple-ckks-bootstrapping.cpp", 59, [4, 4], None),
        // OpenFHE advanced-/iterative-ckks-bootstrapping.cpp: levelBudget {3, 3}, scaling mod size
        // 59; the iterative example sets the single-bootstrap precision to 17 bits ("empirically
        // measured value after many test runs", −log2 of the max error).
        openfhe(
            "openfhe-advanced",
            "advanced-ckks-bootstrapping.cpp",
            59,
            [3, 3],
            Some((
                17.0,
                "OpenFHE iterative-ckks-bootstrapping.cpp: -log2 of the max error, measured",
            )),
        ),
        // The set of the OpenFHE 1.6.1 measurement in issue #16 (ring 2^12, scale 2^50, level
        // budget [3, 3], 2,048 slots of uniform [-1, 1]): bootstrap error std 2^-10.9 (max 2^-9.0).
        openfhe(
            "openfhe-n12-s50",
            "advanced-ckks-bootstrapping.cpp with scaling mod size 50 (issue #16 measurement)",
            50,
            [3, 3],
            Some((10.9, "measured with OpenFHE 1.6.1 (issue #16): -log2 of the error std")),
        ),
    ]
}

/// Names of the shipped presets.
pub fn preset_names() -> Vec<String> {
    shipped_presets().into_iter().map(|p| p.name).collect()
}

/// A shipped preset by name (case-insensitive), or a JSON file with the same fields.
pub fn load_preset(name_or_path: &str) -> Result<CkksPreset, PresetError> {
    if let Some(p) = shipped_presets()
        .into_iter()
        .find(|p| p.name.eq_ignore_ascii_case(name_or_path))
    {
        return Ok(p);
    }
    let path = Path::new(name_or_path);
    if path.is_file() {
        return preset_from_file(path);
    }
    Err(PresetError::Unknown {
        name: name_or_path.to_string(),
        known: preset_names(),
    })
}

/// A preset file is a few hundred bytes; anything far larger is not one.
const MAX_PRESET_FILE_BYTES: u64 = 1 << 20;

/// Read and validate a preset JSON file.
pub fn preset_from_file(path: &Path) -> Result<CkksPreset, PresetError> {
    let shown = path.display().to_string();
    let io = |why: String| PresetError::Io {
        path: shown.clone(),
        why,
    };
    let size = std::fs::metadata(path).map_err(|e| io(e.to_string()))?.len();
    if size > MAX_PRESET_FILE_BYTES {
        return Err(io(format!("{size} bytes is too large for a CKKS preset")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    preset_from_json(&text, &shown)
}

/// Parse and validate a preset from JSON text; `origin` names it in errors.
pub fn preset_from_json(text: &str, origin: &str) -> Result<CkksPreset, PresetError> {
    let value: Value = serde_json::from_str(text).map_err(|e| PresetError::Json {
        path: origin.to_string(),
        why: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(PresetError::Json {
            path: origin.to_string(),
            why: "the top level is not an object".into(),
        });
    };
    let fields = Fields { map: &map, origin };
    fields.reject_unknown()?;
    let preset = CkksPreset {
        name: fields.required("name")?,
        source: fields.optional("source")?.unwrap_or_else(|| origin.to_string()),
        log_ring_degree: fields.required("log_ring_degree")?,
        slots: fields.required("slots")?,
        scale_bits: fields.required("scale_bits")?,
        first_modulus_bits: fields.required("first_modulus_bits")?,
        levels_after_bootstrap: fields.required("levels_after_bootstrap")?,
        bootstrap_levels: fields.required("bootstrap_levels")?,
        bootstrap_precision_bits: fields.optional("bootstrap_precision_bits")?,
        precision_kind: fields.optional("precision_kind")?,
        secret: fields.required("secret")?,
        ephemeral_hamming_weight: fields.optional("ephemeral_hamming_weight")?,
        error_std: fields.optional("error_std")?.unwrap_or(LATTIGO_SIGMA),
        dnum: fields.optional("dnum")?,
        special_modulus_bits: fields.optional("special_modulus_bits")?,
        level_budget: fields.optional("level_budget")?,
        secure: fields.optional("secure")?.unwrap_or(false),
    };
    validate(&preset).map_err(|(field, why)| PresetError::Field {
        path: origin.to_string(),
        field: field.to_string(),
        why,
    })?;
    Ok(preset)
}

/// Typed access to the fields of a preset object, naming the field in every error.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    origin: &'a str,
}

impl Fields<'_> {
    const KNOWN: [&'static str; 17] = [
        "name",
        "source",
        "log_ring_degree",
        "slots",
        "scale_bits",
        "first_modulus_bits",
        "levels_after_bootstrap",
        "bootstrap_levels",
        "bootstrap_precision_bits",
        "precision_kind",
        "secret",
        "ephemeral_hamming_weight",
        "error_std",
        "dnum",
        "special_modulus_bits",
        "level_budget",
        "secure",
    ];

    fn error(&self, field: &str, why: String) -> PresetError {
        PresetError::Field {
            path: self.origin.to_string(),
            field: field.to_string(),
            why,
        }
    }

    fn reject_unknown(&self) -> Result<(), PresetError> {
        match self.map.keys().find(|k| !Self::KNOWN.contains(&k.as_str())) {
            Some(k) => Err(self.error(k, format!("unknown field (known: {})", Self::KNOWN.join(", ")))),
            None => Ok(()),
        }
    }

    fn required<T: DeserializeOwned>(&self, field: &str) -> Result<T, PresetError> {
        self.optional(field)?.ok_or_else(|| self.error(field, "missing".into()))
    }

    /// `None` when absent or null.
    fn optional<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, PresetError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.error(field, format!("{e} (got {v})"))),
        }
    }
}

/// Range checks; the error is (field, why).
fn validate(p: &CkksPreset) -> Result<(), (&'static str, String)> {
    let fail = |field, why: String| Err((field, why));
    if p.name.trim().is_empty() {
        return fail("name", "empty".into());
    }
    if !(10..=17).contains(&p.log_ring_degree) {
        return fail("log_ring_degree", format!("{} is outside 10..=17", p.log_ring_degree));
    }
    let max_slots = 1u64 << (p.log_ring_degree - 1);
    if p.slots == 0 || !p.slots.is_power_of_two() || p.slots > max_slots {
        return fail(
            "slots",
            format!("{} is not a power of two in 1..={max_slots} (N/2)", p.slots),
        );
    }
    if !(10..=120).contains(&p.scale_bits) {
        return fail("scale_bits", format!("{} is outside 10..=120", p.scale_bits));
    }
    if p.first_modulus_bits < p.scale_bits || p.first_modulus_bits > 200 {
        return fail(
            "first_modulus_bits",
            format!(
                "{} must be at least scale_bits ({}) and at most 200",
                p.first_modulus_bits, p.scale_bits
            ),
        );
    }
    if !(1..=60).contains(&p.levels_after_bootstrap) {
        return fail(
            "levels_after_bootstrap",
            format!("{} is outside 1..=60", p.levels_after_bootstrap),
        );
    }
    if p.bootstrap_levels > 1000 {
        return fail("bootstrap_levels", format!("{} is more than 1000", p.bootstrap_levels));
    }
    if let Some(bits) = p.bootstrap_precision_bits
        && !(bits.is_finite() && bits > 0.0 && bits < 64.0)
    {
        return fail("bootstrap_precision_bits", format!("{bits} is not in (0, 64)"));
    }
    let n = 1u64 << p.log_ring_degree;
    if let SecretDist::Sparse { hamming_weight } = p.secret
        && (hamming_weight == 0 || hamming_weight as u64 > n)
    {
        return fail("secret", format!("hamming_weight {hamming_weight} is not in 1..={n}"));
    }
    if let Some(h) = p.ephemeral_hamming_weight
        && (h == 0 || h as u64 > n)
    {
        return fail("ephemeral_hamming_weight", format!("{h} is not in 1..={n}"));
    }
    if !(p.error_std.is_finite() && p.error_std > 0.0 && p.error_std < 1e6) {
        return fail(
            "error_std",
            format!("{} is not a positive finite number below 1e6", p.error_std),
        );
    }
    if p.dnum == Some(0) {
        return fail("dnum", "must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_presets_validate_and_have_distinct_names() {
        let presets = shipped_presets();
        for p in &presets {
            validate(p).unwrap_or_else(|(f, why)| panic!("{}: {f}: {why}", p.name));
            let json = serde_json::to_string(p).unwrap();
            assert_eq!(&preset_from_json(&json, "roundtrip").unwrap(), p, "{}", p.name);
        }
        let mut names = preset_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), presets.len());
    }

    #[test]
    fn lattigo_sets_match_their_published_moduli() {
        let p = load_preset("n16qp1546h192h32").unwrap();
        // 9 residual primes of 40 bits above q0; log QP = residual 420 + boot 117 + 480 + 224 + P 305.
        assert_eq!(
            (p.levels_after_bootstrap, p.bootstrap_levels, p.slots),
            (9, 15, 1 << 15)
        );
        assert_eq!((p.dnum, p.special_modulus_bits), (Some(5), Some(305)));
        assert_eq!(420 + 3 * 39 + 8 * 60 + 4 * 56 + 305, 1546);
        let p = load_preset("N16QP1553H192H32").unwrap();
        // (505 − 55) / 30 = 15 rescales by 2^30.
        assert_eq!((p.levels_after_bootstrap, p.scale_bits), (15, 30));
        assert_eq!(p.bootstrap_precision_bits, Some(19.1));
        let p = load_preset("N16QP1547H192H32").unwrap();
        assert_eq!((p.levels_after_bootstrap, p.dnum), (5, Some(6)));
        let p = load_preset("openfhe-simple").unwrap();
        assert_eq!((p.bootstrap_levels, p.levels_after_bootstrap), (21, 10));
    }

    fn field_error(json: &str) -> (String, String) {
        match preset_from_json(json, "t.json") {
            Err(PresetError::Field { field, why, .. }) => (field, why),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"name": "mine", "log_ring_degree": 15, "slots": 16384, "scale_bits": 40,
        "first_modulus_bits": 50, "levels_after_bootstrap": 8, "bootstrap_levels": 14,
        "bootstrap_precision_bits": 20.5, "secret": {"kind": "sparse", "hamming_weight": 192}}"#;

    #[test]
    fn custom_json_loads_with_defaults() {
        let p = preset_from_json(GOOD, "t.json").unwrap();
        assert_eq!(p.levels_after_bootstrap, 8);
        assert_eq!(p.error_std, 3.2);
        assert!(!p.secure);
    }

    #[test]
    fn json_errors_name_the_field() {
        let (f, why) = field_error(&GOOD.replace("\"slots\": 16384,", ""));
        assert_eq!((f.as_str(), why.as_str()), ("slots", "missing"));
        let (f, _) = field_error(&GOOD.replace("16384", "\"many\""));
        assert_eq!(f, "slots");
        let (f, _) = field_error(&GOOD.replace("16384", "32768"));
        assert_eq!(f, "slots");
        let (f, _) = field_error(&GOOD.replace("\"levels_after_bootstrap\": 8", "\"levels_after_bootstrap\": 0"));
        assert_eq!(f, "levels_after_bootstrap");
        let (f, _) = field_error(&GOOD.replace("\"name\"", "\"nmae\""));
        assert_eq!(f, "nmae");
        let (f, _) = field_error(&GOOD.replace("192}", "70000}"));
        assert_eq!(f, "secret");
        let (f, _) = field_error(&GOOD.replace("20.5", "-1"));
        assert_eq!(f, "bootstrap_precision_bits");
        let (f, _) = field_error(&GOOD.replace("\"kind\": \"sparse\"", "\"kind\": \"dense\""));
        assert_eq!(f, "secret");
    }

    #[test]
    fn unknown_names_list_the_presets() {
        let e = load_preset("no-such-preset").unwrap_err().to_string();
        assert!(e.contains("N16QP1546H192H32") && e.contains("no-such-preset"), "{e}");
        assert!(matches!(
            preset_from_json("[1]", "t.json"),
            Err(PresetError::Json { .. })
        ));
        assert!(matches!(preset_from_json("{", "t.json"), Err(PresetError::Json { .. })));
    }
}
