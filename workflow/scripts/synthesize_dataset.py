"""Rule synthesize_dataset: write the embedded synthetic CheXpert under data_root."""

from pathlib import Path

from deepauc.config.settings import synth_spec
from deepauc.data.synth import generate_dataset
from deepauc.jobs.logs import logged_to

# The dataset folder is where the rule's output CSVs go; data_root is the folder above it.
dataset = Path(snakemake.output.train).parent

with logged_to(snakemake.log[0]):
    generate_dataset(
        dataset.parent,
        synth_spec({"synthetic": snakemake.params.synthetic}),
        dataset_dir=dataset.name,
        workers=snakemake.threads,
    )
