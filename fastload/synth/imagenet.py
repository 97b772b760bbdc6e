"""Synthetic ImageNet: real ILSVRC wnids, appearance that follows the WordNet tree, the exact ILSVRC-2012 layout.

Appearance codes (see `TreeCodes`): every class gets three codes from its path in fastload's WordNet tree,
measured by how many of the 1000 ILSVRC-2012 classes lie under each ancestor:
- shape code  = its highest ancestor with at most SHAPE_GROUP_MAX (80) ILSVRC classes below it
  (e.g. 'hunting dog', 'bird', 'wheeled vehicle', 'musical instrument'),
- colour code = its highest ancestor with at most COLOUR_GROUP_MAX (12) classes below it
  (e.g. 'spaniel', 'car', 'wind instrument'),
- texture code = the class itself.
So siblings share shape and colours and differ by texture (hard), cousins share the shape only, and classes in
different shape groups differ in everything (easy): coarse labels are easier than fine ones, as on ImageNet.

Class choice (`choose_classes`): K classes come as whole groups. G = max(2, round(K / 20)) shape groups are drawn
(seeded) among those big enough for their share of K, interleaved across their depth-4 ancestors (artifact,
living thing, food, ...) so both sides of the tree appear; inside each, whole colour groups are taken in a
seeded order, and the last one is cut (its first wnids in sorted order) only when needed to hit the share exactly.

Layout written: OUT/train/<wnid>/<wnid>_<i>.JPEG, OUT/val/ILSVRC2012_val_<8 digits>.JPEG (classes shuffled, numbered
from 1), OUT/LOC_val_solution.csv (`ImageId,PredictionString`, the string `<wnid> x0 y0 x1 y1`: 0-based inclusive
pixel box of the object), OUT/LOC_synset_mapping.txt (`<wnid> <names>` of the chosen classes, sorted) and
OUT/synth.json (settings and each class's shape and colour group).
"""
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import publish_folder, staged_folder, write_json, write_text
from .render import make_appearance, render_object_image

SHAPE_GROUP_MAX = 80
COLOUR_GROUP_MAX = 12
CLASSES_PER_SHAPE_GROUP = 20
TOP_DEPTH = 4
JPEG_QUALITY = 90


class TreeCodes:
    """Appearance codes of any WordNet synset from its tree path (module docstring)."""

    def __init__(self, tree=None, reference_wnids=None):
        from ..resources import imagenet_wnids
        from ..wordnet import default_tree
        self.tree = tree or default_tree()
        self.reference = list(reference_wnids or imagenet_wnids())
        self.count = Counter(a for w in self.reference for a in self.tree.path_to_root(w))

    def group(self, wnid: str, limit: int) -> str:
        """The highest ancestor of `wnid` (itself included) with at most `limit` reference classes below it."""
        path = self.tree.path_to_root(wnid)
        for anc in reversed(path):
            if self.count.get(anc, 0) <= limit:
                return anc
        return wnid

    def codes(self, wnid: str) -> tuple:
        return self.group(wnid, SHAPE_GROUP_MAX), self.group(wnid, COLOUR_GROUP_MAX), wnid

    def appearance(self, wnid: str):
        return make_appearance(*self.codes(wnid))


def parse_size(text: str) -> tuple:
    """'128' -> (128, 128); '400x350' -> (400, 350) as (width, height)."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 16 or max(values) > 4096:
        raise UsageError(f"--size '{text}': expected S or WxH with sides in 16..4096 (e.g. 128 or 400x350)")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _interleave_by_top(groups: list, codes: TreeCodes, rng) -> list:
    """Seeded order of shape groups, alternating between their depth-TOP_DEPTH ancestors."""
    by_top = {}
    for g in groups:
        by_top.setdefault(codes.tree.ancestor_at_depth(g, TOP_DEPTH), []).append(g)
    tops = [sorted(by_top)[i] for i in rng.permutation(len(by_top))]
    queues = [[sorted(by_top[t])[i] for i in rng.permutation(len(by_top[t]))] for t in tops]
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def _take_whole_colour_groups(members: list, quota: int, codes: TreeCodes, rng) -> list:
    colour = {}
    for w in sorted(members):
        colour.setdefault(codes.group(w, COLOUR_GROUP_MAX), []).append(w)
    keys = sorted(colour)
    order = [keys[i] for i in rng.permutation(len(keys))]
    taken, rest = [], []
    for key in order:
        if len(taken) + len(colour[key]) <= quota:
            taken.extend(colour[key])
        else:
            rest.append(key)
    for key in rest:  # cut one group only when no whole group fits the remainder
        taken.extend(colour[key][:quota - len(taken)])
    return taken


def choose_classes(k: int, seed: int, codes: TreeCodes) -> list:
    """K ILSVRC wnids chosen as whole WordNet groups (module docstring), sorted."""
    n = len(codes.reference)
    if not 2 <= k <= n:
        raise UsageError(f"--classes {k}: expected 2..{n}")
    if k == n:
        return sorted(codes.reference)
    rng = np.random.default_rng([seed, 7])
    shape_groups = {}
    for w in codes.reference:
        shape_groups.setdefault(codes.group(w, SHAPE_GROUP_MAX), []).append(w)
    n_groups = max(2, round(k / CLASSES_PER_SHAPE_GROUP))
    share = -(-k // n_groups)
    big = [g for g in shape_groups if len(shape_groups[g]) >= share]
    order = _interleave_by_top(big, codes, rng)
    order += _interleave_by_top([g for g in shape_groups if g not in set(big)], codes, rng)
    chosen = []
    remaining = {g: list(shape_groups[g]) for g in order}
    while len(chosen) < k:  # more passes only when the groups' shares do not add up to K (K near 1000)
        for g in order:
            if len(chosen) == k:
                break
            taken = _take_whole_colour_groups(remaining[g], min(share, k - len(chosen)), codes, rng)
            remaining[g] = [w for w in remaining[g] if w not in set(taken)]
            chosen.extend(taken)
    return sorted(chosen)


def choose_breeds_classes(source: str, k=None) -> list:
    """The classes of a BREEDS set named as 'breeds:NAME' (source and target halves), sorted; with `k`, only
    whole superclasses in id order while they fit in K classes (at least two superclasses)."""
    from ..breeds import BREEDS_SETS, breeds_splits
    kind, _, name = source.partition(":")
    if kind != "breeds" or name not in BREEDS_SETS:
        raise UsageError(f"--classes-from {source!r}: expected breeds:NAME with NAME one of {', '.join(BREEDS_SETS)}")
    chosen, superclasses = [], 0
    for sc, (src, tgt) in sorted(breeds_splits(name).items()):
        if k is not None and len(chosen) + len(src) + len(tgt) > k:
            break
        chosen += list(src) + list(tgt)
        superclasses += 1
    if superclasses < 2:
        raise UsageError(f"--classes {k} holds fewer than two whole superclasses of {name}: raise it")
    return sorted(chosen)


def render_job(job):
    """Worker: render one image and write it as JPEG; returns the object's box."""
    path, appearance, width, height, seed_key = job
    from PIL import Image
    img, box = render_object_image(appearance, width, height, np.random.default_rng(seed_key))
    Image.fromarray(img).save(path, "JPEG", quality=JPEG_QUALITY)
    return box


