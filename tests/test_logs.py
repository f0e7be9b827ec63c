"""A job's failure reaches the console as a message with its fix, never a traceback wall."""

import errno
import logging
import signal
from pathlib import Path

import pandas as pd
import pytest

from deepauc.atomic import write_csv
from deepauc.errors import InputError, JobStopped
from deepauc.jobs.logs import logged_to


def _fail_in_job(tmp_path, capsys, error):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as exit_info, logged_to(log):
        logging.getLogger("deepauc.test").info("working")
        raise error
    assert exit_info.value.code == 1
    return capsys.readouterr().err, log.read_text()


def test_input_error_is_its_message_alone(tmp_path, capsys):
    console, log = _fail_in_job(tmp_path, capsys, InputError("bad", where="x.csv", fix="do y"))
    assert console == "deepauc: error: x.csv: bad\nFix: do y\n"
    assert "working" in log and "Traceback" not in log


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, ["no space left to write", "free space on that disk"]),
        (errno.EACCES, ["cannot write", "writable"]),
        (errno.EROFS, ["cannot write", "--directory"]),
    ],
)
def test_full_disk_or_unwritable_folder_is_a_message_with_the_fix(tmp_path, capsys, code, words):
    error = OSError(code, "simulated", "results/data/train.csv")
    console, log = _fail_in_job(tmp_path, capsys, error)
    assert "results/data/train.csv" in console and all(w in console for w in words)
    assert "Traceback" not in console and "Traceback" not in log


def test_other_os_errors_keep_their_traceback_in_the_log(tmp_path):
    with pytest.raises(FileNotFoundError), logged_to(tmp_path / "job.log"):
        raise FileNotFoundError(errno.ENOENT, "gone", "x")
    assert "Traceback" in (tmp_path / "job.log").read_text()


def test_disk_full_during_a_write_leaves_no_file_behind(tmp_path, monkeypatch):
    target = tmp_path / "out" / "table.csv"

    def fill_the_disk(self, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("image,score\n")  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", fill_the_disk)
    with pytest.raises(InputError, match="no space left for this file") as caught:
        write_csv(pd.DataFrame({"image": ["a"], "score": [0.5]}), target)
    assert str(caught.value).startswith(f"{target}: ")  # the output, not its temporary name
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "torch_says",
    [
        "PytorchStreamWriter failed writing file data/0: file write failed",
        "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0",
    ],
)
def test_disk_full_while_saving_a_model_is_a_message_and_leaves_no_file(
    tmp_path, monkeypatch, torch_says
):
    import torch

    from deepauc.models.checkpoints import save_model

    def fail_to_write(obj, path):
        Path(path).write_bytes(b"PK partial")  # a truncated zip, as a full disk leaves it
        raise RuntimeError(torch_says)

    target = tmp_path / "models" / "warmup.pt"
    monkeypatch.setattr(torch, "save", fail_to_write)
    with pytest.raises(InputError, match=r"could not write .* MB free there") as err:
        save_model(target, {}, {"arch": "x", "image_size": 8, "outputs": ["a"]})
    assert "free space on that disk" in str(err.value)
    assert list(target.parent.iterdir()) == []


def test_other_runtime_errors_while_saving_stay_errors(tmp_path, monkeypatch):
    import torch

    from deepauc.models.checkpoints import save_model

    def broken(obj, path):
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_model(tmp_path / "m.pt", {}, {"arch": "x", "image_size": 8, "outputs": ["a"]})


def test_a_stopped_jobs_log_survives_snakemake_deleting_it_and_the_rerun_continues_it(
    tmp_path, capsys
):
    """Snakemake deletes a job's log before running it again; a training job's log goes through
    a journal beside its resume file, so the rerun's log still holds the earlier epochs."""
    log, journal = tmp_path / "logs" / "warmup.log", tmp_path / "models" / "warmup.pt.resume.log"
    with pytest.raises(SystemExit) as exit_info, logged_to(log, journal=journal):
        logging.getLogger("deepauc.test").info("epoch 1/10: train loss 0.5")
        raise JobStopped("stopped by SIGTERM after step 7", signal.SIGTERM)
    assert exit_info.value.code == 143  # the shell's status for SIGTERM
    assert "deepauc: stopped by SIGTERM after step 7" in capsys.readouterr().err
    log.unlink()  # what Snakemake does before it runs the job again
    with logged_to(log, journal=journal):
        logging.getLogger("deepauc.test").info("epoch 2/10: train loss 0.4")
        assert "epoch 1/10" in log.read_text()  # while it runs, too
    text = log.read_text()
    assert text.index("epoch 1/10") < text.index("this job starts again") < text.index("epoch 2")
    assert "WARNING" in text and "stopped by SIGTERM after step 7" in text
    assert not journal.exists()  # finished: the log alone remains
