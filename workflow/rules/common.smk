import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# This checkout (Snakefile, library, schemas), also where the workflow is used as a module from a
# user's own Snakefile: workflow.basedir is then the user's folder, this file's folder is ours.
REPO = os.path.abspath(os.path.join(workflow.current_basedir, "..", ".."))

# The workflow and its jobs use this checkout's library, also where another deepauc is
# installed (an editable install of another checkout, an older release) or none is (a plain
# checkout, `--sdm conda` environments). Jobs run in Python processes of their own, which put
# the PYTHONPATH ahead of installed packages; Snakemake only appends its own path to theirs.
LIBRARY = os.path.join(REPO, "src")
sys.path.insert(0, LIBRARY)
os.environ.update(
    PYTHONPATH=os.pathsep.join([LIBRARY, *filter(None, [os.environ.get("PYTHONPATH")])])
)

import copy
import functools
import glob
import hashlib
import re
import shutil

import yaml

from deepauc.atomic import check_writable
from deepauc.data.chexpert import slug
from deepauc.errors import InputError
from deepauc.jobs.parallelism import job_parallelism
from deepauc.methods import CONTROL, WARMUP
from deepauc.config.checks import (
    RESULTS,
    check_known_keys,
    check_mappings_given_as_mappings,
    check_synthetic_stays_in_results,
    outside_results,
    strict_schema,
)
from deepauc.config.experiment import ACCEPT, claim_results, experiment_of
from deepauc.config.layers import key_origin, shown_path
from deepauc.config.layers import resolve as resolve_config
from deepauc.data.locate import check_dataset_files
from deepauc.models.normalization import auto_modes, describe as describe_normalization
from deepauc.models.normalization import normalization_index
from deepauc.models.timm_index import check_architectures, model_index
from deepauc.models.weights import check_pretrained
from deepauc.config.settings import (
    check_training_config,
    finetune_params,
    preprocess_settings,
    synth_spec,
    warmup_section,
)
from deepauc.config.rates import CHOSEN_RATE, rate_of_label, resolve_pesg_modes
from deepauc.config.runs import FinetuneRun, method_folder, warmup_history, warmup_model
from deepauc.config.runs import image_cache as image_cache_of
from deepauc.config.runs import finetune_runs as finetune_runs_of
from deepauc.config.runs import searched_rates as searched_rates_of


def known_auto_modes(archs):
    """PESG's mode for each of ``archs`` from its normalization, once the names are known to
    be timm's (an unknown one is refused as such, not as a network that failed to build).
    """
    index = model_index()
    if index is not None:
        check_architectures(archs, index["models"])
    return auto_modes(archs)


def config_base():
    """The Snakefile's config: config/config.yaml of the working directory, else of this
    checkout (a run in another folder, --directory)."""
    here = os.path.join("config", "config.yaml")
    return here if os.path.exists(here) else os.path.join(REPO, here)


# The config is made again from its files, as overlays (deepauc.config.layers): a config that
# names its base with `extends:` stands on that, not on the quick start, and an empty mapping
# clears the one below it. Snakemake's own merge knows neither.
try:
    RESOLVED, CONFIG_FILES = resolve_config(
        config_base(),
        workflow.config_settings.configfiles,
        dict(workflow.config_settings.config),
    )
except InputError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(RESOLVED)
# What results/ is an experiment of is read from the config as its files give it (before the
# PESG modes are resolved from the installed timm).
EXPERIMENT_CONFIG = copy.deepcopy(RESOLVED)

# Fail at parse time with the config key to fix, before any job starts.
try:
    with open(os.path.join(REPO, "workflow", "schemas", "config.schema.yaml")) as f:
        SCHEMA = yaml.safe_load(f)
    check_mappings_given_as_mappings(config, SCHEMA)
    check_known_keys(config, strict_schema(SCHEMA))
