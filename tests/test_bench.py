"""The benchmark scripts run, and the extrapolation's arithmetic is what docs/benchmarks.md says.

No timing is asserted here: performance targets live in bench/ and docs/benchmarks.md.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    if str(BENCH) not in sys.path:  # the scripts import their neighbours (markdown_table)
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_throughput_runs_on_a_cpu_and_writes_every_measure(tmp_path):
    throughput = _load("throughput")
    out = tmp_path / "cpu.json"
    throughput.main(
        "--device cpu --archs resnet10t --size 32 --batch-size 8 --steps 2 --bound-steps 2 "
        f"--warmup-steps 1 --patients 12 --workers 1 --reference-workers 1 --out {out}".split()
    )
    results = json.loads(out.read_text())
    row = results["architectures"]["resnet10t"]
    measured = ("model_alone", "model_bound", "pipeline", "reference", "ce_pipeline")
    libauc = ("libauc_model_bound", "libauc_pipeline", "libauc_optimizer_step_ms")
    for key in measured + libauc:
        assert row[key] > 0, key
    assert row["pipeline_over_model_bound"] == pytest.approx(row["pipeline"] / row["model_bound"])
    assert row["pipeline_over_model_alone"] == pytest.approx(row["pipeline"] / row["model_alone"])
    assert row["parameter_tensors"] > 10 and row["optimizer_step_ms"] > 0
    assert results["data"]["cache_bytes"] == (
        (results["data"]["train_images"] + results["data"]["val_images"]) * 32 * 32 + 2 * 128
    )


def _fake_run(root: Path) -> Path:
    """A results folder of one warm-up job: epoch 1 100 images in 10 s, epoch 2 100 in 1 s."""
    results = root / "results"
    (results / "benchmarks" / "warmup" / "net").mkdir(parents=True)
    pd.DataFrame({"s": [20.0], "max_rss": [1000.0], "max_pss": [900.0]}).to_csv(
        results / "benchmarks" / "warmup" / "net" / "seed0.tsv", sep="\t", index=False
    )
    models = results / "models" / "net" / "seed0"
    models.mkdir(parents=True)
    pd.DataFrame({"seconds": [10.0, 1.0], "images_per_second": [10.0, 100.0]}).to_csv(
        models / "warmup.history.csv", index=False
    )
    (results / "data" / "cache").mkdir(parents=True)
    pd.DataFrame({"image": range(80)}).to_csv(results / "data" / "train.csv", index=False)
    pd.DataFrame({"image": range(20)}).to_csv(results / "data" / "val.csv", index=False)
    return results


def test_extrapolation_scales_images_at_the_steady_rate_and_keeps_fixed_costs(tmp_path, capsys):
    extrapolate = _load("extrapolate")
    results = _fake_run(tmp_path)
    speeds = {"architectures": {"net": {"pipeline": 100.0}, "slow": {"pipeline": 50.0}}}
    (tmp_path / "speeds.json").write_text(json.dumps(speeds))
    extrapolate.main([str(results), str(tmp_path / "speeds.json"), "--chexpert-images", "1000"])
    printed = capsys.readouterr().out
    assert "| warmup | 1 | 20.0 |" in printed
    run = extrapolate.measured_run(results)
    estimate = extrapolate.extrapolate(run, speeds, 1000)
    # 200 images at 100/s = 2 s of work, x10 for 1000 images over 100; 20 - 2 = 18 s fixed.
    assert estimate["net"]["gpu_hours"] == pytest.approx((20 + 18) / 3600)
    assert estimate["slow"]["gpu_hours"] == pytest.approx((40 + 18) / 3600)
    assert estimate["all"]["gpu_hours"] == pytest.approx((38 + 58) / 3600)


def _steps_row(ranks, batch, ms, busy=0.5, **extra):
    return {
        "arch": "net",
        "method": "dam",
        "ranks": ranks,
        "global_batch": batch,
        "rank_batch": batch // ranks,
        "variant": "default",
        "ms_per_step": ms,
        "images_per_second": 1000 * batch / ms,
        "gpu_busy": busy,
        "nccl_ms_per_step": 1.0 if ranks > 1 else 0.0,
        "allreduce_ms": 0.5,
        **extra,
    }


def test_ddp_steps_report_splits_the_efficiency_into_batch_and_ddp_factors():
    steps = _load("ddp_steps")
    one = [_steps_row(1, 64, 80.0, compiled=False), _steps_row(1, 128, 100.0, compiled=False)]
    two = [_steps_row(2, 128, 100.0, busy=0.9, compiled=False)]
    row = steps.report([{"rows": one}, {"rows": two}]).iloc[0]
    # 1 GPU: 1280 images/s at 128, 800 at 64; two ranks of 64: 1280 images/s.
    assert row["efficiency"] == "0.50"  # 1280 / (2 x 1280)
    assert row["batch factor"] == "0.62"  # 800 / 1280
    assert row["DDP factor"] == "0.80"  # 1280 / (2 x 800)
    assert row["rank busy"] == "0.90" and row["DDP variant"] == "default"
    # The first version's rows (no "compiled") counted NCCL's waiting kernels as busy: not shown.
    first = [{k: v for k, v in r.items() if k != "compiled"} for r in one + two]
    assert steps.report([{"rows": first}]).iloc[0]["rank busy"] == "-"


def test_ddp_steps_counts_overlapping_kernels_once_and_merges_configs_like_the_workflow(tmp_path):
    steps = _load("ddp_steps")
    assert steps.union_length([(0, 10), (5, 15), (20, 25), (21, 22)]) == 20
    assert steps.union_length([]) == 0
    (tmp_path / "a.yaml").write_text("finetune: {batch_size: 128, epochs: 2}\ndevice: cuda\n")
    (tmp_path / "b.yaml").write_text("finetune: {batch_size: 64}\n")
    config = steps.read_config([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert config["device"] == "cuda" and set(config) == {"finetune", "device"}
    given = {k: v for k, v in config["finetune"].items() if k in ("batch_size", "epochs")}
    assert given == {"batch_size": 64, "epochs": 2}
    assert config["finetune"]["ce"] == {"lr": 1e-4, "weight_decay": 1e-5}  # CeSettings' defaults
    shipped = steps.read_config(steps.DEFAULT_CONFIGS)  # multi_gpu.yaml < bench.yaml < protocol
    assert shipped["architectures"] == ["densenet169", "convnext_tiny"]
    assert shipped["finetune"]["batch_size"] == 128 and shipped["finetune"]["dam"]["lr"] == 0.1


def test_step_speed_runs_on_a_cpu_and_writes_each_measure(tmp_path):
    out = tmp_path / "speed.json"
    _load("step_speed").main(
        ["--device", "cpu", "--archs", "resnet10t", "--size", "32", "--steps", "2",
         "--warmup-steps", "1", "--network-batches", "4", "--out", str(out)]
    )  # fmt: skip
    row = json.loads(out.read_text())["resnet10t"]
    assert set(row) == {"network_eager_bs4", "dam_eager_bs32", "ce_eager_bs32"}
    assert all(value > 0 for value in row.values())


def test_inference_speed_runs_on_a_cpu_and_writes_each_measure(tmp_path):
    out = tmp_path / "inference.json"
    _load("inference_speed").main(
        ["--device", "cpu", "--archs", "resnet10t", "--size", "32", "--diseases", "2",
         "--images", "16", "--batches", "8", "--steps", "2", "--out", str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["images_per_second"]) == {"fp32_bs8", "bf16_bs8"}
    assert all(value > 0 for value in report["images_per_second"].values())
    assert report["parity_cpu_export"] <= 1e-4 and report["networks"] == 2


def _stage_run(root: Path) -> Path:
    """Two fine-tunes' records, as a run leaves them: 10 s and 20 s jobs, overlapping by 5 s."""
    for name, end, seconds, images_per_s in (
        ("a", "12:00:10", 10, 100.0),
        ("b", "12:00:25", 20, 50.0),
    ):
        key = Path("m/seed0/dam/lr0.1") / name
        bench = root / "results/benchmarks/finetune" / key.with_suffix(".tsv")
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{seconds}\t2048\n")
        log = root / "results/logs/finetune" / key.with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            f"2026-12-02 12:00:01,000 INFO x: start\n"
            f"2026-12-02 {end},000 INFO x: m: peak GPU memory 3.50 GB (reserved by this process)\n"
        )
        history = root / "results/models" / key.with_suffix(".history.csv")
        history.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {"epoch": [0, 1, 2], "seconds": [0.0, 4.0, 4.0],
             "images_per_second": [float("nan"), images_per_s, images_per_s]}
        ).to_csv(history, index=False)  # fmt: skip
    gpu = root / "gpu.csv"
    gpu.write_text(
        "".join(f"2026/12/02 12:00:{s:02d}.000, {100 if s < 20 else 0}, 1000\n" for s in range(30))
    )
    return gpu


