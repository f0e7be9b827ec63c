"""From the workflow's config dict to the data stage's typed settings.

Kept free of torch so that the workflow can import it while parsing; the training settings are
built by ``from_config`` on their own classes in ``deepauc.train`` and ``deepauc.data``.
"""

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
