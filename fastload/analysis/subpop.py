"""Subpopulation shift (BREEDS): a new last layer trained on a BREEDS set's source subclasses, tested on its target
subclasses, which the layer never saw, beside held-out images of the source subclasses.

Like `imagenet_cls`: every layer below fc8 keeps its pre-trained weights (frozen); a fresh fc8 with one output
per superclass is trained (SGD, momentum, weight decay, cosine decay) on the TRAIN images of the source
subclasses, labelled by superclass; then top-1 (and top-5 with >= 5 superclasses) is measured on the VAL images
of the source subclasses and of the target subclasses. The gap source - target is the subpopulation shift.

Superclasses are those of the BREEDS set (fastload.breeds) that have at least one source and one target class
among the compiled classes: on a dataset with a subset of ImageNet's classes (the synthetic ImageNet) the task
is the BREEDS task restricted to them. Needs at least two such superclasses.
Run: `fastload subpop --checkpoint RUN/last.pt --beton-dir DATA --breeds living17`, or `subpop(...)`.
"""
import time
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
from ..files import write_json


def subpop_lookups(breeds: str, class_wnids) -> tuple:
    """(superclass ids, source lookup, target lookup): each lookup maps a compiled class id to its superclass's
    position in the superclass list, or -1 when the class is not in that half."""
    from ..breeds import BREEDS_SETS, breeds_class_labels
    if breeds not in BREEDS_SETS:
        raise UsageError(f"--breeds {breeds!r}: choose one of {', '.join(BREEDS_SETS)}")
    wnids = [str(w) for w in class_wnids]
    source = breeds_class_labels(breeds, wnids, "source")
    target = breeds_class_labels(breeds, wnids, "target")
    superclasses = sorted({s for s in source if s} & {t for t in target if t})
    if len(superclasses) < 2:
        raise FastloadError(f"the compiled classes hold {len(superclasses)} {breeds} superclass(es) with both source "
                            f"and target subclasses; need at least 2 (synthesise with `fastload synth imagenet "
                            f"--classes-from breeds:{breeds}`)")
    position = {sc: i for i, sc in enumerate(superclasses)}
    def lookup(labels):
        return np.array([position.get(lab, -1) for lab in labels], dtype=np.int32)
    return superclasses, lookup(source), lookup(target)


def subpop(checkpoint, beton_dir, breeds: str = "living17", *, epochs: int = 10, max_iters: int = 0,
           lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0, out=None,
           batch_size: int = 256, resolution: int = 0, device: str = "auto", num_workers: int = 2) -> dict:
    """Train a new fc8 of `checkpoint` on the source subclasses of BREEDS set `breeds` in `beton_dir`'s train
    beton, measure source and target accuracy on its val beton; writes the result JSON to `out` (default:
    subpop_<breeds>.json next to the checkpoint) and returns it."""
    from ..loader import make_loader
    from .features import extraction, feature_layer, load_compiled, load_model
    from .imagenet_cls import evaluate_topk, replace_fc8, train_fc8
    ex = extraction(batch_size, resolution, device, num_workers)
    betons, indexes = load_compiled(beton_dir)
    superclasses, source, target = subpop_lookups(breeds, indexes["train"].class_wnids)
    if list(indexes["val"].class_wnids) != list(indexes["train"].class_wnids):
        raise FastloadError(f"{beton_dir}: the train and val indexes list different classes")
    train_rows = np.flatnonzero(source[indexes["train"].class_id] >= 0).astype(np.int64)
    if len(train_rows) < batch_size:
        raise UsageError(f"--batch-size {batch_size} is more than the {len(train_rows)} train images of the "
                         f"{breeds} source subclasses: lower --batch-size")
    model, meta = load_model(checkpoint)
    fc8 = replace_fc8(model, meta["arch"], len(superclasses), seed)
    kw = ex.loader_kwargs(meta)

    def loader(split, lookup, train):
        rows = np.flatnonzero(lookup[indexes[split].class_id] >= 0).astype(np.int64)
        if len(rows) == 0:
            raise FastloadError(f"{betons[split]} has no images of the {breeds} subclasses in use")
        return make_loader(str(betons[split]), rows, lookup, kw["batch_size"], kw["resolution"], train=train,
                           device=str(ex.device), num_workers=ex.num_workers, seed=seed)

    train_loader = loader("train", source, True)
    total_iters = epochs * len(train_loader)
    if max_iters > 0:
        total_iters = min(total_iters, max_iters)
    start = time.perf_counter()
    losses = train_fc8(model, fc8, train_loader, total_iters, epochs=epochs, lr=lr, momentum=momentum,
                       weight_decay=weight_decay, device=ex.device, layer=feature_layer(meta["arch"]))
    scores = {part: evaluate_topk(model, loader("val", lookup, False), ex.device)
              for part, lookup in (("source", source), ("target", target))}
    result = {"checkpoint": str(checkpoint), "breeds": breeds, "pretrain_labels": int(meta["num_classes"]),
              "superclasses": superclasses, "source_classes": int((source >= 0).sum()),
              "target_classes": int((target >= 0).sum()), "train_images": int(len(train_rows)),
              "iterations": total_iters, "train_losses": losses,
              **{f"{part}_{k}": v for part, s in scores.items() for k, v in s.items()},
              "shift_top1": scores["source"]["top1"] - scores["target"]["top1"],
              "seconds": time.perf_counter() - start}
    out = Path(out or Path(checkpoint).parent / f"subpop_{breeds}.json")
    write_json(out, result, indent=1)
    print(f"subpopulation shift {breeds} ({len(superclasses)} superclasses) with a new fc8 on {checkpoint}: "
          f"source top1 {result['source_top1']:.4f}, target top1 {result['target_top1']:.4f} "
          f"(gap {result['shift_top1']:+.4f}); wrote {out}")
    return result
