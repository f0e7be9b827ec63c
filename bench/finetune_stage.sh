#!/usr/bin/env bash
# One architecture through config/chexpert.yaml's real path on a GPU machine (check_images,
# image cache, warm-up, fine-tunes, predict) on a CheXpert-format JPEG tree, measured: wall time,
# images/s, GPU busy, host and GPU memory per stage (bench/finetune_stage.py), beside the
# network's own speed on the same machine (bench/step_speed.py). docs/benchmarks.md has the
# numbers and the commands.
#
#   bash bench/finetune_stage.sh convnext_tiny                 # the protocol for one family
#   bash bench/finetune_stage.sh --out /data/bench densenet169 bench/overlays/rehearsal.yaml
#
# TREE: the tree's folder (default bench/work/chexpert_tree; written by bench/chexpert_tree.py
# with TREE_IMAGES images of TREE_SIZE px, rendered at TREE_RENDER_SIZE, when it holds no
# valid.csv yet). RUN: the run folder
# (default bench/work/stage-<arch>; the same command there resumes). --out: where the measurement
# goes (default bench/work/out), with the run's small files (logs, histories, tables; no
# weights) in run-<arch>.tar.xz. STAGE_TIME_LIMIT: seconds from this script's start after which
# Snakemake is stopped (its jobs save resume files, and the same command resumes; default: none).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/bench/work/out
if [ "${1:-}" = "--out" ]; then out=$(realpath -m "$2"); shift 2; fi
arch=${1:?usage: bench/finetune_stage.sh [--out folder] <architecture> [overlay.yaml ...]}
overlays=("${@:2}")
tree=${TREE:-$repo/bench/work/chexpert_tree}
run=${RUN:-$repo/bench/work/stage-$arch}
deadline=$(( $(date +%s) + ${STAGE_TIME_LIMIT:-1000000000} ))
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
export PYTHONPATH=$repo/src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$run" "$out"
if [ ! -f "$tree/CheXpert-v1.0-small/valid.csv" ]; then
  python bench/chexpert_tree.py --root "$tree" --images "${TREE_IMAGES:-50000}" \
    --size "${TREE_SIZE:-256}" --render-size "${TREE_RENDER_SIZE:-128}" --workers "$(nproc)" \
    2> "$out/tree.log"
fi

cat > "$run/arch.yaml" <<YAML
architectures: [$arch]
ensemble: {subsets: {}}
pretrained: false  # no model hub here; the step's cost does not depend on the weights
YAML
per_gpu=$(python -c "import sys; from deepauc.config.layers import load_config as l
print(l(*sys.argv[1:])['jobs_per_gpu'])" config/chexpert.yaml "$run/arch.yaml" "${overlays[@]}")
gpus=1
gpu_log=()
if command -v nvidia-smi > /dev/null; then  # the GPU's busy share, every half second
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 500 >> "$out/gpu-$arch.csv" &
  sampler=$!
  trap 'kill $sampler 2>/dev/null || true' EXIT
  gpu_log=(--gpu-log "$out/gpu-$arch.csv" --network "$out/step_speed-$arch.json")
  # The network alone on this machine, before the run: the stage's reference speed.
  [ -f "$out/step_speed-$arch.json" ] || python bench/step_speed.py --archs "$arch" --methods \
    --out "$out/step_speed-$arch.json" 2> "$out/step_speed-$arch.log"
fi
pipeline=(snakemake --directory "$run" --snakefile "$repo/Snakefile"
  --configfile "$repo/config/chexpert.yaml" "$run/arch.yaml" "${overlays[@]}"
  --config "data_root=$tree")
[ -d "$run/.snakemake/locks" ] && "${pipeline[@]}" --unlock > /dev/null 2>&1 || true
started=$(date +%s)
timeout --signal=INT --kill-after=60 $(( deadline - started )) \
  "${pipeline[@]}" --cores "$(nproc)" --resources gpu=$(( gpus * per_gpu )) --rerun-incomplete -- \
  results/diagnostics.csv results/summary.csv \
  >> "$out/snakemake-$arch.log" 2>&1 || echo "snakemake stopped (exit $?)"
echo "$arch: $(( $(date +%s) - started )) s"
python bench/finetune_stage.py --run "$run" "${gpu_log[@]}" --label "$arch" \
  --out "$out/finetune_stage-$arch.json"
(cd "$run" && find results -path results/synthetic -prune -o \
  \( -name '*.csv' -o -name '*.log' -o -name '*.tsv' \) -print | tar cf - -T - \
  | xz -T0 > "$out/run-$arch.tar.xz")