def test_a_stage_is_measured_from_its_jobs_records(tmp_path):
    gpu = _stage_run(tmp_path)
    report = _load("finetune_stage").main(
        ["--run", str(tmp_path), "--gpu-log", str(gpu), "--out", str(tmp_path / "r.json")]
    )
    stage = report["finetune"]
    assert stage["jobs"] == 2 and stage["wall_seconds"] == 25.0  # 12:00:00 to 12:00:25
    assert stage["images_trained"] == 2 * 400 + 2 * 200
    assert stage["aggregate_images_per_s"] == pytest.approx(1200 / 25, abs=0.1)
    assert stage["gpu_busy"] == pytest.approx(20 / 26, abs=1e-3)  # samples 0-25, busy 0-19
    assert stage["peak_gpu_gb_max"] == 3.5 and stage["peak_host_rss_gb_max"] == 2.0


def _history(aucs):
    return pd.DataFrame({"epoch": range(len(aucs)), "step": range(len(aucs)), "val_auc": aucs})


def test_racing_stops_the_rates_behind_at_the_checkpoint_and_counts_the_epochs():
    race = _load("race_rates").race
    grid = {
        0.01: _history([0.80, 0.81, 0.83]),  # behind after epoch 1, best at the end
        0.03: _history([0.80, 0.85, 0.82]),  # the leader after epoch 1
        0.1: _history([0.80, 0.84, 0.84]),
    }
    strict = race(grid, margin=0.0, checkpoint_epoch=1)
    assert strict["full_choice"] == strict["raced_choice"] == 0.03
    assert strict["stopped"] == 2 and (strict["full_epochs"], strict["raced_epochs"]) == (6, 4)
    late = {**grid, 0.01: _history([0.80, 0.81, 0.90])}  # the late bloomer wins the full grid
    lost = race(late, margin=0.0, checkpoint_epoch=1)
    assert (lost["full_choice"], lost["raced_choice"]) == (0.01, 0.03)
    assert lost["val_auc_lost"] == pytest.approx(0.05)
    assert race(late, margin=0.05, checkpoint_epoch=1)["raced_choice"] == 0.01