except InputError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema="../schemas/config.schema.yaml")
try:
    PREPROCESS_SETTINGS = preprocess_settings(config)
    SYNTHETIC = config["synthetic"]["enabled"]
    if SYNTHETIC:
        synth_spec(config)
        check_synthetic_stays_in_results(config)
    if not workflow.dryrun:
        check_writable("results")
    # Whether a GPU is here is asked of the NVIDIA driver's tool, not of torch: importing torch
    # while parsing costs seconds. The contradictions of the keys are refused here already.
    GPU_HERE = shutil.which("nvidia-smi") is not None
    job_parallelism(config, gpu_here=GPU_HERE)
    # PESG's mode per architecture where it is auto, from how the built network normalizes
    # (listed once per timm version by a subprocess, so planning never imports timm).
    config["finetune"], AUTO_MODES = resolve_pesg_modes(
        config["finetune"], config["architectures"], known_auto_modes
    )
    check_training_config(config)
except InputError as err:
    raise WorkflowError(str(err)) from None


# What the run is made of, said once by the main process (dry runs too; jobs parse this again).
if workflow.is_main_process:
    logger.info("config: " + " < ".join(os.path.relpath(f) for f in CONFIG_FILES))
    if AUTO_MODES:
        auto = sorted({arch for arch, _ in AUTO_MODES})
        index = normalization_index(auto)
        for arch in auto:
            logger.info(describe_normalization(arch, index[arch]))

SPLITS = ["train", "val", "test"]
ARCHITECTURES = config["architectures"]
SEEDS = config["seeds"]
# The fine-tune methods to run (each a registry entry of deepauc.methods, checked above).
METHODS = config["finetune"]["methods"]
# The warm-up model is scored too: the baseline every fine-tune starts from.
EVAL_METHODS = [WARMUP] + METHODS
DISEASE_BY_SLUG = {slug(d): d for d in config["diseases"]}
# "ensemble" averages every architecture; config may name further subsets. Each is also made
# with its members weighted on val: "<name>-selected" (rule select_ensemble).
ENSEMBLES = {"ensemble": ARCHITECTURES, **config["ensemble"]["subsets"]}
SELECTED = "-selected"
SELECTED_ENSEMBLES = [name + SELECTED for name in ENSEMBLES]
PREDICTORS = ARCHITECTURES + list(ENSEMBLES) + SELECTED_ENSEMBLES
# Every ensemble predictor and its members (the val-weighted ones as their plain ones).
ENSEMBLE_MEMBERS = {
    **ENSEMBLES,
    **{name + SELECTED: members for name, members in ENSEMBLES.items()},
}


def code_digest(paths):
    """A short digest of the files' contents."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


# Plot rules take a digest of the plotting code and the method registry (labels, colours) as a
# param, so editing them reruns the plots and nothing else. A digest of their content, not
# their paths: a copied or moved results folder (or checkout) reruns nothing.
PLOTS_CODE = code_digest(
    [
        *(
            os.path.join(REPO, "src", "deepauc", *name.split("/"))
            for name in (
                "evaluation/plots.py",
                "evaluation/clinical_plots.py",
                "data/examples.py",
                "deploy/saliency.py",
            )
        ),
        *sorted(glob.glob(os.path.join(REPO, "src", "deepauc", "methods", "*.py"))),
    ]
)


def jobs_go_to_a_cluster():
    """Whether the jobs being planned run on a cluster (SLURM): a remote executor, a job of it
    on its node, or a dry run planned for one. Known only once jobs are planned, not while
    the Snakefile is parsed. A dry run plans with Snakemake's dry-run executor, and only the
    execution settings show the executor asked for: Snakemake waits on a remote executor's
    jobs in threads, on a local one's in processes."""
    if workflow.non_local_exec or workflow.remote_exec:
        return True
    return workflow.dryrun and workflow.execution_settings.use_threads


def parallelism():
    """(GPUs, DDP processes) of each training job (deepauc.jobs.parallelism): resources, not
    params, since where a job runs does not change what it computes."""
    try:
        return job_parallelism(
            config, gpu_here=GPU_HERE, on_cluster=jobs_go_to_a_cluster()
        )
    except InputError as err:
        raise WorkflowError(str(err)) from None


