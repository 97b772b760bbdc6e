"""Linear probe on fixed features (Kornblith, Shlens, Le 2019, "Do Better ImageNet Models Transfer Better?", §3
and appendix: L2-regularised multinomial logistic regression on penultimate-layer features of centre crops).

Features: the checkpoint's feature layer (fastload.models.networks.NETWORKS: AlexNet fc7, a ResNet's pooled
'flatten') over every row of each split of a `fastload compile cls` folder, through the fast loader in evaluation
mode (centre crop, no flip). They are extracted once per (checkpoint, beton, layer, crop) and cached in
FEATURE_DIR/<split>.npz, written atomically and fingerprinted: a changed checkpoint or beton is extracted again.

Classifier: softmax regression (VOC07: one sigmoid per class) on features standardised with the fitting set's
mean and std, loss = mean cross-entropy + l2/2 * ||W||^2 (bias not penalised), minimised full-batch with
torch.optim.LBFGS (strong Wolfe line search) on the GPU when there is one. l2 is chosen on the dataset's val split,
or where it has none on a held-out part of train (HOLDOUT_FRACTION, the validation sizes of the paper's Table A1),
drawn per seed; the classifier is then refitted on train + val with the chosen l2 and scored on test with the
dataset's metric. The fit is convex and starts at zero, so the seeds differ only in the held-out draw.
"""
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..beton import beton_path, index_path, read_classes
from ..errors import FastloadError, UsageError
from ..files import atomic_path, write_json

# The paper's grid: 45 logarithmically spaced l2 values from 1e-6 to 1e5.
PAPER_L2_GRID = tuple(float(v) for v in np.logspace(-6, 5, 45))
# Fraction of train held out to choose l2 where the dataset has no val split (Table A1's validation sizes:
# e.g. CIFAR 5,000 of 50,000; Cars 1,635 of 8,144; Pets 740 of 3,680; Caltech-101 510 of 3,060).
HOLDOUT_FRACTION = {"food101": 0.1, "cifar10": 0.1, "cifar100": 0.1, "birdsnap": 0.1, "sun397": 0.2, "cars": 0.2,
                    "pets": 0.2, "caltech101": 1 / 6}
DEFAULT_HOLDOUT = 0.2
LBFGS_ITERATIONS = 500


@dataclass(frozen=True)
class Compiled:
    """A `fastload compile cls` folder as the suite reads it."""
    folder: Path
    layout: str
    metric: str
    multilabel: bool
    classes: tuple
    splits: tuple        # of train, val, test present

    def beton(self, split: str) -> Path:
        return beton_path(self.folder, split)

    def index(self, split: str) -> Path:
        return index_path(self.folder, split)


def read_compiled(folder) -> Compiled:
    """The compiled folder's layout, metric, classes and splits (train and test must be there)."""
    from ..compile_cls import read_compile_info
    folder = Path(folder)
    info = read_compile_info(folder)
    classes = read_classes(folder)
    splits = tuple(s for s in ("train", "val", "test") if s in info.get("splits", {}))
    for split in ("train", "test"):
        if split not in splits:
            raise FastloadError(f"{folder} has no {split} split: the suite needs train and test betons")
    return Compiled(folder, info["layout"], info["metric"], bool(info.get("multilabel")), classes, splits)


# ---- features ---------------------------------------------------------------------------------------------------

