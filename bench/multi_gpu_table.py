"""Tables of bench/multi_gpu.sh's results (docs/benchmarks.md, "Several GPUs").

    python bench/multi_gpu_table.py <out>/ddp <out>/fanout

``ddp``: per architecture and method, the fine-tune's training images/s on one GPU and as two
DDP ranks (epochs after the first, which holds cuDNN's autotuning), the scaling efficiency
(two-GPU rate / twice the one-GPU rate), the best val AUC on one GPU (seeds 0 and 1: the seed
noise) and with DDP (seed 0, the same global batch), and the largest difference of the dual
variables between the ranks at any evaluation (where that efficiency goes: bench/ddp_steps.py).
``fanout``: the fine-tune stage's wall time on one GPU and on two, and the speed-up.
"""

import argparse
import io
import re
import sys
import tarfile
from pathlib import Path

import pandas as pd
from markdown_table import markdown  # bench/, the script's own folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders", nargs="+", type=Path, help="<out>/ddp and/or <out>/fanout of bench/multi_gpu.sh"
    )
    args = parser.parse_args(argv)
    for folder in args.folders:
        timings = read_timings(folder / "timing.txt")
        print(f"\n{folder.name}: " + "; ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        if folder.name == "fanout":
            one = timings.get("fine-tune stage on one GPU")
            two = timings.get("fine-tune stage on two GPUs")
            if one and two:  # (the phases may have run in two calls: timing.txt holds both)
                print(
                    f"fine-tune stage: one GPU {one:.0f} s, two GPUs {two:.0f} s: {one / two:.2f}x"
                )
        else:
            print(markdown(ddp_table(folder)))


def read_timings(path: Path) -> dict[str, float]:
    timings = {}
    for line in path.read_text().splitlines():
        found = re.fullmatch(r"(.+) ([0-9.]+) s", line)
        if found:
            timings[found.group(1)] = float(found.group(2))
    return timings


def histories(tar_path: Path) -> dict[tuple[str, int, str], pd.DataFrame]:
    """(architecture, seed, method) -> the fine-tune's history, from a set-aside phase."""
    found = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts  # results/models/<arch>/seed<s>/<method>/lr<r>/x.csv
            if parts[1] != "models" or not member.name.endswith(".history.csv"):
                continue
            table = pd.read_csv(io.BytesIO(tar.extractfile(member).read()))
            found[(parts[2], int(parts[3].removeprefix("seed")), parts[4])] = table
    return found


def steady_rate(history: pd.DataFrame) -> float:
    """Training images/s after the first epoch."""
    return float(history.query("epoch >= 2").images_per_second.mean())


def ddp_table(folder: Path) -> pd.DataFrame:
    one = histories(folder / "one_gpu.tar")
    two = histories(folder / "two_gpus.tar")
    rows = []
    for arch, seed, method in sorted(two):
        single, ddp = one[(arch, seed, method)], two[(arch, seed, method)]
        other_seed = one.get((arch, seed + 1, method))
        rows.append(
            {
                "architecture": arch,
                "method": method,
                "1 GPU img/s": f"{steady_rate(single):.0f}",
                "2 GPUs img/s": f"{steady_rate(ddp):.0f}",
                "efficiency": f"{steady_rate(ddp) / (2 * steady_rate(single)):.2f}",
                "val AUC 1 GPU (seed 0, 1)": f"{single.val_auc.max():.4f}, "
                + (f"{other_seed.val_auc.max():.4f}" if other_seed is not None else "-"),
                "val AUC 2 GPUs": f"{ddp.val_auc.max():.4f}",
                "dual spread": (
                    f"{ddp.duals_rank_spread.max():.1e}" if "duals_rank_spread" in ddp else "-"
                ),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    sys.exit(main())