def training_gpus(wildcards):
    return parallelism()[0]


def training_processes(wildcards):
    return parallelism()[1]


def scoring_gpus(wildcards):
    """Scoring the test split is one process on at most one GPU."""
    return min(parallelism()[0], 1)


def check_showcase_method():
    method = config["figures"]["showcase_method"]
    if method not in EVAL_METHODS:
        raise WorkflowError(
            f"config key figures.showcase_method: {method!r} is not scored in this run.\n"
            f"Fix: use one of {', '.join(EVAL_METHODS)}."
        )


check_showcase_method()


CONDA_ENV = os.path.join(REPO, "envs", "deepauc.yaml")


def check_outputs_stay_in_results(rules):
    """Refuse an output, log or benchmark outside results/: a user's data is read-only to us."""
    for each in rules:
        benchmark = [each.benchmark] if each.benchmark else []
        for path in [*each.output, *each.log, *benchmark]:
            if outside_results(str(path), RESULTS):
                raise WorkflowError(
                    f"{each.name} would write {path}, outside {RESULTS}/.\n"
                    f"Fix: outputs, logs and benchmarks belong under {RESULTS}/; for "
                    "synthesize_dataset, set data_root to a folder under results/."
                )


def use_one_conda_env(rules):
    """Give each of `rules` the workflow's one conda environment: named once here, instead of
    a conda directive repeated in each (this sets the same attribute as that directive).
    """
    for each in rules:
        each.conda_env = CONDA_ENV


def check_ensembles():
    for name, members in ENSEMBLES.items():
        unknown = [m for m in members if m not in ARCHITECTURES]
        taken = name in ARCHITECTURES or name in SELECTED_ENSEMBLES
        if taken or unknown or not members:
            raise WorkflowError(
                f"config key ensemble.subsets.{name}: not a usable subset of the "
                f"architectures {ARCHITECTURES} (members not run: {unknown}).\n"
                "Fix: in your overlay, `ensemble: {subsets: {}}` drops the subsets of the "
                "configs below it (an empty mapping clears one), or give each subset a new "
                f"name (not ending in {SELECTED!r}: that names the val-weighted one) and a "
                "list of the architectures you run."
            )


check_ensembles()


wildcard_constraints:
    seed=r"\d+",
    split="|".join(SPLITS),
    size=r"\d+",
    method="|".join(EVAL_METHODS),
    disease="|".join(DISEASE_BY_SLUG),
    arch="|".join(ARCHITECTURES),
    ensemble="|".join(ENSEMBLES),
    predictor="|".join(PREDICTORS),
    lr=rf"[0-9][0-9.e+-]*|{CHOSEN_RATE}",  # a rate as lr_label writes it, or "chosen"
    round=r"\d+",


def image_cache(split):
    """The split's decoded images at the training size (see deepauc.data.cache)."""
    return image_cache_of(split, config["image_size"])


def disease_name(wildcards):
    return DISEASE_BY_SLUG[wildcards.disease]


def finetune_settings(wildcards):
    """The fine-tune settings one job depends on: the shared keys and its method's section (with
    its architecture's overrides) at the job's rate. Another method's settings are not in them,
    so changing those reruns nothing here."""
    return finetune_params(
        config["finetune"],
        wildcards.method,
        wildcards.arch,
        # None for "chosen": the job runs at the first seed's choice (its rates.csv)
        rate_of_label(wildcards.lr),
    )


def chosen_rates(wildcards):
    """For a run at the first seed's choice, the first seed's selection (its rates.csv)."""
    if wildcards.lr != CHOSEN_RATE:
        return []
    folder = method_folder(wildcards.arch, SEEDS[0], wildcards.method)
    return f"{folder}/{wildcards.disease}.rates.csv"


