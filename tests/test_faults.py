"""Faults a new user meets (docs/reliability.md, round two): each reproduced, each refused with a
message that names the file, line or key and the fix, and nothing partial left behind."""

import contextlib
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from deepauc.atomic import write_csv
from deepauc.config.checks import check_mappings_given_as_mappings
from deepauc.config.layers import load_config
from deepauc.config.settings import preprocess_settings
from deepauc.data.cache import build_cache
from deepauc.data.chexpert import LABEL_COLUMNS, read_chexpert_csv
from deepauc.data.preprocess import PreprocessSettings, prepare_splits
from deepauc.errors import InputError
from deepauc.models.build import create_model
from tests.conftest import DISEASES, TRAIN_ROWS, VALID_ROWS, write_chexpert_csv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def train_csv(tmp_path):
    return write_chexpert_csv(tmp_path / "train.csv", TRAIN_ROWS)


def _labels(path) -> pd.DataFrame:
    return read_chexpert_csv(path, tuple(DISEASES))[list(DISEASES)]


# ---- 1. a train.csv cut in the middle of a row ----------------------------------------------


def test_a_row_cut_short_is_refused_naming_the_file_and_line(train_csv):
    text = train_csv.read_text()
    cut = text.rstrip("\n").rsplit(",", 5)[0]  # the last row loses its last five fields
    train_csv.write_text(cut)
    lines = cut.count("\n") + 1
    with pytest.raises(InputError) as caught:
        _labels(train_csv)
    message = str(caught.value)
    assert f"{train_csv}, line {lines}" in message
    assert "14 fields where the header has 19" in message and "truncated" in message
    assert "Fix:" in message


def test_a_row_with_missing_fields_inside_the_file_is_refused(train_csv):
    lines = train_csv.read_text().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\r\n").rsplit(",", 2)[0] + "\n"
    train_csv.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 4: this row has 17 fields where the header"):
        _labels(train_csv)


def test_an_extra_field_is_refused_too(train_csv):
    lines = train_csv.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\r\n") + ",1.0\n"
    train_csv.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 3: this row has 20 fields"):
        _labels(train_csv)


def test_a_cut_right_after_the_last_comma_is_refused(train_csv):
    text = train_csv.read_text().rstrip("\n")
    train_csv.write_text(text[: text.rindex(",") + 1])  # 19 fields, the last one emptied
    with pytest.raises(InputError, match="ends in the middle of its last row"):
        _labels(train_csv)


def test_nul_bytes_from_a_failed_copy_are_refused(train_csv):
    data = train_csv.read_bytes()
    train_csv.write_bytes(data[:200] + b"\x00" * 64 + data[264:])
    with pytest.raises(InputError, match="NUL bytes"):
        _labels(train_csv)


def test_truncated_or_corrupted_train_csv_never_yields_a_different_label_table(train_csv):
    """Property: cut or damaged at random positions, the CSV either reads as the intact file's
    first rows with the same labels, or is refused naming the file and a line."""
    intact_bytes = train_csv.read_bytes()
    intact = _labels(train_csv)
    text = intact_bytes.decode()
    rng = random.Random(17)
    damages = {
        "cut": lambda t, i: t[:i],
        "line break inserted": lambda t, i: t[:i] + "\n" + t[i:],
        "byte dropped": lambda t, i: t[:i] + t[i + 1 :],
        "comma inserted": lambda t, i: t[:i] + "," + t[i:],
        "NUL block": lambda t, i: t[:i] + "\x00" * 16 + t[i + 16 :],
    }
    outcomes = {"same": 0, "refused": 0}
    header_end = text.index("\n") + 1
    for case in range(60):
        name = list(damages)[case % len(damages)]
        position = rng.randrange(header_end, len(text))
        damaged = damages[name](text, position)
        if name == "byte dropped" and text[position] in "-":
            continue  # "-1.0" -> "1.0" is a valid label: no format can tell (see reliability.md)
        train_csv.write_text(damaged)
        try:
            read = _labels(train_csv)
        except InputError as err:
            assert str(train_csv) in str(err) and "Fix:" in str(err), (name, position, err)
            outcomes["refused"] += 1
            continue
        expected = intact.iloc[: len(read)].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            read.reset_index(drop=True), expected, obj=f"{name} at byte {position}"
        )
        outcomes["same"] += 1
    assert outcomes["refused"] >= 20 and sum(outcomes.values()) >= 50, outcomes


