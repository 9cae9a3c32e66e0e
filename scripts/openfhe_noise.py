#!/usr/bin/env python3
"""Measures the error CKKS operations add in OpenFHE, for polycnn's noise model (issue #16).

Writes the fixture tests/fixtures/openfhe_noise.json that `cargo test --test ckks_noise` checks
polycnn's predicted error standard deviations against. Runs by hand, never from cargo test.

The `openfhe` wheel on PyPI is built for CPython 3.10 only:

    ~/.pyenv/versions/3.10.13/bin/python -m venv .venv310
    .venv310/bin/pip install openfhe numpy
    cargo run --release --example dump_activations -- resnet20 \
        ../shared/data/cifar10/weights_akamaster/resnet20-12fca82f.th \
        ../shared/data/cifar10/test_first1000_png layer2.0.relu1 2 /tmp/act.f32
    cargo run --release -- poly --alpha 10 --no-gpu --json /tmp/poly10.json
    nice .venv310/bin/python scripts/openfhe_noise.py --activations /tmp/act.f32 \
        --poly /tmp/poly10.json --out tests/fixtures/openfhe_noise.json

FLEXIBLEAUTO scaling (OpenFHE's default family: exact scale per level, rescaling before the next
multiplication). Every measurement decrypts without OpenFHE's decryption noise (CKKSDataType COMPLEX: REAL adds
Gaussian noise of about the estimated error at decryption, against key-recovery attacks) and
reports two errors per operation:
  total: decrypted result minus the exact result on the encoded inputs (everything so far);
  added: decrypted result minus the operation applied to the decrypted input(s), i.e. only
         the error the operation itself adds (exact for linear operations).
"""

import argparse
import json
import math
import time

import numpy as np
import openfhe as fhe


def error_stats(err):
    """RMS and max |.| of an error vector (real parts; inputs are real), with their log2."""
    err = np.real(np.asarray(err))
    rms = float(np.sqrt(np.mean(err * err)))
    mx = float(np.max(np.abs(err)))
    return {"std": rms, "max": mx, "log2_std": math.log2(rms) if rms > 0 else None,
            "log2_max": math.log2(mx) if mx > 0 else None, "n": int(err.size)}


def decrypt(cc, sk, ct, n):
    pt = cc.Decrypt(ct, sk)
    pt.SetLength(n)
    return np.array(pt.GetCKKSPackedValue())


def context(ring, scale_bits, first_bits, depth, dnum, technique, slots):
    p = fhe.CCParamsCKKSRNS()
    p.SetSecurityLevel(fhe.HEStd_NotSet)  # measurement only: small rings, insecure
    p.SetRingDim(ring)
    p.SetScalingModSize(scale_bits)
    p.SetFirstModSize(first_bits)
    p.SetScalingTechnique(technique)
    p.SetSecretKeyDist(fhe.UNIFORM_TERNARY)
    p.SetNumLargeDigits(dnum)
    p.SetKeySwitchTechnique(fhe.HYBRID)
    p.SetCKKSDataType(fhe.COMPLEX)
    p.SetBatchSize(slots)
    p.SetMultiplicativeDepth(depth)
    cc = fhe.GenCryptoContext(p)
    for feature in (fhe.PKE, fhe.KEYSWITCH, fhe.LEVELEDSHE, fhe.ADVANCEDSHE, fhe.FHE):
        cc.Enable(feature)
    return p, cc


def describe(p, cc, name, extra):
    q = float(cc.GetModulus())  # a double: overflows to inf beyond ~1024 bits
    q_bits = math.log2(q) if math.isfinite(q) else None
    return dict({
        "name": name,
        "ring_dim": cc.GetRingDimension(),
        "slots": p.GetBatchSize(),
        "scale_bits": p.GetScalingModSize(),
        "first_mod_bits": p.GetFirstModSize(),
        "multiplicative_depth": p.GetMultiplicativeDepth(),
        "q_bits": q_bits,
        "dnum": p.GetNumLargeDigits(),
        "key_switching": "HYBRID",
        "secret": "UNIFORM_TERNARY",
        "hamming_weight_expected": 2 * cc.GetRingDimension() / 3,
        "sigma": p.GetStandardDeviation(),
        "scaling_technique": str(p.GetScalingTechnique()).split(".")[-1],
        "openfhe_version": getattr(fhe, "__version__", "1.6.1 (PyPI openfhe)"),
    }, **extra)


