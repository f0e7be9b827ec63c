"""Configs as overlays of config/protocol.yaml (deepauc.config.layers), and what the workflow
makes of them."""

from pathlib import Path

import pytest
import yaml

from deepauc.config.layers import layers, load_config, merge, resolve
from deepauc.errors import InputError
from tests.test_workflow import checkout, snakemake

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def fine_tune_protocol(config: dict) -> dict:
    """What a comparison of methods rests on: the whole fine-tune section (methods, grids and
    their growth, PESG modes, rate search, schedule, batches, sampler) and the seeds."""
    return {"finetune": config["finetune"], "seeds": config["seeds"]}


def but_the_method_list(protocol: dict) -> dict:
    return {**protocol, "finetune": {**protocol["finetune"], "methods": None}}


def test_chexpert_and_the_dam_study_run_one_fine_tune_protocol():
    """The study runs the whole 2 x 2 ({AUCM, BCE} x {PESG, Adam}); a CheXpert user's run
    leaves its two extra cells out to stay affordable, and differs in nothing else."""
    chexpert = load_config(CONFIG / "chexpert.yaml")
    study = load_config(CONFIG / "dam_study.yaml")
    assert but_the_method_list(fine_tune_protocol(chexpert)) == but_the_method_list(
        fine_tune_protocol(study)
    )
    assert chexpert["finetune"]["methods"] == ["dam", "ce", "compositional", "pauc"]
    assert (
        study["finetune"]["methods"] == load_config(CONFIG / "protocol.yaml")["finetune"]["methods"]
    )
    assert {"dam", "ce", "aucm_adam", "bce_pesg"} <= set(study["finetune"]["methods"])
    assert chexpert["finetune"]["dam"]["mode"] == "auto"
    assert chexpert["seeds"] == [0, 1, 2]
    # they do differ where they should: data and scale
    assert chexpert["synthetic"]["enabled"] is False and study["synthetic"]["enabled"] is True
    assert chexpert["image_size"] != study["image_size"]
    # the quick start is a demonstration, not the protocol: the comparison can tell
    quick = load_config(CONFIG / "config.yaml")
    assert fine_tune_protocol(quick) != fine_tune_protocol(chexpert)


def _properties(schema: dict, path=()):
    """Every key the schema names, as a path, and whether it holds further named keys."""
    for key, rules in schema.get("properties", {}).items():
        yield (*path, key)
        yield from _properties(rules, (*path, key))


