//! HE cost of whole networks (elements, evaluations, critical-path depth, operation counts)
//! against hand-computed values, and the degree optimizer's lists against their bound.

use polycnn::exec::NoProgress;
use polycnn::model::cost::{CostError, SitePrecision, network_cost, uniform_plan};
use polycnn::model::{self, Arch, Graph, GraphBuilder, Op, Shape, Window2d};
use polycnn::poly::cost::{HeCost, max_cost, relu_cost};
use polycnn::poly::degrees::{ErrorTable, SearchLimits, optimise_degrees};
use polycnn::poly::verify::relu_error;
use polycnn::poly::{optimise_eps, paper_degrees};

fn approx(degrees: &[usize]) -> SitePrecision {
    SitePrecision::Approx {
        alpha: None,
        degrees: degrees.to_vec(),
    }
}

fn pool(kernel: usize, stride: usize) -> Window2d {
    Window2d::square(kernel, stride, 0)
}

/// input 2x4x4 → ReLU "r1" → 2x2 max-pool "pool" (2x2x2) → flatten.
fn relu_then_pool() -> Graph {
    let mut b = GraphBuilder::new("tiny", Shape::new(2, 4, 4));
    let r = b.relu("r1", GraphBuilder::INPUT);
    let p = b.max_pool("pool", r, pool(2, 2));
    let f = b.push("flatten", Op::Flatten { input: p });
    b.finish(f).unwrap()
}

/// input 1x2x2 → "r0" → two parallel ReLUs "a", "b" → add → "r3".
fn parallel_branches() -> Graph {
    let mut g = GraphBuilder::new("branches", Shape::new(1, 2, 2));
    let r0 = g.relu("r0", GraphBuilder::INPUT);
    let a = g.relu("a", r0);
    let b = g.relu("b", r0);
    let sum = g.push("add", Op::Add { a, b });
    let r3 = g.relu("r3", sum);
    let f = g.push("flatten", Op::Flatten { input: r3 });
    g.finish(f).unwrap()
}

#[test]
fn per_evaluation_costs_by_hand() {
    // odd d=3 by BSGS: T2 = 2T1²−1 (1 ns, 2 add), q = 2c1·T1, r = (c0−c1)·T1 (2 sc), q·T2 + r
    // (1 ns, 1 add): depth 2, (2 ns, 2 sc, 3 add). ReLU adds 1+p (add), x·(1+p) (ns, +1 level),
    // ·1/2 (sc); max adds a+b, a−b, the final sum (3 add), one ns (+1 level), ·1/2 (sc).
    let c = |depth, nonscalar_mults, scalar_mults, additions| HeCost {
        depth,
        nonscalar_mults,
        scalar_mults,
        additions,
    };
    assert_eq!(relu_cost(&[3]), c(3, 3, 3, 4));
    assert_eq!(max_cost(&[3]), c(3, 3, 3, 6));
    // d=7 (baby steps T1, T3; giant step T4): T2, T3, T4 (3 ns, 6 add), q and r two-term
    // combinations (4 sc, 2 add), q·T4 + r (1 ns, 1 add): depth 3, (4, 4, 9) per stage.
    assert_eq!(relu_cost(&[7, 7]), c(7, 9, 9, 19));
}

