"""The training forward and backward replayed from a CUDA graph: one launch instead of hundreds.

At the write-up's batch of 32 a GPU step is launch-bound: the host spends longer issuing a
network's few hundred kernels (convnext_tiny) or thousand (densenet169) than the GPU spends
running them, so the GPU idles between kernels. :class:`GraphedTraining` records the model's
forward and backward once, with ``torch.cuda.make_graphed_callables``, and replays them: the
host then issues the loss, the optimizer step and one graph launch per step.

Only the network is graphed. The loss and the optimizer stay eager, so every method (its loss
may keep Python state, as the compositional loss's step counter does) and every optimizer works
unchanged; both are a few dozen launches (the fast PESG and torch's Adam run on tensor lists).

What the graph needs, and what happens otherwise:
- the same input shape each step: fine-tune batches are always full (DualSampler); any other
  batch (the warm-up's last) runs eagerly;
- parameters updated in place: the graph reads their storage. An optimizer that swaps in new
  tensors (libauc's own PESG and PDSCA assign ``p.data``) is detected on the next step, and the
  job goes on eagerly, with a warning;
- no host sync inside the forward: a model that needs one fails to capture, and the job goes on
  eagerly, with a warning.

Recording runs the forward and backward a few times on the first batch (CUDA graphs want their
kernels warmed up, and cuDNN benchmarks its algorithms then); those runs' BatchNorm statistics
are put back, so the training is the eager one's: the same updates within bf16 noise
(``tests/test_graphs.py``, on a GPU).
"""

import logging
import warnings

import torch
from torch import nn

from deepauc.errors import InputError

log = logging.getLogger(__name__)

WARMUP_RUNS = 3  # forward and backward runs on the first batch before recording

# The first backward after recording meets parameters whose gradient accumulators were made on
# the recording's side stream, and torch warns that this may cost a synchronisation: once per
# job, harmless (tests/test_graphs.py: the same updates as eager).
warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")


class _Autocast(nn.Module):
    """The model's forward under bf16 autocast without its weight-cast cache: a cached cast
    made while recording would outlive the graph's memory (torch's documented requirement)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return self.model(images)


class GraphedTraining(nn.Module):
    """``model``'s training forward (and so its backward) from a CUDA graph recorded on the
    first training batch; eager in eval mode, for a batch of another shape, or after the graph
    had to be given up (see the module docstring). Shares ``model``'s weights."""

    def __init__(self, model: nn.Module, name: str = "model"):
        super().__init__()
        self.model = model
        self.name = name
        self.graphed: nn.Module | None = None
        self.shape: torch.Size | None = None
        self.given_up = False
        self._storage: list[int] = []
        self.replays = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.model.training or self.given_up:
            return self.model(images)
        if self.graphed is None:
            self._record(images)
            if self.given_up:
                return self.model(images)
        if images.shape != self.shape:
            return self.model(images)
        if self._storage != _storage(self.model):
            self._give_up(
                "the optimizer replaced parameter tensors instead of updating them in place "
                "(libauc's own PESG/PDSCA do; finetune.<method>.implementation: fast does not)"
            )
            return self.model(images)
        self.replays += 1
        return self.graphed(images)

    def _record(self, images: torch.Tensor) -> None:
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        sample = images.detach().clone()
        try:
            self.graphed = torch.cuda.make_graphed_callables(
                _Autocast(self.model), (sample,), num_warmup_iters=WARMUP_RUNS
            )
        except Exception as err:  # noqa: BLE001 - any capture failure: train eagerly
            self._give_up(f"recording failed ({type(err).__name__}: {err})")
        finally:
            with torch.no_grad():  # the warm-up runs' BatchNorm statistics are not training
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(buffers[name])
        if not self.given_up:
            self.shape = images.shape
            self._storage = _storage(self.model)
            log.info(
                "%s: training forward and backward recorded as a CUDA graph for batches of %s",
                self.name,
                tuple(images.shape),
            )

    def _give_up(self, why: str) -> None:
        self.given_up, self.graphed = True, None
        log.warning("%s: CUDA graph off, training eagerly: %s", self.name, why)


def _storage(model: nn.Module) -> list[int]:
    return [p.data_ptr() for p in model.parameters()]


def graphs_apply(setting: str | bool, device: torch.device, distributed: bool, compiled: bool):
    """Whether a job records its training step (``cuda_graphs``: auto, true or false): on a
    CUDA device, in one process (DDP's gradient hooks are not recorded) and not compiled
    (torch.compile brings its own graphs). ``true`` where it cannot apply is an error."""
    possible = device.type == "cuda" and not distributed and not compiled
    if setting in (True, "true"):
        if not possible:
            why = (
                "not on a CUDA device"
                if device.type != "cuda"
                else "under DDP"
                if distributed
                else "with compile: true"
            )
            raise InputError(
                f"cuda_graphs: true, but a CUDA graph cannot apply {why}",
                where="config key cuda_graphs",
                fix="set cuda_graphs: auto (graphs where they apply) or false.",
            )
        return True
    return setting == "auto" and possible
