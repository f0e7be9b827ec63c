"""The config's one typed boundary, and the method registry that the workflow reads."""

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepauc.config.checks import check_known_keys, strict_schema
from deepauc.config.layers import load_config
from deepauc.config.rates import (
    CHOSEN_RATE,
    at_rate,
    grid_extension,
    lr_grid,
    lr_label,
    rate_labels,
    rate_of,
    resolve_pesg_modes,
)
from deepauc.config.settings import (
    SHARED_FINETUNE_KEYS,
    AugmentSettings,
    FinetuneSettings,
    FinetuneSpec,
    JobResources,
    SplitFiles,
    WarmupSettings,
    WarmupSpec,
    check_training_config,
    finetune_params,
    job_from_json,
    job_to_json,
    warmup_section,
)
from deepauc.errors import InputError
from deepauc.evaluation.diagnostics import chosen_rate, diagnostics_columns, diagnostics_table
from deepauc.methods import (
    CONTROL,
    METHODS,
    WARMUP,
    CeSettings,
    DamSettings,
    Method,
    dual_names,
    register,
)
from deepauc.methods import style as method_style

REPO = Path(__file__).resolve().parents[1]


#: The PESG modes deepauc.models.normalization gives the quick start's networks
#: (tests/test_normalization).
QUICK_START_MODES = {"resnet10t": "sgd", "convnext_atto": "adam"}


def quick_start(modes: bool = True) -> dict:
    """The quick start's config as the workflow resolves it: overlays, then (``modes``) PESG
    modes."""
    config = load_config(REPO / "config" / "config.yaml")
    return resolved_modes(config) if modes else config


def resolved_modes(config: dict) -> dict:
    config["finetune"], _ = resolve_pesg_modes(
        config["finetune"], config["architectures"], lambda archs: QUICK_START_MODES
    )
    return config


def check(config: dict) -> None:
    """What the workflow does while it parses: modes resolved, then every setting built."""
    check_training_config(resolved_modes(config))


def test_the_quick_start_config_builds_every_setting():
    config = quick_start()
    check_training_config(config)
    section = config["finetune"]
    dams = {
        arch: FinetuneSettings.from_config(finetune_params(section, "dam", arch), "dam")
        for arch in config["architectures"]
    }
    # PESG mode auto: sgd for the BatchNorm network, adam for the LayerNorm one, each with the
    # quick start's rate for its mode
    assert dams["resnet10t"].method_settings == DamSettings(lr=0.03, mode="sgd")
    assert dams["convnext_atto"].method_settings == DamSettings(lr=3e-4, mode="adam")
    dam = dams["resnet10t"]
    # one fine-tune epoch in the quick start, so no step of the schedule; the study decays after 1
    assert dam.lr_decay_epochs == () and dam.head_init == "warmup"
    assert dam.epochs == config["finetune"]["epochs"]
    ce = FinetuneSettings.from_config(config["finetune"], "ce")
    assert ce.method_settings == CeSettings(lr=1e-4, weight_decay=1e-5)
    assert AugmentSettings.from_config(config["augment"]).scale == (0.95, 1.05)


def test_a_method_job_depends_on_the_shared_keys_and_its_own_section_only():
    section = quick_start()["finetune"]
    params = finetune_params(section, "ce")
    assert set(params) == {*SHARED_FINETUNE_KEYS, "ce"}
    assert "eval_every_steps" in SHARED_FINETUNE_KEYS and "lr_decay_epochs" in SHARED_FINETUNE_KEYS
    assert FinetuneSettings.from_config(params, "ce") == FinetuneSettings.from_config(section, "ce")
    changed = {**section, "dam": {**section["dam"], "lr": 0.01}, "methods": ["ce"]}
    assert finetune_params(changed, "ce") == params


def test_a_misspelt_method_setting_names_the_key_and_the_closest_name():
    with pytest.raises(InputError) as caught:
        FinetuneSettings.from_config({"epochs": 1, "dam": {"lrr": 0.1}}, "dam")
    assert "config key finetune.dam: unknown setting 'lrr'" in str(caught.value)
    assert "did you mean lr?" in str(caught.value)


def test_an_unregistered_method_is_refused_with_the_registered_names():
    with pytest.raises(InputError, match="unknown fine-tune method 'focal'") as caught:
        FinetuneSettings.from_config({"epochs": 1}, "focal")
    assert "ce, compositional, dam" in str(caught.value)
    config = quick_start()
    config["finetune"]["focal"] = {"lr": 1.0}
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    with pytest.raises(InputError, match="unknown setting 'focal' in section finetune"):
        check_known_keys(config, strict_schema(schema))


