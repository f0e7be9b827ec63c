#!/usr/bin/env bash
# The DAM study (docs/dam-study.md) on one GPU machine: the study's DAG (config/dam_study.yaml:
# the protocol of config/protocol.yaml on a synthetic cohort generated on the spot) for the
# families given (default: the four of the write-up), and the small results (tables, histories,
# rate tables, logs, benchmarks; no model weights) copied to an output folder (default study/out)
# as main.tar.xz.
#
#   bash bench/dam_study.sh                                   # the four families, every GPU
#   bash bench/dam_study.sh --out /data/study convnext_tiny davit_tiny   # some of them
#
# STUDY_TIME_LIMIT=<seconds> (default: none) stops it after that long: Snakemake gets Ctrl-C, stops
# its jobs cleanly (each saves a resume file; sixteen jobs took more than 20 s to, so they get 60)
# and the results so far are copied. The same command in the same folder picks the DAG up where
# it stopped (Snakemake's own bookkeeping, and each training job's resume file).
# STUDY_EXTRA_CONFIG=<yaml> adds a config file after the study's own (a CPU smoke run, say).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/study/out
if [ "${1:-}" = "--out" ]; then out=$(realpath -m "$2"); shift 2; fi
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(convnext_tiny densenet169 swin_tiny_patch4_window7_224 davit_tiny)
arch_list=$(IFS=,; echo "${archs[*]}")
deadline=$(( $(date +%s) + ${STUDY_TIME_LIMIT:-1000000000} ))
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
mkdir -p study/main "$out"
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
per_gpu=$(sed -n 's/^jobs_per_gpu: *\([0-9]*\).*/\1/p' config/dam_study.yaml)
slots=$(( (gpus > 0 ? gpus : 1) * per_gpu ))

copy_results() {  # whatever exists, also after a stop at the deadline
  [ -d study/main/results ] || return 0
  (cd study/main && find results -path results/synthetic -prune -o \
    \( -name '*.csv' -o -name '*.log' -o -name '*.tsv' \) -print | tar cf - -T - \
    | xz -T0 > "$out/main.tar.xz")  # compressed: a study's predictions and logs are ~30 MB plain
}
trap copy_results EXIT

study=(snakemake --directory study/main --snakefile "$repo/Snakefile"
  --configfile "$repo/config/dam_study.yaml" ${STUDY_EXTRA_CONFIG:+"$STUDY_EXTRA_CONFIG"}
  --config "architectures=[$arch_list]" accept_changes=True)  # one folder, families in turn
# A run killed before it could clean up leaves Snakemake's lock: only this script runs here.
[ -d study/main/.snakemake/locks ] && "${study[@]}" --unlock > /dev/null 2>&1 || true
left=$(( deadline - $(date +%s) ))
started=$(date +%s)
echo "$(date -u +%FT%TZ) ${archs[*]} on $gpus GPU(s), $slots job slots" | tee -a "$out/timing.txt"
timeout --signal=INT --kill-after=60 "$left" \
  "${study[@]}" --cores "$(nproc)" --resources gpu="$slots" --rerun-incomplete --keep-going -- \
  results/summary.csv results/seeds.csv results/diagnostics.csv results/comparison.csv \
  >> "$out/study.log" 2>&1 || echo "snakemake stopped (exit $?)" | tee -a "$out/timing.txt"
echo "study: $(( $(date +%s) - started )) s" | tee -a "$out/timing.txt"
