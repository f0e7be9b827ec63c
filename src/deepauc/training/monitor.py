"""What a fine-tune records about itself at every evaluation, beside its val AUC.

Each row of a fine-tune's history gets the spread of its val scores, the method's dual
variables and how far the backbone has moved from where it started
(``deepauc.evaluation.diagnostics`` says when that is a collapse); under DDP also how far apart the
ranks' dual variables are.
"""

import logging

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from deepauc.evaluation.diagnostics import backbone_drift, score_diagnostics
from deepauc.methods import dual_names
from deepauc.training.runtime import Runtime

log = logging.getLogger(__name__)


def evaluation_diagnostics(model: nn.Module, recipe, runtime: Runtime):
    """A fine-tune's diagnostics for each evaluation: the val scores' spread, the method's
    dual variables and how far the backbone has moved from where it started. Under DDP also
    how far the ranks' dual variables are apart (``duals_rank_spread``): the AUC loss's ``a``
    and ``b`` live outside DistributedDataParallel, so only the optimizer's all-reduce keeps
    them equal, and a rank that drifts would be training another model."""
    head = {id(p) for p in model.get_classifier().parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head]
    start = [p.detach().clone() for p in backbone]

    def diagnose(scores: np.ndarray, targets: np.ndarray) -> dict:
        duals = recipe.duals() if recipe.duals else {}
        with torch.no_grad():
            drift = backbone_drift([p.detach() for p in backbone], start)
        row = {
            **score_diagnostics(scores, targets),
            **{name: duals.get(name, float("nan")) for name in dual_names()},
            "drift": drift,
        }
        if runtime.distributed and duals:
            row["duals_rank_spread"] = duals_rank_spread(duals, runtime)
        return row

    return diagnose


#: Dual variables further apart than this across DDP ranks get a WARNING in the log.
DUALS_RANK_TOLERANCE = 1e-5


def duals_rank_spread(duals: dict[str, float], runtime: Runtime) -> float:
    """The largest difference of one dual variable between two DDP ranks (a collective: every
    rank calls it at the same evaluation). Above :data:`DUALS_RANK_TOLERANCE` rank 0 says
    WARNING."""
    names = sorted(duals)
    mine = torch.tensor([duals[name] for name in names], dtype=torch.float64)
    if runtime.device.type == "cuda":  # NCCL moves CUDA tensors only
        mine = mine.to(runtime.device)
    ranks = [torch.empty_like(mine) for _ in range(runtime.world_size)]
    dist.all_gather(ranks, mine)
    stacked = torch.stack(ranks)
    spread = float((stacked.max(dim=0).values - stacked.min(dim=0).values).max())
    if spread > DUALS_RANK_TOLERANCE and runtime.is_main:
        log.warning(
            "dual variables differ across the %d DDP ranks by up to %.3g: %s",
            runtime.world_size,
            spread,
            ", ".join(
                f"{name} {[round(float(v), 6) for v in stacked[:, i]]}"
                for i, name in enumerate(names)
            ),
        )
    return spread
