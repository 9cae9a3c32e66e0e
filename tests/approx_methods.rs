//! The official code's other approximation methods (`square`, `relu-aq`, a user's polynomial)
//! on both backends, and the B search on the approximate network: its stepping logic with a
//! fake evaluator, and on ResNet-20 with real data.

use polycnn::cpu;
use polycnn::cpu::activation::relu_in_place;
use polycnn::eval::command::run_eval;
use polycnn::eval::request::EvalRequest;
use polycnn::eval::{BoundRule, MAX_SEARCH_TRIES, Mode, Overflow, search_bounds};
use polycnn::exec::NoProgress;
use polycnn::exec::{ActivationPlan, PolySite, ReluPoly, SiteMode, SiteStats};
use polycnn::gpu::Gpu;
use polycnn::gpu::activation::{ActivationKernel, Scheme, SiteEval};
use polycnn::gpu::network::GpuNetwork;
use polycnn::model::{self, Arch, Batch, Graph, Shape, SiteKind};
use polycnn::weights::StateDict;
use std::path::PathBuf;

mod common;
use common::{data, gpu};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ReLU ≈ B(3/32 + t/2 + 15/32 t²), t = x/B: the least-squares quadratic of ReLU on [-1, 1]
/// (|t| ≈ 3/16 + 15/16 t²), a user polynomial that keeps a network finite.
fn least_squares_quadratic() -> ReluPoly {
    ReluPoly::parse(
        "# LS fit of ReLU on [-1, 1]\nscaled\n0.09375\n0.5   # c_1\n\n0.46875\n",
        "ls2.txt",
    )
    .unwrap()
}

#[test]
fn relu_polynomials_parse_evaluate_and_name_bad_lines() {
    assert_eq!(ReluPoly::square().eval(-3.0, 50.0), 9.0);
    assert_eq!(ReluPoly::relu_aq().eval(2.0, 50.0), 0.5 + 1.0 + 0.25);
    let ls = least_squares_quadratic();
    assert!(ls.scaled && ls.uses_bound() && !ReluPoly::square().uses_bound());
    assert_eq!(ls.coeffs, [0.09375, 0.5, 0.46875]);
    // B·q(x/B) at x = B: B(3/32 + 1/2 + 15/32) = 1.0625 B
    assert!((ls.eval(8.0, 8.0) - 8.5).abs() < 1e-12);
    let err = ReluPoly::parse("1\n2\nnan\n", "p.txt").unwrap_err();
    assert!(err.contains("p.txt:3") && err.contains("nan"), "{err}");
    let err = ReluPoly::parse("1\n0x\n", "p.txt").unwrap_err();
    assert!(err.contains("p.txt:2"), "{err}");
    assert!(
        ReluPoly::parse("# nothing\n\n", "empty.txt")
            .unwrap_err()
            .contains("empty.txt")
    );
    assert!(
        ReluPoly::load(&root().join("no/such/poly.txt"))
            .unwrap_err()
            .contains("poly.txt")
    );
    assert!(Mode::parse_relu("poly:/no/such/file").is_err());
    assert_eq!(
        Mode::parse_relu("square").unwrap(),
        Mode::Poly(Box::new(ReluPoly::square()))
    );
    assert_eq!(
        Mode::parse_relu("relu-aq").unwrap(),
        Mode::Poly(Box::new(ReluPoly::relu_aq()))
    );
    assert!(Mode::parse_relu("cube").unwrap_err().contains("relu-aq"));
    assert!(Mode::parse_maxpool("square").is_err());
}

