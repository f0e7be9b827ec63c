"""Why DAM's scores sink into the sigmoid's floor (or rise to its ceiling) from a weak start, and
which setting of LibAUC's recipe keeps them trainable: measured on the CPU.

What it measures
  1. A weak start: a synthetic CheXpert (``deepauc.data.synth``: phantom radiographs, noisy
     report labels, CheXpert's prevalences; Cardiomegaly ~11%, Pleural Effusion ~40%) at 40 px,
     read by the pipeline's own ``prepare_splits`` and ``build_cache``, and a one-epoch
     warm-up of ``convnext_atto`` from scratch at a low rate (``run_warmup``), one per seed:
     val AUC ~0.6-0.7, probability spread 0.02-0.05 (the GPU study's weak starts: 0.48-0.58,
     0.02-0.06).
  2. DAM fine-tunes (``run_finetune``, PESG mode adam, as for a LayerNorm network) of
     Cardiomegaly and Pleural Effusion from it, varying one setting at a time against the
     default (margin 1.0, init_duals class_means, epoch_decay 2e-3, sampling_rate auto, the
     rate ``--lr``): margin, init_duals, epoch_decay, sampling_rate (auto, 0.5, the training
     prevalence), learning rate (PESG adam's grid 1e-4..1e-3 and 3e-3), loss_version v2; CE at
     its grid and BCE + PESG at DAM's default rate (same optimizer and rate, other loss) as
     controls. Per run, from the history rows (``deepauc.evaluation.diagnostics.sunk`` and
     ``is_collapsed``, as ``fit`` records them): whether any evaluation sank (floor), rose
     (ceiling) or collapsed, whether the last one had, the best val AUC and its step.
  3. A per-step trace of epoch 1 of one sinking DAM run and of BCE + PESG at the same rate
     (the library's ``finetune_job``, ``prepare_batch`` and ``train_step``, a forward hook
     reading the batch's logits): the val probabilities' means, the duals a, b, alpha, and the
     common-mode push on the logits (the sum over the batch of dLoss/dlogit, i.e. the gradient
     of the head's bias) split into AUCM's square terms and its margin term.

The default rate is 1e-2, ten times the top of PESG adam's grid: at 40 px on 840 training images
(~55 steps an epoch at batch 16) a 1e-3 fine-tune does not sink; see the lr rows.

Output: ``<out>/results.json`` (every run and the trace), ``<out>/table.md`` (printed too),
``<out>/runs/*.json`` (one per run; a rerun skips runs already there).

CPU cost (one thread, 2-core machine shared with other work): data + warm-ups ~20 s, each
fine-tune 12-20 s, about 70 runs with two seeds: ~18 min; ``--seeds 0`` halves it.

    python bench/dam_sink.py --out /tmp/dam_sink
"""

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepauc.config.settings import AugmentSettings, FinetuneSettings, WarmupSettings
from deepauc.data.cache import build_cache
from deepauc.data.images import CachedSplit
from deepauc.data.preprocess import PreprocessSettings, prepare_splits
from deepauc.data.synth import DATASET_DIR, SynthSpec, generate_dataset
from deepauc.methods import METHODS
from deepauc.training.fit import prepare_batch, train_step
from deepauc.training.runtime import Runtime
from deepauc.training.scoring import predict_logits
from deepauc.training.stages import finetune_job, run_finetune, run_warmup

DISEASES = ["Cardiomegaly", "Edema", "Pleural Effusion"]  # the warm-up's outputs
TUNED = ["Cardiomegaly", "Pleural Effusion"]  # floor and ceiling on the GPU
ARCH, MODE = "convnext_atto", "adam"  # LayerNorm: PESG mode adam, grid 1e-4, 3e-4, 1e-3
CE_GRID = (3e-5, 1e-4, 3e-4)

log = logging.getLogger("dam_sink")


# ---- data and warm start -------------------------------------------------------------------


def make_splits(folder: Path, size: int) -> tuple[CachedSplit, CachedSplit]:
    """The synthetic CheXpert through the pipeline's own preprocessing and image cache."""
    dataset = folder / DATASET_DIR
    if not (dataset / "valid.csv").exists():
        generate_dataset(
            folder, SynthSpec(n_train_patients=600, n_valid_patients=50, image_size=(size, size))
        )
    splits = prepare_splits(
        dataset / "train.csv",
        dataset / "valid.csv",
        folder,
        DATASET_DIR,
        PreprocessSettings(diseases=tuple(DISEASES), val_fraction=0.3),
    )
    out = []
    for name, table in (("train", splits.train), ("val", splits.val)):
        cache = folder / f"{name}-{size}.npy"
        if not cache.exists():
            build_cache(table["image"].tolist(), size, cache)
        out.append(CachedSplit(table.reset_index(drop=True), cache))
    return out[0], out[1]


