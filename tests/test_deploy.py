"""Using the trained models: export with parity, a bundle that loads without pickle, and new
images scored as the pipeline scores its test split (issue 30)."""

import json
from pathlib import Path

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


def test_new_images_are_scored_as_the_test_split_and_unreadable_ones_listed(trained, tmp_path):
    from PIL import Image

    from deepauc.deploy.inference import read_image_set, score_set, set_metrics

    root, val, test, tables, models = trained
    v, t = tables["resnet10t"]
    export_predictor(leaf("resnet10t", models), DISEASES, v, test, tmp_path / "x", {})
    pixels = np.load(test.cache)
    rows = []
    for i in range(6):
        Image.fromarray(pixels[i]).save(tmp_path / f"{i}.png")
        rows.append({"Path": f"{i}.png", "Edema": [1, 0, -1, "", 1, 0][i]})
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows += [{"Path": "broken.png", "Edema": 1}, {"Path": "missing.png", "Edema": 0}]
    pd.DataFrame(rows).to_csv(tmp_path / "set.csv", index=False)
    image_set = read_image_set(
        {"csv": str(tmp_path / "set.csv")}, DISEASES, {"Edema": "ones"}, "inference.image_sets.x"
    )
    assert image_set.labelled == ["Edema"]
    assert list(image_set.table["Edema"]) == [1, 0, 1, 0, 1, 0, 1, 0]  # -1 by U-Ones, blank 0
    scores, unreadable, cards = score_set(image_set, {("resnet10t", "dam"): tmp_path / "x"})
    assert sorted(Path(p).name for p in unreadable["image"]) == ["broken.png", "missing.png"]
    assert unreadable["reason"].str.len().gt(0).all()
    assert scores["image"].nunique() == 6
    want = t.set_index(["image", "disease"])["score"]
    for row in scores[scores["disease"] == "Cardiomegaly"].itertuples():
        index = int(Path(row.image).stem)
        image = test.table.at[index, "image"]
        assert row.score == pytest.approx(want[(image, "Cardiomegaly")], abs=1e-4)
        threshold = cards[("resnet10t", "dam")]["thresholds"]["Cardiomegaly"]["sens90"]
        assert row.sens90 == int(row.score > threshold)
    assert scores.loc[scores["disease"] == "Cardiomegaly", "y_true"].isna().all()
    metrics = set_metrics(scores, cards, n_resamples=100)
    assert set(metrics["disease"]) == {"Edema", "mean"}
    assert {"auc", "auc_low", "sens90", "spec90"} <= set(metrics.columns)


def test_an_image_set_with_a_bad_label_names_the_row(tmp_path):
    from deepauc.deploy.inference import read_image_set
    from deepauc.errors import InputError

    pd.DataFrame({"Path": ["a.png", "b.png"], "Edema": ["1", "maybe"]}).to_csv(
        tmp_path / "set.csv", index=False
    )
    with pytest.raises(InputError, match=r"row 3") as refused:
        read_image_set({"csv": str(tmp_path / "set.csv")}, DISEASES, {}, "inference.image_sets.x")
    assert "maybe" in str(refused.value) and "Fix:" in str(refused.value)
    with pytest.raises(InputError, match="no column of image paths"):
        pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
        read_image_set({"csv": str(tmp_path / "bad.csv")}, DISEASES, {}, "x")


def test_a_folder_image_set_scores_every_image_file_in_it(tmp_path):
    from PIL import Image

    from deepauc.deploy.inference import read_image_set

    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.jpg"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    image_set = read_image_set({"folder": str(tmp_path)}, DISEASES, {}, "x")
    assert [Path(p).name for p in image_set.table["image"]] == ["a.png", "b.jpg"]
    assert image_set.labelled == []


