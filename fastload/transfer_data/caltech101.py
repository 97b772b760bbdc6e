"""Caltech-101 (the folder `101_ObjectCategories`): one folder of images per category. The dataset has no
official split; the usual one, which Kornblith et al. 2019 (Table A1: 102 classes, 3,060 train = 30 x 102) use,
draws 30 training images per category at random and tests on all the rest. The 102 categories include
BACKGROUND_Google in their count; option `background=exclude` drops it (101 classes, the other common choice).
Option `train_per_class` (default 30) and `seed` (default 0) fix the draw. Mean per-class accuracy."""
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .layout import Layout, Listing, Sample

NEEDS = "one folder of .jpg images per category (Caltech-101's 101_ObjectCategories)"
BACKGROUND = "BACKGROUND_Google"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_caltech101(root, train_per_class=30, seed=0, background="include") -> Listing:
    """The Caltech-101 listing: `train_per_class` random images per category (seeded) for train, the rest test."""
    root, train_per_class, seed = Path(root), int(train_per_class), int(seed)
    if background not in ("include", "exclude"):
        raise UsageError(f"caltech101 background {background!r}: choose include or exclude")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: it must hold {NEEDS}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if background == "exclude":
        classes = [c for c in classes if c != BACKGROUND]
    if not classes:
        raise DataError(f"{root} has no category folders: it must hold {NEEDS}")
    rng = np.random.default_rng(seed)
    splits = {"train": [], "test": []}
    for label, name in enumerate(classes):
        files = sorted(f.name for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) <= train_per_class:
            raise DataError(f"{root / name} has {len(files)} images: the split needs more than "
                                f"train_per_class={train_per_class}")
        chosen = set(rng.permutation(len(files))[:train_per_class].tolist())
        for i, f in enumerate(files):
            splits["train" if i in chosen else "test"].append(Sample(f"{name}/{f}", label))
    return Listing("caltech101", tuple(classes), splits, "mean_class_acc")


CALTECH101 = Layout("caltech101", read_caltech101, NEEDS, "mean_class_acc",
                    options={"train_per_class": 30, "seed": 0, "background": "include"})
