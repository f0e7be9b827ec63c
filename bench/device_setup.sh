#!/usr/bin/env bash
# Set up a bare GPU machine that has torch, timm and torchvision but no network: install libauc,
# snakemake and the project from wheels downloaded beforehand into ./wheels (see
# docs/benchmarks.md, its opening paragraphs). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { python -m pip install -q --no-index --find-links wheels "$@"; }
python -c "import libauc" 2>/dev/null || pip_install --no-deps libauc==2.0.1
python -c "import snakemake" 2>/dev/null || pip_install snakemake
python - <<'PY'
import importlib.util, platform
missing = [m for m in ("sklearn", "scipy", "pandas", "matplotlib", "psutil", "yaml", "tqdm")
           if importlib.util.find_spec(m) is None]
import torch, timm, libauc, snakemake
print(f"python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
      f"libauc {libauc.__version__}, snakemake {snakemake.__version__}; missing: {missing or 'none'}")
PY
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
