#!/usr/bin/env bash
# The 224 px study "DAM vs CE from a backbone that already ranks" (issue 44, item 3) on one GPU
# machine, one family at a time. Everything goes under one work folder (--work, default
# study/224):
#   tree/        a CheXpert-format JPEG tree (bench/chexpert_tree.py, seed 0), --images images
#   surrogate/   <arch>.safetensors + <arch>.json: bench/surrogate_pretrain.py on ANOTHER cohort
#                (synth seed 1000), made once per architecture (skipped when the file exists)
#   main/        `deepauc init --data-root tree --pretrained surrogate` + bench/overlays/study224.yaml
#   weak/        (--regime weak) `deepauc init --data-root tree` + study224.yaml + weak_start.yaml
#   out/         <regime>.tar.xz (tables, histories, logs; no weights), timing.txt, *.log
#
#   bash bench/dam_study_224.sh convnext_tiny                  # one family, surrogate start
#   bash bench/dam_study_224.sh --regime weak convnext_tiny    # the weak start, own folder
#   bash bench/dam_study_224.sh --work study/224-densenet --images 1000 densenet169
#
# STUDY_TIME_LIMIT=<seconds> stops Snakemake with Ctrl-C after that long (jobs save resume files)
# and copies the results so far; the same command in the same --work picks up where it stopped.
# STUDY_EXTRA_CONFIG=<yaml> adds a config file after the folder's (a CPU smoke run: small sizes),
# STUDY_DEVICE (default cuda) the device, SURROGATE_ARGS extra surrogate_pretrain.py arguments,
# STUDY_DRY_RUN=1 plans only (snakemake -n; the tree and the weights are still made).
#
# COST (an estimate, not measured: docs/benchmarks.md's H200 rates at batch 32, taken for an H100;
# plus ~10 s start-up per job). A tree of N images holds ~0.87 N - 400 frontal training images
# (measured: 920 for N = 1,500), 85% of them in the train split: T ~ 0.74 N - 340 (778 measured).
# `snakemake -n` plans, per family: 5 warm-ups, 140 fine-tunes (seed 0: 4 methods x 5 diseases x 3
# rates; seeds 1-4 at seed 0's rate), 25 predict jobs, ~220 small CPU jobs; grid extensions add
# ~17 fine-tunes (the earlier study: 13 per 15 grids). So, per family, on two slots a GPU:
#   start-ups: (5 + 157 + 25) GPU jobs x 10 s / 2 slots (the other slot trains meanwhile) = ~935 s
#   warm-ups:  5 x 2 epochs x T       at ~2,100 img/s (convnext_tiny), ~1,070 (densenet169)
#   fine-tunes: 157 x 2 epochs x 1.25 T (DualSampler) at ~1,250 img/s (convnext_tiny), ~680 (densenet169)
#   T_family ~ 935 s + 0.32 T s (convnext_tiny), 935 s + 0.59 T s (densenet169)
# Twenty GPU minutes leave ~265 s for images: T ~ 830 (N ~ 1,600) for convnext_tiny, T ~ 450
# (N ~ 1,050) for densenet169. The default --images 1500 is ~20 min for convnext_tiny, ~23 min
# for densenet169 (--images 1000: ~19.5 min). Start-ups are ~3/4 of it: the protocol's job count,
# not the images, sets the cost at this size. On top: surrogate pretraining (20,000 images x 6
# epochs at batch 128: ~1 min convnext_tiny, ~2 min densenet169, ~20 s rendering on 16 cores).
# The weak regime costs the same less 5 warm-up epochs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/study/224
images=1500
regime=main
while [ $# -gt 0 ]; do
  case $1 in
    --work) work=$(realpath -m "$2"); shift 2 ;;
    --images) images=$2; shift 2 ;;
    --regime) case $2 in weak) regime=weak ;; main|surrogate) regime=main ;;
        *) echo "--regime main|weak" >&2; exit 2 ;; esac; shift 2 ;;
    --) shift; break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
