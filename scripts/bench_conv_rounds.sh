#!/usr/bin/env bash
# Per-shape CPU convolution, polycnn against PyTorch, robust to a machine whose speed drifts
# (other tenants, boost clocks): ROUNDS alternating runs (polycnn, PyTorch, polycnn, …), each the
# mean of REPEATS calls per shape, and the best of the rounds per shape and side. A single run's
# ratios can move by ±15% on a shared host; the best of alternating rounds compares each side at
# its least disturbed.
#
#     scripts/bench_conv_rounds.sh OUTDIR [POLYCNN_BINARY]
#
# Environment: PYTHON (python with torch; .venv/bin/python), ROUNDS (3), REPEATS (30),
# THREADS (every core; the same for both sides). Writes OUTDIR/polycnn.R.json,
# OUTDIR/pytorch.R.json and OUTDIR/table.md (GFLOP/s and ratio per shape), and prints the table.
set -eu
out=${1:?usage: scripts/bench_conv_rounds.sh OUTDIR [POLYCNN_BINARY]}
polycnn=${2:-target/release/polycnn}
python=${PYTHON:-.venv/bin/python}
rounds=${ROUNDS:-3}
repeats=${REPEATS:-30}
threads=${THREADS:-$(nproc)}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for r in $(seq "$rounds"); do
    "$polycnn" bench --sections conv --no-gpu --repeats "$repeats" --threads "$threads" \
        --json "$out/polycnn.$r.json" > /dev/null
    "$python" "$here/bench_pytorch.py" --threads "$threads" --models '' --peer-models '' \
        --conv-repeats "$repeats" --out "$out/pytorch.$r.json" > /dev/null
done
python3 - "$out" "$rounds" "$threads" <<'PY' | tee "$out/table.md"
import json, sys
out, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ours = [json.load(open(f"{out}/polycnn.{r}.json"))["conv"] for r in range(1, rounds + 1)]
theirs = [json.load(open(f"{out}/pytorch.{r}.json"))["conv"] for r in range(1, rounds + 1)]
print(f"Batch-1 convolution, {threads} threads, best of {rounds} alternating rounds, GFLOP/s\n")
print("| shape | polycnn | PyTorch | ratio |")
print("|---|---|---|---|")
for i, row in enumerate(ours[0]):
    flops = row["flops"]
    best_ours = max(flops / r[i]["cpu_ms"] / 1e6 for r in ours)
    same = lambda t: (t["m"], t["n"], t["k"]) == (row["m"], row["n"], row["k"])
    best_theirs = max(flops / next(t for t in r if same(t))["ms"] / 1e6 for r in theirs)
    print(f"| {row['layer']} | {best_ours:.1f} | {best_theirs:.1f} | {best_ours / best_theirs:.2f} |")
PY
