"""The ``deepauc`` command: set-up that comes before Snakemake.

    deepauc init <folder> --data-root <dir> [--trial] [--pretrained <dir>] [--dataset-dir <name>]

writes a working folder of your own for a CheXpert-format dataset (:mod:`deepauc.cli.folder`);
every later step is a plain ``snakemake`` command in that folder.
"""

import argparse
import sys

from deepauc.errors import InputError

NEXT_STEPS = """\
Wrote {folder} ({count} files). Its config/config.yaml is your experiment: edit it before the
first run (every key: config/README.md of this clone). Then, in that folder:
  cd {folder}
  snakemake results/summary.csv -n                            # checks the config, plans the jobs
  snakemake results/summary.csv --cores 16 --resources gpu=2  # trains: two jobs share one GPU
  snakemake --cores 8                                         # figures, model card, its export"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepauc", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser(
        "init",
        help="write a working folder of your own for a CheXpert-format dataset",
        description="Write a working folder (workflow/Snakefile using this checkout's workflow "
        "as a module, config/config.yaml for your experiment, the profiles) for a "
        "CheXpert-format dataset.",
    )
    init.add_argument("folder", help="a new or empty folder")
    init.add_argument(
        "--data-root",
        required=True,
        help="the folder that holds CheXpert-v1.0-small/ (train.csv, valid.csv, train/, valid/)",
    )
    init.add_argument(
        "--dataset-dir",
        default="CheXpert-v1.0-small",
        help="the dataset folder inside --data-root (default: %(default)s; the full release "
        "unpacks into CheXpert-v1.0)",
    )
    init.add_argument(
        "--trial",
        action="store_true",
        help="a small first run: one architecture, one seed, two diseases",
    )
    init.add_argument(
        "--pretrained",
        help="a folder of <architecture>.safetensors, where the model hub cannot be reached",
    )
    args = parser.parse_args(argv)
    from deepauc.cli.folder import make_folder

    try:
        written = make_folder(
            args.folder,
            args.data_root,
            trial=args.trial,
            pretrained=args.pretrained,
            dataset_dir=args.dataset_dir,
        )
    except InputError as err:
        print(f"deepauc init: {err}", file=sys.stderr)
        return 2
    print(NEXT_STEPS.format(folder=written[-1].parents[1], count=len(written)))
    return 0