#[test]
fn cpu_relu_polynomial_counts_inputs_beyond_b_and_clamps_on_request() {
    let poly = ReluPoly::relu_aq();
    let xs: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) / 8.0).collect();
    for clamp in [false, true] {
        let mode = SiteMode::Poly(PolySite {
            poly: &poly,
            bound: 10.0,
            clamp,
        });
        let mut ys = xs.clone();
        let mut stats = SiteStats::new("r", SiteKind::Relu);
        relu_in_place(&mut ys, &mode, None, &mut stats);
        for (x, y) in xs.iter().zip(&ys) {
            let x = if clamp { x.clamp(-10.0, 10.0) } else { *x } as f64;
            assert_eq!(*y, (x * x / 8.0 + x / 2.0 + 0.25) as f32);
        }
        // |x| > 10: x = -12.5..-10.125 (20 values) and 10.125..12.375 (19)
        assert_eq!((stats.count, stats.out_of_range, stats.max_abs), (200, 39, 12.5));
    }
}

#[test]
fn gpu_power_polynomial_relu_matches_f64() {
    let Some(gpu) = gpu() else { return };
    let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) / 64.0).collect();
    for (poly, bound) in [
        (ReluPoly::square(), 30.0),
        (ReluPoly::relu_aq(), 30.0),
        (least_squares_quadratic(), 16.0),
    ] {
        let kernel = ActivationKernel::power(gpu, &poly.coeffs);
        let eval = SiteEval::Power {
            bound,
            scaled: poly.scaled,
            clamp: false,
        };
        let (ys, stats) = kernel.relu_with(&xs, eval).unwrap();
        for (x, y) in xs.iter().zip(&ys) {
            let want = poly.eval(*x as f64, bound as f64);
            assert!(
                (*y as f64 - want).abs() <= 1e-6 * (want.abs() + 1.0),
                "{} at {x}: {y} vs {want}",
                poly.name
            );
        }
        let beyond = xs.iter().filter(|x| x.abs() > bound).count() as u64;
        assert_eq!(
            (stats.out_of_range, stats.max_abs),
            (beyond, 2049.0 / 64.0),
            "{}",
            poly.name
        );
    }
}

fn fixture_batch(name: &str, images: usize) -> Batch {
    let dict = StateDict::load(&root().join("tests/fixtures").join(name)).unwrap();
    let input = dict.get("input").unwrap();
    let s = &input.shape;
    Batch::new(s[0], Shape::new(s[1], s[2], s[3]), input.data.clone())
        .unwrap()
        .slice(0, images)
}

fn max_relative_difference(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - *w as f64).abs()))
        / scale
}

/// GPU (standalone ReLU after an unfused conv) against the CPU with a user polynomial at every
/// ReLU: logits, and per site max |x| and out-of-range counts.
fn gpu_matches_cpu_with_polynomial(gpu: &Gpu, graph: &Graph, batch: &Batch, bound: f64) {
    let poly = least_squares_quadratic();
    let plan = ActivationPlan {
        modes: graph
            .sites
            .iter()
            .map(|s| match s.kind {
                SiteKind::Relu => SiteMode::Poly(PolySite {
                    poly: &poly,
                    bound,
                    clamp: false,
                }),
                SiteKind::MaxPool => SiteMode::Exact,
            })
            .collect(),
        noise: None,
    };
    let on_cpu = cpu::run(graph, batch, &plan).unwrap();
    let on_gpu = GpuNetwork::new(gpu, graph, Scheme::Clenshaw)
        .unwrap()
        .run(batch, &plan)
        .unwrap();
    let diff = max_relative_difference(&on_gpu.logits, &on_cpu.logits);
    assert!(diff <= 1e-4, "{}: GPU vs CPU {diff:e}", graph.name);
    let mut out_of_range = 0;
    for (g, c) in on_gpu.sites.iter().zip(&on_cpu.sites) {
        assert_eq!(g.count, c.count, "{}", c.name);
        assert!(
            (g.max_abs - c.max_abs).abs() <= 1e-4 * c.max_abs,
            "{}: {} vs {}",
            c.name,
            g.max_abs,
            c.max_abs
        );
        assert!(g.out_of_range.abs_diff(c.out_of_range) <= 2, "{}", c.name);
        out_of_range += c.out_of_range;
    }
    println!(
        "{}: GPU vs CPU {diff:.2e}, {out_of_range} inputs beyond B = {bound}",
        graph.name
    );
}

