"""Would racing a grid's rates choose the same rates for less compute? Replayed on recorded runs.

Racing: every rate of a grid trains to a checkpoint (here the end of epoch 1 of 2); a rate whose
best val AUC so far is more than ``--margin`` behind the leader's stops there and keeps its best
model so far as its candidate; the others finish. The choice is then made as the pipeline makes
it (``deepauc.evaluation.diagnostics.choose_rate``) over the survivors' whole histories and the
stopped rates' histories up to the checkpoint.

It needs no GPU: it reads the histories a finished run wrote for every rate
(``results/models/<arch>/seed<k>/<method>/lr<rate>/<disease>.history.csv``), so its answer is
exact for those runs. Compute is counted in epochs of training: the full grid trains every rate
``epochs`` epochs; racing trains every rate to the checkpoint and the survivors the rest.

    python bench/race_rates.py <run folder> [<run folder> ...] --margin 0.005 --out race.json
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from deepauc.atomic import atomic_path
from deepauc.config.runs import MODELS, method_folder, run_of_history
from deepauc.evaluation.diagnostics import choose_rate


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (holding results/models)")
    parser.add_argument("--margin", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02])
    parser.add_argument("--checkpoint-epoch", type=int, default=1)
    parser.add_argument("--min-rates", type=int, default=3, help="a grid without a rate table")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    grids = [grid for run in args.runs for grid in recorded_grids(Path(run), args.min_rates)]
    report = {
        "grids": len(grids),
        "runs": args.runs,
        "checkpoint_epoch": args.checkpoint_epoch,
        "by_margin": {
            str(margin): race_all(grids, margin, args.checkpoint_epoch) for margin in args.margin
        },
    }
    with atomic_path(Path(args.out)) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def recorded_grids(run: Path, min_rates: int = 3) -> list[dict]:
    """Every (architecture, seed, method, disease) whose grid finished: its rates' histories."""
    found: dict[tuple, dict[float, pd.DataFrame]] = {}
    for history in sorted((run / MODELS).glob("*/seed*/*/lr*/*.history.csv")):
        fine_tune = run_of_history(history)
        # lr "chosen": a later seed at the first seed's choice, no grid
        if fine_tune is None or fine_tune.rate is None:
            continue
        key = (fine_tune.architecture, fine_tune.seed, fine_tune.method, fine_tune.disease)
        found.setdefault(key, {})[fine_tune.rate] = pd.read_csv(history)
    grids = []
    for (arch, seed, method, disease), rates in found.items():
        # A grid is complete once its rate table lists every rate found; a run stopped before
        # its tables were written counts grids of at least min_rates rates (the protocol's 3).
        table = run / method_folder(arch, seed, method) / f"{disease}.rates.csv"
        if table.exists():
            if set(pd.read_csv(table)["lr"].astype(float)) != set(rates):
                continue
        elif len(rates) < min_rates:
            continue
        grids.append({"key": f"{arch}/seed{seed}/{method}/{disease}", "histories": rates})
    return grids


def race(histories: dict[float, pd.DataFrame], margin: float, checkpoint_epoch: int) -> dict:
    """One grid raced: the choice, the full grid's choice, and the epochs each trains."""
    upto = {rate: h[h["epoch"] <= checkpoint_epoch] for rate, h in histories.items()}
    leader = max(float(h["val_auc"].max()) for h in upto.values())
    survivors = {rate for rate, h in upto.items() if float(h["val_auc"].max()) >= leader - margin}
    raced = {rate: histories[rate] if rate in survivors else upto[rate] for rate in histories}
    epochs = {rate: int(h["epoch"].max()) for rate, h in histories.items()}
    full, chosen = choose_rate(histories), choose_rate(raced)
    return {
        "full_choice": full,
        "raced_choice": chosen,
        # what the choice's model scores on val, the full grid's less the raced one's
        "val_auc_lost": float(histories[full]["val_auc"].max() - raced[chosen]["val_auc"].max()),
        "full_epochs": sum(epochs.values()),
        "raced_epochs": sum(
            epochs[r] if r in survivors else min(checkpoint_epoch, epochs[r]) for r in histories
        ),
        "stopped": len(histories) - len(survivors),
    }


def race_all(grids: list[dict], margin: float, checkpoint_epoch: int) -> dict:
    results = [race(g["histories"], margin, checkpoint_epoch) | {"key": g["key"]} for g in grids]
    table = pd.DataFrame(results)
    if table.empty:
        return {}
    same = table["full_choice"] == table["raced_choice"]
    return {
        "same_choice": f"{int(same.sum())} of {len(table)}",
        "compute_saving": round(table["full_epochs"].sum() / table["raced_epochs"].sum(), 3),
        "rates_stopped": int(table["stopped"].sum()),
        "val_auc_lost_mean": round(float(table["val_auc_lost"].mean()), 5),
        "val_auc_lost_max": round(float(table["val_auc_lost"].max()), 5),
        "different": table.loc[~same, ["key", "full_choice", "raced_choice", "val_auc_lost"]]
        .round(5)
        .to_dict("records"),
    }


if __name__ == "__main__":
    main()