def basic_ops(cc, slots, rng, key_count):
    """fresh, ct x pt (+rescale), ct x ct (+relin, rescale), rotation by 1 at the top level, with
    `key_count` fresh key pairs: some errors depend on the secret (key switching varies by about
    ±1 bit from key to key), so the errors of all keys are pooled; `per_key_log2_std` keeps the
    spread."""
    runs = []
    for _ in range(key_count):
        keys = cc.KeyGen()
        cc.EvalMultKeyGen(keys.secretKey)
        cc.EvalRotateKeyGen(keys.secretKey, [1])
        runs.append(basic_ops_one_key(cc, keys, slots, rng))
    pooled = {}
    for op, first in runs[0].items():
        entry = {k: v for k, v in first.items() if k not in ("total", "added", "_errors")}
        for which in ("total", "added"):
            entry[which] = error_stats(np.concatenate([r[op]["_errors"][which] for r in runs]))
        entry["per_key_log2_std_added"] = [r[op]["added"]["log2_std"] for r in runs]
        entry["keys"] = key_count
        pooled[op] = entry
    return pooled


def with_errors(total, added, **rest):
    return dict(rest, total=error_stats(total), added=error_stats(added),
                _errors={"total": np.real(total), "added": np.real(added)})


def basic_ops_one_key(cc, keys, slots, rng):
    sk, pk = keys.secretKey, keys.publicKey
    z1, z2, w = (rng.uniform(-1, 1, slots) for _ in range(3))
    ct1 = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext(list(z1)))
    ct2 = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext(list(z2)))
    d1, d2 = decrypt(cc, sk, ct1, slots), decrypt(cc, sk, ct2, slots)
    out = {}
    top = {"level": ct1.GetLevel(), "log2_scale": math.log2(ct1.GetScalingFactor())}
    out["fresh"] = with_errors(d1 - z1, d1 - z1, mean_sq_input=float(np.mean(z1 * z1)), input=top, output=top)

    def finish(ct):
        # FLEXIBLEAUTO rescales lazily, at the next multiplication: a product by the constant 1
        # (encoded exactly) forces the rescale of `ct` and adds nothing of its own
        ct = cc.EvalMult(ct, 1.0)
        return ct, {"level": ct.GetLevel(), "log2_scale": math.log2(ct.GetScalingFactor()) / ct.GetNoiseScaleDeg()}

    ct, where = finish(cc.EvalMult(ct1, cc.MakeCKKSPackedPlaintext(list(w))))
    d = decrypt(cc, sk, ct, slots)
    out["pt_mult_rescale"] = with_errors(d - z1 * w, d - d1 * w, mean_sq_input=float(np.mean(z1 * z1)),
                                         mean_sq_plain=float(np.mean(w * w)), input=top, output=where)
    ct, where = finish(cc.EvalMult(ct1, ct2))  # EvalMult relinearises
    d = decrypt(cc, sk, ct, slots)
    out["ct_mult_relin_rescale"] = with_errors(d - z1 * z2, d - d1 * d2, mean_sq_input=float(np.mean(z1 * z1)),
                                               mean_sq_input2=float(np.mean(z2 * z2)), input=top, output=where)
    ct = cc.EvalRotate(ct1, 1)
    d = decrypt(cc, sk, ct, slots)
    out["rotate"] = with_errors(d - np.roll(z1, -1), d - np.roll(d1, -1), mean_sq_input=float(np.mean(z1 * z1)),
                                input=top, output=top, steps=1)
    return out


