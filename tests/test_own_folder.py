"""A folder of your own for real data (``deepauc init``: the workflow used as a Snakemake module,
the layout ``snakedeploy deploy-workflow`` writes), and every command the docs quote.

A tiny CheXpert-format download is run to the end in a folder made by ``deepauc init``, with
plain commands only; the quick start's config is then refused there, and the figures, the
report, an export and a scored image set run with no config repeated. Every ``snakemake``
command of README.md, config/README.md and docs/*.md then runs as written (as a dry run, a
report for real) in that folder and in a clone with the quick start's config.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepauc.config.experiment import RECORD
from deepauc.models.timm_index import model_index
from tests.conftest import (
    chexpert_tree,
    copy_timm_index,
    fingerprint,
    read_only,
    timm_index_folder,
)
from tests.test_workflow import checkout, snakemake

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
#: The keys a tiny run changes in the folder's config/config.yaml (after what init wrote): one
#: small architecture from scratch, small images, 1 + 1 epochs and one disease; the protocol's
#: four methods, their grids (grown at an edge), PESG mode auto and three seeds stay.
SMALL = {
    "architectures": ["resnet10t"],
    "pretrained": False,
    "image_size": 32,
    "diseases": ["Edema"],  # about 30 fine-tunes on two cores
    "split": {"val_fraction": 0.25, "seed": 0},
    "train_threads": 1,
    "warmup": {"epochs": 1, "batch_size": 16},
    "finetune": {"epochs": 1, "batch_size": 16, "lr_decay_epochs": []},
    "ensemble": {"subsets": {}},
    "evaluation": {"bootstrap_resamples": 200},
    "figures": {"dpi": 60, "showcase_images": 4, "saliency_images": 2},
}
TRAINING = {"synthesize_dataset", "preprocess", "warmup", "finetune"}


def deepauc_command(ours: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``deepauc`` command of the checkout ``ours``."""
    return subprocess.run(
        [sys.executable, "-m", "deepauc.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ours / "src")},
    )


def planned_rules(run: subprocess.CompletedProcess) -> set[str]:
    """The rules of a dry run's job table."""
    text = run.stdout + run.stderr
    if "Job stats:" not in text:
        return set()
    table = text.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in table.splitlines() if len(line.split()) == 2}


#: The download's fingerprint before any command, by the path the commands read it from.
UNTOUCHED: dict[Path, tuple[Path, dict]] = {}


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    """A data_root holding a small CheXpert-format download (JPEGs, the two CSVs, and a CSV of
    new images to score), as every command of this module sees it: read-only (a read-only bind
    mount where this is root, so that any write fails loudly)."""
    root = chexpert_tree(tmp_path_factory.mktemp("download"))
    # new images to score: a CSV whose Path column is relative to its own folder
    valid = pd.read_csv(root / "CheXpert-v1.0-small" / "valid.csv")
    valid.to_csv(root / "ward.csv", index=False)
    before = fingerprint(root)
    with read_only(root, tmp_path_factory.mktemp("view")) as view:
        UNTOUCHED[view] = (root, before)
        yield view


@pytest.fixture(scope="module")
def own(tmp_path_factory, download) -> Path:
    """A folder of one's own (deepauc init) on the download, run to the end with plain
    commands: the default target (figures, model card and its export)."""
    base = tmp_path_factory.mktemp("own")
    ours = checkout(base, "deepauc")
    folder = base / "cxr"
    made = deepauc_command(ours, "init", str(folder), "--data-root", str(download))
    assert made.returncode == 0, made.stderr
    assert "cd " in made.stdout
    config = folder / "config" / "config.yaml"
    config.write_text(config.read_text() + yaml.safe_dump(SMALL, sort_keys=False))
    copy_timm_index(folder)
    run = snakemake(folder)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    (base / "first_run.txt").write_text(run.stderr)  # what the console showed
    # the config is resolved from the folder's config/, and the checkout is only read
    assert "config: config/protocol.yaml < config/chexpert.yaml < config/config.yaml" in run.stderr
    assert "experiment recorded" in run.stderr
    assert not (ours / "results").exists() and not (ours / ".snakemake" / "log").exists()
    return folder