def warm_start(folder: Path, train, val, size: int, seed: int, lr: float, threads: int) -> dict:
    checkpoint = folder / f"warmup-seed{seed}.pt"
    history_path = folder / f"warmup-seed{seed}.csv"
    if not checkpoint.exists():
        run_warmup(
            ARCH,
            train,
            val,
            DISEASES,
            size,
            WarmupSettings(epochs=1, batch_size=32, lr=lr),
            AugmentSettings(),
            Runtime.create("cpu", seed=seed, threads=threads),
            checkpoint,
            history_path,
        )
    history = pd.read_csv(history_path)
    best = history.loc[history["val_auc"].idxmax()]
    return {
        "checkpoint": str(checkpoint),
        "best_step": int(best["step"]),
        **{f"val_auc:{d}": float(best[f"val_auc:{d}"]) for d in DISEASES},
        **{f"score_std:{d}": float(best[f"score_std:{d}"]) for d in DISEASES},
    }


# ---- the grid --------------------------------------------------------------------------------


def grid(default_lr: float) -> list[dict]:
    """(axis, value, method, DAM/CE/BCE-PESG settings, shared sampling rate), one at a time."""
    base = {"lr": default_lr, "mode": MODE}
    rows = [{"axis": "default", "value": f"lr {default_lr:g}", "method": "dam", "own": base}]
    for margin in (0.6, 0.3, 0.1):
        rows.append({"axis": "margin", "value": margin, "own": {**base, "margin": margin}})
    rows.append({"axis": "init_duals", "value": "zero", "own": {**base, "init_duals": "zero"}})
    for decay in (0.0, 2e-2):
        rows.append({"axis": "epoch_decay", "value": decay, "own": {**base, "epoch_decay": decay}})
    for rate in (0.5, "natural"):
        rows.append({"axis": "sampling_rate", "value": rate, "own": base, "rate": rate})
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
        rows.append({"axis": "lr", "value": lr, "own": {**base, "lr": lr}})
    rows.append({"axis": "loss_version", "value": "v2", "own": {**base, "loss_version": "v2"}})
    for lr in CE_GRID:
        rows.append({"axis": "CE", "value": lr, "method": "ce", "own": {"lr": lr}})
    rows.append(
        {"axis": "BCE+PESG", "value": default_lr, "method": "bce_pesg", "own": base},
    )
    for row in rows:
        row.setdefault("method", "dam")
        row.setdefault("rate", "auto")
    return rows


def finetune_settings(
    row: dict, epochs: int, batch: int, eval_every: int, rate
) -> FinetuneSettings:
    method = METHODS[row["method"]]
    return FinetuneSettings(
        method=row["method"],
        method_settings=method.settings(**row["own"]),
        epochs=epochs,
        batch_size=batch,
        sampling_rate=rate,
        eval_every_steps=eval_every,
    )


def resolved_rate(row: dict, train: CachedSplit, disease: str):
    if row["rate"] == "natural":
        labels = train.table[disease].dropna()
        return round(float(labels.mean()), 4)
    return row["rate"]


def summarize_history(history: pd.DataFrame) -> dict:
    best = history.loc[history["val_auc"].idxmax()]
    sunk = history["sunk"].fillna("").astype(str)
    first = history.loc[sunk != "", "step"]
    return {
        "val_auc_step0": float(history["val_auc"].iloc[0]),
        "best_val_auc": float(best["val_auc"]),
        "best_step": int(best["step"]),
        "final_val_auc": float(history["val_auc"].iloc[-1]),
        "steps": int(history["step"].iloc[-1]),
        "floor": bool((sunk == "floor").any()),
        "ceiling": bool((sunk == "ceiling").any()),
        "collapsed": bool(history["collapsed"].astype(bool).any()),
        "ends_sunk": sunk.iloc[-1],
        "ends_collapsed": bool(history["collapsed"].astype(bool).iloc[-1]),
        "first_sink_step": int(first.iloc[0]) if len(first) else None,
        "trajectory": history[
            [
                c
                for c in ("step", "val_auc", "pos_mean", "neg_mean", "score_std", "a", "b", "alpha")
                if c in history
            ]
        ]
        .round(6)
        .to_dict("list"),
    }


