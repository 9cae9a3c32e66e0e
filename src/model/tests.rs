use super::params::{BN_EPS, BatchNorm, ParamKind, fold_batch_norm};
use super::*;
use crate::weights::Tensor;

/// Direct convolution of one image, f64 accumulation: `w` is [O, I, k, k].
fn direct_conv(x: &[f32], (c, h, w): (usize, usize, usize), weight: &Tensor, bias: &[f32], pad: usize) -> Vec<f64> {
    let (o_ch, k) = (weight.shape[0], weight.shape[2]);
    let (oh, ow) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
    let mut out = vec![0.0; o_ch * oh * ow];
    for o in 0..o_ch {
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = bias[o] as f64;
                for i in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = ((y + ky) as isize - pad as isize, (xx + kx) as isize - pad as isize);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let wv = weight.data[((o * c + i) * k + ky) * k + kx] as f64;
                                acc += wv * x[(i * h + iy as usize) * w + ix as usize] as f64;
                            }
                        }
                    }
                }
                out[(o * oh + y) * ow + xx] = acc;
            }
        }
    }
    out
}

#[test]
fn folded_batch_norm_equals_conv_then_batch_norm() {
    let mut rng = RandomParams::new(7);
    let (c, o, k) = (3, 4, 3);
    let weight = rng
        .tensor("w", &[o, c, k, k], ParamKind::Weight { fan_in: c * k * k })
        .unwrap();
    let bias = rng.tensor("b", &[o], ParamKind::Bias).unwrap().data;
    let mut take = |kind| rng.tensor("bn", &[o], kind).unwrap().data;
    let bn = BatchNorm {
        weight: take(ParamKind::BnWeight),
        bias: take(ParamKind::BnBias),
        mean: take(ParamKind::BnMean),
        var: take(ParamKind::BnVar),
        eps: BN_EPS,
        name: "bn".into(),
    };
    let x: Vec<f32> = (0..c * 5 * 5).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect();
    let plain = direct_conv(&x, (c, 5, 5), &weight, &bias, 1);
    let per_channel = plain.len() / o;
    let reference: Vec<f64> = plain
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i / per_channel;
            (v - bn.mean[ch] as f64) / (bn.var[ch] as f64 + 1e-5).sqrt() * bn.weight[ch] as f64 + bn.bias[ch] as f64
        })
        .collect();
    let (mut fw, mut fb) = (weight.clone(), bias.clone());
    fold_batch_norm(&mut fw, &mut fb, &bn).unwrap();
    let folded = direct_conv(&x, (c, 5, 5), &fw, &fb, 1);
    for (a, b) in folded.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn negative_variance_is_reported_by_name() {
    let bn = BatchNorm {
        weight: vec![1.0],
        bias: vec![0.0],
        mean: vec![0.0],
        var: vec![-1.0],
        eps: 1e-5,
        name: "layer9.bn".into(),
    };
    let mut w = Tensor {
        shape: vec![1, 1, 1, 1],
        data: vec![1.0],
    };
    let err = fold_batch_norm(&mut w, &mut [0.0], &bn).unwrap_err().to_string();
    assert!(err.contains("layer9.bn.running_var"), "{err}");
}

#[test]
fn architecture_names_round_trip() {
    for arch in Arch::ALL {
        assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
    }
    assert_eq!("resnet50".parse::<Arch>().unwrap(), Arch::ResNet(50));
    assert!("resnet21".parse::<Arch>().is_err());
    assert!("vgg12_bn".parse::<Arch>().is_err());
}

/// Counts a state dict would have: (float tensors + counters, learnable parameters).
fn counts(arch: Arch) -> (usize, usize) {
    let list = list_layers(arch).unwrap();
    let learnable = list
        .iter()
        .filter(|p| {
            matches!(
                p.kind,
                ParamKind::Weight { .. } | ParamKind::Bias | ParamKind::BnWeight | ParamKind::BnBias
            )
        })
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    (list.len(), learnable)
}

