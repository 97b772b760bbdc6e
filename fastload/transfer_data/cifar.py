"""CIFAR-10 and CIFAR-100 from their python pickles: the images are rows of arrays, not files.

CIFAR-10 (the folder `cifar-10-batches-py`): data_batch_1..5 (train), test_batch, batches.meta (label_names).
CIFAR-100 (the folder `cifar-100-python`): train, test, meta (fine_label_names); the fine labels are the classes.
Each batch is a pickled dict with b"data" (N x 3072 uint8: the red, green, blue 32x32 planes, row-major) and
b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100). A sample's path is "<batch file>#<row>"; `load_image`
decodes it (the compiler calls the layout's `load` hook for such samples).
"""
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import need_file

CIFAR10_NEEDS = "data_batch_1..data_batch_5, test_batch and batches.meta (CIFAR-10's cifar-10-batches-py)"
CIFAR100_NEEDS = "train, test and meta (CIFAR-100's cifar-100-python)"
SIDE = 32


def unpickle(path) -> dict:
    """A CIFAR pickle as a dict with str keys; the error names the file."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # a truncated or foreign file: pickle raises many types
        raise DataError(f"{path}: not a CIFAR python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR python pickle (holds a {type(d).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def batch_labels(path, label_key: str, num_classes: int) -> list:
    d = unpickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: no {key!r} entry (it holds {', '.join(sorted(d))})")
    data, labels = np.asarray(d["data"]), [int(x) for x in d[label_key]]
    if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or len(data) != len(labels):
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected ({len(labels)}, {3 * SIDE * SIDE})")
    bad = [i for i, y in enumerate(labels) if not 0 <= y < num_classes]
    if bad:
        raise DataError(f"{path}: row {bad[0]} has label {labels[bad[0]]}, outside 0..{num_classes - 1}")
    return labels


def names(path, key: str) -> tuple:
    d = unpickle(path)
    if key not in d:
        raise DataError(f"{path}: no {key!r} entry (it holds {', '.join(sorted(d))})")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in d[key])


def split_samples(root: Path, files, label_key: str, num_classes: int) -> list:
    out = []
    for name in files:
        labels = batch_labels(root / name, label_key, num_classes)
        out += [Sample(f"{name}#{row}", y) for row, y in enumerate(labels)]
    return out


def read_cifar10(root) -> Listing:
    """The CIFAR-10 listing: train = data_batch_1..5, test = test_batch (top-1)."""
    root = Path(root)
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    for name in train_files + ["test_batch", "batches.meta"]:
        need_file(root, name, CIFAR10_NEEDS)
    classes = names(root / "batches.meta", "label_names")
    splits = {"train": split_samples(root, train_files, "labels", len(classes)),
              "test": split_samples(root, ["test_batch"], "labels", len(classes))}
    return Listing("cifar10", classes, splits, "top1")


def read_cifar100(root) -> Listing:
    """The CIFAR-100 listing over its 100 fine classes: train, test (top-1)."""
    root = Path(root)
    for name in ("train", "test", "meta"):
        need_file(root, name, CIFAR100_NEEDS)
    classes = names(root / "meta", "fine_label_names")
    splits = {s: split_samples(root, [s], "fine_labels", len(classes)) for s in ("train", "test")}
    return Listing("cifar100", classes, splits, "top1")


@lru_cache(maxsize=8)
def batch_images(path: str) -> np.ndarray:
    """All images of a batch file as uint8 N x 32 x 32 x 3 (cached: the compiler reads a batch row by row)."""
    data = np.asarray(unpickle(path)["data"], dtype=np.uint8)
    return data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)


def load_image(root, sample: Sample) -> np.ndarray:
    """The uint8 32x32x3 image of a sample whose path is "<batch file>#<row>"."""
    name, _, row = sample.path.rpartition("#")
    if not name or not row.isdigit():
        raise DataError(f"CIFAR sample path {sample.path!r}: expected '<batch file>#<row>'")
    images = batch_images(str(Path(root) / name))
    if int(row) >= len(images):
        raise DataError(f"{Path(root) / name}: no row {row} (it has {len(images)})")
    return np.ascontiguousarray(images[int(row)])


CIFAR10 = Layout("cifar10", read_cifar10, CIFAR10_NEEDS, "top1", load=load_image)
CIFAR100 = Layout("cifar100", read_cifar100, CIFAR100_NEEDS, "top1", load=load_image)