def run_jobs(jobs: list, workers: int, desc: str) -> list:
    """Run `render_job` over `jobs` (in order) on `workers` processes with a progress bar (images/s)."""
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc=desc, unit="img", smoothing=0.1, mininterval=1.0)
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(render_job(job))
            bar.update()
    else:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            results = []
            for box in pool.imap(render_job, jobs, chunksize=32):
                results.append(box)
                bar.update()
    bar.close()
    return results


def check_new_output(out) -> None:
    """OUT must not exist or be empty: a synthetic dataset never overwrites one. Each writer then builds it in a
    staging folder beside OUT (fastload.files.staged_folder) and publishes it in one rename, so an interrupted run
    never leaves a partial dataset."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {out} already exists and is not empty: choose a new folder or remove it")


def write_imagenet(out, classes: int = 100, train_per_class: int = 100, val_per_class: int = 10, size="128",
                   seed: int = 0, workers: int = 2, classes_from=None) -> dict:
    """Write a synthetic ILSVRC-2012 folder at `out` (module docstring); returns its summary. With `classes_from`
    ('breeds:living17') the classes are those of a BREEDS set (`classes`: None for all of them)."""
    from ..resources import read_imagenet_classes
    width, height = parse_size(size)
    for flag, value in (("--train-per-class", train_per_class), ("--val-per-class", val_per_class),
                        ("--workers", workers)):
        if value < 1:
            raise UsageError(f"{flag} {value}: expected at least 1")
    if classes is not None and not 2 <= classes <= 1000:  # checked again against the class list
        raise UsageError(f"--classes {classes}: expected 2..1000")
    codes = TreeCodes()
    if classes_from:
        wnids = choose_breeds_classes(classes_from, classes)
    else:
        wnids = choose_classes(100 if classes is None else classes, seed, codes)
    names = dict(read_imagenet_classes())
    appearances = {w: codes.appearance(w) for w in wnids}
    check_new_output(out)
    with staged_folder(out) as tmp:  # removed if anything fails
        start = time.perf_counter()
        jobs = []
        for w in wnids:
            (tmp / "train" / w).mkdir(parents=True)
            jobs += [(str(tmp / "train" / w / f"{w}_{i}.JPEG"), appearances[w], width, height,
                      [seed, 0, int(w[1:]), i]) for i in range(1, train_per_class + 1)]
        run_jobs(jobs, workers, "synth train")
        (tmp / "val").mkdir()
        val = [(w, j) for w in wnids for j in range(val_per_class)]
        val = [val[i] for i in np.random.default_rng([seed, 1]).permutation(len(val))]
        val_jobs = [(str(tmp / "val" / f"ILSVRC2012_val_{n:08d}.JPEG"), appearances[w], width, height,
                     [seed, 1, int(w[1:]), j]) for n, (w, j) in enumerate(val, 1)]
        boxes = run_jobs(val_jobs, workers, "synth val")
        write_val_solution(tmp / "LOC_val_solution.csv", [w for w, _ in val], boxes)
        write_text(tmp / "LOC_synset_mapping.txt", "".join(f"{w} {names[w]}\n" for w in wnids))
        summary = {"kind": "imagenet", "classes": len(wnids), "train_per_class": train_per_class,
                   "val_per_class": val_per_class, "width": width, "height": height, "seed": seed,
                   **({"classes_from": classes_from} if classes_from else {}),
                   "class_groups": {w: {"shape": codes.group(w, SHAPE_GROUP_MAX), "colour": codes.group(w, COLOUR_GROUP_MAX)}
                                    for w in wnids}}
        write_json(tmp / "synth.json", summary, indent=1)
        publish_folder(tmp, out)
    summary["seconds"] = round(time.perf_counter() - start, 2)  # not in synth.json: the files stay reproducible
    return summary


def write_val_solution(path: Path, wnids: list, boxes: list) -> None:
    lines = ["ImageId,PredictionString"]
    for n, (w, (x0, y0, x1, y1)) in enumerate(zip(wnids, boxes), 1):
        lines.append(f"ILSVRC2012_val_{n:08d},{w} {x0} {y0} {x1} {y1}")
    write_text(path, "\n".join(lines) + "\n")
