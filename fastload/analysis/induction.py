"""Induction accuracy (paper sec. 5.3, Fig. 4): how well do features learnt without some fine classes' labels
separate those classes? Nearest-neighbour retrieval on fc7 features, cosine similarity.

Which classes are evaluated ("unseen"): the dataset's fine classes that were not themselves training labels of the
label set L, i.e. every class c with L(c) != c:
- a coarse set (top_down_127, bottom_up_k): the fine classes merged into a coarser label. The network saw their
  images, but only under the coarse label; it never saw the fine distinction. (The few classes a coarse set keeps
  as their own label are left out.)
- a split or removal set (minimal_split_a, random_split_a, pascal_removed): the excluded classes (the other split,
  the PASCAL classes), whose images the network never saw at all.
With `--classes all` every class of the dataset is evaluated instead.

Protocol: database = the train images of the evaluated classes (optionally at most N per class, seeded), queries =
their val images; a query is right at top-k when one of its k nearest database images (exact cosine search,
ties by index) has the query's fine class. The same rows are scored with a baseline checkpoint (normally the
1000-class network). Chance at top-1 is 1 / (number of evaluated classes) for balanced classes.
"""
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import write_json
from . import features as F
from .knn import DEFAULT_CHUNK_ROWS, knn_search, topk_accuracy
from .provenance import OutputFileLock, inputs_of, reuse_json

CLASS_CHOICES = ("unseen", "all")
TOPK = (1, 5)


def evaluation_classes(class_wnids, class_labels, which: str = "unseen") -> np.ndarray:
    """Boolean mask over the dataset's classes: those evaluated for induction (see the module docstring)."""
    if which not in CLASS_CHOICES:
        raise UsageError(f"--classes {which!r}: choose one of {', '.join(CLASS_CHOICES)}")
    if which == "all":
        return np.ones(len(class_wnids), dtype=bool)
    return np.array([lab is None or lab != str(w) for w, lab in zip(class_wnids, class_labels)], dtype=bool)