# ---- 2. a header-only CSV --------------------------------------------------------------------


def test_a_header_only_csv_gets_a_fix(train_csv):
    train_csv.write_text(",".join(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
                                  + list(LABEL_COLUMNS)) + "\n")  # fmt: skip
    with pytest.raises(InputError, match="header but no rows") as caught:
        _labels(train_csv)
    assert "Fix:" in str(caught.value)


# ---- 3. a misspelt disease under uncertainty: ------------------------------------------------


def _config() -> dict:
    return load_config(REPO / "config" / "config.yaml")


def test_a_misspelt_disease_under_uncertainty_is_refused_naming_the_closest():
    config = _config()
    config["uncertainty"]["Cardiomegally"] = config["uncertainty"].pop("Cardiomegaly")
    with pytest.raises(InputError) as caught:
        preprocess_settings(config)
    message = str(caught.value)
    assert "config key uncertainty.Cardiomegally" in message
    assert "did you mean 'Cardiomegaly'?" in message


def test_uncertainty_may_name_a_chexpert_label_that_is_not_trained():
    config = _config()
    config["diseases"] = ["Edema"]  # the other four policies stay, unused
    assert preprocess_settings(config).uncertainty["Cardiomegaly"] == "zeros"


# ---- 10. a test split without positives ------------------------------------------------------


def test_a_test_split_without_positives_names_test_csv_not_val_fraction(chexpert_root):
    dataset = chexpert_root / "CheXpert-v1.0-small"
    rows = [(path, view, ["0.0", *labels[1:]]) for path, view, labels in VALID_ROWS]
    write_chexpert_csv(dataset / "valid.csv", rows)  # no Cardiomegaly positive left in test
    with pytest.raises(InputError) as caught:
        prepare_splits(
            dataset / "train.csv",
            dataset / "valid.csv",
            data_root=chexpert_root,
            dataset_dir="CheXpert-v1.0-small",
            settings=PreprocessSettings(diseases=tuple(DISEASES), val_fraction=0.3),
            require_scorable=True,
        )
    message = str(caught.value)
    assert "split 'test' has 0 positive" in message and "'Cardiomegaly'" in message
    assert "config key test_csv" in message and str(dataset / "valid.csv") in message
    assert "val_fraction" not in message


# ---- 11. a mapping passed with --config as text ----------------------------------------------


def test_text_given_for_a_mapping_says_how_to_pass_one():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = _config() | {"uncertainty": "Edema:ones"}
    with pytest.raises(InputError) as caught:
        check_mappings_given_as_mappings(config, schema)
    message = str(caught.value)
    assert "config key uncertainty" in message and "'Edema:ones'" in message
    assert "--configfile" in message and "space after each colon" in message
    check_mappings_given_as_mappings(_config(), schema)  # the shipped config passes


# ---- disks: full, read-only; mounts need root ------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs at ``folder`` (a small or read-only disk), unmounted after the block."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small or read-only disk needs root and mount(8)")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _jpegs(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.jpg"
        Image.new("L", (32, 32), color=i % 256).save(path)
        paths.append(str(path))
    return paths


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ---- 5. kill -9 while the image cache is written ---------------------------------------------

SLOW_CACHE = """
import sys, time
import deepauc.data.cache as cache
decode = cache.try_load_image
cache.try_load_image = lambda path, size: (time.sleep(0.02), decode(path, size))[1]
cache.build_cache(sys.argv[2:], 64, sys.argv[1], workers=1, label="train")
"""


