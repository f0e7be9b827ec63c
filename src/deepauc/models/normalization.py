"""Which normalization a timm network uses, and so which of PESG's update rules suits it.

PESG, LibAUC's optimizer for DAM, has two update rules: ``mode: sgd`` (momentum SGD, LibAUC's
CheXpert recipe) and ``mode: adam``. Measured on this project's fine-tunes, ``adam`` is the right
one for networks normalized by LayerNorm-like layers (ConvNeXt, Swin, DaViT, ViT: trained with
Adam-type optimizers to begin with) and ``sgd`` for BatchNorm networks (DenseNet, ResNet). So the
mode can be chosen per architecture from the layers the built model holds (:func:`pesg_mode`),
instead of from a list of model families that goes stale with every timm release.

Counting needs a built model, so torch and timm: seconds to import, too slow for the workflow to
do while it plans jobs (dry runs included). So, as in :mod:`deepauc.models.timm_index`, the models
are built by a subprocess, on the meta device (no memory allocated, no weights downloaded), and the
counts are kept per installed timm version as JSON in Snakemake's own folder of the working
directory (``.snakemake/deepauc/normalization-<timm version>.json``). Only architectures not
yet in that file are inspected, by one subprocess for all of them.

Run as ``python -m deepauc.models.normalization arch1 arch2 ...`` it prints their records as JSON
(what the subprocess does).
"""

import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from deepauc.atomic import atomic_path
from deepauc.errors import InputError
from deepauc.models.timm_index import INDEX_FOLDER, timm_version

log = logging.getLogger(__name__)

#: The normalization layers counted, by kind, as ``"module:Class"`` names; an instance of a
#: subclass counts as its base. The names are imported only when a model is counted (planning
#: imports no torch), and one that does not import here (an older torch or timm) is skipped.
#: A normalization class in none of these is not counted: add it here to have it counted.
#:
#: ``batchnorm``: normalized with statistics of the batch (or, frozen, of the training batches).
#: ``layernorm``: each sample normalized on its own, no batch statistics. InstanceNorm is counted
#: here: it normalizes each sample (per channel) by its own statistics, and by default keeps no
#: running ones; it is not a ``_BatchNorm`` (it subclasses ``_InstanceNorm``).
NORM_CLASSES = {
    "batchnorm": (
        # BatchNorm1d/2d/3d, SyncBatchNorm, LazyBatchNorm*, timm's BatchNormAct2d, SyncBatchNormAct
        "torch.nn.modules.batchnorm:_BatchNorm",
        # Frozen BatchNorm holds a BatchNorm network's statistics as constants (no _BatchNorm)
        "timm.layers:FrozenBatchNormAct2d",
        "timm.layers.norm_act:FrozenBatchNorm2d",
        "torchvision.ops:FrozenBatchNorm2d",
        # EvoNorm's B variants divide by the batch's variance (a running one in eval)
        "timm.layers:EvoNorm2dB0",
        "timm.layers:EvoNorm2dB1",
        "timm.layers:EvoNorm2dB2",
    ),
    "layernorm": (
        "torch.nn:LayerNorm",  # timm's LayerNorm, LayerNorm2d, LayerNormAct*, *Fp32
        "torch.nn:GroupNorm",  # timm's GroupNorm, GroupNorm1 (PoolFormer), GroupNormAct
        "torch.nn:RMSNorm",  # torch 2.4 and later
        "torch.nn.modules.instancenorm:_InstanceNorm",  # InstanceNorm1d/2d/3d: see above
        "timm.layers:RmsNorm",  # and RmsNormAct
        "timm.layers:RmsNorm2d",  # and RmsNormAct2d
        "timm.layers:RmsNormFp32",
        "timm.layers:RmsNorm2dFp32",
        "timm.layers:SimpleNorm",  # RMSNorm without centring, timm's name
        "timm.layers:SimpleNorm2d",
        "timm.layers:SimpleNormFp32",
        "timm.layers:SimpleNorm2dFp32",
        # EvoNorm's S variants normalize by a group's statistics within the sample
        "timm.layers:EvoNorm2dS0",
        "timm.layers:EvoNorm2dS0a",
        "timm.layers:EvoNorm2dS1",
        "timm.layers:EvoNorm2dS1a",
        "timm.layers:EvoNorm2dS2",
        "timm.layers:EvoNorm2dS2a",
        # Filter Response Normalization: per sample and channel, over the spatial positions
        "timm.layers:FilterResponseNormTlu2d",
        "timm.layers:FilterResponseNormAct2d",
    ),
}