def chebyshev_stages(poly_path, alpha):
    """The composite sign's stages from `polycnn poly --json`: (half_width, full Chebyshev list)."""
    report = json.load(open(poly_path))
    row = next(r for r in report["rows"] if r["alpha"] == alpha)
    stages = []
    for stage in row["stages"]:
        odd = [hi + lo for hi, lo in stage["chebyshev"]]  # c_k of T_{2k+1}
        full = [0.0] * (2 * len(odd))
        for k, c in enumerate(odd):
            full[2 * k + 1] = c
        stages.append((stage["half_width"], full))
    return row["degrees"], stages


def composite_plain(t, stages):
    s = t.astype(np.float64)
    for hw, full in stages:
        s = np.polynomial.chebyshev.chebval(s / hw, full)
    return s


def composite_relu(cc, keys, acts, bound, stages, slots, evaluator):
    """ReLU(x) ~ x (1 + p(x/B)) / 2 with each stage through OpenFHE's Chebyshev series evaluation,
    on the activations x (several ciphertexts of `slots` values); errors against the float64
    composite (the HE evaluation's own error) and against the exact ReLU."""
    sk, pk = keys.secretKey, keys.publicKey
    errs, errs_exact, levels = [], [], None
    for start in range(0, len(acts), slots):
        x = acts[start:start + slots].astype(np.float64)
        t = x / bound
        ct_t = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext(list(t)))
        ct = ct_t
        for hw, full in stages:
            ct = evaluator(ct, full, -hw, hw)
        # (B/2) (t + t s): one ct x ct product of t and the sign
        prod = cc.EvalMult(ct_t, ct)
        out = cc.EvalMult(cc.EvalAdd(prod, ct_t), bound / 2)
        levels = out.GetLevel()
        d = decrypt(cc, sk, out, slots)
        plain = x * (1 + composite_plain(t, stages)) / 2
        errs.append(np.real(d) - plain)
        errs_exact.append(np.real(d) - np.maximum(x, 0))
    err = np.concatenate(errs)
    return {"vs_plaintext_composite": error_stats(err), "vs_exact_relu": error_stats(np.concatenate(errs_exact)),
            "output_level": levels}


def t_histogram(t, bins=512):
    counts, edges = np.histogram(t, bins=bins, range=(-1.0, 1.0))
    return {"lo": -1.0, "hi": 1.0, "counts": [int(c) for c in counts]}


def leveled_set(args, acts, stages, degrees, rng):
    ring, slots = 1 << args.leveled_log_ring, 1 << (args.leveled_log_ring - 1)
    # per stage: ceil(log2 d) products + 1 for the affine map to [-1, 1]
    stage_depth = sum(math.ceil(math.log2(d)) + 1 for d in degrees)
    depth = stage_depth + 2 + 1  # + final product, scalar B/2, one spare
    p, cc = context(ring, args.scale_bits, args.first_mod_bits, depth, args.dnum, fhe.FLEXIBLEAUTO, slots)
    t0 = time.time()
    ops = basic_ops(cc, slots, rng, args.keys)
    keys = cc.KeyGen()
    cc.EvalMultKeyGen(keys.secretKey)
    relu = composite_relu(cc, keys, acts, args.bound, stages, slots,
                          lambda ct, c, a, b: cc.EvalChebyshevSeries(ct, c, a, b))
    relu.update({"alpha": args.alpha, "degrees": degrees, "bound": args.bound, "evaluator": "EvalChebyshevSeries (Paterson-Stockmeyer)", "input_histogram": t_histogram(acts / args.bound),
                 "activations": args.activations_note})
    ops["composite_relu"] = relu
    params = describe(p, cc, f"leveled_n{args.leveled_log_ring}", {"depth_for_composite": depth})
    return {"params": params, "ops": ops, "seconds": time.time() - t0}


