//! CKKS level model and bootstrap placement against counts derived by hand: a tiny chain, a
//! residual block, a max-pool, and ResNet-20 at a Lattigo preset; presets and their errors.

use polycnn::he::{CkksPreset, HeCost, SecretDist, ckks_cost, level_graph, load_preset};
use polycnn::model::cost::{SitePrecision, uniform_plan};
use polycnn::model::{self, Arch, Conv2d, Graph, GraphBuilder, Linear, NodeId, Op, Shape, Window2d};
use polycnn::weights::Tensor;

/// A preset with `levels` levels after bootstrapping and `slots` slots (the other fields do not
/// enter the placement).
fn preset(levels: u32, slots: u64) -> CkksPreset {
    CkksPreset {
        name: format!("test-L{levels}-S{slots}"),
        source: "tests/ckks.rs".into(),
        log_ring_degree: 12,
        slots,
        scale_bits: 40,
        first_modulus_bits: 60,
        levels_after_bootstrap: levels,
        bootstrap_levels: 15,
        bootstrap_precision_bits: Some(20.0),
        precision_kind: None,
        secret: SecretDist::UniformTernary,
        ephemeral_hamming_weight: None,
        error_std: 3.2,
        dnum: None,
        special_modulus_bits: None,
        level_budget: None,
        secure: false,
    }
}

fn conv(b: &mut GraphBuilder, name: &str, input: NodeId, cin: usize, cout: usize) -> NodeId {
    b.push(
        name,
        Op::Conv2d(Conv2d {
            input,
            weight: Tensor {
                shape: vec![cout, cin, 3, 3],
                data: vec![0.01; cout * cin * 9],
            },
            bias: vec![0.0; cout],
            window: Window2d::square(3, 1, 1),
            groups: 1,
        }),
    )
}

fn linear(b: &mut GraphBuilder, input: NodeId, inputs: usize, outputs: usize) -> NodeId {
    let flat = b.push("flatten", Op::Flatten { input });
    b.push(
        "fc",
        Op::Linear(Linear {
            input: flat,
            weight: Tensor {
                shape: vec![outputs, inputs],
                data: vec![0.01; outputs * inputs],
            },
            bias: vec![0.0; outputs],
        }),
    )
}

/// Every site approximated by the single stage of degree 3: stage depth 2, ReLU depth 3.
fn degree3(graph: &Graph) -> Vec<SitePrecision> {
    uniform_plan(graph, None, &[3], true, true)
}

/// (points, ciphertexts) of the greedy and the optimal placement.
fn counts(graph: &Graph, levels: u32, slots: u64) -> ((u32, u64), (u32, u64)) {
    let c = ckks_cost(graph, &degree3(graph), &preset(levels, slots)).unwrap();
    (
        (c.greedy.bootstrap_points, c.greedy.bootstrapped_ciphertexts),
        (c.optimal.bootstrap_points, c.optimal.bootstrapped_ciphertexts),
    )
}

fn greedy_nodes(graph: &Graph, levels: u32, slots: u64) -> Vec<(String, String)> {
    let c = ckks_cost(graph, &degree3(graph), &preset(levels, slots)).unwrap();
    c.greedy.points.into_iter().map(|p| (p.node, p.part)).collect()
}

/// input 1x4x4 → ReLU r1 → conv c1 (1 → 4 channels) → ReLU r2 → flatten → fc (2 outputs).
fn tiny_chain() -> Graph {
    let mut b = GraphBuilder::new("chain", Shape::new(1, 4, 4));
    let r1 = b.relu("r1", GraphBuilder::INPUT);
    let c1 = conv(&mut b, "c1", r1, 1, 4);
    let r2 = b.relu("r2", c1);
    let fc = linear(&mut b, r2, 64, 2);
    b.finish(fc).unwrap()
}

#[test]
fn tiny_chain_by_hand() {
    // L = 5, 8 slots; the input (16 elements) is encrypted at level 5.
    // r1: stage (depth 2) 5 → 3; product min(x = 5, 3) − 1 = 2.   c1: 2 → 1 (64 elements).
    // r2's stage needs 2 > 1: greedy bootstraps c1's output, 64 / 8 = 8 ciphertexts → 5;
    // stage 3; product min(5, 3) − 1 = 2; flatten 2; fc 1. Greedy: 1 point, 8 ciphertexts.
    // Optimal: bootstrap r1's output instead (16 / 8 = 2 ciphertexts): 5; c1 4; stage 2;
    // product min(4, 2) − 1 = 1; flatten 1; fc 0. One point, 2 ciphertexts. Total depth
    // r1 3 + c1 1 + r2 3 + fc 1 = 8 > 5, so at least one bootstrap is needed.
    let g = tiny_chain();
    assert_eq!(counts(&g, 5, 8), ((1, 8), (1, 2)));
    assert_eq!(greedy_nodes(&g, 5, 8), [("c1".to_string(), "output".to_string())]);
    let c = ckks_cost(&g, &degree3(&g), &preset(5, 8)).unwrap();
    assert_eq!(c.total_depth, 8);
    assert_eq!(
        (c.optimal.points[0].node.as_str(), c.optimal.points[0].part.as_str()),
        ("r1", "output")
    );
    // With 8 levels nothing needs bootstrapping.
    assert_eq!(counts(&g, 8, 8), ((0, 0), (0, 0)));
    // Exact sites are free: only c1 and fc remain (2 levels).
    let exact = uniform_plan(&g, None, &[3], false, false);
    let c = ckks_cost(&g, &exact, &preset(2, 8)).unwrap();
    assert_eq!((c.total_depth, c.optimal.bootstrap_points), (2, 0));
}

