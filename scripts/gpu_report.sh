#!/usr/bin/env bash
# One command for a machine with a real GPU but no Rust toolchain and no network: runs the
# prebuilt binaries of scripts/gpu_report_prepare.sh and writes everything to OUTDIR:
#
#     report.log           every step's output (adapter, GPU tests, bench tables, eval summary)
#     bench.json           polycnn bench (networks, conv, activation sections; ratios vs PyTorch)
#     pytorch_cuda.json    scripts/bench_pytorch.py --device cuda (fp32, TF32 off), approxCNN rows
#     eval_resnet152.json  polycnn eval of ResNet-152 (random weights) on the GPU backend
#
#     scripts/gpu_report.sh OUTDIR BINDIR
#
# Each step has its own time limit, all of them share a budget (BUDGET seconds, default 400), and
# a failed step does not stop the next. Run it from a copy of this repository (the GPU tests read
# tests/fixtures and, when present, ../shared/data relative to it).
#
# Environment (defaults are for a real GPU; scripts/gpu_report.sh is tested on lavapipe with a
# tiny configuration: MODELS=resnet20 BATCH=2 SECTIONS=networks EVAL_MODEL=resnet18 EVAL_IMAGES=2
# TORCH_DEVICE=cpu TESTS=gpu_conv PEER_MODELS=resnet20):
#   PYTHON        python with torch + torchvision (python3)
#   MODELS        polycnn bench / bench_pytorch.py networks (resnet20,resnet56,resnet50,resnet152)
#   BATCH         images per batch for the network timings (32)
#   SECTIONS      polycnn bench sections (networks,conv,activation)
#   PEER_MODELS   approxCNN baseline networks at α = 14 (resnet20,resnet152)
#   EVAL_MODEL    torchvision model evaluated with random weights (resnet152)
#   EVAL_IMAGES   images evaluated (64; BINDIR/images when present, else synthetic JPEGs)
#   TORCH_DEVICE  cuda (cpu for a dry run without CUDA)
#   TESTS         GPU test binaries run (gpu_conv gpu_activation gpu_network)
#   BUDGET        seconds for the whole script (400)
set -u

OUT=${1:?usage: scripts/gpu_report.sh OUTDIR BINDIR}
BIN=${2:?usage: scripts/gpu_report.sh OUTDIR BINDIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
MODELS=${MODELS:-resnet20,resnet56,resnet50,resnet152}
BATCH=${BATCH:-32}
SECTIONS=${SECTIONS:-networks,conv,activation}
PEER_MODELS=${PEER_MODELS:-resnet20,resnet152}
EVAL_MODEL=${EVAL_MODEL:-resnet152}
EVAL_IMAGES=${EVAL_IMAGES:-64}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
TESTS=${TESTS:-gpu_conv gpu_activation gpu_network}
BUDGET=${BUDGET:-400}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=$(cd "$BIN" && pwd)
LOG=$OUT/report.log
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$REPO"
# The test binaries find tests/fixtures and ../shared/data through this (see tests/common).
export CARGO_MANIFEST_DIR=$REPO
export POLYCNN_REQUIRE_GPU=1
: >"$LOG"

log() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S COMMAND...: runs COMMAND with its output appended to the log, killed after
# LIMIT_S seconds or when the script's budget runs out, whichever comes first.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    ((left < limit)) && limit=$left
    if ((limit < 5)); then
        log "=== [$name] skipped: the ${BUDGET} s budget is spent"
        return 0
    fi
    log "=== [$name] $(date -u +%H:%M:%S) limit ${limit} s: $*"
    local start=$SECONDS
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    local verdict="ok"
    ((rc == 124 || rc == 137)) && verdict="TIMED OUT"
    ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED"
    log "=== [$name] $verdict (exit $rc) after $((SECONDS - start)) s"
}