def test_specs_survive_the_json_trip_to_ddp_ranks():
    split = SplitFiles("train.csv", "train.npy")
    finetune = FinetuneSpec(
        warmup_checkpoint="warmup.pt",
        seed=2,
        disease="Edema",
        train=split,
        val=SplitFiles("val.csv", "val.npy"),
        settings=FinetuneSettings(
            method="dam", method_settings=DamSettings(lr=0.03, mode="adam"), lr_decay_epochs=(1, 2)
        ),
        augment=AugmentSettings(rotation=5),
        checkpoint="m.pt",
        history="m.csv",
        inputs=("a", "b"),
    )
    warmup = WarmupSpec(
        arch="resnet10t",
        seed=1,
        train=split,
        val=split,
        diseases=("Edema", "Cardiomegaly"),
        image_size=32,
        settings=WarmupSettings(lr=3e-3),
        augment=AugmentSettings(),
        checkpoint="w.pt",
        history="w.csv",
        pretrained="weights/",
    )
    resources = JobResources(device="cpu", threads=3, gpus=0, processes=2)
    for spec in (finetune, warmup):
        assert job_from_json(job_to_json(spec, resources)) == (spec, resources)


def test_threads_are_shared_between_ddp_processes():
    assert JobResources(threads=8, processes=1).threads_per_process == 8
    assert JobResources(threads=8, processes=3).threads_per_process == 2
    assert JobResources(threads=1, processes=2).threads_per_process == 1


def test_the_registry_holds_the_control_and_refuses_a_second_entry_of_a_name():
    assert CONTROL in METHODS and "dam" in METHODS
    assert method_style(WARMUP).label.startswith("Warm-up")
    assert method_style("dam").color != method_style("ce").color
    with pytest.raises(ValueError, match="registered already"):
        register(dataclasses.replace(METHODS["dam"]))
    with pytest.raises(ValueError, match="registered already"):
        register(Method(WARMUP, "x", "#000000", "-", "x", CeSettings, METHODS["ce"].build))


def test_a_method_names_its_dual_variables_and_the_diagnostics_carry_them(monkeypatch):
    assert METHODS["ce"].duals == () and METHODS["dam"].duals == ("a", "b", "alpha")
    assert dual_names() == ("a", "b", "alpha")
    plugin = dataclasses.replace(METHODS["ce"], name="lagrangian", duals=("lam", "a"))
    monkeypatch.setitem(METHODS, "lagrangian", plugin)
    assert dual_names() == ("a", "b", "alpha", "lam")
    history = pd.DataFrame(
        {"step": [0, 4], "val_auc": [0.7, 0.8], "lam": [0.0, 0.25], "collapsed": False}
    )
    audit = pd.DataFrame(
        {"split": ["val"], "disease": ["Edema"], "positive": [20], "negative": [90]}
    )
    runs = {("resnet10t", 0, "lagrangian", "Edema", 0.1): history}
    row = diagnostics_table(runs, audit, {"resnet10t": {0: 3}}).iloc[0]
    assert row["lam"] == 0.25 and math.isnan(row["alpha"])
    assert list(diagnostics_table(runs, audit, {}).columns) == diagnostics_columns()


def test_each_rate_of_a_grid_is_one_job_with_the_architecture_overrides():
    section = {
        "epochs": 2,
        "dam": {"lr": [0.01, 0.03, 0.1], "mode": "sgd"},
        "ce": {"lr": [3e-5, 1e-4, 3e-4]},
        "overrides": {"convnext_atto": {"dam": {"mode": "adam", "lr": [1e-4, 3e-4, 1e-3]}}},
    }
    assert lr_grid(section, "dam", "resnet10t") == [0.01, 0.03, 0.1]
    assert lr_grid(section, "dam", "convnext_atto") == [1e-4, 3e-4, 1e-3]
    assert [lr_label(r) for r in lr_grid(section, "ce")] == ["3e-05", "0.0001", "0.0003"]
    params = finetune_params(section, "dam", "convnext_atto", 3e-4)
    settings = FinetuneSettings.from_config(params, "dam")
    assert settings.method_settings.mode == "adam" and settings.method_settings.lr == 3e-4
    assert finetune_params(section, "dam", "resnet10t", 0.03)["dam"] == {"lr": 0.03, "mode": "sgd"}