#[test]
fn gpu_network_with_a_relu_polynomial_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let Some(resnet) = data("cifar10/weights_akamaster/resnet20-12fca82f.th") else {
        return;
    };
    let Some(vgg) = data("cifar10/weights_vgg/vgg11_bn_cifar10.pth") else {
        return;
    };
    let resnet = model::load(Arch::CifarResNet(20), &resnet).unwrap();
    // residual + ReLU convs, and B below some inputs so out-of-range counts are compared
    gpu_matches_cpu_with_polynomial(
        gpu,
        &resnet,
        &fixture_batch("akamaster_resnet20_logits.safetensors", 4),
        12.0,
    );
    let vgg = model::load(Arch::CifarVgg11Bn, &vgg).unwrap();
    gpu_matches_cpu_with_polynomial(
        gpu,
        &vgg,
        &fixture_batch("cifar10_vgg11_bn_logits.safetensors", 4),
        20.0,
    );
}

/// A fake network: image i overflows ReLU sites below `relu_need[i]` and max-pool sites below
/// `max_need[i]`; ReLU sites come first. Batches of 4 in the order given. Records every order.
struct Fake {
    relu_need: Vec<f64>,
    max_need: Vec<f64>,
    orders: Vec<Vec<usize>>,
}

impl Fake {
    fn first_overflow(&mut self, order: &[usize], relu: f64, maxpool: f64) -> Result<Option<Overflow>, String> {
        self.orders.push(order.to_vec());
        let mut run = 0;
        for batch in order.chunks(4) {
            run += batch.len();
            let worst = |need: &[f64]| batch.iter().map(|&i| need[i]).fold(0.0, f64::max);
            let (r, m) = (worst(&self.relu_need), worst(&self.max_need));
            let kind = if r > relu {
                Some(("relu", r))
            } else if m > maxpool {
                Some(("maxpool", m))
            } else {
                None
            };
            if let Some((kind, max_abs)) = kind {
                return Ok(Some(Overflow {
                    kind,
                    site: kind.to_string(),
                    max_abs,
                    images: batch.to_vec(),
                    images_run: run,
                }));
            }
        }
        Ok(None)
    }
}