#[test]
fn parameter_lists_match_torchvision_counts() {
    // len(model.state_dict()) and sum(p.numel() for p in model.parameters()), torchvision.
    assert_eq!(counts(Arch::ResNet(18)), (122, 11_689_512));
    assert_eq!(counts(Arch::ResNet(50)), (320, 25_557_032));
    assert_eq!(counts(Arch::ResNet(152)).1, 60_192_808);
    assert_eq!(counts(Arch::VggBn(16)).1, 138_365_992);
    // akamaster resnet20: 97 float tensors in the file, no counters; 0.27M parameters.
    let list = list_layers(Arch::CifarResNet(20)).unwrap();
    assert_eq!(list.iter().filter(|p| p.kind != ParamKind::Counter).count(), 97);
    assert_eq!(counts(Arch::CifarResNet(20)).1, 269_722);
}

#[test]
fn parameter_list_follows_state_dict_order() {
    let list = list_layers(Arch::ResNet(50)).unwrap();
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        &names[..7],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight"
        ]
    );
    let ds = names.iter().position(|&n| n == "layer1.0.downsample.0.weight").unwrap();
    assert_eq!(names[ds - 1], "layer1.0.bn3.num_batches_tracked");
    assert_eq!(names[names.len() - 2..], ["fc.weight", "fc.bias"]);
    let fc = list.iter().find(|p| p.name == "fc.weight").unwrap();
    assert_eq!(fc.shape, [1000, 2048]);
}

/// A state dict holding exactly what `arch` expects (random values), to test loading errors.
fn random_state_dict(arch: Arch) -> Vec<(String, Tensor)> {
    let mut rng = RandomParams::new(3);
    list_layers(arch)
        .unwrap()
        .into_iter()
        .filter(|p| p.kind != ParamKind::Counter)
        .map(|p| {
            let t = rng.tensor(&p.name, &p.shape, p.kind).unwrap();
            (p.name, t)
        })
        .collect()
}

#[test]
fn loading_reports_missing_misshaped_unexpected_and_nonfinite_tensors_by_name() {
    let arch = Arch::CifarResNet(20);
    let good = random_state_dict(arch);
    assert!(from_state_dict(arch, &mut StateDict::from_tensors(good.clone())).is_ok());

    let missing: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "layer2.1.bn2.running_var")
        .cloned()
        .collect();
    let err = from_state_dict(arch, &mut StateDict::from_tensors(missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer2.1.bn2.running_var") && err.contains("not in the file"),
        "{err}"
    );

    let mut misshaped = good.clone();
    misshaped[0].1 = Tensor {
        shape: vec![16, 3, 5, 5],
        data: vec![0.0; 16 * 75],
    };
    let err = from_state_dict(arch, &mut StateDict::from_tensors(misshaped))
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv1.weight") && err.contains("[16, 3, 5, 5]"), "{err}");

    let mut extra = good.clone();
    extra.push((
        "fc.weight".into(),
        Tensor {
            shape: vec![1],
            data: vec![0.0],
        },
    ));
    let err = from_state_dict(arch, &mut StateDict::from_tensors(extra))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not used") && err.contains("fc.weight"), "{err}");

    let mut nan = good;
    nan[3].1.data[0] = f32::NAN;
    let name = nan[3].0.clone();
    let err = from_state_dict(arch, &mut StateDict::from_tensors(nan))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&name) && err.contains("NaN"), "{err}");
}

#[test]
fn graphs_have_named_sites_and_expected_shapes() {
    let g = random(Arch::CifarResNet(20), 1).unwrap();
    assert_eq!(g.sites.len(), 19);
    assert_eq!(g.sites[0].name, "relu");
    assert_eq!(g.sites[1].name, "layer1.0.relu1");
    assert_eq!(g.classes().unwrap(), 10);
    let g = random(Arch::ResNet(18), 1).unwrap();
    assert_eq!(
        g.site_named("maxpool").map(|s| g.sites[s].kind),
        Some(SiteKind::MaxPool)
    );
    assert_eq!(g.sites.len(), 1 + 1 + 16);
    let g = random(Arch::CifarVgg11Bn, 1).unwrap();
    let pools: Vec<&str> = g
        .sites
        .iter()
        .filter(|s| s.kind == SiteKind::MaxPool)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        pools,
        ["features.3", "features.7", "features.14", "features.21", "features.28"]
    );
}