def test_first_seed_rate_search_runs_later_seeds_at_the_chosen_rate(tmp_path):
    section = {"dam": {"lr": [0.01, 0.03, 0.1]}, "ce": {"lr": 1e-4}}
    seeds = [0, 1, 2]
    every = [rate_labels(section, "dam", "resnet10t", seed, seeds) for seed in seeds]
    assert every == [["0.01", "0.03", "0.1"]] * 3  # the default: every seed tries the grid
    section["rate_search"] = "first_seed"
    first = [rate_labels(section, "dam", "resnet10t", seed, seeds) for seed in seeds]
    assert first == [["0.01", "0.03", "0.1"], ["chosen"], ["chosen"]]
    assert rate_labels(section, "ce", "resnet10t", 2, seeds) == ["0.0001"]  # one rate: itself
    # the later seed's job reads the first seed's choice and runs at it
    rates_csv = tmp_path / "edema.rates.csv"
    pd.DataFrame({"lr": [0.01, 0.03, 0.1], "chosen": [False, True, False]}).to_csv(
        rates_csv, index=False
    )
    params = at_rate(finetune_params(section, "dam", "resnet10t"), "dam", chosen_rate(rates_csv))
    assert FinetuneSettings.from_config(params, "dam").method_settings.lr == 0.03
    # and its rate is read from its history
    history = pd.DataFrame({"step": [0, 4], "val_auc": [0.7, 0.75], "lr": [0.03, 0.003]})
    assert rate_of(CHOSEN_RATE, history) == 0.03 and rate_of("0.1", history) == 0.1
    audit = pd.DataFrame(
        {"split": ["val"], "disease": ["Edema"], "positive": [20], "negative": [90]}
    )
    runs = {("resnet10t", 1, "dam", "Edema", rate_of(CHOSEN_RATE, history)): history}
    row = diagnostics_table(runs, audit, {"resnet10t": {1: 3}}).iloc[0]
    assert row["chosen_lr"] == 0.03 and row["rates_tried"] == 1


def test_overrides_for_a_misspelt_architecture_are_refused_others_kept():
    config = quick_start(modes=False)
    config["finetune"]["overrides"] = {"convnext_tiny": {"dam": {"mode": "adam"}}}
    check(config)  # not on the list: kept for a run that lists it
    config["finetune"]["overrides"] = {"convnext_ato": {"dam": {"mode": "adam"}}}
    with pytest.raises(InputError, match="did you mean 'convnext_atto'"):
        check(config)


def test_warmup_overrides_apply_to_their_architecture_only():
    config = quick_start()
    config["warmup"]["overrides"] = {"convnext_atto": {"lr": 1e-4, "epochs": 3}}
    check_training_config(config)
    section = config["warmup"]
    assert WarmupSettings.from_config(section, "convnext_atto").lr == 1e-4
    assert WarmupSettings.from_config(section, "convnext_atto").epochs == 3
    assert WarmupSettings.from_config(section, "resnet10t").lr == section["lr"]
    assert "overrides" not in warmup_section(section, "resnet10t")  # not in the rule's params
    config["warmup"]["overrides"] = {"convnext_atto": {"rate": 1e-4}}
    with pytest.raises(InputError, match="rate"):
        check_training_config(config)
    config["warmup"]["overrides"] = {"resnet10": {"lr": 1e-4}}
    with pytest.raises(InputError, match="did you mean 'resnet10t'"):
        check_training_config(config)


def test_grids_of_unequal_size_are_refused():
    config = quick_start(modes=False)
    config["finetune"]["dam"]["lr"] = [0.01, 0.1]
    with pytest.raises(InputError, match="grids differ in size"):
        check(config)
    config["finetune"]["ce"]["lr"] = [1e-4, 3e-4]
    config["finetune"]["compositional"]["lr"] = [0.01, 0.1]
    config["finetune"]["pauc"]["lr"] = [1e-4, 3e-4]
    config["finetune"]["overrides"] = {}
    check(config)