#[test]
fn search_raises_only_the_overflowing_kind_and_reruns_overflowing_images_first() {
    let mut relu_need = vec![10.0; 20];
    let mut max_need = vec![3.0; 20];
    relu_need[13] = 61.0; // needs B_relu = 65 on the grid 50, 55, …
    relu_need[2] = 52.0;
    max_need[17] = 57.0; // needs B_max = 60
    let mut fake = Fake {
        relu_need,
        max_need,
        orders: Vec::new(),
    };
    let ((relu, maxpool), tries) = search_bounds(20, (Some(50.0), Some(50.0)), (5.0, 5.0), |o, r, m| {
        fake.first_overflow(o, r.unwrap(), m.unwrap())
    })
    .unwrap();
    assert_eq!((relu, maxpool), (Some(65.0), Some(60.0)));
    let tried: Vec<(f64, f64)> = tries
        .iter()
        .map(|t| (t.relu_bound.unwrap(), t.maxpool_bound.unwrap()))
        .collect();
    assert_eq!(
        tried,
        [
            (50.0, 50.0),
            (55.0, 50.0),
            (60.0, 50.0),
            (65.0, 50.0),
            (65.0, 55.0),
            (65.0, 60.0)
        ]
    );
    // first try: stops at the first batch (image 2 needs 52); the next starts with that batch
    assert_eq!(tries[0].overflow.as_ref().unwrap().images, [0, 1, 2, 3]);
    assert_eq!(fake.orders[1][..4], [0, 1, 2, 3]);
    // the batch holding image 13 overflows at 55 and 60, then runs first
    assert_eq!(tries[1].overflow.as_ref().unwrap().images, [12, 13, 14, 15]);
    assert_eq!(fake.orders[2][..8], [0, 1, 2, 3, 12, 13, 14, 15]);
    assert_eq!(
        tries[2].images_run, 8,
        "a failing B is rejected after the batches that failed before"
    );
    // every image runs exactly once per try order, and the final try runs them all
    for order in &fake.orders {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
    assert!(tries.last().unwrap().overflow.is_none());
    assert_eq!(tries.last().unwrap().images_run, 20);
}

/// A kind with no start is not searched: its B is never tried or raised, and an overflow
/// reported for it is an error, not an endless search.
#[test]
fn search_of_one_kind_leaves_the_other_unsearched() {
    let mut relu_need = vec![10.0; 12];
    relu_need[5] = 53.0;
    let mut fake = Fake {
        relu_need,
        max_need: vec![1000.0; 12],
        orders: Vec::new(),
    };
    let ((relu, maxpool), tries) = search_bounds(12, (Some(50.0), None), (5.0, 5.0), |o, r, m| {
        assert_eq!(m, None);
        fake.first_overflow(o, r.unwrap(), f64::INFINITY)
    })
    .unwrap();
    assert_eq!((relu, maxpool), (Some(55.0), None));
    assert!(tries.iter().all(|t| t.maxpool_bound.is_none()), "{tries:?}");
    let err = search_bounds(12, (Some(50.0), None), (5.0, 5.0), |o, _, _| {
        Ok(Some(Overflow {
            kind: "maxpool",
            site: "features.2".into(),
            max_abs: 70.0,
            images: o[..1].to_vec(),
            images_run: 1,
        }))
    })
    .unwrap_err();
    assert!(err.contains("features.2") && err.contains("not searched"), "{err}");
}

#[test]
fn search_gives_up_with_an_error_when_nothing_fits() {
    let mut calls = 0;
    let err = search_bounds(8, (Some(50.0), Some(50.0)), (5.0, 5.0), |order, _, _| {
        calls += 1;
        Ok(Some(Overflow {
            kind: "relu",
            site: "blows.up".into(),
            max_abs: f64::INFINITY,
            images: order[..1].to_vec(),
            images_run: 1,
        }))
    })
    .unwrap_err();
    assert_eq!(calls, MAX_SEARCH_TRIES);
    assert!(err.contains("no bound found"), "{err}");
}

/// ResNet-20 on the first lossless images (`None`: skipped without the real data).
fn resnet20_request(limit: usize) -> Option<EvalRequest> {
    let weights = data("cifar10/weights_akamaster/resnet20-12fca82f.th")?;
    let images = data("cifar10/test_first1000_png")?;
    Some(EvalRequest {
        alphas: vec![7],
        bound: BoundRule::Search { start: 20.0, step: 5.0 }.into(),
        bound_max: BoundRule::Search { start: 20.0, step: 5.0 }.into(),
        batch: 50,
        limit: Some(limit),
        scheme: Scheme::Clenshaw,
        ..EvalRequest::new(Arch::CifarResNet(20), weights, images)
    })
}

#[test]
fn resnet20_search_on_the_approximate_network_exceeds_the_exact_bound() {
    // Grid 20, 25, …: the exact network's largest ReLU input on these images is ≈ 27 (→ 30).
    let Some(request) = resnet20_request(200) else { return };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    let exact = run_eval(
        &EvalRequest {
            bound: BoundRule::SearchExact { start: 20.0, step: 5.0 }.into(),
            bound_max: BoundRule::SearchExact { start: 20.0, step: 5.0 }.into(),
            ..request
        },
        None,
        &NoProgress,
    )
    .unwrap();
    let exact_bound = exact.bounds.per_site[0].bound;
    let search = &report.bounds.search[0];
    println!("{}; exact-network bound {exact_bound}", search.summary());
    assert_eq!(exact_bound, 30.0);
    let found = search.relu_bound.unwrap();
    assert!(found > exact_bound, "{}", search.summary());
    assert!(search.tries.len() >= 3 && search.tries.iter().rev().skip(1).all(|t| t.overflow.is_some()));
    let config = &report.configs[0];
    assert!(config.sites.iter().all(|s| s.bound == found));
    assert_eq!((config.out_of_range, config.non_finite), (0, 0));
    let approx_max = config.sites.iter().map(|s| s.approx_max_abs).fold(0.0, f32::max) as f64;
    assert!(approx_max > found - 5.0 && approx_max <= found);
}

#[test]
fn relu_aq_runs_once_with_exact_max_pooling_and_reports_its_method() {
    let Some(request) = resnet20_request(50) else { return };
    let request = EvalRequest {
        relu: Mode::parse_relu("relu-aq").unwrap(),
        alphas: vec![7, 8, 9],
        ..request
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    assert_eq!(report.configs.len(), 1, "a ReLU polynomial does not depend on α");
    let config = &report.configs[0];
    assert_eq!(config.label, "relu-aq ReLU");
    assert!(config.polynomial.source.contains("relu-aq"));
    // B does not change x²/8 + x/2 + 1/4 and max-pooling stays exact: nothing to search (the
    // official code has no range check for it either)
    assert!(report.bounds.search.is_empty(), "{:?}", report.bounds.search);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["configs"][0]["relu"]["poly"]["name"], "relu-aq");
    assert_eq!(json["configs"][0]["maxpool"], "exact");
    // the baseline collapses ResNet-20 (its activations grow layer after layer)
    assert!(config.approx.top1_correct < 20 || config.non_finite > 0);
}

#[test]
fn a_relu_polynomial_at_a_max_pool_site_is_an_error_naming_it() {
    let graph = model::random(Arch::CifarVgg11Bn, 3).unwrap();
    let poly = ReluPoly::square();
    let mut plan = ActivationPlan::exact(&graph);
    let pool = graph.sites.iter().position(|s| s.kind == SiteKind::MaxPool).unwrap();
    plan.modes[pool] = SiteMode::Poly(PolySite {
        poly: &poly,
        bound: 10.0,
        clamp: false,
    });
    let batch = Batch::new(1, graph.input, vec![0.5; graph.input.numel()]).unwrap();
    let err = cpu::run(&graph, &batch, &plan).unwrap_err().to_string();
    assert!(err.contains(&graph.sites[pool].name) && err.contains("square"), "{err}");
    let Some(gpu) = gpu() else { return };
    let kernel = ActivationKernel::power(gpu, &poly.coeffs);
    let shape = polycnn::gpu::activation::PoolShape {
        planes: 1,
        height: 4,
        width: 4,
        window: polycnn::model::Window2d::square(2, 2, 0),
    };
    let eval = SiteEval::Power {
        bound: 10.0,
        scaled: false,
        clamp: false,
    };
    assert!(kernel.max_pool(&[0.0; 16], shape, eval).is_err());
}

#[test]
fn resnet20_alpha_7_search_on_the_1000_lossless_images_ends_at_65() {
    // The issue's measurement: the exact network's ReLU inputs stay below 28, yet the official
    // search on the α = 7 network ends at B = 65 (50, 55, 60 overflow).
    let Some(request) = resnet20_request(1000) else { return };
    let request = EvalRequest {
        bound: BoundRule::Search { start: 50.0, step: 5.0 }.into(),
        ..request
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    let search = &report.bounds.search[0];
    let tried: Vec<Option<f64>> = search.tries.iter().map(|t| t.relu_bound).collect();
    assert_eq!(tried, [50.0, 55.0, 60.0, 65.0].map(Some), "{}", search.summary());
    assert_eq!(report.configs[0].out_of_range, 0);
    assert!(report.exact_sites.iter().all(|s| s.max_abs < 28.0));
}
