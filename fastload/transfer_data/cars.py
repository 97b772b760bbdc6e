"""Stanford Cars with its devkit: devkit/cars_meta.mat ("class_names", label order), devkit/cars_train_annos.mat
and cars_test_annos_withlabels.mat (at the top or in devkit/), each an "annotations" struct array with fname,
class (1-based), bbox_x1..bbox_y2; images in cars_train/ and cars_test/. Splits as published (8,144 / 8,041).
Whole images by default (Kornblith et al. 2019 do not crop); option `box=true` crops to the annotated box (1-based
inclusive, as FGVC-Aircraft's). Top-1 accuracy."""
from pathlib import Path

import numpy as np

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, load_mat, need_file, parse_flag

NEEDS = ("devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat and the images in "
         "cars_train/, cars_test/ (Stanford Cars)")
FIELDS = ("fname", "class", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def read_annotations(path, folder: str, num_classes: int, box: bool) -> list:
    records = np.atleast_1d(load_mat(path, ["annotations"])["annotations"])
    samples = []
    for i, rec in enumerate(records):
        missing = [f for f in FIELDS if not hasattr(rec, f)]
        if missing:
            raise DataError(f"{path}: annotation {i + 1} has no field {missing[0]!r}")
        label = int(getattr(rec, "class")) - 1
        if not 0 <= label < num_classes:
            raise DataError(f"{path}: annotation {i + 1} has class {label + 1}, outside 1..{num_classes}")
        crop = None
        if box:
            x1, y1, x2, y2 = (int(getattr(rec, f)) for f in FIELDS[2:])
            crop = (x1 - 1, y1 - 1, x2, y2)
        samples.append(Sample(f"{folder}/{rec.fname}", label, crop))
    return samples


def read_cars(root, box="false") -> Listing:
    """The Stanford Cars listing (196 classes): train, test."""
    root = Path(root)
    box = parse_flag("cars", "box", box)
    classes = tuple(str(n) for n in np.atleast_1d(
        load_mat(need_file(root, "devkit/cars_meta.mat", NEEDS), ["class_names"])["class_names"]))
    test_annos = root / "cars_test_annos_withlabels.mat"
    if not test_annos.is_file():
        test_annos = need_file(root, "devkit/cars_test_annos_withlabels.mat", NEEDS)
    lists = {"train": (need_file(root, "devkit/cars_train_annos.mat", NEEDS), "cars_train"),
             "test": (test_annos, "cars_test")}
    splits = {}
    for split, (path, folder) in lists.items():
        splits[split] = read_annotations(path, folder, len(classes), box)
        check_images_exist(root, splits[split], path)
    return Listing("cars", classes, splits, "top1")


CARS = Layout("cars", read_cars, NEEDS, "top1", options={"box": "false"})