def checkpoint_choice(arch, seed, method, disease, round):
    """The rate search round ``round`` chose (its checkpoint's table): a grown grid's next
    jobs are planned once that round's runs have finished."""
    # imported here: only a run that grows grids reads these tables (pandas takes a while)
    from deepauc.evaluation.diagnostics import chosen_rate

    search = checkpoints.search_rates.get(
        arch=arch, seed=seed, method=method, disease=disease, round=round
    ).output[0]
    return chosen_rate(search)


def searched_rates(arch, seed, method, disease, rounds=None):
    """(path label, round) of every rate one fine-tune ran (deepauc.config.runs)."""
    return searched_rates_of(
        config["finetune"],
        arch,
        int(seed),
        method,
        disease,
        SEEDS,
        checkpoint_choice,
        rounds,
    )


def rate_runs(wildcards, rounds=None):
    """The models and histories of the rates a fine-tune ran (or a search round saw)."""
    disease = DISEASE_BY_SLUG[wildcards.disease]
    runs = [
        FinetuneRun(
            wildcards.arch, int(wildcards.seed), wildcards.method, disease, label
        )
        for label, _ in searched_rates(
            wildcards.arch, wildcards.seed, wildcards.method, wildcards.disease, rounds
        )
    ]
    return {
        "models": [run.model for run in runs],
        "histories": [run.history for run in runs],
    }


def round_runs(wildcards):
    """What search round k sees: the grid and the rates rounds 1..k added."""
    return {"histories": rate_runs(wildcards, int(wildcards.round))["histories"]}


def round_rates(wildcards):
    return searched_rates(
        wildcards.arch,
        wildcards.seed,
        wildcards.method,
        wildcards.disease,
        int(wildcards.round),
    )


def final_rates(wildcards):
    return searched_rates(
        wildcards.arch, wildcards.seed, wildcards.method, wildcards.disease
    )


def dataset_file(name):
    """A file of the dataset folder; an absolute `name` stands for itself."""
    return os.path.join(config["data_root"], config["dataset_dir"], name)


TRAIN_CSV = dataset_file(config["train_csv"])
TEST_CSV = dataset_file(config["test_csv"])


if SYNTHETIC and (config["train_csv"], config["test_csv"]) != (
    "train.csv",
    "valid.csv",
):
    raise WorkflowError(
        "the synthetic dataset is written as train.csv and valid.csv.\n"
        "Fix: leave train_csv and test_csv at their defaults while synthetic.enabled is true."
    )
if not SYNTHETIC:
    # Missing CSVs: what was looked for, what the folder holds, where they are if near.
    try:
        check_dataset_files(
            config["data_root"],
            config["dataset_dir"],
            {key: config[key] for key in ("train_csv", "test_csv")},
            key_origin(
                "data_root", CONFIG_FILES, dict(workflow.config_settings.config)
            ),
        )
    except InputError as err:
        raise WorkflowError(str(err)) from None


def made_with():
    """The config files and --config keys of this command, as a user would type them."""
    overrides = workflow.config_settings.config
    return [shown_path(f) for f in CONFIG_FILES] + [
        f"--config {key}={value}" for key, value in overrides.items()
    ]


def record_when_jobs_start(claim, previous):
    """An onstart hook that writes the experiment's record, then runs ``previous``: only a
    command that starts jobs writes it, never a dry run, a report or a refused plan."""

    def onstart(log):
        claim.write()
        logger.info(claim.note)
        previous(log)

    return onstart


# A results folder belongs to one experiment: a command whose data or protocol differs from
# what results/experiment.yaml records is refused here, before anything runs. Snakemake runs
# the onstart hook of the main Snakefile only, so the hook is set on the workflow itself: it
# then also runs where this workflow is a module of a user's folder.
if workflow.is_main_process:
    try:
        CLAIM = claim_results(
            experiment_of(
                EXPERIMENT_CONFIG,
                None if SYNTHETIC else {"train_csv": TRAIN_CSV, "test_csv": TEST_CSV},
            ),
            made_with(),
            accept=config[ACCEPT] in (True, "true"),
        )
    except InputError as err:
        raise WorkflowError(str(err)) from None
    if CLAIM:
        workflow._onstart = record_when_jobs_start(CLAIM, workflow._onstart)


