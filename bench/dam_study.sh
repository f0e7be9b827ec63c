#!/usr/bin/env bash
# One family of the DAM study (docs/dam-study.md) on one GPU machine: pretrain its warm-up on the
# large synthetic cohort, run the study's DAG on the second cohort, and copy the small results
# (tables, histories, logs; no model weights) to $OUT/<arch> (default: study/out/<arch>).
# A rerun on the same machine picks up where the last stopped (Snakemake's own bookkeeping).
#
#   bash bench/dam_study.sh convnext_tiny
#
# STUDY_EXTRA_CONFIG=<yaml> adds a config file after the study's own (a CPU smoke run, say).
set -euo pipefail
arch=${1:?usage: bench/dam_study.sh <architecture>}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/study/out}/$arch
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
mkdir -p study/pretrain study/main "$out"
started=$(date +%s)
run() {  # a Snakemake run in a study folder; targets after --
  local folder=$1 configfile=$2
  shift 2
  snakemake --directory "study/$folder" --snakefile "$repo/Snakefile" \
    --configfile "$repo/config/$configfile" ${STUDY_EXTRA_CONFIG:+"$STUDY_EXTRA_CONFIG"} \
    --cores 16 --resources gpu=4 \
    --config "architectures=[$arch]" -- "$@"
}
run pretrain dam_study_pretrain.yaml "results/models/$arch/seed0/warmup.pt" \
  > "$out/pretrain.log" 2>&1
echo "pretraining done after $(( $(date +%s) - started )) s"
run main dam_study.yaml results/summary.csv results/seeds.csv results/diagnostics.csv \
  > "$out/study.log" 2>&1
echo "study done after $(( $(date +%s) - started )) s"
(cd study/main && find results -name '*.csv' -o -name '*.log' -o -name '*.tsv' \
  | tar cf "$out/results.tar" -T -)
cp study/pretrain/results/models/"$arch"/seed0/warmup.history.csv "$out/pretrain.history.csv"
