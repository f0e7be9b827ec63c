"""From the workflow's config to typed settings: the one boundary between config and library.

Everything a job computes from is built here once, as frozen dataclasses: a rule script builds a
:class:`WarmupSpec` or :class:`FinetuneSpec` from its params and hands it to the library, and
how the job runs (device, threads, GPUs) travels apart from it as :class:`JobResources`, which
changes speed but never what is computed. Kept free of torch so that the workflow can build and
check every setting while it parses, before any job starts.
"""

import dataclasses
import difflib
import json
import typing
from dataclasses import asdict, dataclass, fields

from deepauc.config.checks import check_disease_keys, check_override_names, check_value
from deepauc.config.rates import lr_grid, method_section
from deepauc.data.preprocess import PreprocessSettings
from deepauc.data.synth import SynthSpec
from deepauc.errors import InputError
from deepauc.methods import METHODS

#: Config keys that change how fast a job runs, never what it computes. Rules must not take them
#: as params (a params change reruns a job); config/README.md marks them "runtime only".
RUNTIME_KEYS = (
    "device",
    "gpus_per_job",
    "jobs_per_gpu",
    "processes_per_job",
    "train_threads",
    "compile",
    "cuda_graphs",
    "images_on_gpu",
)


def preprocess_settings(config: dict, workers: int = 1) -> PreprocessSettings:
    """Preprocessing settings from the keys diseases, uncertainty, views, split, check_images,
    on_bad_image; ``workers`` threads check the images."""
    check_disease_keys(config["uncertainty"], "uncertainty", config["diseases"])
    return PreprocessSettings(
        diseases=tuple(config["diseases"]),
        uncertainty=dict(config["uncertainty"]),
        views=tuple(config["views"]),
        val_fraction=float(config["split"]["val_fraction"]),
        seed=int(config["split"]["seed"]),
        check_images=bool(config["check_images"]),
        on_bad_image=config["on_bad_image"],
        workers=workers,
    )


def synth_spec(config: dict) -> SynthSpec:
    """The synthetic dataset's spec from the config's ``synthetic`` section."""
    section = {k: v for k, v in config["synthetic"].items() if k != "enabled"}
    section["image_size"] = tuple(section["image_size"])
    return SynthSpec(**section)


def typed_section(cls: type, section: dict, key: str):
    """``cls(**section)`` for a frozen settings dataclass, lists made tuples where the field is a
    tuple; a key ``cls`` does not have is refused, naming the closest one."""
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in section.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise InputError(
                f"unknown setting {name!r}",
                where=f"config key {key}",
                fix=f"{hint}known settings: {', '.join(known)}.",
            )
        check_value(value, hints[name], known[name].metadata, f"config key {key}.{name}")
        is_tuple = typing.get_origin(hints[name]) is tuple
        values[name] = tuple(value) if is_tuple and isinstance(value, list) else value
    return cls(**values)


@dataclass(frozen=True)
class AugmentSettings:
    """Light affine augmentation, as in LibAUC's CheXpert recipe. No flip by default: the heart
    sits on the left, so a mirrored chest is not a plausible radiograph."""

    rotation: float = 15.0  # degrees, drawn uniformly from [-rotation, rotation]
    translate: float = 0.05  # fraction of the image side, per axis
    scale: tuple[float, float] = (0.95, 1.05)
    hflip: bool = False

    @classmethod
    def from_config(cls, section: dict) -> "AugmentSettings":
        """From the config's ``augment`` section."""
        return typed_section(cls, section, "augment")

    @property
    def is_identity(self) -> bool:
        return (
            self.rotation == 0
            and self.translate == 0
            and tuple(self.scale) == (1, 1)
            and not self.hflip
        )