def run_one(row, disease, seed, warm, train, val, args, folder: Path) -> dict:
    rate = resolved_rate(row, train, disease)
    key = f"{row['axis']}={row['value']}-{disease.replace(' ', '_')}-seed{seed}"
    path = folder / "runs" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    settings = finetune_settings(row, args.epochs, args.batch, args.eval_every, rate)
    started = time.perf_counter()
    history = run_finetune(
        warm["checkpoint"],
        disease,
        train,
        val,
        settings,
        AugmentSettings(),
        Runtime.create("cpu", seed=seed, threads=args.threads),
        folder / "scratch" / key / "model.pt",  # one folder per run: runs may go in parallel
        folder / "scratch" / key / "history.csv",
    )
    record = {
        "axis": row["axis"],
        "value": row["value"],
        "method": row["method"],
        "disease": disease,
        "seed": seed,
        "settings": dataclasses.asdict(settings.method_settings),
        "sampling_rate": rate,
        "seconds": round(time.perf_counter() - started, 1),
        **summarize_history(history),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    log.info(
        "%s: best %.3f at step %d, floor %s ceiling %s collapsed %s (%.0f s)",
        key, record["best_val_auc"], record["best_step"], record["floor"], record["ceiling"],
        record["collapsed"], record["seconds"],
    )  # fmt: skip
    return record


# ---- the per-step trace ----------------------------------------------------------------------


def aucm_pushes(loss, logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """The common-mode push on the batch's logits (sum of dLoss/dlogit: the head bias's
    gradient) from AUCMLoss v1's square terms and its margin term, at the loss's a, b, alpha.
    Per sample dL/ds: positives 2(1-p)(s-a)/N - 2 alpha (1-p)/N, negatives 2p(s-b)/N +
    2 alpha p/N; dL/dz = dL/ds * s(1-s)."""
    s = torch.sigmoid(logits.detach().float().reshape(-1))
    y = targets.reshape(-1).float()
    n, pos = len(s), (y == 1).float()
    neg = 1 - pos
    p = pos.mean()
    a, b, alpha = (float(getattr(loss, k).detach()) for k in ("a", "b", "alpha"))
    slope = s * (1 - s)
    square = (2 * (1 - p) * (s - a) * pos + 2 * p * (s - b) * neg) / n * slope
    margin = (-2 * alpha * (1 - p) * pos + 2 * alpha * p * neg) / n * slope
    return {
        "push_square": float(square.sum()),
        "push_margin": float(margin.sum()),
        "batch_slope_pos": float((slope * pos).sum() / pos.sum().clamp(min=1)),
        "batch_slope_neg": float((slope * neg).sum() / neg.sum().clamp(min=1)),
    }


def trace(row, disease, seed, warm, train, val, args, steps: int) -> list[dict]:
    """Epoch 1's first ``steps`` steps of one fine-tune, every step recorded."""
    runtime = Runtime.create("cpu", seed=seed, threads=args.threads)
    settings = finetune_settings(row, 1, args.batch, 0, resolved_rate(row, train, disease))
    job = finetune_job(
        warm["checkpoint"], disease, train, val, settings, AugmentSettings(), runtime
    )
    seen = {}
    job.model.register_forward_hook(lambda m, i, out: seen.__setitem__("logits", out))
    val_targets = job.val_loader.dataset.targets[:, 0]
    loss = job.extra_state if row["method"] == "dam" else None
    rows = []

    def record(step, extra):
        z = predict_logits(job.model, job.val_loader, runtime)[:, 0].astype(np.float64)
        s = 1 / (1 + np.exp(-z))
        entry = {
            "step": step,
            "val_pos_mean": float(s[val_targets == 1].mean()),
            "val_neg_mean": float(s[val_targets == 0].mean()),
            "val_logit_mean": float(z.mean()),
            "val_logit_std": float(z.std()),
            "head_bias": float(job.model.get_classifier().bias.detach()[0]),
            **extra,
        }
        if loss is not None:
            entry.update({k: float(getattr(loss, k).detach()) for k in ("a", "b", "alpha")})
        rows.append(entry)

    record(0, {})
    job.train_loader.sampler.set_epoch(1)
    for step, (images, targets, *_) in enumerate(job.train_loader, start=1):
        if step > steps:
            break
        job.model.train()
        inputs = prepare_batch(job, images, runtime)
        before = {}
        if loss is not None:  # the duals the step's gradient sees
            before = {k: float(getattr(loss, k).detach()) for k in ("a", "b", "alpha")}
        train_step(job, inputs, targets, runtime)
        logits = seen["logits"][:, 0]
        if loss is not None:
            duals = type("Duals", (), {k: torch.tensor(v) for k, v in before.items()})
            extra = aucm_pushes(duals, logits, targets)
        else:  # BCE: dL/dz = (sigmoid(z) - y) / N
            s = torch.sigmoid(logits.detach().float())
            extra = {"push_bce": float((s - targets[:, 0]).sum() / len(s))}
        extra["batch_pos_share"] = float(targets.float().mean())
        record(step, extra)
    return rows


# ---- table -----------------------------------------------------------------------------------


def table(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    frame["value"] = frame["value"].astype(str)
    out = []
    for (axis, value), part in frame.groupby(["axis", "value"], sort=False):
        row = {"axis": axis, "value": value, "runs": len(part)}
        row["floor"] = f"{int(part['floor'].sum())}/{len(part)}"
        row["ceiling"] = f"{int(part['ceiling'].sum())}/{len(part)}"
        row["collapsed"] = f"{int(part['collapsed'].sum())}/{len(part)}"
        ended = (part["ends_sunk"] != "") | part["ends_collapsed"]
        row["ends sunk/collapsed"] = f"{int(ended.sum())}/{len(part)}"
        for disease in TUNED:
            own = part[part["disease"] == disease]
            row[f"best AUC {disease}"] = _mean_range(own["best_val_auc"])
            row[f"best step {disease}"] = "/".join(str(int(v)) for v in own["best_step"])
        row["mean best - step0"] = round(
            float((part["best_val_auc"] - part["val_auc_step0"]).mean()), 3
        )
        row["mean final AUC"] = round(float(part["final_val_auc"].mean()), 3)
        out.append(row)
    return pd.DataFrame(out)


def _mean_range(values: pd.Series) -> str:
    if values.empty:
        return ""
    return f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})"


def markdown(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def trace_markdown(rows: list[dict], every: int) -> str:
    keep = [r for r in rows if r["step"] % every == 0 or r["step"] == rows[-1]["step"]]
    return markdown(pd.DataFrame(keep).round(5))


# ---- main ------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1", help="warm-up and fine-tune seeds")
    parser.add_argument("--lr", type=float, default=1e-2, help="DAM's default rate (PESG adam)")
    parser.add_argument("--warmup-lr", type=float, default=3e-5)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--axes", default="all", help="comma list of axes to run, or all")
    parser.add_argument("--trace-steps", type=int, default=30, help="0: no trace")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("deepauc").setLevel(logging.ERROR)  # fit's per-row SINK/COLLAPSE lines
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train, val = make_splits(folder / "data", args.size)
    seeds = [int(s) for s in args.seeds.split(",")]
    warms = {
        seed: warm_start(folder, train, val, args.size, seed, args.warmup_lr, args.threads)
        for seed in seeds
    }
    for seed, warm in warms.items():
        log.info(
            "warm start seed %d: %s",
            seed,
            {k: round(v, 3) for k, v in warm.items() if k.startswith(("val_auc", "score_std"))},
        )
    rows = grid(args.lr)
    if args.axes != "all":
        wanted = set(args.axes.split(","))
        rows = [r for r in rows if r["axis"] in wanted or r["axis"] == "default"]
    records = []
    for row in rows:
        for disease in TUNED:
            for seed in seeds:
                records.append(run_one(row, disease, seed, warms[seed], train, val, args, folder))
    summary = table(records)
    text = markdown(summary)
    traces = {}
    if args.trace_steps:
        default = rows[0]
        bce = {"axis": "BCE+PESG", "value": args.lr, "method": "bce_pesg",
               "own": {"lr": args.lr, "mode": MODE}, "rate": "auto"}  # fmt: skip
        for name, row in (("dam", default), ("bce_pesg", bce)):
            path = folder / f"trace-{name}.json"
            if path.exists():
                traces[name] = json.loads(path.read_text())
            else:
                traces[name] = trace(row, TUNED[0], seeds[0], warms[seeds[0]], train, val, args,
                                     args.trace_steps)  # fmt: skip
                path.write_text(json.dumps(traces[name]))
        text += f"\n\nPer-step trace, {TUNED[0]}, seed {seeds[0]}, DAM at lr {args.lr:g}:\n\n"
        text += trace_markdown(traces["dam"], 2)
        text += f"\n\nThe same start, BCE + PESG at lr {args.lr:g}:\n\n"
        text += trace_markdown(traces["bce_pesg"], 3)
    warm_text = "\n".join(
        f"warm start seed {seed}: "
        + ", ".join(
            f"{d} val AUC {w[f'val_auc:{d}']:.3f} spread {w[f'score_std:{d}']:.3f}" for d in TUNED
        )  # fmt: skip
        + f" (best warm-up step {w['best_step']})"
        for seed, w in warms.items()
    )
    text = warm_text + "\n\n" + text
    result = {
        "arguments": vars(args),
        "warm_starts": warms,
        "runs": records,
        "table": summary.to_dict("records"),
        "traces": traces,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (folder / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (folder / "table.md").write_text(text + "\n")
    print(text)
    print(f"\n{len(records)} runs; {result['seconds']:.0f} s this invocation; {folder}")
    return result


if __name__ == "__main__":
    main()
