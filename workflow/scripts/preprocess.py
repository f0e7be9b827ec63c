"""Rule preprocess: CheXpert CSVs to validated train/val/test split files and a label audit."""

from deepauc.config.settings import preprocess_settings
from deepauc.data.preprocess import prepare_splits, write_splits
from deepauc.jobs.logs import logged_to

with logged_to(snakemake.log[0]):
    splits = prepare_splits(
        snakemake.input.train,
        snakemake.input.test,
        data_root=snakemake.params.data_root,
        dataset_dir=snakemake.params.dataset_dir,
        settings=preprocess_settings(dict(snakemake.params.items()), snakemake.threads),
    )
    write_splits(splits, dict(snakemake.output.items()))
