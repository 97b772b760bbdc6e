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
from . import features as F
from .knn import DEFAULT_CHUNK_ROWS, knn_search, topk_accuracy

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


def score_checkpoint(checkpoint, files, indexes, rows, args, name) -> dict:
    """Extract the layer's features of database and query rows with one checkpoint, and score them."""
    model, meta = F.load_model(checkpoint)
    resolution = args.resolution or F.default_resolution(meta)
    out = {}
    for split in ("train", "val"):
        out_path = (Path(args.features_dir) / f"{name}_{split}_{args.layer}.npy") if args.features_dir else None
        out[split] = F.extract_from_beton(model, files[split][0], indexes[split], rows[split], layer=args.layer,
                                          batch_size=args.batch_size, resolution=resolution, device=args.device,
                                          num_workers=args.num_workers, out_path=out_path, desc=f"{name} {split}")
    result = nn_accuracy(out["train"][0], out["train"][1], out["val"][0], out["val"][1], device=args.device,
                         chunk_rows=args.chunk_rows)
    return {"checkpoint": str(checkpoint), "arch": meta["arch"], "num_labels": int(meta["num_classes"]), **result}


def select_rows(indexes, class_mask, args) -> dict:
    rows = {"train": F.sample_rows(indexes["train"].class_id, class_mask, args.db_per_class, args.seed),
            "val": F.sample_rows(indexes["val"].class_id, class_mask, args.queries_per_class, args.seed)}
    for split, r in rows.items():
        if len(r) == 0:
            raise UsageError(f"no {split} images of the {int(class_mask.sum())} evaluated classes in {args.beton_dir}")
    if len(rows["train"]) < max(TOPK):
        raise UsageError(f"the database has {len(rows['train'])} images, fewer than the {max(TOPK)} neighbours needed")
    return rows


def run_induction(args) -> dict:
    """The whole measurement for the parsed command-line `args`; writes and returns the result dict."""
    from ..index import load_index
    from ..labelsets import class_labels as labels_of_classes, resolve_label_set
    import torch
    args.device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    files = F.beton_dir_files(args.beton_dir)
    indexes = {split: load_index(files[split][1]) for split in files}
    class_wnids = [str(w) for w in indexes["train"].class_wnids]
    label_set = resolve_label_set(args.labelset, class_wnids)
    class_labels = labels_of_classes(label_set, class_wnids)
    mask = evaluation_classes(class_wnids, class_labels, args.classes)
    if not mask.any():
        raise UsageError(f"label set {args.labelset} keeps every class of {args.beton_dir} as its own label: no "
                         "unseen classes to evaluate (use --classes all to evaluate every class)")
    rows = select_rows(indexes, mask, args)
    if args.features_dir:
        os.makedirs(args.features_dir, exist_ok=True)
    _, meta = F.load_model(args.checkpoint)
    check_checkpoint_labels(meta, class_labels, args.labelset, args.checkpoint)
    result = {"labelset": label_set.name, "classes": args.classes, "layer": args.layer,
              "evaluated_class_wnids": [w for w, m in zip(class_wnids, mask) if m],
              "model": score_checkpoint(args.checkpoint, files, indexes, rows, args, "model")}
    if args.baseline:
        result["baseline"] = score_checkpoint(args.baseline, files, indexes, rows, args, "baseline")
    write_json(result, args.out or Path(args.checkpoint).parent / f"induction_{label_set.name}.json")
    print_result(result)
    return result


def write_json(result: dict, path) -> None:
    from ..files import write_json as write_json_file
    result["written_to"] = str(write_json_file(path, result, indent=1))


def print_result(result: dict) -> None:
    m = result["model"]
    print(f"induction accuracy, label set {result['labelset']}: {m['classes']} {result['classes']} classes, "
          f"{m['queries']} val queries, {m['database']} train images in the database ({result['layer']}, cosine)")
    print(f"{'model':<10} {'top1':>7} {'top5':>7}  checkpoint")
    for name in ("model", "baseline"):
        if name in result:
            r = result[name]
            print(f"{name:<10} {r['top1']:>7.4f} {r['top5']:>7.4f}  {r['checkpoint']}")
    print(f"{'chance':<10} {m['chance_top1']:>7.4f}")
    print(f"wrote {result['written_to']}")