def _search_history(path, step0_auc, best_auc, best_step, drift):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "step": [0, best_step // 2, best_step],
            "val_auc": [step0_auc, (step0_auc + best_auc) / 2, best_auc],
            "lr": [float(path.parent.name.removeprefix("lr"))] * 3,
            "drift": [0.0, drift / 2, drift],
            "collapsed": [False] * 3,
        }
    ).to_csv(path, index=False)


def test_study_searches_choose_like_the_pipeline_and_skip_unfinished_grids(tmp_path, capsys):
    searches = _load("dam_study_searches")
    method = tmp_path / "results" / "models" / "convnext_tiny" / "seed0" / "dam"
    # Edema: three rates, the highest best and moved; Atelectasis: two rates, not a search yet.
    for rate, best, drift in [
        ("0.0001", 0.71, 0.001),
        ("0.0003", 0.72, 0.002),
        ("0.001", 0.80, 0.03),
    ]:
        _search_history(method / f"lr{rate}" / "edema.history.csv", 0.70, best, 200, drift)
    for rate in ("0.0001", "0.0003"):
        _search_history(method / f"lr{rate}" / "atelectasis.history.csv", 0.60, 0.65, 200, 0.02)
    rows = searches.search_rows(tmp_path / "results" / "models", seed=0)
    assert len(rows) == 1
    edema = rows.iloc[0]
    assert (edema.disease, edema.chosen_lr, edema.trained, bool(edema.on_edge)) == (
        "edema",
        0.001,
        "yes",
        True,
    )
    assert edema.val_gain == pytest.approx(0.10)
    # A search whose best rate barely moved the backbone is counted as not trained.
    for rate in ("0.0001", "0.0003", "0.001"):
        _search_history(
            method.parent / "ce" / f"lr{rate}" / "edema.history.csv", 0.70, 0.71, 200, 0.001
        )
    searches.main([str(tmp_path)])
    table = capsys.readouterr().out
    assert "| convnext_tiny | ce | 1 | 0 |" in table
    assert "| convnext_tiny | dam | 1 | 1 |" in table


def _family_predictions(predictions: Path, family: str, noise: dict, labels, rng, seeds=(0, 1)):
    """Per-seed predictions of one family, scores = label + method-specific noise, and their
    seed ensembles (``seeds/``) as the pipeline writes them."""
    images = [f"patient{i:03d}/view1_frontal.jpg" for i in range(len(labels))]
    (predictions.parent / "models" / family).mkdir(parents=True, exist_ok=True)
    for method, sd in noise.items():
        per_seed = []
        for seed in seeds:
            rows = [
                {
                    "image": image,
                    "patient": image.split("/")[0],
                    "disease": disease,
                    "y_true": float(labels[i, j]),
                    "score": labels[i, j] + rng.normal(0, sd),
                }
                for j, disease in enumerate(["Edema", "Atelectasis"])
                for i, image in enumerate(images)
            ]
            table = pd.DataFrame(rows)
            per_seed.append(table)
            (predictions / family / f"seed{seed}").mkdir(parents=True, exist_ok=True)
            table.to_csv(predictions / family / f"seed{seed}" / f"{method}.csv", index=False)
        (predictions / family / "seeds").mkdir(exist_ok=True)
        mean = per_seed[0].assign(score=sum(t["score"] for t in per_seed) / len(per_seed))
        mean.to_csv(predictions / family / "seeds" / f"{method}.csv", index=False)


