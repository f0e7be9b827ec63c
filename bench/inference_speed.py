"""Scoring new images with an exported predictor: how fast, and how close to the CPU export.

Builds an ensemble of ``--archs`` (one disease model per architecture and disease, random
weights: speed and arithmetic do not depend on training), exports it as the pipeline does
(``deepauc.deploy.bundle.export_predictor``, parity checked on the CPU), reloads the export from
its safetensors file and card, and times it on ``--device`` over uint8 batches already in
device memory, in fp32 (as ``score_images`` runs it) and under bf16 autocast. Reports images
per second per batch size, and the largest difference of the device's fp32 scores from the
CPU's.

    python bench/inference_speed.py --archs convnext_tiny densenet169 --out inference.json

A CPU smoke run: ``python bench/inference_speed.py --device cpu --archs resnet10t --size 32
--diseases 2 --images 16 --batches 8 --out /tmp/i.json``.
"""

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from timing import images_per_second  # bench/, the script's own folder

from deepauc.atomic import atomic_path
from deepauc.data.images import CachedSplit
from deepauc.deploy.bundle import export_predictor, load_bundle
from deepauc.evaluation.calibration import calibrate
from deepauc.evaluation.ensemble import average_members
from deepauc.models.build import create_model
from deepauc.models.checkpoints import save_model
from deepauc.training.predict import predict_models
from deepauc.training.runtime import Runtime

DISEASES = ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion"]


def split(folder: Path, name: str, n: int, size: int, seed: int, diseases) -> CachedSplit:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"image": [f"{name}/{i}" for i in range(n)], "patient": range(n)})
    for disease in diseases:
        table[disease] = rng.integers(0, 2, n).astype(float)
    np.save(folder / f"{name}.npy", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
    return CachedSplit(table, folder / f"{name}.npy")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["convnext_tiny", "densenet169"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--diseases", type=int, default=len(DISEASES))
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--images", type=int, default=64, help="val and test images each")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    diseases = DISEASES[: args.diseases]
    device = torch.device(args.device)
    cpu = Runtime(device=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        val = split(folder, "val", args.images, args.size, 0, diseases)
        test = split(folder, "test", args.images, args.size, 1, diseases)
        val_tables, members = [], []
        for k, arch in enumerate(args.archs):
            models = {}
            for j, disease in enumerate(diseases):
                torch.manual_seed(100 * k + j)
                path = folder / f"{arch}.{j}.pt"
                meta = {"arch": arch, "image_size": args.size, "outputs": [disease]}
                save_model(path, create_model(arch, 1, args.size).state_dict(), meta)
                models[disease] = str(path)
            v, _ = predict_models(list(models.values()), [val, test], cpu)
            v.to_csv(folder / f"{arch}.val.csv", index=False)
            val_tables.append(v)
            members.append({"name": f"{arch}/seed0", "models": models})
        plan = {
            "name": "ensemble/seed0",
            "combine": "mean",
            "members": members,
            "val_tables": [str(folder / f"{a}.val.csv") for a in args.archs],
            "weights": None,
        }
        final_val, _ = calibrate(average_members(val_tables, "mean"), val_tables[0])
        card = export_predictor(
            plan, diseases, final_val, test, folder / "export", {}, parity_images=8
        )
        module, _ = load_bundle(folder / "export")
        pixels = torch.from_numpy(np.load(test.cache))
        with torch.no_grad():
            on_cpu = module(pixels)[0].numpy()
            module = module.to(device)
            on_device = module(pixels.to(device))[0].cpu().numpy()
        runtime = Runtime(device=device)
        measures = {}
        for batch in args.batches:
            images = pixels[torch.arange(batch) % len(pixels)].to(device)
            for name, autocast in (("fp32", False), ("bf16", True)):

                def step(images=images, autocast=autocast):
                    with (
                        torch.no_grad(),
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
                    ):
                        module(images)

                measures[f"{name}_bs{batch}"] = images_per_second(
                    step, 2, args.steps, batch, runtime
                )
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["inference_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
        "archs": args.archs,
        "diseases": len(diseases),
        "networks": len(card["networks"]),
        "image_size": args.size,
        "parity_cpu_export": card["parity"]["max_abs_difference"],
        "device_fp32_vs_cpu_max_abs_score_difference": float(np.abs(on_device - on_cpu).max()),
        "images_per_second": measures,
    }
    with atomic_path(args.out) as path:
        path.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
