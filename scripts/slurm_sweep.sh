#!/usr/bin/env bash
# An α sweep on a Slurm cluster: a job array evaluates N shards of the dataset in parallel
# (`polycnn eval --shard I/N`), then a merge job (`--dependency=afterok` on the whole array)
# combines the shard reports into the report one run over all images gives, and, when a
# baseline is given, a last job runs the regression gate on it.
#
# Usage:
#   scripts/slurm_sweep.sh OUT_DIR SHARDS [polycnn eval arguments...]
# e.g.
#   scripts/slurm_sweep.sh runs/resnet56 16 --model resnet56 --weights w/resnet56-4bfd9763.th \
#       --data data/cifar10/test_batch --alpha 4..14 --bound 50 --bound-max 50 --backend cpu
#
# Environment:
#   POLYCNN      the polycnn binary (default: polycnn on PATH); must be reachable from the nodes
#   CPUS         --cpus-per-task of each shard (default 4)
#   TIME         --time of each shard (default 02:00:00)
#   BASELINE     a baseline report: adds `polycnn check --report OUT_DIR/report.json --baseline ...`
#   TOLERANCE    the gate's tolerance in percentage points (default 0.2)
#   SBATCH_*     Slurm's own variables (SBATCH_PARTITION, SBATCH_ACCOUNT, ...) apply to every job
#
# Bounds: with `--bound search` (the default) or `calibrate`, every shard first runs the exact
# statistics pass over the same images as a whole run (so all shards use the same B, which
# `merge` verifies); give fixed bounds (e.g. from one earlier `search` run) to skip that pass.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
out=$1
shards=$2
shift 2
if ! [[ $shards =~ ^[1-9][0-9]*$ ]]; then
    echo "slurm_sweep.sh: SHARDS '$shards' is not a positive integer" >&2
    exit 2
fi
for arg in "$@"; do
    case $arg in
        --shard | --shard=* | --json | --json=*)
            echo "slurm_sweep.sh: $arg is set by the script (each shard writes OUT_DIR/shard-I.json)" >&2
            exit 2
            ;;
    esac
done
polycnn=${POLYCNN:-polycnn}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)

# The eval command line, quoted for the job shell; the shard index comes from Slurm at run time.
eval_args=$(printf ' %q' "$@")
shard_cmd="$(printf '%q' "$polycnn") eval$eval_args --shard \"\$SLURM_ARRAY_TASK_ID/$shards\" --json $(printf '%q' "$out")/shard-\$SLURM_ARRAY_TASK_ID.json"
array_job=$(sbatch --parsable --job-name=polycnn-shards --array="0-$((shards - 1))" \
    --cpus-per-task="${CPUS:-4}" --time="${TIME:-02:00:00}" \
    --output="$out/logs/shard-%a.log" --wrap="$shard_cmd")
array_job=${array_job%%;*} # --parsable prints "id[;cluster]"
echo "submitted shard array job $array_job ($shards shards)"

reports=$(for ((i = 0; i < shards; i++)); do printf ' %q' "$out/shard-$i.json"; done)
merge_cmd="$(printf '%q' "$polycnn") merge$reports --json $(printf '%q' "$out/report.json")"
merge_job=$(sbatch --parsable --job-name=polycnn-merge --dependency="afterok:$array_job" \
    --output="$out/logs/merge.log" --wrap="$merge_cmd")
merge_job=${merge_job%%;*}
echo "submitted merge job $merge_job (after all shards succeed) -> $out/report.json"

if [[ -n ${BASELINE:-} ]]; then
    check_cmd="$(printf '%q' "$polycnn") check --report $(printf '%q' "$out/report.json") --baseline $(printf '%q' "$BASELINE") --tolerance ${TOLERANCE:-0.2}"
    check_job=$(sbatch --parsable --job-name=polycnn-check --dependency="afterok:$merge_job" \
        --output="$out/logs/check.log" --wrap="$check_cmd")
    echo "submitted check job ${check_job%%;*} (after the merge) -> $out/logs/check.log"
fi