@pytest.mark.parametrize("family", ["cnn", "swin", "vit"])
def test_grad_cam_maps_each_family(family):
    """A CNN (NCHW maps), a Swin (channels-last stages) and a ViT (token sequences)."""
    import timm

    from deepauc.deploy.saliency import reshape_transform, saliency_maps, target_layer

    torch.manual_seed(0)
    size = {"cnn": 32, "swin": 64, "vit": 32}[family]
    if family == "cnn":
        model = create_model("resnet10t", 1, size)
    elif family == "swin":
        model = timm.create_model(
            "swin_tiny_patch4_window7_224",
            embed_dim=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 1, 1),
            img_size=size,
            window_size=2,
            num_classes=1,
        )
    else:
        model = create_model("test_vit", 1, size)
    pixels = np.random.default_rng(0).integers(0, 256, (3, size, size), dtype=np.uint8)
    maps = saliency_maps(model, 0, pixels, size)
    assert maps.shape == (3, size, size)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    name, stage = target_layer(model, size)
    captured = {}
    handle = model.get_submodule(name).register_forward_hook(
        lambda module, args, out: captured.setdefault("out", out)
    )
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    handle.remove()
    prefix = getattr(model, "num_prefix_tokens", 0)
    folded = reshape_transform(stage["num_chs"], prefix)(captured["out"])
    assert folded.ndim == 4 and folded.shape[1] == stage["num_chs"]
    if family != "vit":  # an untrained ViT's class token ignores the patches: a flat map
        assert maps.std() > 0


def test_a_seed_ensemble_of_rank_ensembles_nests_as_the_pipeline_nests_tables(trained, tmp_path):
    """Several seeds: ensemble_seeds ranks each seed's (already rank-combined) ensemble among
    its own val table. Two 'seeds' (the same members, weighted differently) show the nesting."""
    root, val, test, tables, models = trained
    vals = [tables[a][0] for a in ARCHS]
    seed_vals, seed_plans = [], []
    for seed, weights in enumerate(([0.5, 0.5], [0.25, 0.75])):
        chosen = {d: np.array(weights) for d in DISEASES}
        path = tmp_path / f"weights{seed}.csv"
        weight_rows(chosen, ARCHS).to_csv(path, index=False)
        seed_val = average_members(vals, "rank", chosen)
        seed_val.to_csv(tmp_path / f"seed{seed}.val.csv", index=False)
        seed_vals.append(seed_val)
        plan = ensemble_plan(root, models, "rank", str(path))
        seed_plans.append({**plan, "name": f"ensemble-selected/seed{seed}"})
    final_val = calibrate(average_members(seed_vals, "rank"), average_members(seed_vals, "rank"))[0]
    plan = {
        "name": "ensemble-selected/seeds",
        "combine": "rank",
        "members": seed_plans,
        "val_tables": [str(tmp_path / f"seed{s}.val.csv") for s in range(2)],
        "weights": None,
    }
    export_predictor(plan, DISEASES, final_val, test, tmp_path / "s", {})
    module, _ = load_bundle(tmp_path / "s")
    scores, probabilities = scored(module, val)
    want = final_val.set_index(["image", "disease"])
    for key, value in long(val, scores).items():
        assert value == pytest.approx(want.at[key, "score"], abs=1e-4), key
    for key, value in long(val, probabilities).items():
        assert value == pytest.approx(want.at[key, "probability"], abs=1e-4), key


