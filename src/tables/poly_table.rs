//! `polycnn poly`: per α, the composite polynomial, its verified ReLU error in double-double and
//! in GPU float32 per scheme, its HE cost and generation time — ours next to the paper's.

use crate::gpu::activation::{ActivationKernel, Scheme};
use crate::gpu::{Gpu, GpuError};
use crate::poly::activation::{approx_relu, measure_max_pool_error};
use crate::poly::cost::{HeCost, relu_cost};
use crate::poly::verify::{ReluError, relu_error};
use crate::poly::{Composite, PolyError, optimise_eps, paper_degrees_or_error};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Where a composite came from.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Generated here by Remez; stage 1 starts at ε.
    Ours { eps: f64, log2_eps: f64 },
    /// The paper's published coefficient files.
    Official { dir: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub degree: usize,
    /// [a, c] where the stage approximates 1 (ours only).
    pub interval: Option<(f64, f64)>,
    /// max |p − 1| on that interval (ours only).
    pub stage_error: Option<f64>,
    /// The stage's Chebyshev domain is [-b, b].
    pub half_width: f64,
    /// Double-double coefficients as [hi, lo] pairs (value = hi + lo): Chebyshev T_1, T_3, …
    /// on [-b, b], and power basis x^0 … x^d.
    pub chebyshev: Vec<[f64; 2]>,
    pub power: Vec<[f64; 2]>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GpuError32 {
    pub scheme: Scheme,
    /// max |r_gpu(x) − r_ref(x)| over the grid, r_ref in double-double at the same f32 input.
    pub eval_error: f64,
    pub eval_error_log2: f64,
    /// max |r_gpu(x) − ReLU(x)|: what a network actually sees.
    pub relu_error_log2: f64,
    /// eval_error ≤ 5% of 2^-α.
    pub within_budget: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MaxPoolError {
    pub window_2x2: f64,
    pub window_3x3: f64,
    pub windows_tried: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolyRow {
    pub alpha: u32,
    pub degrees: Vec<usize>,
    pub source: Source,
    pub relu_error: ReluError,
    pub meets_alpha: bool,
    pub gpu: Vec<GpuError32>,
    pub cost: HeCost,
    /// Measured worst |approx max-pool − max| in units of B (2x2 and 3x3 trees).
    pub max_pool_error: MaxPoolError,
    pub generation_ms: f64,
    pub stages: Vec<StageReport>,
}

/// Which composites to build.
pub struct PolyRequest<'a> {
    pub alphas: Vec<u32>,
    /// Overrides the paper's degree list (required for α outside 4..14).
    pub degrees: Option<Vec<usize>>,
    /// Also load the paper's files from here, for comparison.
    pub official_dir: Option<&'a Path>,
}

/// Our composite for α (the paper's degree list unless overridden), with its generation time.
pub fn our_composite(alpha: u32, degrees: Option<&[usize]>) -> Result<(crate::poly::SignComposite, f64), PolyError> {
    let degrees = match degrees {
        Some(d) => d,
        None => paper_degrees_or_error(alpha)?,
    };
    let start = Instant::now();
    let sc = optimise_eps(degrees)?;
    Ok((sc, start.elapsed().as_secs_f64() * 1e3))
}

pub fn build_rows(req: &PolyRequest, gpu: Option<&Gpu>) -> Result<Vec<PolyRow>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for &alpha in &req.alphas {
        let (sc, ms) = our_composite(alpha, req.degrees.as_deref())?;
        let stages = sc
            .stages
            .iter()
            .map(|s| StageReport {
                interval: Some((s.domain.0.to_f64(), s.domain.1.to_f64())),
                stage_error: Some(s.error.to_f64()),
                ..stage_report(&s.poly)
            })
            .collect();
        let source = Source::Ours {
            eps: sc.eps,
            log2_eps: sc.eps.log2(),
        };
        rows.push(row(alpha, &sc.composite, source, stages, ms, gpu)?);
        if let Some(dir) = req.official_dir {
            let official = crate::poly::official::load_official(dir, alpha)?;
            let stages = official.stages.iter().map(stage_report).collect();
            let source = Source::Official {
                dir: dir.display().to_string(),
            };
            rows.push(row(alpha, &official, source, stages, 0.0, gpu)?);
        }
    }
    Ok(rows)
}

fn stage_report(p: &crate::poly::OddPoly) -> StageReport {
    let pair = |d: &crate::poly::Dd| [d.hi, d.lo];
    StageReport {
        degree: p.degree(),
        interval: None,
        stage_error: None,
        half_width: p.half_width.to_f64(),
        chebyshev: p.cheb.iter().map(pair).collect(),
        power: p.to_power_basis().iter().map(pair).collect(),
    }
}

fn row(
    alpha: u32,
    composite: &Composite,
    source: Source,
    stages: Vec<StageReport>,
    generation_ms: f64,
    gpu: Option<&Gpu>,
) -> Result<PolyRow, GpuError> {
    let relu_error = relu_error(composite);
    let gpu_errors = match gpu {
        Some(gpu) => Scheme::ALL
            .iter()
            .map(|&s| gpu_f32_error(gpu, composite, s, alpha))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    const WINDOWS: usize = 600;
    let gap = relu_error.argmax;
    let max_pool_error = MaxPoolError {
        window_2x2: measure_max_pool_error(composite, alpha, 4, gap, WINDOWS)
            .map_err(|e| GpuError::BadInput(e.to_string()))?,
        window_3x3: measure_max_pool_error(composite, alpha, 9, gap, WINDOWS)
            .map_err(|e| GpuError::BadInput(e.to_string()))?,
        windows_tried: WINDOWS,
    };
    Ok(PolyRow {
        alpha,
        max_pool_error,
        degrees: composite.degrees(),
        source,
        meets_alpha: relu_error.max_abs <= 2f64.powi(-(alpha as i32)),
        relu_error,
        gpu: gpu_errors,
        cost: relu_cost(&composite.degrees()),
        generation_ms,
        stages,
    })
}

/// Inputs for the float32 check: uniform on [-1, 1] plus geometric points near 0, where the
/// composite is steepest.
pub fn f32_grid() -> Vec<f32> {
    const UNIFORM: usize = 1 << 16;
    const GEOMETRIC: usize = 1 << 12;
    let mut xs: Vec<f32> = (0..=UNIFORM)
        .map(|i| (-1.0 + 2.0 * i as f64 / UNIFORM as f64) as f32)
        .collect();
    for i in 0..=GEOMETRIC {
        let x = 2f64.powf(-24.0 * (1.0 - i as f64 / GEOMETRIC as f64)) as f32;
        xs.push(x);
        xs.push(-x);
    }
    xs
}

/// Run the GPU ReLU kernel (B = 1) on `f32_grid` and compare with the double-double reference.
pub fn gpu_f32_error(gpu: &Gpu, composite: &Composite, scheme: Scheme, alpha: u32) -> Result<GpuError32, GpuError> {
    use rayon::prelude::*;
    let xs = f32_grid();
    let (ys, _) = ActivationKernel::new(gpu, composite, scheme).relu(&xs, 1.0)?;
    let (eval_error, relu_err) = xs
        .par_iter()
        .zip(ys.par_iter())
        .map(|(&x, &y)| {
            let reference = approx_relu(composite, x as f64, 1.0);
            let y = y as f64;
            let e = if y.is_finite() {
                (y - reference).abs()
            } else {
                f64::INFINITY
            };
            (e, (y - (x as f64).max(0.0)).abs())
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    Ok(GpuError32 {
        scheme,
        eval_error,
        eval_error_log2: eval_error.log2(),
        relu_error_log2: relu_err.log2(),
        within_budget: eval_error <= 0.05 * 2f64.powi(-(alpha as i32)),
    })
}

/// The terminal table.
pub fn format_table(rows: &[PolyRow]) -> String {
    let mut out = String::new();
    let schemes: Vec<Scheme> = rows
        .first()
        .map(|r| r.gpu.iter().map(|g| g.scheme).collect())
        .unwrap_or_default();
    out += "  α  source    degrees        log2 ε   stage images [a, c] → …                      ReLU err f64";
    for s in &schemes {
        out += &format!("  {:<13}", format!("{} f32", s.name()));
    }
    out += "  maxpool 2x2/3x3 (·B)  depth  mults   gen ms\n";
    for r in rows {
        let (src, eps) = match &r.source {
            Source::Ours { log2_eps, .. } => ("ours", format!("{log2_eps:7.3}")),
            Source::Official { .. } => ("official", "      -".to_string()),
        };
        let images = r
            .stages
            .iter()
            .filter_map(|s| s.interval)
            .map(|(a, c)| format!("[{},{}]", short(a), short(c)))
            .collect::<Vec<_>>()
            .join(" ");
        let mark = if r.meets_alpha { ' ' } else { '!' };
        out += &format!(
            "{:>3}  {:<8}  {:<13} {}   {:<46} 2^{:<7.3}{}",
            r.alpha,
            src,
            format!("{:?}", r.degrees),
            eps,
            truncate(&images, 46),
            r.relu_error.log2,
            mark
        );
        for g in &r.gpu {
            let flag = if g.within_budget { ' ' } else { '!' };
            out += &format!("  2^{:<10.2}{flag}", g.relu_error_log2);
        }
        out += &format!(
            "  2^{:<6.2} / 2^{:<6.2}    {:>5}  {:>5}  {:>7.1}\n",
            r.max_pool_error.window_2x2.log2(),
            r.max_pool_error.window_3x3.log2(),
            r.cost.depth,
            r.cost.nonscalar_mults,
            r.generation_ms
        );
    }
    out += "ReLU err: max |x(1+p(x))/2 − ReLU(x)| on [-1,1]; '!' after f64 = above 2^-α. f32 columns: the GPU\n";
    out += "output's ReLU error; '!' = float32 evaluation itself adds more than 5% of 2^-α. depth/mults: HE cost\n";
    out += "of the ReLU (odd baby-step giant-step; non-scalar multiplications). maxpool: worst measured |approx −\n";
    out += "exact| of the paper's pooling trees over random and near-tie windows, in units of B.\n";
    out
}

fn short(x: f64) -> String {
    if x < 0.01 {
        format!("{x:.1e}")
    } else {
        format!("{x:.3}")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
