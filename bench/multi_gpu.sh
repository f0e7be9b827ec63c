#!/usr/bin/env bash
# Issue 18's measurements on a machine with two GPUs (results: docs/benchmarks.md, "Several GPUs",
# and bench/results/multi_gpu/):
#
#   bash bench/multi_gpu.sh fanout  # the bench DAG's fine-tune stage (densenet169: 5 diseases x
#                                   # DAM and CE, one job per GPU) on one GPU, then on two
#   bash bench/multi_gpu.sh ddp     # one fine-tune (Pleural Effusion, DAM and CE, densenet169 and
#                                   # convnext_tiny) on one GPU and as two DDP ranks over NCCL, at
#                                   # the same global batch; seed 1 on one GPU for the seed noise
#   bash bench/multi_gpu.sh fanout one_gpu   # only the named phases (after the warm-ups): a
#   bash bench/multi_gpu.sh fanout two_gpus  # mode can run in parts
#   bash bench/multi_gpu.sh steps   # where a step's time goes (bench/ddp_steps.py): the fine-tune
#                                   # step on one GPU at batch 64, 128, 256 and as two DDP ranks at
#                                   # global 128 and 256, timed and profiled (phase plain), then
#                                   # with compile: true (phase compiled)
#
# Configs: config/bench.yaml + config/multi_gpu.yaml. Each mode takes a few minutes; the small
# results (histories, logs, benchmarks, timings) go to <out>/<mode> (--out <out> before the mode;
# default bench/work/out). All modes share one work folder (the same configs: the same data and
# warm-ups), so a later mode reuses what an earlier one built.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/bench/work/out
if [ "${1:-}" = "--out" ]; then out=$(realpath -m "$2"); shift 2; fi
mode=${1:?usage: bench/multi_gpu.sh [--out folder] fanout|ddp|steps [phase ...]}
phases=("${@:2}")  # some of: one_gpu two_gpus (fanout, ddp); plain compiled (steps)
out=$out/$mode
work=$repo/bench/work/multi_gpu
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
mkdir -p "$work" "$out"
configs=("$repo/config/bench.yaml" "$repo/config/multi_gpu.yaml"
  ${MULTI_GPU_EXTRA_CONFIG:+"$MULTI_GPU_EXTRA_CONFIG"})

gpu_count=$(nvidia-smi -L 2>/dev/null | wc -l || true)
smk() {  # smk <GPUs at once> <GPUs per job> <targets...>: snakemake in the work folder
  local gpus=$1 per_job=$2 keys
  shift 2
  # On a machine without GPUs (a smoke run with device: cpu) a "GPU" is a gloo process.
  if [ "$gpu_count" -gt 0 ]; then keys="gpus_per_job=$per_job"; else
    keys="gpus_per_job=0 processes_per_job=$per_job"; fi
  # shellcheck disable=SC2086
  snakemake --directory "$work" --snakefile "$repo/Snakefile" --configfile "${configs[@]}" \
    --cores "$(nproc)" --resources gpu="$gpus" --config $keys -- "$@"
}
timed() {  # timed <label> <command...>: wall seconds to timing.txt
  local label=$1 started
  shift
  started=$(date +%s%N)
  "$@" >> "$out/snakemake.log" 2>&1
  local ns=$(( $(date +%s%N) - started ))  # bash arithmetic: no bc needed
  printf '%s %d.%03d s\n' "$label" $(( ns / 1000000000 )) $(( ns / 1000000 % 1000 )) \
    | tee -a "$out/timing.txt"
}
finetunes() {  # finetunes <arch> <seed> <diseases...>: every method's fine-tune of them
  local arch=$1 seed=$2
  shift 2
  for disease in "$@"; do
    echo "results/models/$arch/seed$seed/dam/lr0.1/$disease.pt"
    echo "results/models/$arch/seed$seed/ce/lr0.0001/$disease.pt"
  done
}
# set_aside <name>: move a phase's fine-tunes (histories, logs, benchmarks) to $out/<name>.tar, so
# the next phase reruns them from the same warm-ups. One flat file per phase: easy to copy off.
set_aside() {
  local name=$1
  (cd "$work" && find results/models results/logs/finetune results/benchmarks/finetune \
    -path '*/lr*' \( -name '*.csv' -o -name '*.log' -o -name '*.tsv' \) -print > set_aside.txt \
    && tar cf "$out/$name.tar" -T set_aside.txt && xargs rm -f < set_aside.txt)
  find "$work/results/models" -path '*/lr*' -name '*.pt' -delete
}
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | tee "$out/gpus.txt" || true
echo "$(date -u +%FT%TZ) $mode at $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
  | tee -a "$out/timing.txt"