@dataclass(frozen=True)
class WarmupSettings:
    """Stage 1: multi-label BCE with Adam."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    eval_every_steps: int = 0  # 0: evaluate once per epoch
    # "auto": from pretrained weights the new multi-label head starts at zero, so that no seed's
    # head can coincide with the random head the backbone was pretrained with (a pretraining
    # run at seed 0 draws the same head as a study run at seed 0, whose step 0 then scores as
    # if trained while the other seeds' do not); from scratch it is timm's random init, drawn
    # from the seed like the backbone (a zero head slows a from-scratch start). "zeros" and
    # "random" force one.
    head_init: str = "auto"

    @classmethod
    def from_config(cls, section: dict, arch: str | None = None) -> "WarmupSettings":
        """From the config's ``warmup`` section, with ``arch``'s overrides
        (``warmup.overrides.<arch>``) applied."""
        return typed_section(cls, warmup_section(section, arch), "warmup")


def warmup_section(section: dict, arch: str | None = None) -> dict:
    """The ``warmup`` section as one architecture's warm-up sees it: its overrides applied (a
    transformer trained from scratch wants a lower rate than a ConvNet, say), the
    ``overrides`` table itself left out. What a warm-up rule's params hold: tuning one family's
    warm-up reruns that family only."""
    own = {key: value for key, value in section.items() if key != "overrides"}
    if arch is not None:
        own.update(section.get("overrides", {}).get(arch, {}))
    return own


#: The keys of ``finetune`` that every method shares, so that all run at equal compute: the
#: same epochs, batches, sampler, schedule shape, starting head and evaluation cadence.
SHARED_FINETUNE_KEYS = (
    "epochs",
    "batch_size",
    "sampling_rate",
    "eval_every_steps",
    "head_init",
    "lr_decay_epochs",
    "lr_decay_factor",
)


@dataclass(frozen=True)
class FinetuneSettings:
    """Stage 2 for one method at one learning rate: the settings all methods share, and the
    method's own section."""

    method: str = "dam"
    method_settings: typing.Any = None  # an instance of METHODS[method].settings
    epochs: int = 2
    batch_size: int = 32
    sampling_rate: float | str = "auto"
    eval_every_steps: int = 0
    head_init: str = "warmup"  # the new head starts from the warm-up's row ("random": afresh)
    lr_decay_epochs: tuple[int, ...] = (1,)  # the learning rate is divided after these epochs
    lr_decay_factor: float = 10.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(
                f"unknown fine-tune method {self.method!r}",
                where="config key finetune.methods",
                fix=f"use registered methods: {', '.join(sorted(METHODS))} (deepauc.methods).",
            )
        if self.method_settings is None:
            object.__setattr__(self, "method_settings", METHODS[self.method].settings())

    @classmethod
    def from_config(cls, section: dict, method: str) -> "FinetuneSettings":
        """From :func:`finetune_params`' slice of the config's ``finetune`` section: the shared
        keys and the section named ``method``, with one learning rate."""
        if method not in METHODS:
            cls(method=method)  # refused, with the registered names
        shared = typed_section(
            cls, {k: section[k] for k in SHARED_FINETUNE_KEYS if k in section}, "finetune"
        )
        own = typed_section(METHODS[method].settings, section.get(method, {}), f"finetune.{method}")
        return dataclasses.replace(shared, method=method, method_settings=own)


def finetune_params(
    section: dict, method: str, arch: str | None = None, lr: float | None = None
) -> dict:
    """The part of the config's ``finetune`` section one method's job depends on: the shared
    keys and that method's own section (with ``arch``'s overrides, and ``lr`` as its one rate).
    Another method's settings, or the list of methods, do not change this method's models, so
    they are left out of its rule's params."""
    own = method_section(section, method, arch)
    if lr is not None:
        own["lr"] = lr
    return {**{k: section[k] for k in SHARED_FINETUNE_KEYS if k in section}, method: own}


def check_training_config(config: dict) -> None:
    """Build every training setting of ``config`` once, so that a bad key fails at parse time
    with its name, not in a job an hour later."""
    for arch in [None, *config["architectures"]]:
        WarmupSettings.from_config(config["warmup"], arch)
    check_override_names(config["warmup"], config["architectures"], "warmup")
    AugmentSettings.from_config(config["augment"])
    section = config["finetune"]
    for method in section["methods"]:
        for arch in config["architectures"]:  # modes resolved per architecture
            for rate in lr_grid(section, method, arch) if method in METHODS else [None]:
                FinetuneSettings.from_config(finetune_params(section, method, arch, rate), method)
    if (
        len(
            {
                len(lr_grid(section, m, a))
                for m in section["methods"]
                for a in config["architectures"]
            }
        )
        > 1
    ):
        raise InputError(
            "the learning-rate grids differ in size between methods",
            where="config keys finetune.<method>.lr",
            fix="give every method as many rates to try (equal tuning effort), e.g. three each.",
        )
    check_override_names(section, config["architectures"], "finetune")


