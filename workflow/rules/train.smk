# Params hold only what shapes a model, so that changing anything else reruns nothing: how a
# job runs (device, threads, GPUs, compile, ...) reaches the scripts through threads, resources
# and the config (deepauc.config.settings.JobResources).


rule warmup:
    input:
        train="results/data/train.csv",
        val="results/data/val.csv",
        train_cache=image_cache("train"),
        val_cache=image_cache("val"),
    output:
        model="results/models/{arch}/seed{seed}/warmup.pt",
        history="results/models/{arch}/seed{seed}/warmup.history.csv",
    log:
        "results/logs/warmup/{arch}/seed{seed}.log",
    benchmark:
        "results/benchmarks/warmup/{arch}/seed{seed}.tsv"
    threads: config["train_threads"]
    resources:
        gpu=training_gpus,
        ddp_processes=training_processes,
    params:
        diseases=config["diseases"],
        image_size=config["image_size"],
        pretrained=starting_weights,
        augment=config["augment"],
        warmup=lambda wildcards: warmup_section(config["warmup"], wildcards.arch),
    script:
        "../scripts/warmup.py"


# One job per architecture, seed, method, learning rate of the method's grid and disease. A
# job's params are the shared stage-2 keys and its own method's section at its one rate: tuning
# one method reruns that method's models only, and a rate added to a grid adds its jobs only.
# With finetune.rate_search: first_seed, later seeds run once (lr "chosen"), at the rate in the
# first seed's rates.csv: their params hold the grid, their input that choice.
rule finetune:
    input:
        train="results/data/train.csv",
        val="results/data/val.csv",
        train_cache=image_cache("train"),
        val_cache=image_cache("val"),
        warmup="results/models/{arch}/seed{seed}/warmup.pt",
        chosen_rates=chosen_rates,
    output:
        model="results/models/{arch}/seed{seed}/{method}/lr{lr}/{disease}.pt",
        history="results/models/{arch}/seed{seed}/{method}/lr{lr}/{disease}.history.csv",
    log:
        "results/logs/finetune/{arch}/seed{seed}/{method}/lr{lr}/{disease}.log",
    benchmark:
        "results/benchmarks/finetune/{arch}/seed{seed}/{method}/lr{lr}/{disease}.tsv"
    threads: config["train_threads"]
    resources:
        gpu=training_gpus,
        ddp_processes=training_processes,
    params:
        disease=disease_name,
        augment=config["augment"],
        finetune=finetune_settings,
    script:
        "../scripts/finetune.py"


# A grid that may grow (finetune.grid_extensions): after each round of its rates, the rate
# table so far. Where the best rate lies on an edge of the rates tried, the next round adds one
# rate a step past it (deepauc.config.rates.grid_extension), the same rule for every method; the
# workflow plans that job once this table exists.
checkpoint search_rates:
    input:
        unpack(round_runs),
    output:
        "results/models/{arch}/seed{seed}/{method}/search/{disease}.round{round}.csv",
    log:
        "results/logs/search_rates/{arch}/seed{seed}/{method}/{disease}.round{round}.log",
    params:
        rates=round_rates,
    script:
        "../scripts/select_lr.py"


# Per architecture, seed, method and disease: the rate whose model scored best on val (ties
# broken on the best evaluation after step 0: deepauc.evaluation.diagnostics.choose_rate). Its
# model and history become the method's model of the disease; every rate's result, and the
# search round that added it, is kept beside it in the rates table.
rule select_lr:
    input:
        unpack(rate_runs),
    output:
        model="results/models/{arch}/seed{seed}/{method}/{disease}.pt",
        history="results/models/{arch}/seed{seed}/{method}/{disease}.history.csv",
        selection="results/models/{arch}/seed{seed}/{method}/{disease}.rates.csv",
    log:
        "results/logs/select_lr/{arch}/seed{seed}/{method}/{disease}.log",
    params:
        rates=final_rates,
    script:
        "../scripts/select_lr.py"


# One row per fine-tune: the chosen rate and step, val AUC at step 0 and at best, collapse.
rule diagnose:
    input:
        histories=lambda wildcards: finetune_runs()[1],
        audit="results/data/label_audit.csv",
        warmups=WARMUP_HISTORIES,
    output:
        "results/diagnostics.csv",
    log:
        "results/logs/diagnose.log",
    params:
        runs=lambda wildcards: finetune_runs()[0],
        warmup_keys=WARMUP_KEYS,
    script:
        "../scripts/diagnose.py"