# Vulkan on a bare CUDA machine: the loader carried in BINDIR/lib when the system has none, and
# an ICD file for NVIDIA's driver library when no ICD is installed (the lead's own setup, when
# present, is left as it is).
vulkan_setup() {
    if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' && [[ -e "$BIN/lib/libvulkan.so.1" ]]; then
        export LD_LIBRARY_PATH="$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    local icds
    icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null)
    if [[ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" && -z "$icds" ]]; then
        local nvidia
        nvidia=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libGLX_nvidia.so.0' | head -n 1)
        if [[ -n "$nvidia" ]]; then
            printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' \
                "$nvidia" >"$WORK/nvidia_icd.json"
            export VK_ICD_FILENAMES="$WORK/nvidia_icd.json"
        fi
    fi
}

machine() {
    date -u
    uname -a
    echo "cpus: $(nproc), load: $(cat /proc/loadavg)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    echo "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo "Vulkan ICDs: $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ')"
    echo "driver libraries: $(ldconfig -p 2>/dev/null | grep -E -o 'lib(vulkan|GLX_nvidia|nvidia-glcore)[^ ]*' | sort -u | tr '\n' ' ')"
    "$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__,
"cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
}

# JPEGs for the evaluation: the carried ones (synset-prefixed, with the class index) or
# synthetic ones with a `<file> <index>` labels file. Prints polycnn's data arguments.
eval_data_args() {
    if [[ -d "$BIN/images" && -f "$BIN/imagenet_class_index.json" ]]; then
        echo "--data $BIN/images --class-index $BIN/imagenet_class_index.json"
        return
    fi
    mkdir -p "$WORK/images"
    "$PYTHON" - "$WORK/images" "$EVAL_IMAGES" <<'EOF' >&2
import sys, numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
with open(f"{root}/labels.txt", "w") as labels:
    for i in range(n):
        pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(f"{root}/synthetic_{i:04d}.JPEG", quality=90)
        labels.write(f"synthetic_{i:04d}.JPEG {i % 1000}\n")
EOF
    echo "--data $WORK/images --labels $WORK/images/labels.txt"
}

log "gpu_report: OUTDIR $OUT, BINDIR $BIN, repository $REPO, budget $BUDGET s"
vulkan_setup
export PYTHON
export -f machine
step machine 30 bash -c machine
# polycnn prints the adapter it picked on its first line (and the composite generation time).
step adapter 60 "$BIN/polycnn" bench --sections composite

# The approxCNN baseline needs the paper's polynomial files (carried in BINDIR).
[[ -f "$BIN/approxcnn_coeffs/deg_14.txt" ]] || PEER_MODELS=""
step pytorch 150 "$PYTHON" scripts/bench_pytorch.py --device "$TORCH_DEVICE" --models "$MODELS" \
    --batch "$BATCH" --repeats 5 --conv-repeats 20 --peer-models "$PEER_MODELS" --peer-batch 4 \
    --coeffs-dir "$BIN/approxcnn_coeffs" --out "$OUT/pytorch_cuda.json"
pytorch_args=()
[[ -s "$OUT/pytorch_cuda.json" ]] && pytorch_args=(--pytorch "$OUT/pytorch_cuda.json")
step bench 150 "$BIN/polycnn" bench --sections "$SECTIONS" --models "$MODELS" --batch "$BATCH" \
    --repeats 5 --elements 4194304 "${pytorch_args[@]}" --json "$OUT/bench.json"

step weights 90 "$PYTHON" scripts/random_torchvision_weights.py --model "$EVAL_MODEL" \
    --out "$WORK/$EVAL_MODEL.pth" --device "$TORCH_DEVICE" --calibrate 2
read -r -a data_args <<<"$(eval_data_args)"
# Fixed bounds: random weights have no official grid to search, and the point is the speed.
step eval 90 "$BIN/polycnn" eval --model "$EVAL_MODEL" --weights "$WORK/$EVAL_MODEL.pth" "${data_args[@]}" \
    --limit "$EVAL_IMAGES" --alpha 14 --bound 100 --bound-max 100 --backend gpu --batch "$BATCH" \
    --json "$OUT/eval_$EVAL_MODEL.json"

for t in $TESTS; do
    step "$t" 90 "$BIN/$t"
done
log "gpu_report: done in $SECONDS s; files in $OUT: $(cd "$OUT" && echo *)"