def test_init_writes_the_deployed_layout_and_refuses_what_it_cannot_use(tmp_path, download):
    ours = checkout(tmp_path, "deepauc")
    made = deepauc_command(ours, "init", str(tmp_path / "a"), "--data-root", str(download))
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "a"
    snakefile = (folder / "workflow" / "Snakefile").read_text()
    assert f'"{ours / "Snakefile"}"' in snakefile and "use rule * from deepauc" in snakefile
    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    assert config == {"extends": "chexpert.yaml", "data_root": str(download)}
    for name in ("protocol.yaml", "chexpert.yaml"):
        assert (folder / "config" / name).read_text() == (ours / "config" / name).read_text()
    assert (folder / "profiles" / "slurm" / "config.yaml").is_file()
    # the folder given is not empty, or the data root is the dataset folder itself
    again = deepauc_command(ours, "init", str(folder), "--data-root", str(download))
    assert again.returncode == 2 and "is not empty" in again.stderr
    inside = download / "CheXpert-v1.0-small"
    wrong = deepauc_command(ours, "init", str(tmp_path / "b"), "--data-root", str(inside))
    assert wrong.returncode == 2
    assert f"is in {download}: give --data-root {download}" in wrong.stderr
    assert not (tmp_path / "b").exists()
    trial = deepauc_command(
        ours, "init", str(tmp_path / "c"), "--data-root", str(download), "--trial"
    )
    keys = yaml.safe_load((tmp_path / "c" / "config" / "config.yaml").read_text())
    assert trial.returncode == 0 and keys["seeds"] == [0] and len(keys["architectures"]) == 1


def test_the_chexpert_protocol_runs_to_the_end_and_every_fine_tune_says_whether_it_trained(
    own,
):
    """config/chexpert.yaml's protocol on a JPEG tree: its four methods, grids, PESG mode auto
    and three seeds, from the folder's own config."""
    diagnostics = pd.read_csv(own / "results" / "diagnostics.csv")
    assert set(diagnostics["method"]) == {"dam", "ce", "compositional", "pauc"}
    assert set(diagnostics["seed"]) == {0, 1, 2}
    assert len(diagnostics) == 3 * 4 * 1  # seeds x methods x diseases
    assert set(diagnostics["trained"]) <= {"yes", "no"}
    untrained = diagnostics[diagnostics["trained"] == "no"]
    assert untrained["caution"].str.contains("did not train").all()
    seed0 = diagnostics[diagnostics["seed"] == 0]
    assert (seed0["rates_tried"] >= 3).all() and (seed0["rates_tried"] <= 5).all()
    assert (diagnostics.loc[diagnostics["seed"] > 0, "rates_tried"] == 1).all()
    dam = pd.read_csv(own / "results/models/resnet10t/seed0/dam/edema.rates.csv")
    assert {0.01, 0.03, 0.1} <= set(dam["lr"])  # PESG sgd's grid, for a BatchNorm network
    log = (own / ".snakemake" / "log").glob("*.log")
    assert any("resnet10t: PESG mode sgd" in path.read_text() for path in log)
    assert (own / "results" / "seeds.csv").is_file()


def test_a_weak_start_is_warned_before_the_fine_tunes_and_marked_in_the_summary(own):
    """The case of a 1 + 1-epoch run from scratch on a CheXpert tree: the warm-up barely ranks
    the disease, the console says so before any fine-tune starts, and the summary marks the
    AUC fine-tune's rows (DAM's) with what happened."""
    console = (own.parent / "first_run.txt").read_text()
    warned = console.find("barely ranks Edema")
    assert warned >= 0, console[-3000:]
    assert warned < console.find("rule finetune"), "warned only after a fine-tune started"
    diagnostics = pd.read_csv(own / "results" / "diagnostics.csv")
    assert (diagnostics["weak_start"] == "yes").all()
    summary = pd.read_csv(own / "results" / "summary.csv").fillna("")
    dam = summary[(summary["method"] == "dam") & (summary["level"] == "image")]
    assert dam["caution"].str.contains("barely ranks Edema").all(), dam["caution"].tolist()
    warmup = summary[summary["method"] == "warmup"]
    assert not warmup["caution"].str.contains("barely ranks").any()


