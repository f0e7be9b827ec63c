"""deepauc: Deep AUC Maximization for chest X-ray classification, as a library.

The Snakemake workflow in this repository is a thin layer over this package; everything here is
importable and testable without Snakemake.
"""

__version__ = "0.1.0"

#: The five CheXpert competition diseases the write-up trains on, in CheXpert's column spelling.
DEFAULT_DISEASES = (
    "Cardiomegaly",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pleural Effusion",
)
