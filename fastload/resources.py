"""Where fastload's data files and caches live.

`datasets/` (the ImageNet-1k class list, the PASCAL mapping, the paper's plan) sits beside the package in the
repository; it is data, not an importable package.
"""
import os
from pathlib import Path

from .errors import FastloadError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
TRAIN_RECIPES_DIR = REPO_ROOT / "train"
TRANSFER_CONFIGS_DIR = REPO_ROOT / "transfer"


def cache_dir() -> Path:
    """fastload's cache (staged WordNet, built wheels): $FASTLOAD_CACHE or $XDG_CACHE_HOME/fastload."""
    root = os.environ.get("FASTLOAD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastload")
    return Path(root)


def dataset_file(name: str) -> Path:
    """A file of the repository's `datasets/` folder, with a clear error when it is missing."""
    path = DATASETS_DIR / name
    if not path.is_file():
        raise FastloadError(f"data file {path} is missing: fastload must run from its repository checkout")
    return path


def read_imagenet_classes() -> list:
    """The 1000 ILSVRC-2012 classes in the standard order, as (wnid, names) pairs."""
    classes = []
    for line in dataset_file("imagenet1k_synset_words.txt").read_text().splitlines():
        if line.strip():
            wnid, _, names = line.partition(" ")
            classes.append((wnid, names))
    return classes


def imagenet_wnids() -> list:
    return [wnid for wnid, _ in read_imagenet_classes()]
