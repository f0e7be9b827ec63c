"""The workflow used as a Snakemake module from a user's own folder (the layout `snakedeploy
deploy-workflow` writes): their Snakefile names ours, their config folder and results live with
them, and nothing is written into our checkout."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import copy_timm_index
from tests.test_workflow import DISEASES, TINY, checkout, snakemake

pytestmark = pytest.mark.e2e

USER_SNAKEFILE = """\
configfile: "config/config.yaml"


module deepauc:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from deepauc
"""


def test_a_user_folder_runs_the_workflow_as_a_module(tmp_path):
    ours = checkout(tmp_path, "deepauc")
    user = tmp_path / "analysis"
    (user / "config").mkdir(parents=True)
    for name in ("protocol.yaml", "config.yaml"):  # what snakedeploy copies: our config folder
        (user / "config" / name).write_text((ours / "config" / name).read_text())
    copy_timm_index(user)
    (user / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=ours / "Snakefile"))
    small = {
        **TINY,
        "architectures": ["resnet10t"],
        "diseases": DISEASES[:2],
        "finetune": {**TINY["finetune"], "methods": ["dam", "ce"]},
    }
    (user / "small.yaml").write_text(yaml.safe_dump(small))
    run = snakemake(user, "--configfile", "small.yaml", "--", "results/summary.csv")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    summary = pd.read_csv(user / "results" / "summary.csv")
    assert set(summary["method"]) == {"warmup", "dam", "ce"}
    assert set(summary["disease"]) == {*DISEASES[:2], "mean"}
    assert not (ours / "results").exists()  # the user's folder holds everything it made
    assert "config: " in run.stderr and str(Path("config", "config.yaml")) in run.stderr