#[test]
fn tiny_graph_elements_evaluations_and_depth() {
    let g = relu_then_pool();
    let cost = network_cost(&g, &uniform_plan(&g, Some(4), &[3], true, true)).unwrap();
    let (relu, pool) = (&cost.sites[0], &cost.sites[1]);
    // ReLU: 2·4·4 = 32 elements, one evaluation each, (3 ns, 3 sc, 4 add) each, depth 3.
    assert_eq!(
        (relu.kind.as_str(), relu.elements, relu.evaluations, relu.depth),
        ("relu", 32, 32, 3)
    );
    assert_eq!((relu.nonscalar_mults, relu.scalar_mults, relu.additions), (96, 96, 128));
    // 2x2 pool: 2·2·2 = 8 windows, 3 max each = 24 evaluations of (3 ns, 3 sc, 6 add); the
    // tree has 2 levels of depth 3.
    assert_eq!(
        (pool.kind.as_str(), pool.elements, pool.evaluations, pool.depth),
        ("maxpool", 8, 24, 6)
    );
    assert_eq!((pool.nonscalar_mults, pool.scalar_mults, pool.additions), (72, 72, 144));
    assert_eq!(pool.alpha, Some(4));
    assert_eq!((cost.elements, cost.evaluations), (40, 56));
    assert_eq!((cost.critical_depth, cost.summed_depth), (9, 9));
    assert_eq!(
        (cost.nonscalar_mults, cost.scalar_mults, cost.additions),
        (168, 168, 272)
    );

    // Exact max-pool: only the ReLU is costed.
    let relu_only = network_cost(&g, &uniform_plan(&g, None, &[3], true, false)).unwrap();
    assert_eq!(
        (relu_only.elements, relu_only.critical_depth, relu_only.nonscalar_mults),
        (32, 3, 96)
    );
    assert_eq!(relu_only.sites[1].degrees, Vec::<usize>::new());
}

#[test]
fn three_by_three_window_has_eight_comparisons_in_four_levels() {
    let mut b = GraphBuilder::new("pool3", Shape::new(1, 3, 3));
    let p = b.max_pool("pool", GraphBuilder::INPUT, pool(3, 1));
    let g = b.finish(p).unwrap();
    let cost = network_cost(&g, &[approx(&[3])]).unwrap();
    // ((((x0,x1),(x2,x3)),((x4,x5),(x6,x7))),x8): 8 max, 4 levels of depth 3.
    assert_eq!((cost.elements, cost.evaluations, cost.critical_depth), (1, 8, 12));
    assert_eq!(cost.nonscalar_mults, 8 * 3);
}

#[test]
fn parallel_branches_count_once_on_the_critical_path() {
    let g = parallel_branches();
    // r0 [3] (depth 3), a [3] (3), b [7,7] (7), r3 [3] (3).
    let plan = [approx(&[3]), approx(&[3]), approx(&[7, 7]), approx(&[3])];
    let cost = network_cost(&g, &plan).unwrap();
    assert_eq!(cost.critical_depth, 3 + 7 + 3);
    assert_eq!(cost.summed_depth, 3 + 3 + 7 + 3);
    assert_eq!(cost.elements, 16);
    assert_eq!(cost.nonscalar_mults, 4 * (3 + 3 + 9 + 3));
    // The deeper branch exact: the other one sets the depth.
    let plan = [approx(&[3]), approx(&[3]), SitePrecision::Exact, approx(&[3])];
    let cost = network_cost(&g, &plan).unwrap();
    assert_eq!((cost.critical_depth, cost.summed_depth, cost.elements), (9, 9, 12));
}

#[test]
fn resnet20_has_its_sites_in_series() {
    let g = model::random(Arch::CifarResNet(20), 1).unwrap();
    let cost = network_cost(&g, &uniform_plan(&g, Some(14), paper_degrees(14).unwrap(), true, true)).unwrap();
    // stem 16x32x32, then 3 stages of 3 blocks x 2 ReLUs at 16x32x32, 32x16x16, 64x8x8.
    assert_eq!(cost.sites.len(), 19);
    assert_eq!(cost.elements, 16384 + 6 * 16384 + 6 * 8192 + 6 * 4096);
    // The shortcut carries no activation, so every ReLU is on the one critical path.
    let relu = relu_cost(&[15, 27, 29]);
    assert_eq!(cost.critical_depth, 19 * relu.depth);
    assert_eq!(cost.critical_depth, cost.summed_depth);
    assert_eq!(cost.nonscalar_mults, cost.elements * relu.nonscalar_mults as u64);
}

