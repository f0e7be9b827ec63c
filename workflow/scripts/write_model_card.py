"""Rule model_card: results/model_card.md from the run's own tables (deepauc.deploy.model_card)."""

import json
from pathlib import Path

import pandas as pd

from deepauc.atomic import atomic_path
from deepauc.deploy.model_card import model_card
from deepauc.jobs.logs import logged_to

inputs = snakemake.input
with logged_to(snakemake.log[0]):
    tables = {
        name: pd.read_csv(getattr(inputs, name))
        for name in ("summary", "comparison", "calibration", "subgroups", "diagnostics", "audit")
    }
    # each export's card (its folder, and its parity with the pipeline's scores)
    exports = {
        str(Path(card).parent): json.loads(Path(card).read_text()) for card in inputs.exports
    }
    text = model_card(tables, {**snakemake.params.facts, "exports": exports})
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(text)
