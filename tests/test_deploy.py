"""Using the trained models: export with parity, a bundle that loads without pickle, and new
images scored as the pipeline scores its test split (issue 30)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deepauc.data.images import CachedSplit
from deepauc.deploy.bundle import PARITY_TOLERANCE, export_predictor, load_bundle
from deepauc.evaluation.calibration import calibrate
from deepauc.evaluation.ensemble import average_members, select_members, weight_rows
from deepauc.models.build import create_model
from deepauc.models.checkpoints import save_model
from deepauc.training.predict import predict_models
from deepauc.training.runtime import Runtime

DISEASES = ["Cardiomegaly", "Edema"]
SIZE = 32
ARCHS = ["resnet10t", "test_vit"]


def split(tmp_path, name, n, seed):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "image": [f"{name}/{i}.png" for i in range(n)],
            "patient": [f"p{i // 2}" for i in range(n)],
            "Cardiomegaly": rng.integers(0, 2, n).astype(float),
            "Edema": rng.integers(0, 2, n).astype(float),
        }
    )
    table.loc[3, "Edema"] = np.nan  # an ignored label: left out of that disease's rows
    cache = tmp_path / f"{name}.npy"
    np.save(cache, rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8))
    return CachedSplit(table, cache)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two architectures' disease models (untrained weights do: parity is about arithmetic),
    scored on val and test by the pipeline's own code, and their plain and selected ensembles."""
    tmp_path = tmp_path_factory.mktemp("deploy")
    val, test = split(tmp_path, "val", 40, 0), split(tmp_path, "test", 30, 1)
    runtime = Runtime(device=torch.device("cpu"))
    tables, models = {}, {}
    for k, arch in enumerate(ARCHS):
        models[arch] = {}
        for disease in DISEASES:
            torch.manual_seed(k * 10 + len(disease))
            path = tmp_path / f"{arch}.{disease}.pt"
            meta = {"arch": arch, "image_size": SIZE, "outputs": [disease], "stage": "dam"}
            save_model(path, create_model(arch, 1, SIZE).state_dict(), meta)
            models[arch][disease] = str(path)
        v, t = predict_models(list(models[arch].values()), [val, test], runtime)
        v, t = calibrate(v, t)
        tables[arch] = (v, t)
        v.to_csv(tmp_path / f"{arch}.val.csv", index=False)
    return tmp_path, val, test, tables, models


def leaf(arch, models):
    return {"name": f"{arch}/seed0", "models": models[arch]}


def ensemble_plan(tmp_path, models, combine, weights=None):
    return {
        "name": "ensemble/seed0",
        "combine": combine,
        "members": [leaf(arch, models) for arch in ARCHS],
        "val_tables": [str(tmp_path / f"{arch}.val.csv") for arch in ARCHS],
        "weights": weights,
    }


def scored(module, split):
    images = torch.from_numpy(np.load(split.cache))
    with torch.no_grad():
        scores, probabilities, _ = module(images)
    return scores.numpy(), probabilities.numpy()


def long(split, values):
    """(image, disease) -> value of a (images, diseases) array, for the labelled rows."""
    return {
        (image, d): values[i, j]
        for j, d in enumerate(DISEASES)
        for i, image in enumerate(split.table["image"])
        if not np.isnan(split.table.at[i, d])
    }


def test_an_architecture_exports_with_parity_and_its_bundle_scores_as_the_pipeline(
    trained, tmp_path
):
    root, val, test, tables, models = trained
    v, t = tables["resnet10t"]
    card = export_predictor(leaf("resnet10t", models), DISEASES, v, test, tmp_path / "x", {})
    assert card["parity"]["max_abs_difference"] <= PARITY_TOLERANCE
    parity = pd.read_csv(tmp_path / "x" / "parity.csv")
    assert (parity["max_abs_difference"] <= PARITY_TOLERANCE).all()
    assert set(card["thresholds"]["Edema"]) == {"sens90", "sens95"}
    module, loaded = load_bundle(tmp_path / "x")
    scores, probabilities = scored(module, test)
    got, want = long(test, scores), t.set_index(["image", "disease"])
    for key, value in got.items():
        assert value == pytest.approx(want.at[key, "score"], abs=1e-4)
    probs = long(test, probabilities)
    for key, value in probs.items():
        assert value == pytest.approx(want.at[key, "probability"], abs=1e-6)
    # the TorchScript file needs torch alone and gives the same numbers
    script = torch.jit.load(str(tmp_path / "x" / "predictor.torchscript.pt"))
    with torch.no_grad():
        again = script(torch.from_numpy(np.load(test.cache)))[0].numpy()
    np.testing.assert_allclose(again, scores, atol=1e-5)
    assert json.loads((tmp_path / "x" / "card.json").read_text())["diseases"] == DISEASES


def test_a_mean_ensemble_scores_new_images_as_the_pipeline_averages_tables(trained, tmp_path):
    root, val, test, tables, models = trained
    vals, tests = [tables[a][0] for a in ARCHS], [tables[a][1] for a in ARCHS]
    weights = select_members(vals, "mean")
    weights_path = tmp_path / "weights.csv"
    weight_rows(weights, ARCHS).to_csv(weights_path, index=False)
    v, t = calibrate(
        average_members(vals, "mean", weights), average_members(tests, "mean", weights)
    )
    plan = ensemble_plan(root, models, "mean", str(weights_path))
    export_predictor(plan, DISEASES, v, test, tmp_path / "e", {})
    module, _ = load_bundle(tmp_path / "e")
    scores, probabilities = scored(module, test)
    want = t.set_index(["image", "disease"])
    for key, value in long(test, scores).items():
        assert value == pytest.approx(want.at[key, "score"], abs=1e-4)


def test_a_rank_ensemble_ranks_new_images_among_val_as_the_pipeline_ranks_val(trained, tmp_path):
    """Scored as new images, the val images get the pipeline's own val ensemble scores: so
    the thresholds and calibration chosen there hold for new images too."""
    root, val, test, tables, models = trained
    vals, tests = [tables[a][0] for a in ARCHS], [tables[a][1] for a in ARCHS]
    v, t = calibrate(average_members(vals, "rank"), average_members(tests, "rank"))
    export_predictor(ensemble_plan(root, models, "rank"), DISEASES, v, test, tmp_path / "r", {})
    module, card = load_bundle(tmp_path / "r")
    scores, _ = scored(module, val)
    want = v.set_index(["image", "disease"])
    for key, value in long(val, scores).items():
        assert value == pytest.approx(want.at[key, "score"], abs=1e-4)
    assert card["programs"]["Edema"][1] == "rank"
