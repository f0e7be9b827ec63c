"""A trained predictor as one network: an architecture's disease models, or an ensemble of them,
with its calibration, in a module that maps images to scores and probabilities.

The pipeline's predictors are prediction tables: an architecture's disease models scored
one by one, ensembles averaging their members' tables (``deepauc.evaluation.ensemble``), the
probability a Platt scaling fitted on val. :class:`PredictorModule` computes the same thing for
any batch of images, so that images the pipeline never saw are scored as the test split was.

The one place it differs is the rank combine: there the pipeline turns each member's scores
into percentile ranks within the split being scored. A new image has no split, so it is
ranked among the member's val scores: for a val image that is exactly the pipeline's rank
(ties averaged), so the val-chosen thresholds and calibration carry over unchanged.

A *plan* says what the predictor is made of, as plain data (the workflow writes it):

- a leaf ``{"name", "models": {disease: model file}}``: per disease, the network that scores
  it (a disease model, or the warm-up's model of all diseases);
- a combination ``{"name", "combine", "members": [plan, ...], "val_tables": [path, ...],
  "weights": path or None}``: the members averaged (``weights``: a table of ``disease, member,
  weight`` as ``select_ensemble`` writes it; None: the plain mean), ranked among their own val
  tables' scores when ``combine`` is ``rank``.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from deepauc.data.images import normalisation_tensors
from deepauc.errors import InputError
from deepauc.evaluation.calibration import fit_by_disease
from deepauc.evaluation.ensemble import COMBINES
from deepauc.evaluation.scores import val_thresholds
from deepauc.models.build import HeadInFp32
from deepauc.models.checkpoints import load_model


@dataclass
class Network:
    """One trained network of a predictor and where it came from."""

    model: nn.Module
    meta: dict  # load_model's: arch, image_size, outputs, stage, lr, epoch, val_auc, seed
    source: str  # the model file


class PredictorModule(nn.Module):
    """Images in, ``(scores, probabilities, network_logits)`` out.

    ``images`` are a (B, H, W) uint8 batch of grayscale pixels at the training size, as
    ``deepauc.data.cache.load_image`` decodes them. ``scores`` (B, diseases) are the
    predictor's scores on the scale its thresholds are on (logits; mean percentile ranks for a
    rank combine), ``probabilities`` their calibrated probabilities, ``network_logits`` every
    network's raw logits side by side (what the parity check compares).

    ``programs[d]`` says how disease ``d``'s score is made: ``["leaf", network, output]`` or
    ``["combine", combine, weights, members, reference keys]`` (weights None: the plain mean;
    a reference: the buffer of a member's sorted val scores, for the rank combine).
    """

    def __init__(
        self,
        networks: list[nn.Module],
        diseases: list[str],
        programs: dict[str, list],
        references: dict[str, torch.Tensor],
        slopes: list[float],
        intercepts: list[float],
    ):
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.diseases = list(diseases)
        self.programs = programs
        # Each network scored as the pipeline scores it (its head in fp32 under an autocast);
        # a plain list: the wrappers share the networks' weights and add none of their own.
        self.scorers = [HeadInFp32(network) for network in self.networks]
        for key in sorted(references):
            self.register_buffer(key, references[key])
        self.register_buffer("slope", torch.tensor(slopes, dtype=torch.float64))
        self.register_buffer("intercept", torch.tensor(intercepts, dtype=torch.float64))
        # buffers, not to_model_input's cached constants: they move with the module (.to(gpu))
        # and are saved with it, so the traced file needs nothing else
        gain, bias = normalisation_tensors()
        self.register_buffer("gain", gain)
        self.register_buffer("bias", bias)

    def forward(self, images: torch.Tensor):
        pixels = images.unsqueeze(1).float() / 255.0
        batch = torch.addcmul(self.bias, pixels, self.gain)  # gray to 3 normalized channels
        logits = [scorer(batch).float() for scorer in self.scorers]
        scores = torch.stack([self._run(self.programs[d], logits) for d in self.diseases], 1)
        probabilities = torch.sigmoid(self.slope * scores + self.intercept)
        return scores, probabilities, torch.cat(logits, 1)

    def _run(self, program: list, logits: list[torch.Tensor]) -> torch.Tensor:
        if program[0] == "leaf":
            return logits[program[1]][:, program[2]].double()
        _, combine, weights, members, references = program
        total = None
        for k, (member, key) in enumerate(zip(members, references, strict=True)):
            score = self._run(member, logits)
            if combine == "rank":
                score = percentile_among(score, getattr(self, key))
            if weights is not None:  # the pipeline's weighted sum, member by member
                score = weights[k] * score
            total = score if total is None else total + score
        # the plain mean as the pipeline takes it: the sum, then one division
        return total if weights is not None else total / len(members)


def percentile_among(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each score's percentile rank among the sorted ``reference``, as pandas' ``rank(pct=True)``
    ranks a value of the reference itself (ties get their average rank); a score between two
    reference values lands halfway between their ranks.

    Compared in the reference's precision: fp32 for a network's logits (a prediction table's
    CSV writes an fp32 logit as the shortest decimal that reads back as the same fp32 number,
    not as the same float64 one), float64 for an ensemble's scores (computed here in the same
    float64 operations, in the same order, as the pipeline's tables)."""
    scores = scores.to(reference.dtype)
    below = torch.searchsorted(reference, scores, right=False)
    at_or_below = torch.searchsorted(reference, scores, right=True)
    return (below + at_or_below + 1).double() / (2 * reference.numel())


def build_predictor(plan: dict, diseases: list[str], final_val: pd.DataFrame):
    """The :class:`PredictorModule` of ``plan`` (see the module docstring), calibrated on the
    predictor's final val table ``final_val`` as the pipeline calibrates it, and what a card
    needs: ``(module, networks, programs, thresholds)``; thresholds per disease and operating
    point, on the score scale (positive if score > threshold)."""
    networks: list[Network] = []
    by_file: dict[str, int] = {}
    references: dict[str, torch.Tensor] = {}
    read = functools.cache(pd.read_csv)  # each table once, not once per disease

    def network_of(path: str) -> int:
        if path not in by_file:
            model, meta = load_model(path, "cpu")
            by_file[path] = len(networks)
            networks.append(Network(model.eval(), meta, str(path)))
        return by_file[path]

    def compile_node(node: dict, disease: str) -> list:
        if "models" in node:
            k = network_of(node["models"][disease])
            outputs = networks[k].meta["outputs"]
            if disease not in outputs:
                raise InputError(
                    f"model scores {outputs}, not {disease!r}", where=node["models"][disease]
                )
            return ["leaf", k, outputs.index(disease)]
        if node["combine"] not in COMBINES:
            raise InputError(f"unknown combine {node['combine']!r}", where="ensemble.combine")
        members = [compile_node(member, disease) for member in node["members"]]
        weights = member_weights(node, disease, read)
        keys = []
        for member, path in zip(node["members"], node["val_tables"], strict=True):
            if node["combine"] != "rank":
                keys.append(None)
                continue
            key = f"reference_{len(references)}"
            val = read(path)
            scores = np.sort(val.loc[val["disease"] == disease, "score"].to_numpy(float))
            if not scores.size:
                raise InputError(f"no val scores of {disease!r} for {member['name']}", where=path)
            # fp32 for a network's logits, float64 for an ensemble's (see percentile_among)
            dtype = torch.float32 if "models" in member else torch.float64
            references[key] = torch.from_numpy(scores).to(dtype)
            keys.append(key)
        return ["combine", node["combine"], weights, members, keys]

    programs = {disease: compile_node(plan, disease) for disease in diseases}
    scalings = fit_by_disease(final_val)
    missing = [d for d in diseases if d not in scalings]
    if missing:
        raise InputError(f"the final val table has no rows of {missing}")
    module = PredictorModule(
        [n.model for n in networks],
        diseases,
        programs,
        references,
        [scalings[d].slope for d in diseases],
        [scalings[d].intercept for d in diseases],
    ).eval()
    by_point = val_thresholds(final_val, diseases)
    thresholds = {
        disease: {point: values[j] for point, values in by_point.items()}
        for j, disease in enumerate(diseases)
    }
    return module, networks, programs, thresholds


def member_weights(node: dict, disease: str, read=pd.read_csv) -> list[float] | None:
    """The members' weights for ``disease`` as selected on val; None for the plain mean."""
    if node.get("weights") is None:
        return None
    table = read(node["weights"])
    rows = table[table["disease"] == disease].set_index("member")["weight"]
    names = [member["name"].split("/")[0] for member in node["members"]]
    if set(names) - set(rows.index):
        raise InputError(
            f"no weights of {sorted(set(names) - set(rows.index))} for {disease!r}",
            where=node["weights"],
        )
    return [float(rows[name]) for name in names]