@dataclass(frozen=True)
class SplitFiles:
    """A split's table (results/data/{split}.csv) and its image cache."""

    table: str
    cache: str


@dataclass(frozen=True)
class WarmupSpec:
    """Everything stage 1 computes from, for one architecture and seed."""

    arch: str
    seed: int
    train: SplitFiles
    val: SplitFiles
    diseases: tuple[str, ...]
    image_size: int
    settings: WarmupSettings
    augment: AugmentSettings
    checkpoint: str
    history: str
    pretrained: bool | str = False
    inputs: tuple[str, ...] = ()  # the files it was built from: a resume file must match them

    stage = "warmup"

    @classmethod
    def from_dict(cls, values: dict) -> "WarmupSpec":
        """Inverse of ``dataclasses.asdict`` (how a spec travels to DDP ranks as JSON)."""
        return cls(
            **{
                **values,
                "train": SplitFiles(**values["train"]),
                "val": SplitFiles(**values["val"]),
                "diseases": tuple(values["diseases"]),
                "settings": WarmupSettings.from_config(values["settings"]),
                "augment": AugmentSettings.from_config(values["augment"]),
                "inputs": tuple(values["inputs"]),
            }
        )


@dataclass(frozen=True)
class FinetuneSpec:
    """Everything stage 2 computes from, for one architecture, seed, method and disease."""

    warmup_checkpoint: str
    seed: int
    disease: str
    train: SplitFiles
    val: SplitFiles
    settings: FinetuneSettings
    augment: AugmentSettings
    checkpoint: str
    history: str
    inputs: tuple[str, ...] = ()

    stage = "finetune"

    @classmethod
    def from_dict(cls, values: dict) -> "FinetuneSpec":
        """Inverse of ``dataclasses.asdict``."""
        settings = values["settings"]
        shared = {k: settings[k] for k in SHARED_FINETUNE_KEYS}
        return cls(
            **{
                **values,
                "train": SplitFiles(**values["train"]),
                "val": SplitFiles(**values["val"]),
                "settings": FinetuneSettings.from_config(
                    {**shared, settings["method"]: settings["method_settings"]},
                    settings["method"],
                ),
                "augment": AugmentSettings.from_config(values["augment"]),
                "inputs": tuple(values["inputs"]),
            }
        )


SPECS = {spec.stage: spec for spec in (WarmupSpec, FinetuneSpec)}


def job_to_json(spec: WarmupSpec | FinetuneSpec, resources: "JobResources") -> str:
    """A training job as JSON, for its DDP ranks (each a process of its own); the inverse is
    :func:`job_from_json`. The one way a spec leaves a process."""
    return json.dumps({"stage": spec.stage, "spec": asdict(spec), "resources": asdict(resources)})


def job_from_json(text: str) -> tuple[WarmupSpec | FinetuneSpec, "JobResources"]:
    """The spec and resources :func:`job_to_json` wrote."""
    description = json.loads(text)
    spec = SPECS[description["stage"]].from_dict(description["spec"])
    return spec, JobResources(**description["resources"])


@dataclass(frozen=True)
class JobResources:
    """Where and how a training or scoring job runs. Nothing here changes what it computes, so
    none of it is a rule's params: changing it reruns nothing."""

    device: str = "auto"
    threads: int = 1
    compile: bool = False
    cuda_graphs: str = "auto"
    images_on_gpu: str = "auto"
    gpus: int = 0
    processes: int = 1
    jobs_per_gpu: int = 1  # jobs that may share one GPU at once

    @property
    def threads_per_process(self) -> int:
        """Each DDP process's share of the job's threads (all of them for one process)."""
        return max(1, self.threads // self.processes)

    @classmethod
    def from_config(
        cls, config: dict, threads: int, gpus: int = 0, processes: int = 1
    ) -> "JobResources":
        """From the config's runtime keys and the job's Snakemake threads and resources."""
        return cls(
            device=config["device"],
            threads=int(threads),
            compile=bool(config["compile"]),
            cuda_graphs=str(config["cuda_graphs"]).lower(),
            images_on_gpu=config["images_on_gpu"],
            gpus=int(gpus),
            processes=int(processes),
            jobs_per_gpu=int(config.get("jobs_per_gpu", 1)),
        )