def starting_weights(wildcards):
    """The warm-up's `pretrained` setting. Planning a warm-up that has not run yet (dry runs
    included) checks first that it can start: every architecture is a timm model, and the
    weights it starts from are there (a file that holds weights, or the hub in reach).
    """
    model = warmup_model(wildcards.arch, wildcards.seed)
    if not os.path.exists(model):
        check_warmup_can_start(wildcards.arch)
    return config["pretrained"]


@functools.cache  # once per architecture: the hub is asked once
def check_warmup_can_start(arch):
    try:
        # timm's names, listed once per timm version (without importing timm here)
        index = model_index()
        if index is not None:
            check_architectures(ARCHITECTURES, index["models"])
        check_pretrained(config["pretrained"], [arch], index)
    except InputError as err:
        raise WorkflowError(str(err)) from None


def data_root(wildcards):
    """The folder CSV Path values are relative to. The images themselves are not declared as
    inputs (CheXpert has 224,000 of them); the CSVs that name them are."""
    return config["data_root"]


def model_files(wildcards):
    """The model(s) one predict job scores: the warm-up, or the disease models of a method."""
    models = leaf_plan(wildcards.arch, wildcards.seed, wildcards.method)["models"]
    return list(dict.fromkeys(models.values()))


def ensemble_members(wildcards):
    """The members' val and test tables, in the configured order."""
    return {
        split: expand(
            "results/predictions/{arch}/seed{seed}/{method}{suffix}.csv",
            arch=ENSEMBLES[wildcards.ensemble],
            seed=wildcards.seed,
            method=wildcards.method,
            suffix=suffix,
        )
        for split, suffix in (("val", ".val"), ("test", ""))
    }


def final_table(predictor, method, split="test"):
    """The prediction table the summary reads (of the test split, or of val): the seed ensemble
    where several seeds run."""
    suffix = ".val" if split == "val" else ""
    if len(SEEDS) == 1:
        return f"results/predictions/{predictor}/seed{SEEDS[0]}/{method}{suffix}.csv"
    return f"results/predictions/{predictor}/seeds/{method}{suffix}.csv"


SUMMARY_KEYS = [(p, m) for p in PREDICTORS for m in EVAL_METHODS]
SUMMARY_TABLES = [final_table(p, m) for p, m in SUMMARY_KEYS]
SUMMARY_VAL_TABLES = [final_table(p, m, "val") for p, m in SUMMARY_KEYS]
# The final tables whose scores are percentile ranks, not logits (ensemble.combine: rank).
RANK_SCORED = [
    (p, m)
    for p, m in SUMMARY_KEYS
    if config["ensemble"]["combine"] == "rank"
    and (p not in ARCHITECTURES or len(SEEDS) > 1)
]
# The weights each val-weighted ensemble chose, per seed and method.
WEIGHT_KEYS = [
    (e, m, s) for e in SELECTED_ENSEMBLES for m in EVAL_METHODS for s in SEEDS
]
WEIGHT_TABLES = [
    f"results/predictions/{e}/seed{s}/{m}.weights.csv" for e, m, s in WEIGHT_KEYS
]
SEED_KEYS = [(p, m, s) for p in PREDICTORS for m in EVAL_METHODS for s in SEEDS]
SEED_TABLES = [f"results/predictions/{p}/seed{s}/{m}.csv" for p, m, s in SEED_KEYS]
SEED_VAL_TABLES = [
    f"results/predictions/{p}/seed{s}/{m}.val.csv" for p, m, s in SEED_KEYS
]
ROC_KEYS = [(p, m) for p in PREDICTORS for m in METHODS]
ROC_TABLES = [final_table(p, m) for p, m in ROC_KEYS]