def test_a_cache_writer_killed_leaves_a_temporary_that_the_rerun_removes(tmp_path):
    images = _jpegs(tmp_path / "jpg", 300)
    out = tmp_path / "cache" / "train_64px.npy"
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_CACHE, str(out), *images],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    deadline = time.monotonic() + 60
    while not (out.parent.is_dir() and _leftovers(out.parent)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert _leftovers(out.parent) and not out.exists()  # what kill -9 leaves
    build_cache(images, 64, out, workers=2)  # the rule's next run
    assert _leftovers(out.parent) == [] and out.exists()


# ---- 6. a full disk while the image cache is written -----------------------------------------


CACHE_INTO = """
import sys
from deepauc.data.cache import build_cache
from deepauc.errors import InputError
try:
    build_cache(sys.argv[2:], 128, sys.argv[1], workers=1)
except InputError as err:
    print(err)
    sys.exit(3)
"""


def test_a_full_disk_while_caching_is_one_message_and_nothing_left(tmp_path):
    images = _jpegs(tmp_path / "jpg", 100)
    with mounted_tmpfs(tmp_path / "small", "size=1m") as disk:
        out = disk / "train_128px.npy"  # 100 x 128 x 128 = 1.6 MB
        # In a subprocess: the fault this guards against is a SIGBUS, which would end pytest.
        done = subprocess.run(
            [sys.executable, "-c", CACHE_INTO, str(out), *images],
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 3, (done.returncode, done.stderr[-2000:])  # not -7 (SIGBUS)
        assert str(out) in done.stdout and "no space left" in done.stdout
        assert "1,638,528 bytes needed" in done.stdout and "bytes free in" in done.stdout
        assert list(disk.iterdir()) == []  # no output, no temporary


def test_caching_reserves_its_space_before_writing(tmp_path):
    """The cache file gets its blocks up front (no sparse file that SIGBUSes when the disk
    fills under it): what the disk-full check relies on."""
    out = tmp_path / "train_64px.npy"
    build_cache(_jpegs(tmp_path / "jpg", 20), 64, out)
    assert out.stat().st_blocks * 512 >= out.stat().st_size


# ---- 7. a full disk while the split CSVs are written -----------------------------------------


def test_a_full_disk_while_writing_a_csv_names_the_file_and_the_disk(tmp_path):
    frame = pd.DataFrame(
        {"image": [f"patient{i:05d}/study1/view1_frontal.jpg" for i in range(9000)]}
    )
    with mounted_tmpfs(tmp_path / "small", "size=64k") as disk:
        with pytest.raises(InputError) as caught:
            write_csv(frame, disk / "train.csv")
        message = str(caught.value)
        assert f"{disk / 'train.csv'}: no space left" in message
        assert f"bytes free in {disk}" in message and "Fix:" in message
        assert list(disk.iterdir()) == []


# ---- 8. a read-only results folder -----------------------------------------------------------


def test_a_read_only_results_folder_is_refused_before_any_job(tmp_path):
    for name in ("Snakefile", "workflow", "config", "src"):
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / name)
    with mounted_tmpfs(tmp_path / "results", "ro,size=1m"):
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "1", "results/summary.csv"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode != 0
    assert "cannot write the results here (Read-only file system)" in done.stderr
    assert "Fix:" in done.stderr and "Traceback" not in done.stderr


# ---- 9. outputs honour the umask -------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_permissions_the_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "summary.csv")
        build_cache(_jpegs(tmp_path / "jpg", 2), 16, tmp_path / "cache.npy")
    finally:
        os.umask(previous)
    for name in ("summary.csv", "cache.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


# ---- 4. pretrained: a file that is not weights -----------------------------------------------


def test_an_html_page_saved_as_weights_is_named_and_described(tmp_path):
    page = tmp_path / "resnet10t.safetensors"
    page.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
    with pytest.raises(InputError) as caught:
        create_model("resnet10t", num_outputs=5, image_size=32, pretrained=page)
    message = str(caught.value)
    assert str(page) in message and "an HTML page" in message
    assert "expected a timm state dict of 'resnet10t'" in message and "Fix:" in message


def test_cut_short_torch_weights_are_named_and_described(tmp_path):
    weights = tmp_path / "resnet10t.pth"
    torch.save(create_model("resnet10t", 5, 32).state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="zip archive.*cut short"):
        create_model("resnet10t", num_outputs=5, image_size=32, pretrained=weights)


def test_checking_a_results_folder_not_made_yet_writes_nothing_beside_it(tmp_path):
    """The check asks whether the folder above could hold results/; it writes nothing there
    (that folder may be a user's)."""
    from deepauc.atomic import check_writable

    check_writable(tmp_path / "results")
    assert list(tmp_path.iterdir()) == []
    read_only = pytest.raises(InputError, match="Read-only file system")
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as disk, read_only:
        check_writable(disk / "results")
