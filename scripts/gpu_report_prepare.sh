#!/usr/bin/env bash
# Builds what scripts/gpu_report.sh runs on a GPU machine that has no Rust toolchain and no
# network: the stripped `polycnn` binary, the GPU integration-test binaries under simple names
# (gpu_activation, gpu_conv, gpu_network), a few ImageNet JPEGs with the class index for the
# ResNet-152 evaluation, and the paper's α = 14 polynomial files for the approxCNN baseline. Prints the folder's total size (keep it under ~45 MB).
#
#     scripts/gpu_report_prepare.sh BINDIR
#
# Environment: IMAGES (default 32) JPEGs copied from ../shared/data/imagenet/train_sample250
# (skipped when that folder is absent: gpu_report.sh then makes synthetic ones).
set -euo pipefail

BINDIR=${1:?usage: scripts/gpu_report_prepare.sh BINDIR}
IMAGES=${IMAGES:-32}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
mkdir -p "$BINDIR"

cargo build --release
strip -o "$BINDIR/polycnn" target/release/polycnn

# The test binaries' paths come from cargo's JSON messages (their names carry a hash).
tests=(gpu_activation gpu_conv gpu_network)
messages=$(cargo test --release --no-run "${tests[@]/#/--test=}" --message-format=json)
for name in "${tests[@]}"; do
    exe=$(jq -r --arg n "$name" \
        'select(.reason == "compiler-artifact" and .profile.test and .target.name == $n) | .executable' \
        <<<"$messages" | tail -n 1)
    [[ -n "$exe" && -x "$exe" ]] || { echo "no test binary for $name" >&2; exit 1; }
    strip -o "$BINDIR/$name" "$exe"
done

sample=../shared/data/imagenet/train_sample250
if [[ -d "$sample" ]]; then
    mkdir -p "$BINDIR/images"
    find "$sample" -maxdepth 1 -name '*.JPEG' | sort | head -n "$IMAGES" | xargs -r cp -t "$BINDIR/images"
    cp ../shared/data/imagenet/labels/imagenet_class_index.json "$BINDIR/"
else
    echo "note: $sample absent; gpu_report.sh will make synthetic images" >&2
fi

# The Vulkan loader, for a GPU machine that has the driver but not the loader.
loader=$(ldconfig -p | grep -o '/[^ ]*libvulkan.so.1$' | head -n 1 || true)
if [[ -n "$loader" ]]; then
    mkdir -p "$BINDIR/lib"
    cp -L "$loader" "$BINDIR/lib/libvulkan.so.1"
fi

coeffs=../shared/data/approxcnn_coeffs
if [[ -f "$coeffs/deg_14.txt" ]]; then
    mkdir -p "$BINDIR/approxcnn_coeffs"
    cp "$coeffs/deg_14.txt" "$coeffs/coeff_14.txt" "$BINDIR/approxcnn_coeffs/"
else
    echo "note: $coeffs absent; gpu_report.sh will skip the approxCNN baseline" >&2
fi

ls -l "$BINDIR"
echo "total: $(du -sh "$BINDIR" | cut -f1) in $BINDIR (keep it under ~45 MB)"