#[test]
fn shape_inference_rejects_inconsistent_graphs_naming_the_node() {
    let mut g = random(Arch::CifarResNet(20), 1).unwrap();
    let bad = g.nodes.iter().position(|n| n.name == "layer2.0.add").unwrap();
    if let Op::Add { b, .. } = &mut g.nodes[bad].op {
        *b = 1; // the stem conv: 16x32x32, not 32x16x16
    }
    let err = g.shapes().unwrap_err();
    assert_eq!(err.node, "layer2.0.add");
}

#[test]
fn pool_output_sizes_follow_pytorch() {
    let p = Window2d::square(3, 2, 1);
    assert_eq!(p.out_len(0, 112), Some(56));
    let ceil = Window2d::square(2, 2, 0).with_ceil_mode(true);
    assert_eq!(ceil.out_len(1, 7), Some(4));
    assert_eq!(ceil.with_ceil_mode(false).out_len(1, 7), Some(3));
    // ceil mode: the last window may not start in the right padding
    let edge = Window2d::square(2, 2, 1).with_ceil_mode(true);
    assert_eq!(edge.out_len(0, 5), Some(3));
    assert_eq!(Window2d { kernel: [3, 3], ..edge }.out_len(0, 6), Some(4));
}

#[test]
fn window_geometry_handles_asymmetric_padding_and_dilation() {
    // TF "SAME" for a 3x3/2 window on 10 columns pads [0 left, 1 right]: 5 outputs, the last
    // window's third tap in the right padding.
    let same = Window2d {
        pads: [0, 0, 1, 1],
        ..Window2d::square(3, 2, 0)
    };
    assert!(!same.is_symmetric());
    assert_eq!(same.out_hw(10, 10), Some((5, 5)));
    assert_eq!(same.input_coord(1, 4, 2), 10);
    assert_eq!(same.taps_inside(1, 4, 10), (3, 2));
    // Dilation 2 on a 3-tap kernel spans 5 inputs: 7 − 5 + 1 outputs, and 7 with padding 2.
    let dilated = Window2d {
        dilation: [2, 2],
        ..Window2d::square(3, 1, 0)
    };
    assert_eq!(dilated.extent(0), 5);
    assert_eq!(dilated.out_len(0, 7), Some(3));
    assert_eq!(
        Window2d {
            pads: [2; 4],
            ..dilated
        }
        .out_len(0, 7),
        Some(7)
    );
    assert_eq!(dilated.out_len(0, 4), None);
    // Per-axis stride and kernel.
    let w = Window2d::new([1, 7], [2, 1], [0, 3]);
    assert_eq!(w.out_hw(9, 8), Some((5, 8)));
    assert_eq!(Window2d { stride: [0, 1], ..w }.out_len(0, 9), None);
}

#[test]
fn relu6_sites_share_one_bound() {
    let mut b = GraphBuilder::new("r6", Shape::new(1, 2, 2));
    let r = b.relu("first", GraphBuilder::INPUT);
    let y = b.relu6("act", r);
    let g = b.finish(y).unwrap();
    let names: Vec<&str> = g.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "act.relu", "act.relu_minus6"]);
    assert_eq!(g.sites[2].shares_bound_with, Some(1));
    assert_eq!((g.bound_leader(0), g.bound_leader(2)), (0, 1));
    let mut bounds = [5.0, 2.0, 9.0];
    g.unify_shared_bounds(&mut bounds);
    assert_eq!(bounds, [5.0, 9.0, 9.0]);
    assert!(g.check_shared_bounds(&[None, Some(9.0), Some(9.0)]).is_ok());
    let err = g.check_shared_bounds(&[None, Some(9.0), None]).unwrap_err();
    assert!(
        err.detail.contains("act.relu_minus6") && err.detail.contains("exact"),
        "{err}"
    );
    // A site may only share the bound of an earlier site of its kind.
    let mut bad = g.clone();
    bad.sites[1].shares_bound_with = Some(2);
    assert!(bad.shapes().is_err());
}