def nn_accuracy(db_feats, db_classes, query_feats, query_classes, k: int = max(TOPK), device=None,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict:
    """Top-1/top-5 nearest-neighbour accuracy of queries against the database, by fine class."""
    idx, _ = knn_search(query_feats, db_feats, k, chunk_rows=chunk_rows, device=device)
    acc = topk_accuracy(np.asarray(query_classes), np.asarray(db_classes)[idx], TOPK)
    n_classes = len(np.unique(query_classes))
    return {**acc, "chance_top1": 1.0 / n_classes, "classes": n_classes, "queries": len(query_feats),
            "database": len(db_feats)}


def check_checkpoint_labels(meta: dict, class_labels: list, labelset: str, checkpoint) -> None:
    """Warn (stderr) when the checkpoint's labels are not the label set's labels over this dataset."""
    trained = set(meta.get("label_wnids") or [])
    expected = {lab for lab in class_labels if lab is not None}
    if trained and trained != expected:
        print(f"warning: {checkpoint} was trained on {len(trained)} labels, label set {labelset} has "
              f"{len(expected)} over this dataset ({len(trained - expected)} labels not in the set): is --labelset "
              "the one it was trained on?", file=sys.stderr)


def score_checkpoint(checkpoint, betons, indexes, rows, extraction: F.Extraction, layer: str, features_dir,
                     chunk_rows: int, name: str, fingerprint: str = None) -> dict:
    """Extract the features of database and query rows with one checkpoint, and score them. `layer` None: the
    checkpoint's architecture's feature layer (models.networks.NETWORKS). With `features_dir`, the features are
    kept there and reused by a later call with the same checkpoint (`fingerprint`), rows and settings."""
    model, meta = F.load_model(checkpoint)
    layer = layer or F.feature_layer(meta["arch"])
    out = {}
    for split in ("train", "val"):
        out_path = (Path(features_dir) / f"{name}_{split}_{layer}.npy") if features_dir else None
        out[split] = F.extract_from_beton(model, betons[split], indexes[split], rows[split], layer=layer,
                                          out_path=out_path, desc=f"{name} {split}", model_fingerprint=fingerprint,
                                          **extraction.loader_kwargs(meta))
    result = nn_accuracy(out["train"][0], out["train"][1], out["val"][0], out["val"][1], device=extraction.device,
                         chunk_rows=chunk_rows)
    return {"checkpoint": str(checkpoint), "arch": meta["arch"], "layer": layer, "num_labels": int(meta["num_classes"]),
            **result}


def select_rows(indexes, class_mask, db_per_class: int, queries_per_class: int, seed: int, beton_dir) -> dict:
    """{'train': database rows, 'val': query rows} of the evaluated classes, capped per class when asked."""
    rows = {"train": F.sample_rows(indexes["train"].class_id, class_mask, db_per_class, seed),
            "val": F.sample_rows(indexes["val"].class_id, class_mask, queries_per_class, seed)}
    for split, r in rows.items():
        if len(r) == 0:
            raise UsageError(f"no {split} images of the {int(class_mask.sum())} evaluated classes in {beton_dir}")
    if len(rows["train"]) < max(TOPK):
        raise UsageError(f"the database has {len(rows['train'])} images, fewer than the {max(TOPK)} neighbours needed")
    return rows


def induction(checkpoint, labelset: str, beton_dir, *, baseline=None, classes: str = "unseen", layer=None,
              db_per_class: int = 0, queries_per_class: int = 0, seed: int = 0,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, features_dir=None, out=None,
              batch_size: int = F.DEFAULT_BATCH_SIZE, resolution: int = 0, device: str = "auto",
              num_workers: int = 2) -> dict:
    """Induction accuracy of `checkpoint` (trained on `labelset`), and of `baseline` on the same rows, on the
    features of `layer` (default: each checkpoint's architecture's feature layer, fc7 for AlexNet).

    Writes the result JSON to `out` (default: induction_<labelset>.json next to the checkpoint) and returns it.
    An `out` made from the same inputs is returned as it is; one made from other inputs is refused (provenance).
    """
    from ..labelsets import class_labels as labels_of_classes, resolve_label_set
    ex = F.extraction(batch_size, resolution, device, num_workers)
    betons, indexes = F.load_compiled(beton_dir)
    class_wnids = [str(w) for w in indexes["train"].class_wnids]
    label_set = resolve_label_set(labelset, class_wnids)
    class_labels = labels_of_classes(label_set, class_wnids)
    mask = evaluation_classes(class_wnids, class_labels, classes)
    if not mask.any():
        raise UsageError(f"label set {labelset} keeps every class of {beton_dir} as its own label: no "
                         "unseen classes to evaluate (use --classes all to evaluate every class)")
    rows = select_rows(indexes, mask, db_per_class, queries_per_class, seed, beton_dir)
    out = Path(out or Path(checkpoint).parent / f"induction_{label_set.name}.json")
    with OutputFileLock(out, "fastload induction"):
        scored = {"model": checkpoint, "baseline": baseline}
        inputs = inputs_of(scored, betons, seed,
                           {"labelset": label_set.name, "classes": classes, "layer": layer,
                            "db_per_class": db_per_class, "queries_per_class": queries_per_class,
                            "batch_size": batch_size, "resolution": resolution, "device": ex.device.type})
        result = reuse_json(out, inputs)
        if result is None:
            if features_dir:
                os.makedirs(features_dir, exist_ok=True)
            _, meta = F.load_model(checkpoint)
            check_checkpoint_labels(meta, class_labels, labelset, checkpoint)
            result = {"labelset": label_set.name, "classes": classes,
                      "evaluated_class_wnids": [w for w, m in zip(class_wnids, mask) if m]}
            for name, path in scored.items():
                if path:
                    result[name] = score_checkpoint(path, betons, indexes, rows, ex, layer, features_dir,
                                                    chunk_rows, name, inputs["checkpoints"][name])
            result["inputs"] = inputs
            write_json(out, result, indent=1)
        result["written_to"] = str(out)  # for the caller and the printout; not part of the file
    print_result(result)
    return result


def print_result(result: dict) -> None:
    m = result["model"]
    print(f"induction accuracy, label set {result['labelset']}: {m['classes']} {result['classes']} classes, "
          f"{m['queries']} val queries, {m['database']} train images in the database ({m['layer']}, cosine)")
    print(f"{'model':<10} {'top1':>7} {'top5':>7}  checkpoint")
    for name in ("model", "baseline"):
        if name in result:
            r = result[name]
            print(f"{name:<10} {r['top1']:>7.4f} {r['top5']:>7.4f}  {r['checkpoint']}")
    print(f"{'chance':<10} {m['chance_top1']:>7.4f}")
    print(f"wrote {result['written_to']}")