def bootstrap_set(args, rng):
    ring, slots = 1 << args.boot_log_ring, 1 << (args.boot_log_ring - 1)
    budget = [3, 3]
    levels_after = 2
    depth = levels_after + fhe.CryptoContext.GetBootstrapDepth(budget, fhe.UNIFORM_TERNARY)
    p, cc = context(ring, args.scale_bits, args.first_mod_bits, depth, args.dnum, fhe.FLEXIBLEAUTO, slots)
    t0 = time.time()
    ops = basic_ops(cc, slots, rng, args.keys)
    keys = cc.KeyGen()
    cc.EvalMultKeyGen(keys.secretKey)
    cc.EvalBootstrapSetup(budget, [0, 0], slots)
    cc.EvalBootstrapKeyGen(keys.secretKey, slots)
    setup_s = time.time() - t0
    # inputs of several magnitudes: the error of the modular-reduction approximation grows with |z|
    z = rng.uniform(-1, 1, slots)
    ct = cc.Encrypt(keys.publicKey, cc.MakeCKKSPackedPlaintext(list(z), 1, depth - 1))
    d_in = decrypt(cc, keys.secretKey, ct, slots)
    t1 = time.time()
    boot = cc.EvalBootstrap(ct)
    boot_s = time.time() - t1
    d = decrypt(cc, keys.secretKey, boot, slots)
    by_mag = {}
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)):
        m = (np.abs(z) >= lo) & (np.abs(z) < hi)
        by_mag[f"{lo}-{hi}"] = error_stats((d - d_in)[m])
    ops["bootstrap"] = {"total": error_stats(d - z), "added": error_stats(d - d_in), "added_by_abs_input": by_mag,
                        "mean_sq_input": float(np.mean(z * z)), "level_budget": budget,
                        "input": {"level": ct.GetLevel(), "log2_scale": math.log2(ct.GetScalingFactor())},
                        "output": {"level": boot.GetLevel(), "log2_scale": math.log2(boot.GetScalingFactor())},
                        "seconds": boot_s, "setup_seconds": setup_s}
    params = describe(p, cc, f"bootstrap_n{args.boot_log_ring}", {"level_budget": budget, "levels_after_bootstrap": levels_after})
    return {"params": params, "ops": ops, "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activations", required=True, help="little-endian f32 pre-ReLU values (examples/dump_activations)")
    ap.add_argument("--activations-note", default="resnet20 layer2.0.relu1 input, first 2 lossless CIFAR-10 test images")
    ap.add_argument("--poly", required=True, help="`polycnn poly --alpha A --json` output")
    ap.add_argument("--alpha", type=int, default=10)
    ap.add_argument("--bound", type=float, default=None, help="B (default: max |x| rounded up to a multiple of 5)")
    ap.add_argument("--scale-bits", type=int, default=50)
    ap.add_argument("--first-mod-bits", type=int, default=60)
    ap.add_argument("--dnum", type=int, default=3)
    ap.add_argument("--leveled-log-ring", type=int, default=14)
    ap.add_argument("--boot-log-ring", type=int, default=12)
    ap.add_argument("--sets", default="leveled,bootstrap")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--keys", type=int, default=8, help="key pairs pooled for the basic operations")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    acts = np.fromfile(args.activations, dtype="<f4").astype(np.float64)
    if acts.size < 4096:
        raise SystemExit(f"{args.activations}: {acts.size} values, need at least 4096")
    if args.bound is None:
        args.bound = 5.0 * math.ceil(float(np.max(np.abs(acts))) / 5.0)
    degrees, stages = chebyshev_stages(args.poly, args.alpha)
    rng = np.random.default_rng(args.seed)
    report = {"generator": "scripts/openfhe_noise.py", "sets": []}
    for name in args.sets.split(","):
        if name == "leveled":
            report["sets"].append(leveled_set(args, acts, stages, degrees, rng))
        elif name == "bootstrap":
            report["sets"].append(bootstrap_set(args, rng))
        else:
            raise SystemExit(f"unknown set {name}")
        with open(args.out, "w") as f:  # after each set: a long run keeps what it measured
            json.dump(report, f, indent=1)
        print(f"{name}: done ({report['sets'][-1]['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