archs=("$@")
[ ${#archs[@]} -gt 0 ] || { echo "name the architectures (a family at a time)" >&2; exit 2; }
arch_list=$(IFS=,; echo "${archs[*]}")
deadline=$(( $(date +%s) + ${STUDY_TIME_LIMIT:-1000000000} ))
tree=$work/tree folder=$work/$regime out=$work/out weights=$work/surrogate
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
# the project from this checkout where it is not installed (a GPU machine set up from wheels)
python -c "import deepauc" 2>/dev/null || export PYTHONPATH=$repo/src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$out/timing.txt"; }

# 1. The tree (its CSVs are written last: without them it is an interrupted one, made again).
if [ ! -f "$tree/CheXpert-v1.0-small/valid.csv" ]; then
  rm -rf "$tree"
  log "tree: $images images"
  python bench/chexpert_tree.py --root "$tree" --images "$images" --size 256 --render-size 128 \
    --workers "$(nproc)" --seed 0 >> "$out/tree.log" 2>&1
  echo "$images" > "$work/tree.images"
elif [ "$(cat "$work/tree.images" 2>/dev/null)" != "$images" ]; then
  echo "$tree holds $(cat "$work/tree.images" 2>/dev/null || echo '?') images, not $images:" \
    "give another --work (a results folder is one experiment)" >&2
  exit 2
fi

# 2. Surrogate weights, once per architecture (the main regime only).
if [ "$regime" = main ]; then
  log "surrogate pretraining (skipped where $weights/<arch>.safetensors exists)"
  # shellcheck disable=SC2086
  python bench/surrogate_pretrain.py --out "$weights" --architectures "${archs[@]}" \
    --images 20000 --size 224 --render-size 128 --epochs 6 --batch-size 128 --lr 1e-3 \
    --seed 0 --synth-seed 1000 --device "${STUDY_DEVICE:-cuda}" --workers "$(nproc)" \
    ${SURROGATE_ARGS:-} 2>&1 | tee -a "$out/surrogate.log" | grep -E 'epoch|wrote|loads' || true
  for arch in "${archs[@]}"; do  # a failed pretraining must not start a study from nothing
    [ -f "$weights/$arch.safetensors" ] || { tail -20 "$out/surrogate.log"; log "no $arch weights"; exit 1; }
  done
fi

# 3. The working folder, made whole in a temporary one and renamed (a rerun finds it or not).
if [ ! -f "$folder/workflow/Snakefile" ]; then
  rm -rf "$folder.tmp"
  if [ "$regime" = main ]; then
    python -m deepauc.cli init "$folder.tmp" --data-root "$tree" --pretrained "$weights" > /dev/null
  else
    python -m deepauc.cli init "$folder.tmp" --data-root "$tree" > /dev/null
  fi
  config=$folder.tmp/config/config.yaml
  { echo; echo "# ---- bench/overlays/study224.yaml (its pretrained line dropped)"
    grep -v '^pretrained:' bench/overlays/study224.yaml
    if [ "$regime" = weak ]; then
      echo; echo "# ---- bench/overlays/weak_start.yaml"; cat bench/overlays/weak_start.yaml
    fi; } >> "$config"
  python - "$config" <<'EOF'  # PyYAML keeps the last of a key given twice, silently: refuse it
import sys, yaml
keys = [k.value for k, _ in yaml.compose(open(sys.argv[1])).value]
twice = sorted({k for k in keys if keys.count(k) > 1})
sys.exit(f"{sys.argv[1]}: keys given twice: {twice}" if twice else 0)
EOF
  mv "$folder.tmp" "$folder"
fi

# 4. The study, resumable; whatever exists is copied at the end, also after a stop.
copy_results() {
  [ -d "$folder/results" ] || return 0
  (cd "$work" && { find "$regime/results" \( -name '*.csv' -o -name '*.log' -o -name '*.tsv' \
      -o -name '*.yaml' -o -name '*.md' \) -not -path '*/data/cache/*' -print; ls surrogate/*.json 2>/dev/null \
      || true; echo "$regime/config"; } | tar cf - -T - | xz -T0 > "$out/$regime.tar.xz")
}
trap copy_results EXIT
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
# At this size a job's start-up (imports, model, CUDA graph) outlasts its training: more jobs
# per GPU than chexpert.yaml's two overlap the start-ups (STUDY_JOBS_PER_GPU, default 6, with
# two threads each on a 16-core machine).
per_gpu=${STUDY_JOBS_PER_GPU:-6}
slots=$(( (gpus > 0 ? gpus : 1) * per_gpu ))
extra=${STUDY_EXTRA_CONFIG:+$(realpath "$STUDY_EXTRA_CONFIG")}
cd "$folder"  # the folder's own workflow/Snakefile, config/config.yaml and profiles/default
study=(snakemake ${extra:+--configfile "$extra"}
  --config "architectures=[$arch_list]" "device=${STUDY_DEVICE:-cuda}" accept_changes=True
  "jobs_per_gpu=$per_gpu" "train_threads=${STUDY_TRAIN_THREADS:-2}")
# A run killed before it could clean up leaves Snakemake's lock: only this script runs here.
[ -d .snakemake/locks ] && "${study[@]}" --unlock > /dev/null 2>&1 || true
targets=(results/summary.csv results/seeds.csv results/diagnostics.csv results/comparison.csv
  results/verdict.md)
if [ -n "${STUDY_DRY_RUN:-}" ]; then
  "${study[@]}" -n --cores "$(nproc)" --resources gpu="$slots" -- "${targets[@]}"
  exit
fi
left=$(( deadline - $(date +%s) )); [ "$left" -gt 0 ] || left=1
started=$(date +%s)
log "$regime: ${archs[*]} on $gpus GPU(s), $slots job slots, tree of $images images"
timeout --signal=INT --kill-after=60 "$left" \
  "${study[@]}" --cores "$(nproc)" --resources gpu="$slots" --rerun-incomplete --keep-going -- \
  "${targets[@]}" >> "$out/$regime.log" 2>&1 || log "snakemake stopped (exit $?)"
log "$regime: ${archs[*]}: $(( $(date +%s) - started )) s"