def test_pesg_mode_auto_is_chosen_per_architecture_and_an_explicit_mode_wins():
    section = {
        "methods": ["dam", "ce"],
        "dam": {"mode": "auto", "lr": {"adam": [1e-4, 3e-4], "sgd": [0.01, 0.1]}},
        "ce": {"lr": [1e-4, 3e-4]},
        "overrides": {"vit_tiny_patch16_224": {"dam": {"mode": "sgd"}}},
    }
    asked = []

    def auto_modes(archs):
        asked.append(archs)
        return {"resnet10t": "sgd", "convnext_atto": "adam"}

    archs = ["resnet10t", "convnext_atto", "vit_tiny_patch16_224"]
    resolved, picked = resolve_pesg_modes(section, archs, auto_modes)
    assert asked == [["convnext_atto", "resnet10t"]]  # the explicit one is not looked up
    assert picked == {("resnet10t", "dam"): "sgd", ("convnext_atto", "dam"): "adam"}
    assert lr_grid(resolved, "dam", "resnet10t") == [0.01, 0.1]
    assert lr_grid(resolved, "dam", "convnext_atto") == [1e-4, 3e-4]
    assert lr_grid(resolved, "dam", "vit_tiny_patch16_224") == [0.01, 0.1]  # its mode's grid
    params = finetune_params(resolved, "dam", "convnext_atto", 3e-4)
    assert params["dam"]["mode"] == "adam" and params["dam"]["lr"] == 3e-4
    assert "ce" not in {m for arch in resolved["overrides"].values() for m in arch}
    # an explicit mode everywhere: nothing is looked up
    explicit = {**section, "dam": {**section["dam"], "mode": "sgd"}}
    asked.clear()
    resolve_pesg_modes(explicit, archs, auto_modes)
    assert asked == []
    # rates per mode without the mode chosen: refused, naming the key
    with pytest.raises(InputError, match="none for mode 'adam'"):
        resolve_pesg_modes(
            {**section, "dam": {"mode": "adam", "lr": {"sgd": [0.1]}}}, archs, auto_modes
        )


def test_a_grid_grows_one_step_past_the_edge_its_best_rate_lies_on():
    assert grid_extension([3e-5, 1e-4, 3e-4], 3e-5) == 1e-5  # the grid's 1-3-10 steps
    assert grid_extension([3e-5, 1e-4, 3e-4], 3e-4) == 1e-3
    assert grid_extension([0.01, 0.03, 0.1], 0.1) == 0.3
    assert grid_extension([3e-5, 1e-4, 3e-4], 1e-4) is None  # inside: no growth
    assert grid_extension([0.1], 0.1) is None  # one rate is no grid
    assert grid_extension([0.1, 0.2], 0.1) == 0.05  # no value with its digits near: one digit
    for grid in ([3e-5, 1e-4, 3e-4], [1e-4, 2e-4, 4e-4], [0.5, 1.0]):
        assert grid_extension(grid, min(grid)) < min(grid)
        assert grid_extension(grid, max(grid)) > max(grid)


@pytest.mark.parametrize(
    ("section", "where", "message"),
    [
        (
            {"dam": {"lr": 0.1, "loss_version": "v3"}},
            "finetune.dam.loss_version",
            "use one of v1, v2",
        ),
        ({"dam": {"lr": 0.1, "margin": 0}}, "finetune.dam.margin", "greater than 0"),
        ({"compositional": {"lr": 0.1, "beta1": 1.5}}, "finetune.compositional.beta1", "at most 1"),
        ({"compositional": {"lr": 0.1, "k": 2.5}}, "finetune.compositional.k", "a whole number"),
        ({"ce": {"lr": "1e-4"}}, "finetune.ce.lr", "write 1.0e-4"),
        ({"ce": {"weight_decay": True}}, "finetune.ce.weight_decay", "give a number"),
    ],
)
def test_a_method_setting_is_checked_against_its_settings_class(section, where, message):
    """The limits a method's class states (deepauc.methods.setting) are its section's checks."""
    (method,) = section
    with pytest.raises(InputError, match=re.escape(message)) as err:
        FinetuneSettings.from_config(section, method)
    assert f"config key {where}" in str(err.value)


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        (["1e-4", 0.01], "write 1.0e-4"),
        ([0.1, 0.1], "distinct rates"),
        ([], "distinct rates"),
        ([-0.1], "greater than 0"),
        ({"adamw": [1e-4]}, "key the rates by sgd and adam"),
    ],
)
def test_a_rate_grid_that_is_no_grid_of_rates_is_refused(rates, message):
    with pytest.raises(InputError, match=re.escape(message)) as err:
        lr_grid({"dam": {"lr": rates, "mode": "sgd"}}, "dam")
    assert "config key finetune.dam.lr" in str(err.value)
