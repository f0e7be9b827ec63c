"""Write a CheXpert-format JPEG tree of synthetic phantoms (CheXpert-v1.0-small/train.csv,
valid.csv, train/patient*/study*/view*_frontal.jpg, ...) of about ``--images`` images, for a
rehearsal of the real data path (check_images, cache) at scale:

    python bench/chexpert_tree.py --root /data/rehearsal --images 50000 --workers 16

then ``deepauc init <folder> --data-root /data/rehearsal``. Images are
rendered with ``deepauc.data.synth`` in worker processes; the CSVs are written last, so a tree
without its CSVs is an interrupted one (rerun to start over).
"""

import argparse
import logging
import sys

from deepauc.data.synth import SynthSpec, generate_dataset

IMAGES_PER_PATIENT = 2.3  # the cohort's mean (2 studies, 15% with a lateral view)
VALID_PATIENTS = 200  # CheXpert's valid.csv has 200 studies: the test split


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument(
        "--render-size",
        type=int,
        help="render at this side and resize to --size (4.6x faster at 128 for 256)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    spec = SynthSpec(
        n_train_patients=max(1, round(args.images / IMAGES_PER_PATIENT) - VALID_PATIENTS),
        n_valid_patients=VALID_PATIENTS,
        image_size=(args.render_size or args.size,) * 2,
        seed=args.seed,
    )
    cohort = generate_dataset(
        args.root, spec, workers=args.workers, saved_size=(args.size, args.size)
    )
    logging.info("%d images under %s", len(cohort), args.root)


if __name__ == "__main__":
    main()
