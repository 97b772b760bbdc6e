"""Oxford 102 Flowers: jpg/image_00001.jpg.., imagelabels.mat ("labels": 1..102 per image, in image order) and
setid.mat ("trnid", "valid", "tstid": 1-based image numbers). The official split: 10 train + 10 val images per
class, the rest (6,149) test. Mean per-class accuracy (Kornblith et al. 2019, Table A1)."""
from pathlib import Path

import numpy as np

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, load_mat, need_file

NEEDS = "jpg/image_NNNNN.jpg, imagelabels.mat and setid.mat (Oxford 102 Flowers)"
SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}


def read_flowers102(root) -> Listing:
    """The Flowers listing: train, val, test as setid.mat gives them; class k is "flower_<k+1>"."""
    root = Path(root)
    labels_path, setid_path = need_file(root, "imagelabels.mat", NEEDS), need_file(root, "setid.mat", NEEDS)
    labels = np.atleast_1d(load_mat(labels_path, ["labels"])["labels"]).astype(np.int64)
    if labels.size == 0 or labels.min() < 1:
        raise DataError(f"{labels_path}: 'labels' must be class numbers from 1")
    num_classes = int(labels.max())
    ids = load_mat(setid_path, list(SPLIT_KEYS.values()))
    splits = {}
    for split, key in SPLIT_KEYS.items():
        numbers = np.atleast_1d(ids[key]).astype(np.int64)
        bad = numbers[(numbers < 1) | (numbers > len(labels))]
        if len(bad):
            raise DataError(f"{setid_path}: '{key}' names image {bad[0]}, but imagelabels.mat labels images "
                                f"1..{len(labels)}")
        splits[split] = [Sample(f"jpg/image_{n:05d}.jpg", int(labels[n - 1]) - 1) for n in sorted(numbers)]
        check_images_exist(root, splits[split], setid_path)
    classes = tuple(f"flower_{k:03d}" for k in range(1, num_classes + 1))
    return Listing("flowers102", classes, splits, "mean_class_acc")


FLOWERS102 = Layout("flowers102", read_flowers102, NEEDS, "mean_class_acc")
