#!/usr/bin/env bash
# The DAM study (docs/dam-study.md) on one GPU machine: pretrain each family's warm-up on the
# large synthetic cohort (config/dam_study_pretrain.yaml), run the study's DAG on the second
# cohort (config/dam_study.yaml), and copy the small results (tables, histories, logs,
# benchmarks; no model weights) to $OUT (default: study/out).
#
#   bash bench/dam_study.sh                          # the four families, every GPU of the machine
#   bash bench/dam_study.sh convnext_tiny davit_tiny # some of them
#
# A lent machine allows 10 minutes a call: at STUDY_TIME_LIMIT seconds (default 540) Snakemake
# gets Ctrl-C, stops its jobs cleanly and the results so far are copied. The same command, on the
# same (still warm) machine, picks the DAG up where it stopped (Snakemake's own bookkeeping).
# STUDY_EXTRA_CONFIG=<yaml> adds a config file after the study's own (a CPU smoke run, say).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(convnext_tiny densenet169 swin_tiny_patch4_window7_224 davit_tiny)
arch_list=$(IFS=,; echo "${archs[*]}")
out=${OUT:-$repo/study/out}
deadline=$(( $(date +%s) + ${STUDY_TIME_LIMIT:-540} ))
cd "$repo"
[ -d wheels ] && bash bench/device_setup.sh
mkdir -p study/pretrain study/main "$out"
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
per_gpu=$(sed -n 's/^jobs_per_gpu: *\([0-9]*\).*/\1/p' config/dam_study.yaml)  # same in both configs
slots=$(( (gpus > 0 ? gpus : 1) * per_gpu ))

copy_results() {  # whatever exists, also after a stop at the deadline
  for folder in pretrain main; do
    [ -d "study/$folder/results" ] || continue
    (cd "study/$folder" && find results -path results/synthetic -prune -o \
      \( -name '*.csv' -o -name '*.log' -o -name '*.tsv' \) -print | tar cf - -T - \
      | xz -T0 > "$out/$folder.tar.xz")  # plain, three families' results were too large to return
  done
}
trap copy_results EXIT

run() {  # one Snakemake run in a study folder, stopped with Ctrl-C at the deadline; targets after --
  local folder=$1 configfile=$2 left=$(( deadline - $(date +%s) ))
  shift 2
  if [ "$left" -le 10 ]; then echo "no time left for $folder"; return 1; fi
  timeout --signal=INT --kill-after=20 "$left" \
    snakemake --directory "study/$folder" --snakefile "$repo/Snakefile" \
    --configfile "$repo/config/$configfile" ${STUDY_EXTRA_CONFIG:+"$STUDY_EXTRA_CONFIG"} \
    --cores "$(nproc)" --resources gpu="$slots" --rerun-incomplete --keep-going \
    --config "architectures=[$arch_list]" -- "$@"
}
started=$(date +%s)
echo "$(date -u +%FT%TZ) ${archs[*]} on $gpus GPU(s), $slots job slots" | tee -a "$out/timing.txt"
run pretrain dam_study_pretrain.yaml \
  $(for arch in "${archs[@]}"; do echo "results/models/$arch/seed0/warmup.pt"; done) \
  >> "$out/pretrain.log" 2>&1
echo "pretraining done after $(( $(date +%s) - started )) s" | tee -a "$out/timing.txt"
run main dam_study.yaml results/summary.csv results/seeds.csv results/diagnostics.csv \
  results/comparison.csv >> "$out/study.log" 2>&1
echo "study done after $(( $(date +%s) - started )) s" | tee -a "$out/timing.txt"
