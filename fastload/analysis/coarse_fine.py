"""Coarse versus fine accuracy (paper sec. 5.4, Fig. 6): for a network trained on the fine classes, which coarse
classes does it recognise much better as a whole than class by class?

For each coarse label G of a coarse label set (default top_down_127) with at least `min_subclasses` fine classes
in the dataset, on the val images of G's fine classes:
- coarse accuracy: fraction of images whose top-1 fine prediction is any fine class of G;
- fine accuracy: the mean over G's fine classes of the fraction of their images predicted as exactly that class;
- gap = coarse accuracy - fine accuracy (>= 0: every exact hit is also a coarse hit).
Coarse accuracy is averaged per fine class too (mean over G's classes of each class's coarse hit rate), so both
terms weigh the classes alike; on ImageNet's balanced val set (50 images per class) this equals the image average.
"""
import csv
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
from ..files import atomic_open
from . import features as F
from .provenance import OutputFileLock, inputs_of, reuse_with_sidecar, write_sidecar_inputs

DEFAULT_LABELSET = "top_down@127"  # top_down_127 on ImageNet-1k; its nearest step on another dataset
TABLE_COLUMNS = ("coarse_wnid", "name", "subclasses", "images", "coarse_acc", "fine_acc", "gap")


def coarse_fine_table(targets, predictions, class_to_coarse, min_subclasses: int = 5) -> list:
    """Rows (dicts with coarse id, subclasses, images, coarse_acc, fine_acc, gap), sorted by gap, largest first.

    targets, predictions: fine class ids (int arrays of equal length); class_to_coarse: int array, fine class id ->
    coarse id (-1 when the class has no coarse label). Predictions outside [0, num_classes) count as wrong.
    """
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    class_to_coarse = np.asarray(class_to_coarse, dtype=np.int64)
    if targets.shape != predictions.shape:
        raise UsageError(f"{len(targets)} targets but {len(predictions)} predictions")
    valid = (predictions >= 0) & (predictions < len(class_to_coarse))
    pred_coarse = np.where(valid, class_to_coarse[np.clip(predictions, 0, len(class_to_coarse) - 1)], -2)
    rows = []
    for g in np.unique(class_to_coarse[class_to_coarse >= 0]):
        subclasses = [c for c in np.flatnonzero(class_to_coarse == g) if np.any(targets == c)]
        if len(subclasses) < min_subclasses:
            continue
        fine = [np.mean(predictions[targets == c] == c) for c in subclasses]
        coarse = [np.mean(pred_coarse[targets == c] == g) for c in subclasses]
        rows.append({"coarse": int(g), "subclasses": len(subclasses),
                     "images": int(np.isin(targets, subclasses).sum()), "coarse_acc": float(np.mean(coarse)),
                     "fine_acc": float(np.mean(fine)), "gap": float(np.mean(coarse) - np.mean(fine))})
    return sorted(rows, key=lambda r: (-r["gap"], r["coarse"]))


def model_to_dataset_classes(label_wnids, class_wnids, checkpoint) -> np.ndarray:
    """int array: model output j -> the dataset class id with the same wnid. The model must predict fine classes."""
    class_of = {str(w): i for i, w in enumerate(class_wnids)}
    unknown = [w for w in label_wnids if w not in class_of]
    if not label_wnids or unknown:
        problem = "are not recorded" if not label_wnids else f"include {unknown[0]} ({len(unknown)} not dataset classes)"
        raise FastloadError(f"{checkpoint}: coarse-fine needs a network trained on the dataset's fine classes (label "
                            f"set 'full'); its labels {problem}")
    return np.array([class_of[w] for w in label_wnids], dtype=np.int64)