def reliability_tables(wildcards):
    """The showcase predictor's final test table of each fine-tune method."""
    predictor = config["figures"]["showcase_predictor"]
    return {"tables": [final_table(predictor, method) for method in METHODS]}


def training_histories(wildcards):
    """The chosen model's history of every seed, method and disease (select_lr's), and the
    warm-ups'."""
    return {
        "warmup": [warmup_history(wildcards.arch, seed) for seed in SEEDS],
        "finetune": [
            f"{method_folder(wildcards.arch, seed, method)}/{disease}.history.csv"
            for seed in SEEDS
            for method in METHODS
            for disease in DISEASE_BY_SLUG
        ],
    }


def finetune_runs():
    """Every fine-tune job's (architecture, seed, method, disease, rate label) and history,
    grown grids included (deepauc.config.runs.finetune_runs)."""
    runs = finetune_runs_of(config, checkpoint_choice)
    return [run.key for run in runs], [run.history for run in runs]


# Every warm-up's history, and its (architecture, seed).
WARMUP_KEYS = [(arch, seed) for arch in ARCHITECTURES for seed in SEEDS]
WARMUP_HISTORIES = [warmup_history(arch, seed) for arch, seed in WARMUP_KEYS]
FINETUNE_HISTORY_KEYS = [
    (m, DISEASE_BY_SLUG[d], s) for s in SEEDS for m in METHODS for d in DISEASE_BY_SLUG
]


def figure(name):
    return [f"results/figures/{name}.png", f"results/figures/{name}.svg"]


def default_targets():
    targets = [
        "results/summary.csv",
        "results/comparison.csv",
        "results/verdict.md",
        "results/calibration.csv",
        "results/ensemble_weights.csv",
        "results/subgroups.csv",
        "results/diagnostics.csv",
    ]
    targets.append("results/data/label_audit.csv")
    if SYNTHETIC:
        targets.append("results/data/synthetic_examples.png")
    if len(SEEDS) > 1:
        targets.append("results/seeds.csv")
    targets += figure("auc_by_architecture") + figure("showcase_grid")
    targets += figure("reliability") + figure("subgroups")
    targets += expand("results/figures/roc_{disease}.png", disease=DISEASE_BY_SLUG)
    targets += expand("results/figures/training_{arch}.png", arch=ARCHITECTURES)
    # Using the models (use.smk): the model card, Grad-CAM figures, configured image sets.
    targets.append("results/model_card.md")
    targets += expand("results/figures/saliency_{arch}.png", arch=ARCHITECTURES)
    targets += expand("results/inference/{name}.csv", name=IMAGE_SETS)
    return targets


# Using the models (use.smk): which predictors are exported, described and score image sets.
INFERENCE = config["inference"]
# Empty (the default), they follow the showcase figures': a run of other methods needs no
# edit here.
INFERENCE_PREDICTORS = INFERENCE.get("predictors") or [
    config["figures"]["showcase_predictor"]
]
INFERENCE_METHODS = INFERENCE.get("methods") or [config["figures"]["showcase_method"]]
INFERENCE_KEYS = [(p, m) for p in INFERENCE_PREDICTORS for m in INFERENCE_METHODS]
IMAGE_SETS = INFERENCE.get("image_sets", {})


def check_inference_keys():
    for predictor, method in INFERENCE_KEYS:
        if predictor not in PREDICTORS or method not in EVAL_METHODS:
            raise WorkflowError(
                f"config key inference: {predictor!r} with {method!r} is not trained in this "
                "run.\nFix: name predictors among "
                f"{', '.join(PREDICTORS)} and methods among {', '.join(EVAL_METHODS)}."
            )
    for name, spec in IMAGE_SETS.items():
        if ("csv" in spec) == ("folder" in spec) or not re.fullmatch(r"[\w.-]+", name):
            raise WorkflowError(
                f"config key inference.image_sets.{name}: give a csv (a file with a Path "
                "column) or a folder of images, under a name of letters, digits, _ . -.\n"
                "Fix: e.g. `ward_a: {csv: /data/ward_a.csv, root: /data}` or "
                "`incoming: {folder: /data/incoming}`."
            )