#[test]
fn schedule_fuses_conv_relu_and_conv_add_relu_unless_kept() {
    use schedule::{Step, fused_schedule, fused_schedule_keeping};
    let g = random(Arch::CifarResNet(20), 1).unwrap();
    let id = |name: &str| g.nodes.iter().position(|n| n.name == name).unwrap();
    let site = |name: &str| g.site_named(name);
    let steps = fused_schedule(&g);
    assert!(steps.contains(&Step::Conv {
        conv: id("layer1.0.conv1"),
        residual: None,
        site: site("layer1.0.relu1"),
        output: id("layer1.0.relu1")
    }));
    // The residual (the stem's ReLU) exists before conv2 runs: add and ReLU fold into it.
    assert!(steps.contains(&Step::Conv {
        conv: id("layer1.0.conv2"),
        residual: Some(id("relu")),
        site: site("layer1.0.relu2"),
        output: id("layer1.0.relu2")
    }));
    assert!(steps.contains(&Step::Node(id("layer2.0.shortcut"))));
    // Every node is produced by exactly one step or fused into one; no step reads a later value.
    let mut produced = vec![false; g.nodes.len()];
    produced[0] = true;
    for step in &steps {
        assert!(
            step.reads(&g).iter().all(|&r| produced[r]),
            "{step:?} reads an unproduced value"
        );
        produced[step.output()] = true;
    }
    assert!(produced[g.output]);
    let kept = fused_schedule_keeping(&g, &[id("layer1.0.conv1")]);
    assert!(kept.contains(&Step::Conv {
        conv: id("layer1.0.conv1"),
        residual: None,
        site: None,
        output: id("layer1.0.conv1")
    }));
    assert!(kept.contains(&Step::Node(id("layer1.0.relu1"))));
}

#[test]
fn model_source_pairs_model_and_weights() {
    use std::path::PathBuf;
    let ckpt = || Some(PathBuf::from("w.pth"));
    assert_eq!(
        ModelSource::parse("resnet20", ckpt()).unwrap(),
        ModelSource::Builtin {
            arch: Arch::CifarResNet(20),
            weights: "w.pth".into()
        }
    );
    let onnx = ModelSource::parse("nets/My.ONNX", None).unwrap();
    assert_eq!(onnx, ModelSource::Onnx("nets/My.ONNX".into()));
    assert_eq!(onnx.name(), "My.ONNX");
    assert_eq!(onnx.weights_file(), Some(std::path::Path::new("nets/My.ONNX")));
    let both = ModelSource::parse("net.onnx", ckpt()).unwrap_err().to_string();
    assert!(both.contains("--weights w.pth") && both.contains("net.onnx"), "{both}");
    let missing = ModelSource::parse("resnet20", None).unwrap_err().to_string();
    assert!(
        missing.contains("resnet20") && missing.contains("--weights"),
        "{missing}"
    );
    let random = ModelSource::parse_or_random("digits_cnn", None, 3).unwrap();
    assert_eq!(random.weights_file(), None);
    let network = random.open().unwrap();
    assert_eq!(network.descriptor, Arch::DigitsCnn.descriptor());
    assert_eq!(network.graph.sites.len(), random_graph_sites(Arch::DigitsCnn));
    let unknown = ModelSource::parse("net.pt", None).unwrap_err().to_string();
    assert!(unknown.contains("FILE.onnx"), "{unknown}");
}

fn random_graph_sites(arch: Arch) -> usize {
    random(arch, 0).unwrap().sites.len()
}