def test_every_key_has_its_default_in_protocol_yaml_and_nowhere_else():
    protocol = yaml.safe_load((CONFIG / "protocol.yaml").read_text())
    for path in _properties(SCHEMA):
        value = protocol
        for key in path:
            assert isinstance(value, dict) and key in value, ".".join(path)
            value = value[key]
    assert "default:" not in (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    # every shipped config other than the protocol states only what it changes
    for path in CONFIG.glob("*.yaml"):
        if path.name != "protocol.yaml":
            assert "extends" in yaml.safe_load(path.read_text()), path.name


def test_a_methods_settings_are_stated_once_in_its_settings_class():
    """protocol.yaml sets only what the protocol chooses for a method; everything else of its
    section is its settings class's default, filled in by the config's resolution."""
    from dataclasses import fields

    from deepauc.methods import METHODS

    protocol = yaml.safe_load((CONFIG / "protocol.yaml").read_text())["finetune"]
    resolved = load_config(CONFIG / "protocol.yaml")["finetune"]
    for name, method in METHODS.items():
        defaults = {f.name: f.default for f in fields(method.settings)}
        restated = {k: v for k, v in protocol.get(name, {}).items() if defaults.get(k) == v}
        assert not restated, f"protocol.yaml restates {name}'s defaults {restated}"
        assert set(resolved[name]) == set(defaults), name
        for key, value in resolved[name].items():
            assert value == protocol.get(name, {}).get(key, defaults[key]), (name, key)
    # the schema leaves method sections to their classes: none is spelt out there
    assert not set(METHODS) & set(SCHEMA["properties"]["finetune"]["properties"])


def test_a_method_section_given_in_part_keeps_its_order_then_takes_the_defaults(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"extends: {CONFIG / 'protocol.yaml'}\nfinetune:\n  ce: {{lr: 0.01}}\n")
    ce = load_config(overlay)["finetune"]["ce"]
    assert list(ce.items()) == [("lr", 0.01), ("weight_decay", 1e-5)]
    overlay.write_text(f"extends: {CONFIG / 'protocol.yaml'}\nfinetune:\n  ce: {{}}\n")
    assert load_config(overlay)["finetune"]["ce"] == {"lr": 1e-4, "weight_decay": 1e-5}


def test_an_overlay_names_its_base_and_an_empty_mapping_clears(tmp_path):
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump({"a": 1, "section": {"x": 1, "y": 2}, "named": {"one": [1], "two": [2]}})
    )
    (tmp_path / "mid.yaml").write_text(
        yaml.safe_dump({"extends": "base.yaml", "section": {"y": 3}, "named": {}})
    )
    (tmp_path / "top.yaml").write_text(yaml.safe_dump({"a": 5}))  # no extends: sits on top
    config, files = resolve(tmp_path / "mid.yaml", [tmp_path / "top.yaml"], {"section": {"x": 9}})
    assert config == {"a": 5, "section": {"x": 9, "y": 3}, "named": {}}
    assert [f.name for f in files] == ["base.yaml", "mid.yaml", "top.yaml"]
    # a --configfile that names its base stands on it, not on the quick start below it
    (tmp_path / "quick.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "a": 2}))
    assert [f.name for f in layers(tmp_path / "quick.yaml", [tmp_path / "mid.yaml"])] == [
        "base.yaml",
        "mid.yaml",
    ]
    assert merge({"s": {"k": 1}}, {"s": {"j": 2}}) == {"s": {"k": 1, "j": 2}}


def test_configs_that_cannot_combine_are_refused_naming_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("a: 1\n")
    (tmp_path / "one.yaml").write_text("extends: base.yaml\n")
    (tmp_path / "two.yaml").write_text("extends: base.yaml\n")
    (tmp_path / "mine.yaml").write_text("a: 3\n")
    # mine.yaml would be dropped by two.yaml, which stands on base.yaml only
    with pytest.raises(InputError, match="would not be used") as caught:
        layers(tmp_path / "one.yaml", [tmp_path / "mine.yaml", tmp_path / "two.yaml"])
    assert "two.yaml" in str(caught.value) and "Fix:" in str(caught.value)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(InputError, match="in a loop"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(InputError, match="nowhere.yaml, which is not a file"):
        load_config(tmp_path / "lost.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(InputError, match="broken.yaml: not valid YAML"):
        load_config(tmp_path / "broken.yaml")


ONE_ARCHITECTURE = {"architectures": ["convnext_tiny"], "pretrained": False}


def test_an_overlay_of_chexpert_that_keeps_one_architecture_parses(tmp_path, chexpert_root):
    work = checkout(tmp_path, "one")
    (work / "one.yaml").write_text(yaml.safe_dump(ONE_ARCHITECTURE))
    # the protocol's convnext+swin subset names swin_tiny, not run here: refused, with the fix
    args = ["--configfile", "config/chexpert.yaml", "one.yaml", "--config"]
    args.append(f"data_root={chexpert_root}")
    refused = snakemake(work, "-n", *args, "--", "results/data/train.csv")
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "config key ensemble.subsets.ensemble_convnext_swin" in said
    assert "`ensemble: {subsets: {}}`" in said
    # and the fix it gives works in the overlay
    cleared = {**ONE_ARCHITECTURE, "ensemble": {"subsets": {}}}
    (work / "one.yaml").write_text(yaml.safe_dump(cleared))
    planned = snakemake(work, "-n", *args, "--", "results/data/train.csv")
    said = planned.stdout + planned.stderr
    assert planned.returncode == 0, said[-3000:]
    assert "config: config/protocol.yaml < config/chexpert.yaml < one.yaml" in said
    assert "convnext_tiny: PESG mode adam" in said