check_inference_keys()


wildcard_constraints:
    # the configured names only: "ward.skipped" is not an image set of its own
    image_set="|".join(re.escape(name) for name in IMAGE_SETS) or "(?!)",


def leaf_plan(arch, seed, method):
    """One seed's disease models of an architecture (the warm-up's one model for all)."""
    if method == WARMUP:
        model = warmup_model(arch, seed)
        models = {name: model for name in DISEASE_BY_SLUG.values()}
    else:
        folder = method_folder(arch, seed, method)
        models = {name: f"{folder}/{s}.pt" for s, name in DISEASE_BY_SLUG.items()}
    return {"name": f"{arch}/seed{seed}", "models": models}


def seed_plan(predictor, seed, method):
    """What one seed's predictor averages, as the ensemble rules average it."""
    if predictor in ARCHITECTURES:
        return leaf_plan(predictor, seed, method)
    members = ENSEMBLE_MEMBERS[predictor]
    weights = None
    if predictor.endswith(SELECTED):
        weights = f"results/predictions/{predictor}/seed{seed}/{method}.weights.csv"
    return {
        "name": f"{predictor}/seed{seed}",
        "combine": config["ensemble"]["combine"],
        "members": [leaf_plan(arch, seed, method) for arch in members],
        "val_tables": [
            f"results/predictions/{arch}/seed{seed}/{method}.val.csv"
            for arch in members
        ],
        "weights": weights,
    }


def predictor_plan(predictor, method):
    """The predictor the summary scores (deepauc.deploy.predictor): the seed ensemble where
    several seeds run."""
    if len(SEEDS) == 1:
        return seed_plan(predictor, SEEDS[0], method)
    return {
        "name": f"{predictor}/seeds",
        "combine": config["ensemble"]["combine"],
        "members": [seed_plan(predictor, seed, method) for seed in SEEDS],
        "val_tables": [
            f"results/predictions/{predictor}/seed{seed}/{method}.val.csv"
            for seed in SEEDS
        ],
        "weights": None,
    }


def plan_files(plan):
    """Every model and table a plan reads."""
    if "models" in plan:
        return sorted(set(plan["models"].values()))
    files = list(plan["val_tables"]) + ([plan["weights"]] if plan["weights"] else [])
    for member in plan["members"]:
        files += plan_files(member)
    return sorted(set(files))


def export_inputs(wildcards):
    return {
        "plan_files": plan_files(predictor_plan(wildcards.predictor, wildcards.method)),
        "final_val": final_table(wildcards.predictor, wildcards.method, "val"),
        "test": "results/data/test.csv",
        "test_cache": image_cache("test"),
    }


def export_folder(predictor, method):
    return f"results/export/{predictor}/{method}"


EXPORT_FILES = [
    "card.json",
    "weights.safetensors",
    "predictor.torchscript.pt",
    "parity.csv",
]


def image_set_inputs(wildcards):
    spec = IMAGE_SETS[wildcards.image_set]
    return {
        "cards": [f"{export_folder(p, m)}/card.json" for p, m in INFERENCE_KEYS],
        "weights": [
            f"{export_folder(p, m)}/weights.safetensors" for p, m in INFERENCE_KEYS
        ],
        "csv": [spec["csv"]] if "csv" in spec else [],
    }


def saliency_inputs(wildcards):
    method = config["figures"]["showcase_method"]
    plan = leaf_plan(wildcards.arch, SEEDS[0], method)
    return {
        "showcase": final_table(config["figures"]["showcase_predictor"], method),
        "table": f"results/predictions/{wildcards.arch}/seed{SEEDS[0]}/{method}.csv",
        "models": [plan["models"][d] for d in DISEASE_BY_SLUG.values()],
    }
