"""Rule image_groups: the test images' subgroup columns (sex, age, AP/PA)."""

from deepauc.atomic import write_csv
from deepauc.data.preprocess import image_groups
from deepauc.jobs.logs import logged_to

params = snakemake.params
with logged_to(snakemake.log[0]):
    write_csv(
        image_groups(
            snakemake.input.test, params.data_root, params.dataset_dir, tuple(params.diseases)
        ),
        snakemake.output[0],
    )