def file_digest(path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()[:16]


def beton_identity(compiled: Compiled, split: str) -> dict:
    """What identifies a split's rows and pixels: its index fingerprint and the beton's size and mtime."""
    from ..index import load_fingerprint
    stat = compiled.beton(split).stat()
    return {"index": load_fingerprint(compiled.index(split)), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def features_fingerprint(checkpoint_digest: str, beton: dict, layer: str, resolution: int) -> str:
    text = json.dumps([checkpoint_digest, beton, layer, resolution], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def extract_split(model, compiled: Compiled, split: str, layer: str, extraction, resolution: int) -> tuple:
    """(features float32 [n, dim], labels int64 [n]) of every row of a split, in beton order; the loader's labels
    must equal the index's (proof that rows kept their order)."""
    from ..index import load_index
    from ..loader import make_loader
    from .features import collect_outputs
    index = load_index(compiled.index(split))
    labels = index.class_id.astype(np.int64)
    rows = np.arange(len(labels), dtype=np.int64)
    lookup = np.arange(int(labels.max()) + 1, dtype=np.int64)   # identity (VOC07: over the bitmasks)
    loader = make_loader(str(compiled.beton(split)), rows, lookup, extraction.batch_size, resolution, train=False,
                         device=str(extraction.device), num_workers=extraction.num_workers, drop_last=False)
    feats, seen = collect_outputs(model, loader, len(rows), layer, extraction.device, desc=f"features {split}",
                                  dtype=np.float32)
    if not np.array_equal(seen, labels):
        raise FastloadError(f"{compiled.beton(split)}: the loader's labels differ from {compiled.index(split)}")
    return feats, labels


def cached_features(checkpoint, compiled: Compiled, cache_dir, extraction, layer: str = None) -> dict:
    """{split: (features, labels)} for every split, from CACHE_DIR/<split>.npz when its fingerprint matches, else
    extracted (and cached atomically). Returns also 'info' under the key None: layer, crop, fingerprints, seconds."""
    from .features import default_resolution, feature_layer, load_model
    model, meta = load_model(checkpoint)
    layer = layer or feature_layer(meta["arch"])
    resolution = extraction.resolution or default_resolution(meta)
    digest = file_digest(checkpoint)
    cache_dir = Path(cache_dir)
    out, info = {}, {"layer": layer, "resolution": resolution, "checkpoint_sha256": digest, "splits": {}}
    for split in compiled.splits:
        fp = features_fingerprint(digest, beton_identity(compiled, split), layer, resolution)
        path = cache_dir / f"{split}.npz"
        start, cached = time.perf_counter(), False
        if path.is_file():
            with np.load(path) as z:
                if str(z["fingerprint"]) == fp:
                    out[split], cached = (z["features"].astype(np.float32), z["labels"]), True
        if not cached:
            out[split] = extract_split(model, compiled, split, layer, extraction, resolution)
            with atomic_path(path) as tmp:
                np.savez(tmp, features=out[split][0], labels=out[split][1], fingerprint=fp)
        info["splits"][split] = {"rows": len(out[split][1]), "dim": int(out[split][0].shape[1]), "fingerprint": fp,
                                 "cached": cached, "seconds": round(time.perf_counter() - start, 2)}
    out[None] = info
    return out


# ---- metrics ----------------------------------------------------------------------------------------------------

def bits(labels, num_classes: int) -> np.ndarray:
    """Multi-hot float32 [n, C] of bitmask labels."""
    labels = np.asarray(labels, dtype=np.int64)
    return ((labels[:, None] >> np.arange(num_classes)) & 1).astype(np.float32)


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(scores.argmax(1) == labels))


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in `labels` of each class's top-1 accuracy."""
    hit = scores.argmax(1) == labels
    return float(np.mean([hit[labels == c].mean() for c in np.unique(labels)]))


def average_precision_11(scores: np.ndarray, positive: np.ndarray) -> float:
    """VOC2007's 11-point interpolated AP: mean over recall r in {0, 0.1, .., 1} of the best precision at
    recall >= r."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(positive[order] > 0)
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / max(tp[-1], 1)
    return float(np.mean([precision[recall >= r].max() if np.any(recall >= r) else 0.0
                          for r in np.linspace(0, 1, 11)]))


def map11(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean 11-point AP over the classes with at least one positive in `labels` (bitmasks)."""
    truth = bits(labels, scores.shape[1])
    present = np.flatnonzero(truth.sum(0) > 0)
    return float(np.mean([average_precision_11(scores[:, c], truth[:, c]) for c in present]))


METRIC_FUNCTIONS = {"top1": top1, "mean_class_acc": mean_class_accuracy, "map11": map11}


def score(metric: str, scores: np.ndarray, labels: np.ndarray) -> float:
    if metric not in METRIC_FUNCTIONS:
        raise UsageError(f"metric {metric!r}: choose one of {', '.join(METRIC_FUNCTIONS)}")
    return METRIC_FUNCTIONS[metric](scores, labels)


# ---- the classifier ---------------------------------------------------------------------------------------------

@dataclass
class LinearModel:
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def scores(self, features: np.ndarray) -> np.ndarray:
        x = (torch.as_tensor(features, device=self.weight.device) - self.mean) / self.std
        with torch.no_grad():
            return (x @ self.weight.T + self.bias).cpu().numpy()


def fit_logistic(features, labels, num_classes: int, l2: float, multilabel: bool, device,
                 init: LinearModel = None, iterations: int = LBFGS_ITERATIONS) -> LinearModel:
    """L2-regularised logistic regression by full-batch L-BFGS (module docstring); `init` warm-starts it."""
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    if multilabel:
        target = torch.as_tensor(bits(labels, num_classes), device=device)
        loss_fn = lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(  # noqa: E731
            logits, target, reduction="sum") / len(x)
    else:
        target = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
        loss_fn = lambda logits: torch.nn.functional.cross_entropy(logits, target)  # noqa: E731
    weight = torch.zeros(num_classes, x.shape[1], device=device)
    bias = torch.zeros(num_classes, device=device)
    if init is not None:
        weight, bias = init.weight.clone(), init.bias.clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(x @ weight.T + bias) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearModel(mean, std, weight.detach(), bias.detach())


def holdout(labels: np.ndarray, fraction: float, seed: int, multilabel: bool) -> tuple:
    """(fit rows, held-out rows) of train: `fraction` of each class (of all rows when multi-label), seeded."""
    rng = np.random.default_rng([seed, 8191])
    groups = [np.arange(len(labels))] if multilabel else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    held = []
    for rows in groups:
        n = int(round(fraction * len(rows)))
        if len(rows) > 1:
            held.append(rng.permutation(rows)[:max(1, min(n, len(rows) - 1))])
    held = np.sort(np.concatenate(held)) if held else np.array([], np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def choose_l2(fit, val, num_classes: int, metric: str, multilabel: bool, grid, device) -> tuple:
    """(best l2, {l2: val metric}) over `grid`, fitted from the strongest penalty down with warm starts
    (ties go to the stronger penalty)."""
    curve, model = {}, None
    for l2 in sorted(grid, reverse=True):
        model = fit_logistic(*fit, num_classes, l2, multilabel, device, init=model)
        curve[l2] = score(metric, model.scores(val[0]), val[1])
    best = max(sorted(curve, reverse=True), key=lambda k: curve[k])
    return best, curve


def probe_seed(features: dict, compiled: Compiled, seed: int, grid, device) -> dict:
    """One seed of the probe: l2 chosen on val (or a held-out part of train), refit on train + val, test scored."""
    c, multilabel, metric = len(compiled.classes), compiled.multilabel, compiled.metric
    train_x, train_y = features["train"]
    if "val" in features:
        fit, val = features["train"], features["val"]
        held_out = "val split"
    else:
        fraction = HOLDOUT_FRACTION.get(compiled.layout, DEFAULT_HOLDOUT)
        keep, held = holdout(train_y, fraction, seed, multilabel)
        fit, val = (train_x[keep], train_y[keep]), (train_x[held], train_y[held])
        held_out = f"{len(held)} train rows ({fraction:.3f})"
    start = time.perf_counter()
    l2, curve = choose_l2(fit, val, c, metric, multilabel, grid, device)
    all_x = np.concatenate([fit[0], val[0]])
    all_y = np.concatenate([fit[1], val[1]])
    model = fit_logistic(all_x, all_y, c, l2, multilabel, device)
    test_x, test_y = features["test"]
    return {"seed": seed, "value": score(metric, model.scores(test_x), test_y), "l2": l2,
            "val_value": curve[l2], "held_out": held_out, "fit_rows": len(all_y),
            "seconds": round(time.perf_counter() - start, 2)}


def seed_statistics(runs: list) -> dict:
    """Mean, sample standard deviation (n-1; 0 for a single seed) and count of the runs' `value`s."""
    values = np.array([r["value"] for r in runs])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def run_probe(checkpoint, beton_dir, out, seeds=(0, 1, 2), grid=PAPER_L2_GRID, layer: str = None,
              extraction=None, feature_dir=None) -> dict:
    """The linear probe of `checkpoint` on a compiled dataset over `seeds`; writes OUT/summary.json."""
    from .features import Extraction
    if len(seeds) < 1 or not grid:
        raise UsageError("the probe needs at least one seed and one l2 value")
    extraction = extraction or Extraction()
    compiled = read_compiled(beton_dir)
    out = Path(out)
    started = time.perf_counter()
    features = cached_features(checkpoint, compiled, Path(feature_dir or out / "features"), extraction, layer)
    info = features.pop(None)
    device = extraction.device   # the classifier runs where the features were computed (--device)
    runs = [probe_seed(features, compiled, s, grid, device) for s in seeds]
    summary = {"kind": "probe", "dataset": compiled.layout, "metric": compiled.metric, **seed_statistics(runs),
               "runs": runs, "checkpoint": str(checkpoint), "beton_dir": str(compiled.folder), "features": info,
               "l2_grid": [min(grid), max(grid), len(grid)], "device": str(device),
               "seconds": round(time.perf_counter() - started, 2)}
    write_json(out / "summary.json", summary)
    return summary
