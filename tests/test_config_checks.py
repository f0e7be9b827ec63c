"""What the workflow refuses while it parses (dry runs included), before any job: keys it does
not know at any depth, and settings that would fail only once training starts."""

from pathlib import Path

import pytest
import yaml

from deepauc.config.checks import check_known_keys, strict_schema
from deepauc.config.layers import load_config
from deepauc.errors import InputError
from deepauc.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
#: A name where the schema leaves names free (an architecture's overrides).
FREE_NAME = "resnet10t"


def closed_sections(schema: dict, path: tuple[str, ...] = ()):
    """Every mapping of the strict schema whose keys are fixed, with a config path to it."""
    properties = schema.get("properties", {})
    if schema.get("additionalProperties") is False and properties:
        yield path, list(properties)
    for key, sub in properties.items():
        yield from closed_sections(sub, (*path, key))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from closed_sections(extra, (*path, FREE_NAME))


def nested(path: tuple[str, ...], leaf: dict) -> dict:
    for key in reversed(path):
        leaf = {key: leaf}
    return leaf


def test_every_misspelt_key_at_any_depth_is_named_with_its_section_and_the_closest_name():
    strict = strict_schema(SCHEMA)
    sections = list(closed_sections(strict))
    paths = {".".join(path) for path, _ in sections}
    # The sections that the schema itself leaves open are closed too.
    assert {"finetune", "finetune.overrides.resnet10t.dam", "warmup.overrides.resnet10t"} <= paths
    assert {f"finetune.{name}" for name in METHODS} <= paths
    checked = 0
    for path, keys in sections:
        for key in keys:
            typo = key + key[-1]
            with pytest.raises(InputError) as caught:
                check_known_keys(nested(path, {typo: 1}), strict)
            message = str(caught.value)
            assert f"config key {'.'.join([*path, typo])}: unknown setting {typo!r}" in message
            assert (f"in section {'.'.join(path)}" if path else "at the top level") in message
            assert f"did you mean {key!r}?" in message, message
            checked += 1
    assert checked > 80


def test_a_key_one_level_too_deep_says_where_it_belongs():
    with pytest.raises(InputError, match="'epochs' is a setting of finetune, one level up"):
        check_known_keys({"finetune": {"dam": {"epochs": 2}}}, strict_schema(SCHEMA))


def test_a_method_registered_beyond_the_schema_has_its_fields_checked():
    """A method registered in code (as aucm_adam and bce_pesg are) gets its
    section checked by its settings class's fields."""
    sections = dict(closed_sections(strict_schema(SCHEMA)))
    for name, method in METHODS.items():
        fields = set(method.settings.__dataclass_fields__)
        assert set(sections[("finetune", name)]) == fields, name


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_passes(name):
    config = load_config(REPO / "config" / name)
    check_known_keys(config, strict_schema(SCHEMA))


# ---- starting weights and architecture names, in a dry run -----------------------------------


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> dict[str, Path]:
    """resnet10t's weights as safetensors and as a torch zip, and copies of each cut short."""
    import torch
    from safetensors.torch import save_file

    from deepauc.models.build import create_model

    folder = tmp_path_factory.mktemp("weights")
    state = create_model("resnet10t", 5, 32).state_dict()
    files = {"safetensors": folder / "resnet10t.safetensors", "torch": folder / "resnet10t.pth"}
    save_file(state, files["safetensors"])
    torch.save(state, files["torch"])
    for kind, file in list(files.items()):
        cut = folder / f"cut_{kind}" / file.name
        cut.parent.mkdir()
        cut.write_bytes(file.read_bytes()[: file.stat().st_size * 2 // 3])
        files[f"{kind} cut short"] = cut
    return files


def test_weights_files_are_told_from_damaged_ones_by_their_structure(resnet_weights, tmp_path):
    from deepauc.models.weights import weights_problem

    assert weights_problem(resnet_weights["safetensors"]) is None
    assert weights_problem(resnet_weights["torch"]) is None
    assert "cut short" in weights_problem(resnet_weights["safetensors cut short"])
    assert "cut short" in weights_problem(resnet_weights["torch cut short"])
    page = tmp_path / "resnet10t.safetensors"
    page.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    assert "HTML page" in weights_problem(page)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty" in weights_problem(empty)


def _dry_run(tmp_path: Path, config: dict, env: dict | None = None):
    from tests.test_workflow import TINY, checkout, snakemake

    work = checkout(tmp_path, "dry")
    (work / "dry.yaml").write_text(yaml.safe_dump({**TINY, **config}))
    run = snakemake(work, "--dry-run", "--configfile", "dry.yaml", "--", "results/summary.csv")
    return run, work


@pytest.mark.e2e
def test_a_dry_run_refuses_an_unknown_architecture(tmp_path):
    run, _ = _dry_run(tmp_path, {"architectures": ["resnet10t", "densenet_169"]})
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "config key architectures: unknown timm model 'densenet_169'" in output
    assert "did you mean densenet169" in output


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("html", "the file is an HTML page"),
        ("safetensors cut short", "safetensors weights cut short"),
        ("torch cut short", "likely cut short"),
        ("safetensors", None),
    ],
)
def test_a_dry_run_refuses_pretrained_weights_that_are_not_there(
    tmp_path, resnet_weights, case, expected
):
    if case == "missing":
        weights = tmp_path / "nowhere"
    elif case == "html":
        weights = tmp_path / "resnet10t.pth"
        weights.write_text("<html><head><title>Proxy login</title></head></html>")
    else:
        weights = resnet_weights[case]
    config = {"architectures": ["resnet10t"], "pretrained": str(weights)}
    run, work = _dry_run(tmp_path, config)
    output = run.stdout + run.stderr
    if expected is None:
        assert run.returncode == 0, output[-2000:]
        return
    assert run.returncode != 0
    assert "config key pretrained" in output and expected in output, output[-2000:]
    assert not (work / "results").exists()


@pytest.mark.e2e
def test_pretrained_true_without_the_hub_fails_before_preprocessing(tmp_path, monkeypatch):
    """No route to the hub and nothing in its cache: refused while the DAG is planned (a dry
    run too), in seconds, instead of after preprocessing and a minute of retries."""
    import time

    from tests.test_workflow import TINY, checkout, snakemake

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    work = checkout(tmp_path, "hub")
    (work / "hub.yaml").write_text(yaml.safe_dump({**TINY, "pretrained": True}))
    for dry in (["--dry-run"], []):
        started = time.monotonic()
        run = snakemake(work, *dry, "--configfile", "hub.yaml", "--", "results/summary.csv")
        assert run.returncode != 0
        output = run.stdout + run.stderr
        assert "config key pretrained" in output and "cannot be reached" in output
        assert "set pretrained: false" in output
        assert time.monotonic() - started < 30
        assert not (work / "results").exists()
