"""From the workflow's config dict to the data stage's typed settings.

Kept free of torch so that the workflow can import it while parsing; the training settings are
built by ``from_config`` on their own classes in ``deepauc.train`` and ``deepauc.data``.
"""

from deepauc.errors import InputError
from deepauc.preprocess import PreprocessSettings
from deepauc.synth import SynthSpec


def preprocess_settings(config: dict, workers: int = 1) -> PreprocessSettings:
    """Preprocessing settings from the keys diseases, uncertainty, views, split, check_images,
    on_bad_image; ``workers`` threads check the images."""
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


def job_parallelism(config: dict, gpu_here: bool, on_cluster: bool = False) -> tuple[int, int]:
    """(GPUs, processes) of each training job, from the keys device, gpus_per_job and
    processes_per_job.

    ``gpus_per_job: auto`` is 1 where training will use a GPU: ``device: cuda``, or ``auto`` on a
    machine with an NVIDIA driver (``gpu_here``) or when jobs go to a cluster (``on_cluster``: the
    login node that plans them may have no GPU). ``processes_per_job: auto`` is one per GPU (one
    on a CPU). More than one process trains with DDP: one per GPU, or over gloo on the CPU.
    """
    device = config["device"]
    gpus = config["gpus_per_job"]
    if gpus == "auto":
        gpus = int(device == "cuda" or (device == "auto" and (gpu_here or on_cluster)))
    processes = config["processes_per_job"]
    if processes == "auto":
        processes = max(gpus, 1) if device != "cpu" else 1
    if device == "cuda" and gpus == 0:
        raise InputError(
            "device is cuda but gpus_per_job is 0",
            where="config keys device, gpus_per_job",
            fix="set gpus_per_job to 1 or more (or auto), or device: cpu.",
        )
    if device != "cpu" and gpus > 0 and processes != gpus:
        raise InputError(
            f"processes_per_job is {processes} but gpus_per_job is {gpus}: DDP runs one "
            "process per GPU",
            where="config key processes_per_job",
            fix=f"set processes_per_job: auto (or {gpus}), or device: cpu for CPU processes.",
        )
    return gpus, processes