#[test]
fn bad_plans_are_errors_naming_the_problem() {
    let g = relu_then_pool();
    match network_cost(&g, &[approx(&[3])]) {
        Err(e @ CostError::PlanLength { .. }) => assert!(e.to_string().contains("2 activation sites"), "{e}"),
        other => panic!("{other:?}"),
    }
    match network_cost(&g, &[approx(&[3]), approx(&[4])]) {
        Err(e @ CostError::Degrees { .. }) => assert!(e.to_string().contains("`pool`"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(network_cost(&g, &[approx(&[]), SitePrecision::Exact]).is_err());
}

#[test]
fn cost_serialises_to_json() {
    let g = relu_then_pool();
    let cost = network_cost(&g, &uniform_plan(&g, Some(7), &[7, 7], true, true)).unwrap();
    let json = serde_json::to_string(&cost).unwrap();
    let back: polycnn::model::cost::NetworkCost = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cost);
    assert!(json.contains("\"critical_depth\""));
}

/// The optimizer's list meets 2^-α when built (checked again here) and is no more expensive
/// (depth, then non-scalar mults) than the paper's list for the same α.
#[test]
fn optimized_degrees_meet_the_bound_and_beat_or_match_the_paper() {
    let limits = SearchLimits {
        max_degree: 31,
        max_alpha: 10,
        ..SearchLimits::default()
    };
    let table = ErrorTable::build(&limits);
    for alpha in [6, 8, 10] {
        let choice = optimise_degrees(&table, &limits, alpha);
        let best = choice.best.unwrap_or_else(|| panic!("α={alpha}: no list found"));
        let built = optimise_eps(&best.degrees).unwrap();
        let error = relu_error(&built.composite);
        assert!(
            error.max_abs <= 2f64.powi(-(alpha as i32)),
            "α={alpha}: {:?} gives 2^{:.3}",
            best.degrees,
            error.log2
        );
        let ours = relu_cost(&best.degrees);
        let paper = relu_cost(paper_degrees(alpha).unwrap());
        assert!(
            (ours.depth, ours.nonscalar_mults) <= (paper.depth, paper.nonscalar_mults),
            "α={alpha}: {:?} {ours:?} vs paper {paper:?}",
            best.degrees
        );
        assert!(choice.rejected.iter().all(|(_, e)| e.is_nan() || *e > -(alpha as f64)));
    }
}

/// Every eval report carries the cost of each configuration, as `polycnn cost` computes it.
#[test]
fn eval_reports_carry_the_cost_of_each_configuration() {
    use polycnn::eval::command::run_eval;
    use polycnn::eval::request::EvalRequest;
    use polycnn::eval::{BoundRule, Mode};
    use polycnn::gpu::activation::Scheme;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/digits");
    let request = EvalRequest {
        alphas: vec![7, 10],
        maxpool: Mode::Exact,
        bound: BoundRule::Fixed { bound: 8.0 }.into(),
        bound_max: BoundRule::Fixed { bound: 8.0 }.into(),
        batch: 64,
        limit: Some(64),
        scheme: Scheme::Clenshaw,
        ..EvalRequest::new(
            Arch::DigitsCnn,
            dir.join("digits_cnn.safetensors"),
            dir.join("digits_test.bin"),
        )
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    assert_eq!(report.he_cost.len(), 2);
    let graph = request.model.open().unwrap().graph;
    for (cost, alpha) in report.he_cost.iter().zip([7, 10]) {
        let degrees = paper_degrees(alpha).unwrap();
        let want = network_cost(&graph, &uniform_plan(&graph, Some(alpha), degrees, true, false)).unwrap();
        assert_eq!(&cost.network, &want);
        assert!(cost.ckks.is_none(), "no CKKS cost without --ckks");
        assert!(cost.sites.iter().all(|s| (s.kind == "relu") != s.degrees.is_empty()));
    }
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["he_cost"][1]["critical_depth"].as_u64().unwrap() > 0);
}