def test_an_export_that_fails_parity_writes_nothing(trained, tmp_path, monkeypatch):
    import deepauc.deploy.bundle as bundle
    from deepauc.errors import InputError

    root, val, test, tables, models = trained
    monkeypatch.setattr(bundle, "PARITY_TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(InputError, match="differs from the pipeline's scoring"):
        export_predictor(
            leaf("resnet10t", models), DISEASES, tables["resnet10t"][0], test, tmp_path / "x", {}
        )
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_damaged_export_is_a_clear_error(trained, tmp_path):
    from deepauc.errors import InputError

    root, val, test, tables, models = trained
    export_predictor(
        leaf("resnet10t", models), DISEASES, tables["resnet10t"][0], test, tmp_path / "x", {}
    )
    (tmp_path / "x" / "weights.safetensors").write_bytes(b"cut short")
    with pytest.raises(InputError, match="cannot read the exported predictor") as refused:
        load_bundle(tmp_path / "x")
    assert "Fix:" in str(refused.value)


def test_an_image_set_keeps_the_views_the_models_were_trained_on(tmp_path):
    from deepauc.deploy.inference import read_image_set

    pd.DataFrame(
        {
            "Path": ["p/patient00001/study1/view1_frontal.jpg", "p/patient00001/study1/view2.jpg"],
            "Frontal/Lateral": ["Frontal", "Lateral"],
            "Edema": [1.0, 1.0],
        }
    ).to_csv(tmp_path / "set.csv", index=False)
    spec = {"csv": str(tmp_path / "set.csv")}
    kept = read_image_set(spec, DISEASES, {}, "inference.image_sets.x", views=["Frontal"])
    assert [Path(p).name for p in kept.table["image"]] == ["view1_frontal.jpg"]
    assert list(kept.table["patient"]) == ["patient00001"]
    assert "Lateral view" in kept.skipped["reason"].iloc[0]
    assert "inference.image_sets.x.views" in kept.skipped["reason"].iloc[0]
    both = read_image_set({**spec, "views": ["Frontal", "Lateral"]}, DISEASES, {}, "x")
    assert len(both.table) == 2 and both.skipped.empty


def _card_tables(n_pos: int) -> dict:
    from deepauc.evaluation.summary import SUMMARY_COLUMNS

    row = {c: 0.5 for c in SUMMARY_COLUMNS}
    row |= {"architecture": "ensemble", "method": "dam", "level": "image", "n_pos": n_pos}
    summary = pd.DataFrame([row | {"disease": "Edema"}, row | {"disease": "mean"}]).assign(
        trained="yes", caution=""
    )
    audit = pd.DataFrame(
        [{"split": s, "disease": "Edema", "images": 100, "positive": n_pos, "negative": 50,
          "ignored": 0} for s in ("train", "val", "test")]
    )  # fmt: skip
    return {
        "summary": summary,
        "comparison": pd.DataFrame(columns=["architecture", "method", "control", "disease"]),
        "calibration": pd.DataFrame(columns=["architecture", "method", "disease"]),
        "subgroups": pd.DataFrame(columns=["architecture", "method", "disease", "attribute"]),
        "diagnostics": pd.DataFrame(
            [
                {
                    "architecture": "convnext_tiny",
                    "seed": 0,
                    "method": "dam",
                    "disease": "Edema",
                    "collapsed": "yes",
                    "trained": "yes",
                }
            ]
        ),  # fmt: skip
        "audit": audit,
    }


@pytest.mark.parametrize("synthetic", [True, False])
def test_the_model_card_states_the_limitations_that_apply_to_the_run(synthetic):
    from deepauc.deploy.model_card import model_card

    facts = {
        "predictors": ["ensemble"],
        "methods": ["dam"],
        "members": {"ensemble": ["convnext_tiny", "densenet169"]},
        "architectures": ["convnext_tiny", "densenet169"],
        "seeds": [0] if synthetic else [0, 1, 2],
        "diseases": ["Edema"],
        "policies": {"Edema": "ones"},
        "synthetic": synthetic,
        "dataset": "/data/CheXpert-v1.0-small/train.csv (train and val)",
        "image_size": 40 if synthetic else 224,
        "pretrained": not synthetic,
        "warmup": {"epochs": 2, "lr": 1e-4},
        "finetune": {"epochs": 2, "methods": ["dam", "ce"]},
        "combine": "mean",
        "exports": {"results/export/ensemble/dam": {"parity": {"max_abs_difference": 3e-7}}},
    }
    card = model_card(_card_tables(n_pos=10 if synthetic else 200), facts)
    for part in ("synthetic phantoms", "from scratch", "40 px", "One seed", "Fewer than 30"):
        assert (part in card) == synthetic, part
    assert "Edema: U-Ones" in card
    assert ("timm's ImageNet weights" in card) == (not synthetic)
    assert "Collapsed (val AUC fell to chance, or the scores went constant): 1 fine-tune" in card
    assert "convnext_tiny/seed0/dam/Edema" in card
    assert "Not a medical device" in card
    assert "`results/export/ensemble/dam` (safetensors weights, card.json, TorchScript; " in card
    unexported = model_card(_card_tables(200), {**facts, "exports": {}})
    assert "Exported for use" not in unexported  # only what was exported is named