/// input 1x2x2 → c0 → r0 → [c1 → r1 → c2] + r0 → add → r2 → flatten → fc.
fn residual_block() -> Graph {
    let mut b = GraphBuilder::new("block", Shape::new(1, 2, 2));
    let c0 = conv(&mut b, "c0", GraphBuilder::INPUT, 1, 1);
    let r0 = b.relu("r0", c0);
    let c1 = conv(&mut b, "c1", r0, 1, 1);
    let r1 = b.relu("r1", c1);
    let c2 = conv(&mut b, "c2", r1, 1, 1);
    let add = b.push("add", Op::Add { a: c2, b: r0 });
    let r2 = b.relu("r2", add);
    let fc = linear(&mut b, r2, 4, 2);
    b.finish(fc).unwrap()
}

#[test]
fn residual_block_by_hand() {
    // L = 5, 2 slots: every value holds 4 elements = 2 ciphertexts (fc's output: 1).
    // Input 5; c0 4; r0: stage 2, product min(4, 2) − 1 = 1 (the block input, at 1).
    // c1: 1 → 0. r1's stage needs 2: greedy bootstraps c1's output (2 ct) → 5; stage 3;
    // product min(5, 3) − 1 = 2. c2: 1. add: min(c2 1, shortcut r0 1) = 1: the skip branch
    // holds the block at r0's level even though the main branch was refreshed.
    // r2's stage needs 2 > 1: greedy bootstraps the add's output (2 ct) → 5; stage 3; product 2;
    // flatten 2; fc 1. Greedy: 2 points, 4 ciphertexts.
    // Optimal: total depth c0 1 + r0 3 + c1 1 + r1 3 + c2 1 + r2 3 + fc 1 = 13 > 5 + 5, so at
    // least 2 bootstraps, each of a 4-element value (2 ct): 2 points, 4 ciphertexts.
    let g = residual_block();
    assert_eq!(counts(&g, 5, 2), ((2, 4), (2, 4)));
    assert_eq!(
        greedy_nodes(&g, 5, 2),
        [
            ("c1".to_string(), "output".to_string()),
            ("add".to_string(), "output".to_string())
        ]
    );
    let c = ckks_cost(&g, &degree3(&g), &preset(5, 2)).unwrap();
    assert_eq!(c.total_depth, 13);
    // One slot per element doubles every count.
    assert_eq!(counts(&g, 5, 1), ((2, 8), (2, 8)));
}

#[test]
fn max_pool_by_hand() {
    // input 1x4x4 (16 elements) → 2x2 max-pool (4 elements) → flatten → fc; L = 4, 8 slots.
    // The pool is a 2-round max tree (ceil(log2 4) = 2), each round a degree-3 stage (depth 2)
    // on values holding the 16 input elements, then the product (1).
    // Round 1: stage 4 → 2; product min(4, 2) − 1 = 1. Round 2's stage needs 2 > 1: bootstrap
    // round 1's result (16 / 8 = 2 ct) → 4; stage 2; product min(4, 2) − 1 = 1; flatten 1;
    // fc 0. Greedy: 1 point, 2 ciphertexts. Total depth 3 + 3 + 1 = 7 > 4, so one bootstrap is
    // needed, and it has to come before round 2's stage with round 1's product behind it (a
    // refreshed stage output alone leaves round 2's product at 0): the optimum is the same.
    let mut b = GraphBuilder::new("pool", Shape::new(1, 4, 4));
    let pool = Window2d::square(2, 2, 0);
    let p = b.max_pool("pool", GraphBuilder::INPUT, pool);
    let fc = linear(&mut b, p, 4, 2);
    let g = b.finish(fc).unwrap();
    assert_eq!(counts(&g, 4, 8), ((1, 2), (1, 2)));
    assert_eq!(
        greedy_nodes(&g, 4, 8),
        [("pool".to_string(), "tree level 1".to_string())]
    );
    let c = ckks_cost(&g, &degree3(&g), &preset(4, 8)).unwrap();
    assert_eq!(c.total_depth, 7);
    // The level graph: input, 2 × (stage, product), flatten, fc.
    assert_eq!(level_graph(&g, &degree3(&g)).unwrap().units.len(), 7);
}

