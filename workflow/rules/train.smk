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
    conda:
        "../../envs/deepauc.yaml"
    threads: config["train_threads"]
    resources:
        gpu=GPUS_PER_JOB,
    params:
        diseases=config["diseases"],
        image_size=config["image_size"],
        pretrained=config["pretrained"],
        runtime=RUNTIME,
        augment=config["augment"],
        warmup=config["warmup"],
    script:
        "../scripts/warmup.py"


rule finetune:
    input:
        train="results/data/train.csv",
        val="results/data/val.csv",
        train_cache=image_cache("train"),
        val_cache=image_cache("val"),
        warmup="results/models/{arch}/seed{seed}/warmup.pt",
    output:
        model="results/models/{arch}/seed{seed}/{method}/{disease}.pt",
        history="results/models/{arch}/seed{seed}/{method}/{disease}.history.csv",
    log:
        "results/logs/finetune/{arch}/seed{seed}/{method}/{disease}.log",
    benchmark:
        "results/benchmarks/finetune/{arch}/seed{seed}/{method}/{disease}.tsv"
    conda:
        "../../envs/deepauc.yaml"
    threads: config["train_threads"]
    resources:
        gpu=GPUS_PER_JOB,
    params:
        disease=disease_name,
        runtime=RUNTIME,
        augment=config["augment"],
        finetune=config["finetune"],
    script:
        "../scripts/finetune.py"
