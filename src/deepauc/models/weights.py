"""Where a warm-up's starting weights come from (config key ``pretrained``), checked without torch.

The workflow calls :func:`check_pretrained` while it plans a warm-up job, dry runs included, so
that a missing or damaged weights file, or ``pretrained: true`` on a machine that cannot reach
the model hub, is refused before any job starts, not after preprocessing and a minute of the
hub client's retries. The checks read file headers only; loading the weights
(``deepauc.models.build``) stays the jobs' work.
"""

import functools
import json
import os
import struct
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from deepauc.errors import InputError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: The files timm reads from a model's hub repository, in the order it tries them.
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
#: Seconds to wait for the hub to answer.
HUB_TIMEOUT = 5


def weights_file(arch: str, path: Path) -> Path:
    """The weights of ``arch``: ``path`` itself, or ``path/<arch>.<suffix>`` for a folder."""
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in WEIGHT_SUFFIXES:
            if (path / f"{arch}{suffix}").is_file():
                return path / f"{arch}{suffix}"
        raise InputError(
            f"no weights for {arch!r} in folder {path}",
            where="config key pretrained",
            fix=f"put {arch}.safetensors (or .pth/.bin) there, or set pretrained: false.",
        )
    raise InputError(
        f"weights path {path} does not exist",
        where="config key pretrained",
        fix="set pretrained to false, true, a weights file or a folder of <arch>.safetensors.",
    )


def describe_weights_file(file: Path) -> str:
    """What a file that should hold weights looks like, for an error message."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(512)
    text = head.lstrip().lower()
    if size == 0:
        return "the file is empty"
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return f"the file is an HTML page ({size:,} bytes), not weights"
    if head.startswith(b"PK\x03\x04"):
        return (
            f"the file is a zip archive, as torch saves weights ({size:,} bytes), but it "
            "cannot be read: likely cut short"
        )
    if all(32 <= b < 127 or b in b"\r\n\t" for b in head):
        return f"the file is text ({size:,} bytes, starting {head[:40].decode()!r}), not weights"
    return f"the file ({size:,} bytes) could not be read as weights: damaged or cut short"


def weights_problem(file: Path) -> str | None:
    """Why ``file`` cannot hold weights, from its structure alone, or None: a safetensors file
    must be as long as its header says, a torch zip must have its central directory (written
    last, so a cut-short download lacks it) and a ``data.pkl``; torch's legacy format (a
    pickle) is taken as it is."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if head.startswith(b"PK\x03\x04"):
            try:
                with zipfile.ZipFile(file) as archive:
                    names = archive.namelist()
            except (zipfile.BadZipFile, OSError):
                return describe_weights_file(file)
            if not any(name.endswith("data.pkl") for name in names):
                return f"the file is a zip archive ({size:,} bytes) but not torch weights"
            return None
        if head[:1] == b"\x80":  # a pickle: torch's legacy format
            return None
        if len(head) == 8:
            (header_size,) = struct.unpack("<Q", head)
            if 0 < header_size < min(size, 100_000_000):
                try:
                    header = json.loads(handle.read(header_size))
                except ValueError:
                    return describe_weights_file(file)
                ends = [
                    t["data_offsets"][1]
                    for name, t in header.items()
                    if name != "__metadata__" and isinstance(t, dict)
                ]
                expected = 8 + header_size + max(ends, default=0)
                if size < expected:
                    return (
                        f"the file is safetensors weights cut short ({size:,} of "
                        f"{expected:,} bytes)"
                    )
                return None
    return describe_weights_file(file)


def check_pretrained(pretrained, architectures, index: dict | None) -> None:
    """Refuse a ``pretrained`` setting that cannot give ``architectures`` their weights:
    a path that holds no weights for one of them, or ``true`` (timm's weights from the hub)
    where an architecture has none, or where the hub is out of reach and they are not in the
    local hub cache. ``index`` is :func:`deepauc.models.timm_index.model_index` (None: not
    checked)."""
    if pretrained is False:
        return
    if pretrained is True:
        if index is not None:
            _check_hub(architectures, index)
        return
    for arch in architectures:
        file = weights_file(arch, Path(str(pretrained).replace("{arch}", arch)))
        problem = weights_problem(file)
        if problem:
            raise InputError(
                f"{problem}; expected a timm state dict of {arch!r} (.safetensors, .pth or .bin)",
                where=f"{file} (config key pretrained)",
                fix="download the weights again (a proxy or login page saved as the file, or "
                f"an interrupted download, look like this), or point pretrained at {arch}'s "
                "weights, or set pretrained: false.",
            )


def _check_hub(architectures, index: dict) -> None:
    missing = []
    for arch in architectures:
        hub_id, filename, url = index["weights"].get(arch, [None, None, None])
        if hub_id is None and url is None:
            raise InputError(
                f"timm has no pretrained weights for {arch!r}",
                where="config key pretrained",
                fix="set pretrained: false to train it from scratch, or to a weights file.",
            )
        if hub_id is None or not _in_hub_cache(hub_id, filename):
            missing.append(arch)
    if not missing:
        return
    problem = hub_unreachable()
    if problem is None:
        return
    raise InputError(
        f"pretrained: true downloads timm's weights from the Hugging Face hub, which cannot be "
        f"reached from here ({problem}), and the weights of {', '.join(missing)} are not in its "
        f"local cache ({hub_cache()})",
        where="config key pretrained",
        fix="download the weights where the hub is reachable and set pretrained to the file "
        f"(one architecture) or to a folder holding {missing[0]}.safetensors (or .pth/.bin) "
        "for each architecture; or copy the hub cache here; or set pretrained: false to train "
        "from scratch.",
    )


def hub_cache() -> Path:
    """The Hugging Face hub's local cache, as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home, "hub")


def _in_hub_cache(hub_id: str, filename: str | None) -> bool:
    repo = hub_cache() / ("models--" + hub_id.split("@")[0].replace("/", "--"))
    names = [filename] if filename else HUB_FILENAMES
    return any(any(repo.glob(f"snapshots/*/{name}")) for name in names)


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached from here (``HF_HUB_OFFLINE``, no route, no answer in
    :data:`HUB_TIMEOUT` seconds), or None. Asked once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        request = urllib.request.Request(f"{endpoint}/api/models/timm/resnet18.a1_in1k")
        request.method = "HEAD"
        urllib.request.urlopen(request, timeout=HUB_TIMEOUT).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"{endpoint}: {reason}"
    return None
