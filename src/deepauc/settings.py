"""From the workflow's config dict to the library's typed settings, in one place."""

from deepauc.data import AugmentSettings
from deepauc.preprocess import PreprocessSettings
from deepauc.synth import SynthSpec
from deepauc.train import CeSettings, DamSettings, FinetuneSettings, WarmupSettings


def preprocess_settings(config: dict) -> PreprocessSettings:
    """Preprocessing settings from the keys diseases, uncertainty, views, split, check_images."""
    return PreprocessSettings(
        diseases=tuple(config["diseases"]),
        uncertainty=dict(config["uncertainty"]),
        views=tuple(config["views"]),
        val_fraction=float(config["split"]["val_fraction"]),
        seed=int(config["split"]["seed"]),
        check_images=bool(config["check_images"]),
    )


def synth_spec(config: dict) -> SynthSpec:
    """The synthetic dataset's spec from the config's ``synthetic`` section."""
    section = {k: v for k, v in config["synthetic"].items() if k != "enabled"}
    section["image_size"] = tuple(section["image_size"])
    return SynthSpec(**section)


def augment_settings(section: dict) -> AugmentSettings:
    """The ``augment`` section."""
    return AugmentSettings(**{**section, "scale": tuple(section["scale"])})


def warmup_settings(section: dict) -> WarmupSettings:
    """The ``warmup`` section."""
    return WarmupSettings(**section)


def finetune_settings(section: dict) -> FinetuneSettings:
    """The ``finetune`` section (its ``methods`` list is the workflow's business, not a setting)."""
    dam = dict(section["dam"])
    dam["regularizer_epochs"] = tuple(dam["regularizer_epochs"])
    shared = {k: v for k, v in section.items() if k not in ("dam", "ce", "methods")}
    return FinetuneSettings(**shared, dam=DamSettings(**dam), ce=CeSettings(**section["ce"]))