def test_study_ensemble_spans_runs_skips_unfinished_families_and_refuses_doubles(tmp_path):
    import numpy as np

    from deepauc.evaluation.stats import auc

    study = _load("dam_study_ensemble")
    rng = np.random.default_rng(0)
    noise = {"warmup": 2.0, "dam": 1.0, "ce": 0.3}
    first, second = (tmp_path / name / "results" / "predictions" for name in ("a", "b"))
    # The same cohort in both runs: the labels are drawn once, each family's noise on its own.
    labels = rng.integers(0, 2, (60, 2))
    labels[:2] = [[0, 0], [1, 1]]  # both classes for both diseases
    _family_predictions(first, "convnext_tiny", noise, labels, rng)
    _family_predictions(first, "davit_tiny", noise, labels, rng)
    _family_predictions(second, "densenet169", noise, labels, rng)
    # A family stopped in the first run (warm-up predictions only) and finished in the second.
    (first / "densenet169" / "seed0").mkdir(parents=True)
    (first.parent / "models" / "densenet169" / "seed0").mkdir(parents=True)
    # The run's own ensembles (plain and a configured subset) are finished predictors without
    # models of their own: not families.
    for ensemble in ("ensemble", "convnext_davit"):
        (first / ensemble / "seeds").mkdir(parents=True)
        for method in ("ce", "warmup"):
            (first / ensemble / "seeds" / f"{method}.csv").write_text("image\n")
    members = study.family_folders([tmp_path / "a", tmp_path / "b"])
    assert list(members) == ["convnext_tiny", "davit_tiny", "densenet169"]
    assert members["densenet169"] == second / "densenet169"

    rows = study.ensemble_rows(members, resamples=200, seed=0).set_index("method")
    assert list(rows.index) == ["warmup", "dam", "ce"]
    # The ensemble's AUC is that of the three families' scores averaged over families and seeds.
    scores = {
        family: pd.read_csv(folder / "seeds" / "dam.csv") for family, folder in members.items()
    }
    mean_score = sum(t["score"].to_numpy() for t in scores.values()) / 3
    first_table = scores["convnext_tiny"]
    by_disease = [
        auc(first_table["y_true"].to_numpy()[mask], mean_score[mask])
        for mask in (first_table["disease"] == d for d in ["Edema", "Atelectasis"])
    ]
    assert rows.loc["dam", "auc"] == pytest.approx(np.mean(by_disease))
    # Noisier scores rank worse: DAM's noise is above CE's and below the warm-up's.
    assert rows.loc["dam", "vs_ce"] < 0 < rows.loc["dam", "vs_warmup"]
    assert rows.loc["dam", "vs_ce_low"] <= rows.loc["dam", "vs_ce"] <= rows.loc["dam", "vs_ce_high"]
    assert pd.isna(rows.loc["ce", "vs_ce"]) and pd.isna(rows.loc["warmup", "vs_warmup"])

    _family_predictions(first, "densenet169", noise, labels, rng)
    with pytest.raises(SystemExit, match="densenet169 finished in"):
        study.family_folders([tmp_path / "a", tmp_path / "b"])


def test_surrogate_pretraining_writes_weights_the_pipeline_loads(tmp_path):
    """bench/surrogate_pretrain.py on a handful of images: its .safetensors is what
    ``pretrained: <folder>`` loads (every backbone tensor equal), with a record of the recipe."""
    import torch

    from deepauc.models.build import create_model

    surrogate = _load("surrogate_pretrain")
    surrogate.main(
        [
            "--out",
            str(tmp_path),
            "--architectures",
            "resnet10t",
            "--images",
            "48",
            "--size",
            "48",
            "--render-size",
            "48",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--device",
            "cpu",
        ]
    )
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "resnet10t.safetensors")
    model = create_model("resnet10t", num_outputs=5, image_size=48, pretrained=str(tmp_path))
    state = model.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    record = json.loads((tmp_path / "resnet10t.json").read_text())
    assert record["recipe"]["synth_seed"] != 0  # another cohort than the study tree's