want() {  # want <phase>: run it? (all phases when none were named on the command line)
  [ ${#phases[@]} -eq 0 ] || [[ " ${phases[*]} " == *" $1 "* ]]
}
case $mode in
fanout)
  diseases=(cardiomegaly edema consolidation atelectasis pleural_effusion)
  timed "warm-up" smk 2 1 results/models/densenet169/seed0/warmup.pt
  if want one_gpu; then
    timed "fine-tune stage on one GPU" smk 1 1 $(finetunes densenet169 0 "${diseases[@]}")
    set_aside one_gpu
  fi
  if want two_gpus; then
    timed "fine-tune stage on two GPUs" smk 2 1 $(finetunes densenet169 0 "${diseases[@]}")
    set_aside two_gpus
  fi
  ;;
ddp)
  timed "warm-ups" smk 2 1 results/models/{densenet169,convnext_tiny}/seed{0,1}/warmup.pt
  if want one_gpu; then
    timed "one GPU, seeds 0 and 1" smk 2 1 $(for arch in densenet169 convnext_tiny; do
      finetunes $arch 0 pleural_effusion; finetunes $arch 1 pleural_effusion; done)
    set_aside one_gpu
  fi
  if want two_gpus; then
    timed "two DDP ranks, seed 0" smk 2 2 $(for arch in densenet169 convnext_tiny; do
      finetunes $arch 0 pleural_effusion; done)
    set_aside two_gpus
  fi
  ;;
steps)
  timed "warm-ups" smk 2 1 results/models/{densenet169,convnext_tiny}/seed0/warmup.pt
  # (beside the GPUs' names: one file on the machine's layout)
  nvidia-smi topo -m >> "$out/gpus.txt" 2>&1 || true
  export PYTHONPATH=$repo/src${PYTHONPATH:+:$PYTHONPATH}  # deepauc from this checkout, installed or not
  steps=(bench/ddp_steps.py --work "$work" --configs "${configs[@]}"
    --archs densenet169 convnext_tiny)
  ranks=(python -m torch.distributed.run --standalone --nproc-per-node=2)
  # DDP_STEPS_OPTIONS, last so that they win (e.g. "--steps 1 --archs densenet169"): a smoke run
  # on a CPU, or a shorter run.
  # shellcheck disable=SC2206
  options=(${DDP_STEPS_OPTIONS:-})
  if want plain; then
    timed "one GPU, batches 64, 128, 256" env CUDA_VISIBLE_DEVICES=0 \
      python "${steps[@]}" --batches 64 128 256 --out "$out/one_gpu.json" "${options[@]}"
    timed "two DDP ranks, global batches 128, 256" "${ranks[@]}" "${steps[@]}" --batches 128 256 \
      --variants default no_buffer_broadcast --out "$out/two_gpus.json" "${options[@]}"
  fi
  if want compiled; then  # compile: true, DAM: does a cheaper CPU side of the step scale?
    timed "one GPU, compiled, batches 64, 128" env CUDA_VISIBLE_DEVICES=0 python "${steps[@]}" \
      --compile --methods dam --batches 64 128 --out "$out/one_gpu_compiled.json" "${options[@]}"
    timed "two DDP ranks, compiled, global batch 128" "${ranks[@]}" "${steps[@]}" --compile \
      --methods dam --batches 128 --out "$out/two_gpus_compiled.json" "${options[@]}"
  fi
  python bench/ddp_steps.py --report "$out"/*.json | tee "$out/table.md"
  ;;
*) echo "unknown mode $mode: fanout, ddp or steps" >&2; exit 2 ;;
esac
