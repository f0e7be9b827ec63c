if SYNTHETIC:

    rule synthesize_dataset:
        output:
            train=TRAIN_CSV,
            test=TEST_CSV,
            truth=dataset_file("synthetic_truth.csv"),
        log:
            "results/logs/synthesize_dataset.log",
        benchmark:
            "results/benchmarks/synthesize_dataset.tsv"
        threads: 16
        params:
            synthetic=config["synthetic"],
        script:
            "../scripts/synthesize_dataset.py"


rule preprocess:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
    output:
        train="results/data/train.csv",
        val="results/data/val.csv",
        test="results/data/test.csv",
        audit="results/data/label_audit.csv",
        skipped="results/data/skipped_images.csv",
    log:
        "results/logs/preprocess.log",
    benchmark:
        "results/benchmarks/preprocess.tsv"
    threads: 4
    params:
        data_root=data_root,
        dataset_dir=config["dataset_dir"],
        diseases=config["diseases"],
        uncertainty=config["uncertainty"],
        views=config["views"],
        split=config["split"],
        check_images=config["check_images"],
        on_bad_image=config["on_bad_image"],
    script:
        "../scripts/preprocess.py"


# The test images' sex, age and AP/PA, for subgroup evaluation (a table beside the splits).
rule image_groups:
    input:
        test=TEST_CSV,
    output:
        "results/data/test_groups.csv",
    log:
        "results/logs/image_groups.log",
    params:
        data_root=data_root,
        dataset_dir=config["dataset_dir"],
        diseases=config["diseases"],
    script:
        "../scripts/image_groups.py"


# Decode every image once, at the training size: training and scoring read only these files.
rule cache_images:
    input:
        "results/data/{split}.csv",
    output:
        "results/data/cache/{split}_{size}px.npy",
    log:
        "results/logs/cache_images/{split}_{size}px.log",
    benchmark:
        "results/benchmarks/cache_images/{split}_{size}px.tsv"
    threads: 8
    script:
        "../scripts/cache_images.py"


rule plot_synthetic_examples:
    input:
        "results/data/train.csv",
    output:
        report(
            "results/data/synthetic_examples.png",
            caption="../report/synthetic_examples.rst",
            category="Data",
        ),
    log:
        "results/logs/plot_synthetic_examples.log",
    params:
        diseases=config["diseases"],
    script:
        "../scripts/plot_synthetic_examples.py"