def test_a_chexpert_run_in_its_own_folder_needs_no_config_on_any_command(own, download):
    results = own / "results"
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary["disease"]) == {"Edema", "mean"}
    assert not (results / "synthetic").exists()  # real data: nothing generated
    record = yaml.safe_load((own / RECORD).read_text())
    assert record["configs"] == [
        "config/protocol.yaml",
        "config/chexpert.yaml",
        "config/config.yaml",
    ]
    assert set(record["experiment"]["csv_sha256"]) == {"train_csv", "test_csv"}
    # the model card names the export it describes, and that export exists
    card = (results / "model_card.md").read_text()
    assert "Exported for use: `results/export/ensemble/dam`" in card
    assert (results / "export" / "ensemble" / "dam" / "card.json").is_file()
    # the report, every export, the AUC figure alone and new images: plain commands
    report = snakemake(own, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    export = snakemake(own, "export")
    assert export.returncode == 0, export.stderr[-3000:]
    assert (results / "export" / "resnet10t" / "dam" / "weights.safetensors").is_file()
    figure = snakemake(own, "results/figures/auc_by_architecture.png", "-n")
    assert figure.returncode == 0 and "Nothing to be done" in figure.stdout + figure.stderr
    images = {"inference": {"image_sets": {"ward": {"csv": str(download / "ward.csv")}}}}
    (own / "my_images.yaml").write_text(yaml.safe_dump(images))
    plan = snakemake(own, "results/inference/ward.csv", "-n", "--configfile", "my_images.yaml")
    assert plan.returncode == 0 and not planned_rules(plan) & TRAINING, plan.stderr[-2000:]
    scored = snakemake(own, "results/inference/ward.csv", "--configfile", "my_images.yaml")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert len(pd.read_csv(results / "inference" / "ward.csv")) > 0


def test_the_quick_start_config_is_refused_in_a_chexpert_folder(own):
    before = (own / RECORD).read_bytes()
    ours = checkout_of(own)
    for args in (
        ["-n", "--configfile", str(ours / "config" / "config.yaml")],
        ["--configfile", str(ours / "config" / "config.yaml")],
        ["-n", "--config", "image_size=64"],  # a protocol key changed on the command line
    ):
        run = snakemake(own, "results/summary.csv", *args)
        assert run.returncode != 0, args
        message = run.stdout + run.stderr
        assert "results/ belong to the experiment recorded in results/experiment.yaml" in message
        assert "Fix:" in message and "accept_changes=True" in message
        assert "Traceback" not in message
    assert "image_size: 32 -> 64" in message
    assert (own / RECORD).read_bytes() == before
    assert not (own / "results" / "synthetic").exists()


# ---- Every command the docs quote ---------------------------------------------------------

DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Sections whose commands are for a folder of one's own on real data; the others' run both in
#: such a folder and in a clone with the quick start's config.
OWN_SECTIONS = {
    ("README.md", "Your own CheXpert"),
    ("running.md", "Run on a SLURM cluster"),
}


def doc_commands() -> list[tuple[str, int, str, str]]:
    """(file, line, section, command) of every command a doc quotes: each ``snakemake``,
    ``deepauc`` or ``echo ... > file`` of a shell block (a line split at ``&&``), and each
    code span that starts with ``snakemake``."""
    found = []
    for path in DOCS:
        name = str(path.relative_to(REPO))
        text = path.read_text()
        section, fence = "", None
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith("```"):
                fence = line[3:].strip() if fence is None else None
                continue
            if fence is None:
                if line.startswith("#"):
                    section = line.lstrip("#").strip()
                continue
            if fence not in ("bash", "sh", ""):
                continue
            for part in line.split("&&"):
                command = re.sub(r"\s+#\s.*$", "", part).strip()
                if re.match(r"snakemake\b|deepauc\b|echo .*>", command):
                    found.append((name, number, section, command))
        sections = [(m.start(), m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)]
        for match in re.finditer(r"`(snakemake\b[^`]*)`", text):
            number = text.count("\n", 0, match.start()) + 1
            section = [title for start, title in sections if start < match.start()][-1:]
            found.append((name, number, "".join(section), " ".join(match.group(1).split())))
    return found


COMMANDS = doc_commands()
#: (folder, arguments) of the doc commands run so far.
ALREADY_RUN: set[tuple] = set()


def test_the_docs_quote_the_commands_that_matter():
    """The extraction sees the commands the README promises (so the test below is real)."""
    quoted = {command for *_, command in COMMANDS}
    assert "snakemake results/summary.csv -n" in quoted
    assert "snakemake --report results/report.html" in quoted
    assert any(c.startswith("deepauc init") for c in quoted)
    assert any(c.startswith("echo") and c.endswith("> my_images.yaml") for c in quoted)
    assert any("--workflow-profile profiles/slurm" in c for c in quoted)
    assert len(COMMANDS) >= 25


def test_every_quoted_command_puts_its_targets_before_its_options():
    """``--resources``, ``--configfile``, ``--config`` and others take several values, so a
    target after them is read as one of their values: targets come first, always."""
    from snakemake.cli import get_argument_parser

    parser = get_argument_parser()
    for name, line, _, command in COMMANDS:
        if not command.startswith("snakemake"):
            continue
        words = shlex.split(command)[1:]
        try:
            targets = list(parser.parse_known_args(words)[0].targets)
        except (ValueError, SystemExit) as err:  # a target read as a --resources value
            pytest.fail(f"{name}:{line}: Snakemake cannot read {command!r}: {err}")
        written = [w for w in words if re.fullmatch(r"results/\S+|export|all", w)]
        values = {
            words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--report", "--directory")
        }
        assert words[: len(targets)] == targets, f"{name}:{line}: {command}"
        assert set(written) - values <= set(targets), f"{name}:{line}: {command}"


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """A clone with the quick start's config, nothing run yet."""
    return checkout(tmp_path_factory.mktemp("quick"), "clone")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> dict[str, str]:
    """The environment of a machine whose Hugging Face cache holds the protocol's ImageNet
    weights (as files of the right names: a dry run checks they are there, not their bytes)."""
    cache = tmp_path_factory.mktemp("hub")
    protocol = yaml.safe_load((REPO / "config" / "protocol.yaml").read_text())
    weights = model_index(timm_index_folder())["weights"]
    for arch in protocol["architectures"]:
        hub_id, filename, _ = weights[arch]
        repo = cache / ("models--" + hub_id.split("@")[0].replace("/", "--"))
        (repo / "snapshots" / "0").mkdir(parents=True)
        (repo / "snapshots" / "0" / (filename or "model.safetensors")).write_bytes(b"")
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def checkout_of(folder: Path) -> Path:
    """The checkout whose workflow a folder of one's own uses."""
    snakefile = (folder / "workflow" / "Snakefile").read_text()
    return Path(re.search(r'"(.+)/Snakefile"', snakefile).group(1))


def prepared(command: str, download: Path, scratch: Path) -> list[str]:
    """The command's words, its placeholders replaced by the test's folders."""
    stand_ins = {
        "/data/chexpert": download,
        "/data/ward_a.csv": download / "ward.csv",
        "~/runs/chexpert": scratch / "runs",
        "~/cxr-trial": scratch / "new-folder",
        "~/cxr": scratch / "new-folder",
    }
    for placeholder, stand_in in stand_ins.items():
        command = command.replace(placeholder, str(stand_in))
    return shlex.split(command)


@pytest.mark.parametrize(
    "quoted",
    [(name, section, command) for name, _, section, command in COMMANDS],
    ids=[f"{name}:{line}" for name, line, *_ in COMMANDS],
)
def test_every_command_the_docs_quote_runs_as_written(
    quoted, own, quick, download, hub_cache, tmp_path
):
    """In a finished folder of one's own (the sections on real data: there alone) and in a
    clone with the quick start's config: a dry run (a report and an unlock for real) that
    neither crashes nor, in the finished folder, plans training or made-up data again."""
    name, section, text = quoted
    where = [own] if (Path(name).name, section) in OWN_SECTIONS else [own, quick]
    words = prepared(text, download, tmp_path)
    if words[0] == "deepauc":  # init, into a new folder
        run = deepauc_command(checkout_of(own), *words[1:])
        assert run.returncode == 0, f"{name}: {text}\n{run.stderr}"
        return
    for folder in where:
        if words[0] == "echo":  # a small overlay the next command reads
            subprocess.run(f"{shlex.join(words[:-2])} > {words[-1]}", shell=True, cwd=folder)
            continue
        args = words[1:]
        if "--lint" in args or ("--report" in args and folder == quick):
            continue  # the hygiene test lints; a report is of a finished run (own's)
        if not {"--report", "--unlock", "-n"} & set(args):
            args = [*args, "-n"]
        if (folder, *args) in ALREADY_RUN:  # quoted in several places, run once
            continue
        ALREADY_RUN.add((folder, *args))
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            env=hub_cache,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0 and "Traceback" not in output, (
            f"{name} in {folder.name}: {text}\n{output[-3000:]}"
        )
        if folder == own and not {"--forcerun", "--directory"} & set(args):
            # a finished run: no command of the docs trains again or makes data up
            planned = planned_rules(run)
            assert not planned & TRAINING, f"{name}: {text} plans {planned}"


def test_every_command_left_the_download_byte_identical(own, download):
    """After the run, the figures, report, exports, scored images and every doc command: the
    user's data is as it was, file by file, modes and mtimes included."""
    root, before = UNTOUCHED[download]
    assert fingerprint(root) == before
