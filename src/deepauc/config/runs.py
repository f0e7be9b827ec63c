"""Every fine-tune run of a config, and where a run's files live (splits, image caches,
warm-ups, fine-tunes): one list and one layout for the workflow, its tables and bench/.

A fine-tune run is one job: an architecture, a seed, a method, a disease and a learning rate,
named in paths by its label (``deepauc.config.rates.lr_label``; ``chosen`` for a later seed at
the rate the first seed chose). A method's grid is its first rates (round 0); where the best
rate of a round lies on an edge, the next round adds one rate past it, up to
``finetune.grid_extensions`` rounds. Which rates a grown grid holds is known only once each
round's runs finished, so :func:`searched_rates` and :func:`finetune_runs` ask the caller for a
round's choice (``chosen_after``): the workflow asks its checkpoint tables
(:func:`search_table`).

:func:`run_of_history` reads a run back from its history's path, for scripts that walk a
results folder whatever config made it (bench/).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepauc.config.rates import (
    CHOSEN_RATE,
    grid_extension,
    lr_label,
    rate_labels,
    rate_of_label,
    searches_rates,
)
from deepauc.data.chexpert import slug

#: Where every model, history and rate table of a run lives.
MODELS = "results/models"
#: Where the preprocessed splits and their image caches live.
DATA = "results/data"


def split_table(split: str) -> str:
    """A split's table after preprocessing (train, val, test)."""
    return f"{DATA}/{split}.csv"


def image_cache(split: str, image_size: int) -> str:
    """A split's decoded images at the training size (``deepauc.data.cache``)."""
    return f"{DATA}/cache/{split}_{image_size}px.npy"


def warmup_model(architecture: str, seed: int) -> str:
    return f"{MODELS}/{architecture}/seed{seed}/warmup.pt"


def warmup_history(architecture: str, seed: int) -> str:
    return f"{MODELS}/{architecture}/seed{seed}/warmup.history.csv"


#: ``chosen_after(architecture, seed, method, disease slug, round)``: the rate a search round
#: chose (a grid's rates and the rounds before it, ``deepauc.evaluation.diagnostics.choose_rate``).
ChosenAfter = Callable[[str, int, str, str, int], float]


def method_folder(architecture: str, seed: int, method: str) -> str:
    """The folder of one seed's models of ``method`` on ``architecture`` (chosen models, rate
    tables, search rounds; each rate's run in ``lr<label>/`` below it)."""
    return f"{MODELS}/{architecture}/seed{seed}/{method}"


def search_table(architecture: str, seed: int, method: str, disease: str, round: int) -> str:
    """The rate table search round ``round`` wrote (``disease`` as in paths: its slug)."""
    return f"{method_folder(architecture, seed, method)}/search/{disease}.round{round}.csv"


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tune job. ``disease`` as the config names it (a path holds its slug);
    ``round``: 0 for the grid, k for the rate its k-th extension added."""

    architecture: str
    seed: int
    method: str
    disease: str
    label: str
    round: int = 0

    @property
    def rate(self) -> float | None:
        """The rate it ran at; None for a run at the first seed's choice (its history says)."""
        return rate_of_label(self.label)

    @property
    def folder(self) -> str:
        return f"{method_folder(self.architecture, self.seed, self.method)}/lr{self.label}"

    @property
    def model(self) -> str:
        return f"{self.folder}/{slug(self.disease)}.pt"

    @property
    def history(self) -> str:
        return f"{self.folder}/{slug(self.disease)}.history.csv"

    @property
    def key(self) -> tuple:
        """(architecture, seed, method, disease, label): what ``results/diagnostics.csv`` groups."""
        return (self.architecture, self.seed, self.method, self.disease, self.label)


def searched_rates(
    section: dict,
    architecture: str,
    seed: int,
    method: str,
    disease: str,
    seeds: list[int],
    chosen_after: ChosenAfter,
    rounds: int | None = None,
) -> list[tuple[str, int]]:
    """(label, round) of every rate one fine-tune runs (``disease`` as in paths): its grid
    (round 0; ``deepauc.config.rates.rate_labels``), then, where the grid may grow, one rate
    per round past the edge the round's choice lay on, until a choice lies inside or
    ``grid_extensions`` rounds were added. ``rounds`` stops the walk after that many rounds
    (the rates a round's search sees)."""
    labels = rate_labels(section, method, architecture, seed, seeds)
    rates = [(label, 0) for label in labels]
    if not searches_rates(section, method, architecture, seed, seeds):
        return rates
    last = int(section["grid_extensions"]) if rounds is None else rounds
    for done in range(last):
        chosen = chosen_after(architecture, seed, method, disease, done)
        extra = grid_extension([rate_of_label(label) for label, _ in rates], chosen)
        if extra is None:
            break
        rates.append((lr_label(extra), done + 1))
    return rates


def finetune_runs(config: dict, chosen_after: ChosenAfter) -> list[FinetuneRun]:
    """Every fine-tune run of ``config`` (PESG modes resolved:
    ``deepauc.config.rates.resolve_pesg_modes``), grown grids included, in the order
    architecture, seed, method, disease, rate."""
    section = config["finetune"]
    return [
        FinetuneRun(arch, int(seed), method, disease, label, round)
        for arch in config["architectures"]
        for seed in config["seeds"]
        for method in section["methods"]
        for disease in config["diseases"]
        for label, round in searched_rates(
            section, arch, int(seed), method, slug(disease), config["seeds"], chosen_after
        )
    ]


def run_of_history(path: str | Path) -> FinetuneRun | None:
    """The run a ``.../models/<architecture>/seed<k>/<method>/lr<label>/<disease>.history.csv``
    holds (its disease as the path's slug), or None for any other file (a chosen model's
    history, a warm-up's)."""
    parts = Path(path).parts
    if len(parts) < 5 or not parts[-1].endswith(".history.csv"):
        return None
    arch, seed, method, rate_folder = parts[-5:-1]
    if not (rate_folder.startswith("lr") and seed.removeprefix("seed").isdigit()):
        return None
    if len(parts) >= 6 and parts[-6] != "models":
        return None
    label = rate_folder.removeprefix("lr")
    if label != CHOSEN_RATE:
        try:
            rate_of_label(label)
        except ValueError:
            return None
    disease = parts[-1].removesuffix(".history.csv")
    return FinetuneRun(arch, int(seed.removeprefix("seed")), method, disease, label)