#: Seconds the subprocess may take: importing timm and building a few models on the meta device
#: takes seconds; a model that only builds on the CPU (the fallback) takes longer.
INSPECT_TIMEOUT = 600


def _resolve(names) -> tuple[type, ...]:
    """The classes ``names`` (``"module:Class"``) name, leaving out those not importable here."""
    classes = []
    for name in names:
        module_name, class_name = name.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found = getattr(module, class_name, None)
        if isinstance(found, type):
            classes.append(found)
    return tuple(classes)


def count_normalization(model) -> dict:
    """``{"layernorm": n, "batchnorm": m}``: how many of ``model``'s modules (itself included)
    are of each kind of :data:`NORM_CLASSES`; other normalization layers are not counted."""
    kinds = {kind: _resolve(names) for kind, names in NORM_CLASSES.items()}
    counts = dict.fromkeys(kinds, 0)
    for module in model.modules():
        for kind, classes in kinds.items():
            if isinstance(module, classes):
                counts[kind] += 1
                break  # a module counts once, as the first kind it belongs to
    return counts


def pesg_mode(counts) -> str:
    """PESG's update rule for a network with these :func:`count_normalization` counts:
    ``"adam"`` where LayerNorm-like layers outnumber BatchNorm-like ones, else ``"sgd"`` (also
    for a tie, and for a network with no normalization: ``sgd`` is LibAUC's own default)."""
    return "adam" if counts["layernorm"] > counts["batchnorm"] else "sgd"


def describe(arch: str, record) -> str:
    """One log line saying which mode ``arch`` gets and why, e.g. ``convnext_atto: PESG mode
    adam (normalized by LayerNorm-like layers: 20, BatchNorm: 0)``."""
    layernorm, batchnorm = record["layernorm"], record["batchnorm"]
    mode = pesg_mode(record)
    if layernorm == batchnorm == 0:
        why = "no normalization layers found; sgd is LibAUC's default"
    elif mode == "adam":
        why = f"normalized by LayerNorm-like layers: {layernorm}, BatchNorm: {batchnorm}"
    else:
        why = f"normalized by BatchNorm: {batchnorm}, LayerNorm-like layers: {layernorm}"
    return f"{arch}: PESG mode {mode} ({why})"


def _inspect(archs) -> dict:
    """``{arch: {"layernorm": n, "batchnorm": m, "mode": "adam" | "sgd"}}`` for each timm model
    name in ``archs``, or ``{arch: {"error": message}}`` for one that cannot be built, so one bad
    name does not lose the others' records. Imports torch and timm: run in the subprocess."""
    import timm
    import torch

    def build(arch: str):
        try:
            with torch.device("meta"):  # no memory allocated, nothing initialised for real
                return timm.create_model(arch, pretrained=False, num_classes=1)
        except Exception:  # some models compute on tensors while they are built: on the CPU then
            return timm.create_model(arch, pretrained=False, num_classes=1)

    records = {}
    for arch in archs:
        if not timm.is_model(arch):
            records[arch] = {"error": f"timm {timm.__version__} has no model {arch!r}"}
            continue
        try:
            counts = count_normalization(build(arch))
        except Exception as err:
            records[arch] = {"error": f"could not build {arch!r}: {type(err).__name__}: {err}"}
            continue
        records[arch] = {**counts, "mode": pesg_mode(counts)}
    return records


def _report(archs) -> dict:
    """What ``python -m deepauc.models.normalization`` prints: ``{"timm": version, "models":
    records}``."""
    import timm

    return {"timm": timm.__version__, "models": _inspect(archs)}


def _is_record(record) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("layernorm"), int)
        and isinstance(record.get("batchnorm"), int)
    )