def coarse_fine(checkpoint, beton_dir, *, labelset: str = DEFAULT_LABELSET, min_subclasses: int = 5,
                show: int = 10, out=None, batch_size: int = F.DEFAULT_BATCH_SIZE, resolution: int = 0,
                device: str = "auto", num_workers: int = 2) -> list:
    """The coarse-fine table of a fine-class `checkpoint` on the val beton of `beton_dir`, grouped by `labelset`.

    Writes it as TSV to `out` (default: coarse_fine_<labelset>.tsv next to the checkpoint), prints the `show`
    largest and smallest gaps, and returns the rows. An `out` made from the same inputs (its sidecar
    OUT.inputs.json) is read back as it is; one made from other inputs is refused (provenance).
    """
    from ..labelsets import class_labels as labels_of_classes, resolve_label_set
    if min_subclasses < 1:
        raise UsageError(f"--min-subclasses must be >= 1, got {min_subclasses}")
    ex = F.extraction(batch_size, resolution, device, num_workers)
    betons, indexes = F.load_compiled(beton_dir, ("val",))
    index = indexes["val"]
    class_wnids = [str(w) for w in index.class_wnids]
    label_set = resolve_label_set(labelset, class_wnids)
    coarse_wnids, class_to_coarse = coarse_ids(labels_of_classes(label_set, class_wnids))
    out = Path(out or Path(checkpoint).parent / f"coarse_fine_{label_set.name}.tsv")
    with OutputFileLock(out, "fastload coarse-fine"):
        inputs = inputs_of({"model": checkpoint}, betons, None,
                           {"labelset": label_set.name, "min_subclasses": min_subclasses, "batch_size": batch_size,
                            "resolution": resolution, "device": ex.device.type})
        if reuse_with_sidecar(out, inputs):
            table = read_table(out)
        else:
            table = compute_table(checkpoint, betons["val"], index, class_wnids, class_to_coarse, coarse_wnids, ex,
                                  min_subclasses, labelset, beton_dir)
            # OUT does not exist here (else it was reused or refused): its inputs go first, so that a crash in
            # between leaves inputs without a table (computed again), never a table without its inputs
            write_sidecar_inputs(out, inputs)
            write_table(table, out)
    print_table(table, show, label_set.name, out)
    return table


def compute_table(checkpoint, beton, index, class_wnids, class_to_coarse, coarse_wnids, ex, min_subclasses,
                  labelset, beton_dir) -> list:
    """Predict every val image with `checkpoint` and group the hits by coarse class (coarse_fine_table)."""
    from ..wordnet import default_tree
    model, meta = F.load_model(checkpoint)
    out_to_class = model_to_dataset_classes(list(meta.get("label_wnids") or []), class_wnids, checkpoint)
    rows = np.arange(len(index), dtype=np.int64)
    outputs = F.predict_from_beton(model, beton, index, rows, **ex.loader_kwargs(meta))
    table = coarse_fine_table(index.class_id[rows], out_to_class[outputs], class_to_coarse, min_subclasses)
    if not table:
        raise UsageError(f"no coarse label of {labelset} has >= {min_subclasses} sub-classes in "
                         f"{beton_dir}; lower --min-subclasses")
    tree = default_tree()
    for r in table:
        r["coarse_wnid"] = coarse_wnids[r["coarse"]]
        r["name"] = tree.lemma(r["coarse_wnid"])
    return table


def read_table(path) -> list:
    """The rows of a table written by `write_table`."""
    with open(path, newline="") as f:
        return [{"coarse_wnid": r["coarse_wnid"], "name": r["name"], "subclasses": int(r["subclasses"]),
                 "images": int(r["images"]), "coarse_acc": float(r["coarse_acc"]), "fine_acc": float(r["fine_acc"]),
                 "gap": float(r["gap"])} for r in csv.DictReader(f, delimiter="\t")]


def coarse_ids(class_labels: list) -> tuple:
    """(sorted coarse wnids, int array: fine class id -> index into them, -1 for a class without a coarse label)."""
    coarse_wnids = sorted({lab for lab in class_labels if lab is not None})
    coarse_id = {w: i for i, w in enumerate(coarse_wnids)}
    return coarse_wnids, np.array([coarse_id[lab] if lab is not None else -1 for lab in class_labels])


def write_table(table: list, path: Path) -> None:
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for r in table:
            writer.writerow([r["coarse_wnid"], r["name"], r["subclasses"], r["images"],
                             f"{r['coarse_acc']:.4f}", f"{r['fine_acc']:.4f}", f"{r['gap']:.4f}"])


def print_table(table: list, show: int, labelset: str, path) -> None:
    def line(r):
        return (f"{r['coarse_wnid']}  {r['name'][:24]:<24} {r['subclasses']:>4} {r['coarse_acc']:>7.3f} "
                f"{r['fine_acc']:>7.3f} {r['gap']:>7.3f}")
    header = f"{'coarse':<9}  {'name':<24} {'subs':>4} {'coarse':>7} {'fine':>7} {'gap':>7}"
    print(f"coarse minus fine accuracy for {len(table)} coarse classes of {labelset}")
    print(f"largest gaps:\n{header}")
    for r in table[:show]:
        print(line(r))
    print(f"smallest gaps:\n{header}")
    for r in table[-show:]:
        print(line(r))
    print(f"wrote {path}")
