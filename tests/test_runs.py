"""Every fine-tune run of a config, and where its files live (deepauc.config.runs)."""

from deepauc.config.rates import CHOSEN_RATE
from deepauc.config.runs import (
    FinetuneRun,
    finetune_runs,
    run_of_history,
)


def _config(grid_extensions=2):
    return {
        "architectures": ["resnet10t"],
        "seeds": [0, 1],
        "diseases": ["Edema", "Pleural Effusion"],
        "finetune": {
            "methods": ["ce"],
            "rate_search": "first_seed",
            "grid_extensions": grid_extensions,
            "ce": {"lr": [1e-4, 3e-4, 1e-3]},
        },
    }


def test_the_runs_are_the_grid_its_extensions_and_the_later_seeds_at_the_choice():
    asked = []

    def chosen_after(arch, seed, method, disease, round):
        asked.append((seed, disease, round))
        # Edema: the lowest rate wins round 0 (the grid grows down), 3e-5 wins round 1 (again
        # down), round 2 would be past the limit. Pleural Effusion: an inner rate, no growth.
        if disease == "edema":
            return {0: 1e-4, 1: 3e-5}[round]
        return 3e-4

    runs = finetune_runs(_config(), chosen_after)
    seed0 = [(r.disease, r.label, r.round) for r in runs if r.seed == 0]
    assert seed0 == [
        ("Edema", "0.0001", 0),
        ("Edema", "0.0003", 0),
        ("Edema", "0.001", 0),
        ("Edema", "3e-05", 1),
        ("Edema", "1e-05", 2),
        ("Pleural Effusion", "0.0001", 0),
        ("Pleural Effusion", "0.0003", 0),
        ("Pleural Effusion", "0.001", 0),
    ]
    assert [(r.disease, r.label) for r in runs if r.seed == 1] == [
        ("Edema", CHOSEN_RATE),
        ("Pleural Effusion", CHOSEN_RATE),
    ]
    # the rounds asked are seed 0's only, and no round past the limit
    assert asked == [(0, "edema", 0), (0, "edema", 1), (0, "pleural_effusion", 0)]
    assert len(finetune_runs(_config(grid_extensions=0), chosen_after)) == 3 * 2 + 2


def test_a_runs_files_and_its_history_path_read_back():
    run = FinetuneRun("convnext_atto", 2, "dam", "Pleural Effusion", "0.0003", round=1)
    assert run.history == (
        "results/models/convnext_atto/seed2/dam/lr0.0003/pleural_effusion.history.csv"
    )
    assert run.model.endswith("/lr0.0003/pleural_effusion.pt") and run.rate == 3e-4
    back = run_of_history(f"/some/run/{run.history}")
    assert back == FinetuneRun("convnext_atto", 2, "dam", "pleural_effusion", "0.0003")
    assert run_of_history("results/models/a/seed1/ce/lrchosen/edema.history.csv").rate is None
    # not a rate's run: a warm-up's history, a chosen model's, a file under another folder
    assert run_of_history("results/models/a/seed0/warmup.history.csv") is None
    assert run_of_history("results/models/a/seed0/ce/edema.history.csv") is None
    assert run_of_history("results/other/a/seed0/ce/lr0.1/edema.history.csv") is None
    assert run_of_history("results/models/a/seed0/ce/lrfast/edema.history.csv") is None