def _read_index(path: Path) -> dict:
    """The records kept in ``path``; none where it is missing or damaged (it is then rebuilt)."""
    try:
        models = json.loads(path.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(models, dict):
        return {}
    return {arch: record for arch, record in models.items() if _is_record(record)}


def normalization_index(archs, folder: str | Path = INDEX_FOLDER) -> dict[str, dict]:
    """``{arch: {"layernorm": n, "batchnorm": m, "mode": "adam" | "sgd"}}`` for the timm model
    names ``archs``, read from ``folder/normalization-<timm version>.json``; those not there are
    inspected by one subprocess and added to the file. Raises :class:`InputError` where timm is
    not installed, or an architecture cannot be built (an unknown name, say)."""
    wanted = list(dict.fromkeys(archs))
    if not wanted:
        return {}
    version = timm_version()
    if version is None:
        raise InputError(
            "timm is not installed here, so PESG's mode cannot be chosen from the networks' "
            f"normalization layers ({', '.join(wanted)})",
            where="config key finetune.dam.mode",
            fix="install timm in this environment, or set finetune.dam.mode: sgd or adam "
            "explicitly (sgd for BatchNorm networks such as DenseNet and ResNet, adam for "
            "LayerNorm ones such as ConvNeXt, Swin, DaViT and ViT; per architecture in "
            "finetune.overrides).",
        )
    path = Path(folder) / f"normalization-{version}.json"
    known = _read_index(path)
    missing = [arch for arch in wanted if arch not in known]
    if missing:
        log.info("reading the normalization layers of %s (timm %s)", ", ".join(missing), version)
        found = _inspect_in_subprocess(missing)
        failed = {
            arch: found[arch].get("error", "no counts reported")
            for arch in missing
            if not _is_record(found[arch])
        }
        # Re-read just before writing: another process may have added records meanwhile.
        built = {arch: found[arch] for arch in missing if arch not in failed}
        known = {**_read_index(path), **known, **built}
        if built:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"timm": version, "models": known}, indent=1) + "\n")
        if failed:  # checked after writing, so the others need not be built again
            arch, error = next(iter(failed.items()))
            raise InputError(
                f"cannot read the normalization layers of architecture {arch!r}: {error}",
                where="config key architectures",
                fix="use a name from timm.list_models() (e.g. convnext_tiny, densenet121, "
                "swin_tiny_patch4_window7_224, davit_tiny), or set finetune.dam.mode: sgd or "
                "adam explicitly for it (in finetune.overrides).",
            )
    # The mode is worked out again from the counts, so a file written under an older rule
    # still gives today's mode.
    return {arch: {**known[arch], "mode": pesg_mode(known[arch])} for arch in wanted}


def _inspect_in_subprocess(archs: list[str]) -> dict:
    """:func:`_inspect` of ``archs`` run by ``python -m deepauc.models.normalization``; InputError
    naming the architectures where it fails."""
    problem = None
    try:
        inspected = subprocess.run(
            [sys.executable, "-m", "deepauc.models.normalization", *archs],
            capture_output=True,
            text=True,
            timeout=INSPECT_TIMEOUT,
            cwd=Path(__file__).resolve().parents[1],  # this checkout's deepauc, not another's
        )
    except subprocess.TimeoutExpired:
        problem = f"building them took more than {INSPECT_TIMEOUT} s"
    else:
        if inspected.returncode != 0:
            problem = (inspected.stderr.strip().splitlines() or ["no message"])[-1]
        else:
            try:
                # The report is the last line: anything a model printed while built comes first.
                models = json.loads(inspected.stdout.strip().splitlines()[-1])["models"]
                records = {arch: models.get(arch) for arch in archs}
                return {
                    arch: record if isinstance(record, dict) else {"error": "not reported"}
                    for arch, record in records.items()
                }
            except (IndexError, ValueError, KeyError, TypeError, AttributeError):
                problem = "its output was no JSON report"
    raise InputError(
        f"could not read the normalization layers of architectures {', '.join(archs)} "
        f"(python -m deepauc.models.normalization: {problem})",
        where="config key architectures",
        fix="check that timm imports here and builds these models (python -m "
        f"deepauc.models.normalization {' '.join(archs)}), or set finetune.dam.mode: sgd or adam "
        "explicitly.",
    )


def auto_modes(archs, folder: str | Path = INDEX_FOLDER) -> dict[str, str]:
    """``{arch: "adam" | "sgd"}``: PESG's update rule for each architecture, chosen by
    :func:`pesg_mode` from its normalization layers (see :func:`normalization_index`)."""
    return {arch: record["mode"] for arch, record in normalization_index(archs, folder).items()}


if __name__ == "__main__":
    json.dump(_report(sys.argv[1:]), sys.stdout)
