"""A user's data is read-only to us: the workflow writes under results/ and nowhere else.

A CheXpert-format tree with real JPEG files is made by each test (the synthetic generator
writes one outside the workflow's folder, as a download would be), fingerprinted file by file,
and compared after the run. The whole DAG, and every command the docs quote, on a read-only
view of such a tree: tests/test_own_folder.py.
"""

from pathlib import Path

import pytest
import yaml

from tests.conftest import chexpert_tree, fingerprint
from tests.test_workflow import DISEASES, TINY, checkout, snakemake

pytestmark = pytest.mark.e2e

SUMMARY = "results/summary.csv"


def test_synthetic_data_pointed_at_a_users_folder_is_refused_before_anything_is_written(
    tmp_path,
):
    """The mistake that used to overwrite a user's CSVs and JPEGs: their folder as data_root
    with the quick start's config (synthetic data on) underneath."""
    tree = chexpert_tree(tmp_path / "download")
    before = fingerprint(tree)
    work = checkout(tmp_path, "work")
    (work / "mine.yaml").write_text(yaml.safe_dump({"data_root": str(tree)}))
    escaping = {"data_root": "results/synthetic", "dataset_dir": "../../../download"}
    (work / "escaping.yaml").write_text(yaml.safe_dump(escaping))
    attempts = {
        "--config data_root=": [SUMMARY, "--config", f"data_root={tree}"],
        "a config that sets only data_root": ["--configfile", "mine.yaml", "--", SUMMARY],
        "a dataset_dir that leaves results/": ["--configfile", "escaping.yaml", "--", SUMMARY],
        "a dry run": ["--dry-run", SUMMARY, "--config", f"data_root={tree}"],
    }
    for name, args in attempts.items():
        run = snakemake(work, *args)
        assert run.returncode != 0, name
        message = run.stdout + run.stderr
        assert "config keys synthetic.enabled, data_root" in message, (name, message[-2000:])
        assert "--configfile config/chexpert.yaml" in message, name
        assert "synthetic.enabled: false" in message, name
        assert not (work / "results").exists(), name
    assert fingerprint(tree) == before


def test_no_message_suggests_turning_synthetic_data_on(tmp_path):
    """A missing download's fix must not be the setting that used to overwrite data."""
    work = checkout(tmp_path, "missing")
    run = snakemake(
        work, "--configfile", "config/chexpert.yaml", "--config", f"data_root={tmp_path}"
    )
    assert run.returncode != 0 and "train.csv not found" in run.stderr
    assert "synthetic.enabled: true" not in run.stderr


def planned_paths(work: Path, *args: str) -> tuple[set[str], list[str]]:
    """The rules a forced dry run plans, and every output, log and benchmark path it names."""
    run = snakemake(work, "--dry-run", "--forceall", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    rules, paths = set(), []
    for line in (run.stdout + run.stderr).splitlines():
        words = line.split()
        if (
            len(words) == 2
            and words[0] in ("rule", "localrule", "checkpoint", "localcheckpoint")
            and words[1].endswith(":")
        ):
            rules.add(words[1].rstrip(":"))
        elif line.strip().startswith(("output:", "log:", "benchmark:")):
            paths += [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]
    return rules, paths


def test_every_rule_writes_under_results_only(tmp_path):
    """Every rule of the workflow is planned (synthetic data, two seeds, a rate grid, a
    subset) and every path it would write is checked; then the real-data config too."""
    work = checkout(tmp_path, "walk")
    every_rule = {
        **TINY,
        "seeds": [0, 1],
        "ensemble": {"subsets": {"pair": ["resnet10t", "efficientvit_b0"]}},
        "finetune": {
            **TINY["finetune"],
            "rate_search": "first_seed",
            "dam": {"lr": [0.05, 0.1]},
            "ce": {"lr": [1e-4, 3e-4]},
            "pauc": {"lr": [1e-4, 3e-4]},
        },
        # an image set to score (export_predictor, score_images), and every export
        "inference": {"image_sets": {"ward": {"folder": str(tmp_path / "images")}}},
    }
    (work / "every_rule.yaml").write_text(yaml.safe_dump(every_rule))
    listed = snakemake(work, "--list-rules").stdout.split()
    rules, paths = planned_paths(work, "--configfile", "every_rule.yaml", "--", "all", "export")
    assert rules - {"all"} == set(listed) - {"all"}, set(listed) ^ rules
    outside = [path for path in paths if not path.startswith("results/") or ".." in path]
    assert paths and not outside, outside

    tree = chexpert_tree(tmp_path / "download")
    (work / "real.yaml").write_text(yaml.safe_dump({"diseases": DISEASES, "pretrained": False}))
    _, paths = planned_paths(
        work, "--configfile", "config/chexpert.yaml", "real.yaml", "--config", f"data_root={tree}"
    )
    outside = [path for path in paths if not path.startswith("results/")]
    assert paths and not outside, outside