#[test]
fn resnet20_at_lattigo_n16qp1546_by_hand() {
    // N16QP1546H192H32: L = 9 levels at scale 2^40, 2^15 slots; every ResNet-20 activation
    // (at most 16x32x32 = 16384 elements) fits one ciphertext, so ciphertexts = points.
    // α = 14, the paper's degrees 15, 27, 29: stage depths 4, 5, 5, ReLU depth 15 > 9.
    // A ReLU whose input x is at level l:
    //   l = 9: stage 1 → 5, stage 2 → 0, bootstrap, stage 3 → 4, product min(9, 4) − 1 = 3;
    //   4 ≤ l < 9: stage 1 → l − 4 < 5, bootstrap, → 4, bootstrap, → 4, product 3;
    //   l < 4: bootstrap x, then as l = 9.
    // Every ReLU leaves level 3, and needs 2 bootstraps unless x arrives at exactly 9, which
    // only a bootstrap of x gives (a convolution leaves at most 8): 2 per ReLU at best.
    // Greedy: stem conv 9 → 8, ReLU 2 bootstraps → 3. Each block: conv 3 → 2, ReLU (x = 2:
    // bootstrap x, bootstrap stage 2) → 3, conv → 2, add with the shortcut (identity at 3, or
    // option A's mask 3 → 2) → 2, ReLU 2 bootstraps → 3: 4 per block. Global average pool is
    // folded into fc (0 levels), fc 3 → 2. Greedy: 2 + 9 × 4 = 38 points = 38 ciphertexts;
    // optimal: 19 ReLUs × 2 = 38 as well.
    // Depth without bootstrapping: stem 1 + 15, 9 blocks × (1 + 15 + 1 + 15), fc 1 = 305.
    let graph = model::random(Arch::CifarResNet(20), 0).unwrap();
    let preset = load_preset("N16QP1546H192H32").unwrap();
    let plan = uniform_plan(&graph, Some(14), &[15, 27, 29], true, true);
    let c = ckks_cost(&graph, &plan, &preset).unwrap();
    assert_eq!(c.total_depth, 305);
    assert_eq!((c.greedy.bootstrap_points, c.greedy.bootstrapped_ciphertexts), (38, 38));
    assert_eq!(
        (c.optimal.bootstrap_points, c.optimal.bootstrapped_ciphertexts),
        (38, 38)
    );
    // Every ReLU node carries 2 bootstraps in the greedy placement.
    let relus = graph.sites.len();
    assert_eq!(relus, 19);
    assert!(c.per_node.iter().all(|r| r.greedy_ciphertexts <= 2), "{:?}", c.per_node);
}

#[test]
fn unknown_preset_and_bad_file_are_clear_errors() {
    let e = load_preset("N99").unwrap_err().to_string();
    assert!(e.contains("N99") && e.contains("N16QP1553H192H32"), "{e}");
    let dir = std::env::temp_dir().join(format!("polycnn-ckks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        r#"{"name": "x", "log_ring_degree": 16, "slots": 32768, "scale_bits": 40,
            "first_modulus_bits": 60, "levels_after_bootstrap": "nine", "bootstrap_levels": 15,
            "secret": {"kind": "uniform_ternary"}}"#,
    )
    .unwrap();
    let e = load_preset(path.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("levels_after_bootstrap") && e.contains("bad.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// With `--ckks`, every eval configuration's `he_cost` carries the CKKS cost `cost --ckks` gives.
#[test]
fn eval_reports_carry_the_ckks_cost_with_a_preset() {
    use polycnn::eval::command::run_eval;
    use polycnn::eval::request::EvalRequest;
    use polycnn::eval::{BoundRule, Mode};
    use polycnn::exec::NoProgress;
    use polycnn::model::cost::network_cost;
    use polycnn::poly::paper_degrees;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/digits");
    let preset = load_preset("N16QP1547H192H32").unwrap();
    let request = EvalRequest {
        alphas: vec![7, 10],
        bound: BoundRule::Fixed { bound: 8.0 }.into(),
        bound_max: BoundRule::Fixed { bound: 8.0 }.into(),
        limit: Some(32),
        maxpool: Mode::Approx,
        ckks: Some(preset.clone()),
        ..EvalRequest::new(
            Arch::DigitsCnn,
            dir.join("digits_cnn.safetensors"),
            dir.join("digits_test.bin"),
        )
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    let graph = request.model.open().unwrap().graph;
    assert_eq!(report.he_cost.len(), 2);
    for (cost, alpha) in report.he_cost.iter().zip([7, 10]) {
        let plan = uniform_plan(&graph, Some(alpha), paper_degrees(alpha).unwrap(), true, true);
        let want = HeCost::with_ckks(network_cost(&graph, &plan).unwrap(), &graph, &plan, Some(&preset)).unwrap();
        assert_eq!(cost, &want);
        let ckks = cost.ckks.as_ref().expect("a CKKS cost with --ckks");
        assert!(ckks.optimal.bootstrapped_ciphertexts > 0);
        assert!(ckks.optimal.bootstrapped_ciphertexts <= ckks.greedy.bootstrapped_ciphertexts);
    }
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["he_cost"][0]["ckks"]["optimal"]["bootstrapped_ciphertexts"]
            .as_u64()
            .unwrap()
            > 0
    );
}
