"""Manifests: a pre-training set as row indices into the compiled TRAIN index plus a label lookup.

Nothing is recompiled: a manifest is `indices` (sorted rows of train_index.npz / train.beton) and `label_lookup`
(fine class id -> label id, -1 = excluded), applied at load time. A `Selection` says how to build one:

- `label_set`: any label set of fastload.labelsets, mapped onto the index's classes BY WNID (see `resolve_label_set`);
- `per_class` N: at most N images per unit (unit = fine class by default, as in the paper's Fig. 1; `unit='label'`
  samples per label instead); classes with fewer images keep all of theirs;
- `classes` k: a random subset of k units (among those the label set keeps);
- `budget` B: exactly B images spread as evenly as possible over the chosen units (paper sec. 5.5 pairs:
  1000 classes x N images versus N classes x 1000 images);
- `seed`, `nested`: selection is deterministic for a seed. Nested (default): every image gets one seeded random key
  (its position in a seeded permutation of all rows) and every unit takes its lowest-key images, so the 125-image set
  contains the 50-image set; units likewise get one seeded key, so a 100-class subset lies inside the 500-class one.

Label ids run 0..L-1 over the labels that received images, in wnid order; classes without images map to -1.

The per-image work (ranking inside units, selection, per-class counts) runs as Numba kernels over the whole index:
one pass over the rows in key order, no Python loop per image. fastload.manifest_reference does the same selection
with plain NumPy/Python; tests assert both give identical indices and labels.
"""
import json
import math
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from .beton import beton_fingerprint
from .errors import FastloadError, UsageError
from .files import atomic_path, check_plain_name, read_yaml, write_text
from .index import load_fingerprint, load_index_classes
from .labelsets import FAMILIES, IMAGENET_CLASSES, class_labels, resolve_label_set  # noqa: F401 (re-exported)

UNITS = ("class", "label")
PLURAL = {"class": "classes", "label": "labels"}
IMAGENET_MAX_PER_CLASS = 1300  # manifest-list counts are in ImageNet-1k terms, where a class has at most 1300 train images
PAPER_MANIFESTS = "paper_manifests.yaml"
MAX_COUNT = 2**31 - 1  # per_class, classes, budget: row and class ids are int32/int64 arrays; far above any dataset
MAX_SEED = 2**32 - 1  # numpy's legacy and torch's manual seeds both take it


# ---- what to select --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """One manifest's recipe. `per_class` and `budget` exclude each other; None means 'all'."""
    label_set: str = "full"
    per_class: int = None
    classes: int = None
    budget: int = None
    unit: str = "class"
    seed: int = 0
    nested: bool = True

    def __post_init__(self):
        for name in ("per_class", "classes", "budget"):
            value = getattr(self, name)
            if value is not None:
                if not _is_int(value) or not 0 < value <= MAX_COUNT:
                    raise UsageError(f"{name} must be a positive integer up to {MAX_COUNT} or unset, got {value!r}")
                object.__setattr__(self, name, int(value))  # plain ints: the recipe is saved as JSON
        if not isinstance(self.label_set, str) or not self.label_set:
            raise UsageError(f"label_set must be a label set name, got {self.label_set!r}")
        if not isinstance(self.nested, bool):
            raise UsageError(f"nested must be true or false, got {self.nested!r}")
        if self.per_class is not None and self.budget is not None:
            raise UsageError(f"give per_class ({self.per_class}) or budget ({self.budget}), not both: a budget "
                             "decides the images per unit itself")
        if self.unit not in UNITS:
            raise UsageError(f"unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed must be an integer in 0..{MAX_SEED}, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def image_order(num_rows: int, sel: Selection) -> np.ndarray:
    """All rows in seeded random order: a row's position here is its key (lower keys are taken first)."""
    entropy = [sel.seed, 0] if sel.nested else [sel.seed, 0, sel.per_class or 0, sel.budget or 0]
    return np.random.default_rng(entropy).permutation(num_rows)


def unit_order(num_units: int, sel: Selection) -> np.ndarray:
    """All units (classes or labels) in seeded random order: class subsets and budget remainders follow it."""
    entropy = [sel.seed, 1] if sel.nested else [sel.seed, 1, sel.classes or 0, sel.budget or 0]
    return np.random.default_rng(entropy).permutation(num_units)


# ---- the manifest file -----------------------------------------------------------------------------------------

MANIFEST_KEYS = ("indices", "label_lookup", "label_wnids", "label_names", "recipe", "class_wnids")


@dataclass
class Manifest:
    """Selected TRAIN rows (sorted int64), the class -> label lookup and the labels' wnids and names.
    `fingerprint`: of the train index the rows refer to (see check_source); `path`: where it was loaded from."""
    indices: np.ndarray
    label_lookup: np.ndarray
    label_wnids: np.ndarray
    label_names: np.ndarray
    recipe: dict
    class_wnids: np.ndarray
    fingerprint: str = ""
    path: str = None

    @property
    def num_labels(self) -> int:
        return len(self.label_wnids)

    @property
    def num_images(self) -> int:
        return len(self.indices)

    def labels(self, class_id: np.ndarray) -> np.ndarray:
        """Label id of every selected row, given the index's class_id column."""
        return self.label_lookup[np.asarray(class_id)[self.indices]]

    def val_indices(self, val_index) -> np.ndarray:
        """Every val row whose class maps to a label (relabel them with the same `label_lookup`).
        `val_index`: a val_index.npz path or an object with `class_id` and `class_wnids`."""
        if isinstance(val_index, (str, Path)):
            class_id, class_wnids = load_index_classes(val_index)
        else:
            class_id, class_wnids = np.asarray(val_index.class_id), np.asarray(val_index.class_wnids)
        if list(class_wnids) != list(self.class_wnids):
            raise FastloadError(f"val index classes ({len(class_wnids)}) differ from this manifest's train classes "
                                f"({len(self.class_wnids)}): compile train and val from the same dataset")
        return np.flatnonzero(self.label_lookup[class_id] >= 0).astype(np.int64)

    def save(self, path) -> Path:
        """Write the .npz atomically."""
        path = Path(path)
        if path.is_dir():
            raise FastloadError(f"{path} is a folder: give the manifest .npz file to write")
        with atomic_path(path) as tmp:
            np.savez(tmp, indices=self.indices.astype(np.int64), label_lookup=self.label_lookup.astype(np.int32),
                     label_wnids=np.asarray(self.label_wnids, dtype=str),
                     label_names=np.asarray(self.label_names, dtype=str),
                     recipe=np.array(json.dumps(self.recipe, sort_keys=True)),
                     class_wnids=np.asarray(self.class_wnids, dtype=str), fingerprint=np.asarray(self.fingerprint))
        return path


def load_manifest(path) -> Manifest:
    """Read a manifest written by Manifest.save: the one manifest reader. A missing, truncated or foreign file is
    one FastloadError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"manifest {path} does not exist (build one with `fastload subset`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in MANIFEST_KEYS if k not in data.files]
            if missing:
                raise FastloadError(f"{path} is not a fastload manifest: missing {', '.join(missing)}")
            arrays = {k: data[k] for k in MANIFEST_KEYS}
            fingerprint = str(data["fingerprint"]) if "fingerprint" in data.files else ""
        recipe = json.loads(str(arrays.pop("recipe")))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FastloadError(f"{path} is not a readable manifest (truncated or not a .npz from `fastload subset`): "
                            f"{type(e).__name__}: {e}") from None
    return Manifest(recipe=recipe, fingerprint=fingerprint, path=str(path), **arrays)


def check_source(manifest, beton_path) -> None:
    """Refuse a beton that was not compiled from the index `manifest` was built from (its row numbers would pick
    other images): FastloadError naming both files. `manifest`: a Manifest or a manifest path."""
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    name = manifest.path or "the manifest"
    if not manifest.fingerprint:
        raise FastloadError(f"manifest {name} records no fingerprint of the index it was built from (made before "
                            f"fingerprints, or by hand): rebuild it with `fastload subset` to use it with {beton_path}")
    theirs = beton_fingerprint(beton_path)
    if theirs != manifest.fingerprint:
        raise FastloadError(f"manifest {name} was built from another compile than {beton_path} (index fingerprint "
                            f"{manifest.fingerprint[:12]} vs {theirs[:12]}): rebuild the manifest from this compile's "
                            "train_index.npz, or use the beton it was made for")


# ---- label sets over the index's classes: fastload.labelsets.resolve_label_set ------------------------------


def label_names(wnids) -> list:
    """WordNet synset names ('dog.n.01') for wnid labels; non-wnid labels (plain folder names) name themselves."""
    wnids = [str(w) for w in wnids]
    if not any(re.fullmatch(r"n\d{8}", w) for w in wnids):
        return wnids
    from .wordnet import default_tree
    tree = default_tree()
    return [tree.name(w) if re.fullmatch(r"n\d{8}", w) else w for w in wnids]


# ---- Numba kernels ----------------------------------------------------------------------------------------------

@njit(cache=True)
def count_per_class(class_id, num_classes):
    """Images per class; `bad` is the first row whose class id is out of range (-1 if none)."""
    counts = np.zeros(num_classes, np.int64)
    bad = -1
    for i in range(class_id.shape[0]):
        c = class_id[i]
        if c < 0 or c >= num_classes:
            bad = i
            break
        counts[c] += 1
    return counts, bad


@njit(cache=True)
def sum_per_unit(class_counts, class_to_unit, num_units):
    out = np.zeros(num_units, np.int64)
    for c in range(class_counts.shape[0]):
        u = class_to_unit[c]
        if u >= 0:
            out[u] += class_counts[c]
    return out


@njit(cache=True)
def choose_units(order, eligible, k):
    """The first k eligible units in `order` (k < 0: all eligible), as unit ids in that order."""
    limit = eligible.shape[0] if k < 0 else k
    chosen = np.empty(min(limit, eligible.shape[0]), np.int64)
    m = 0
    for j in range(order.shape[0]):
        if m == limit:
            break
        u = order[j]
        if eligible[u]:
            chosen[m] = u
            m += 1
    return chosen[:m]


@njit(cache=True)
def fill_budget(avail, chosen, budget):
    """Caps giving exactly `budget` images over the chosen units: the highest common level c with
    sum(min(avail, c)) <= budget, then one more image for each of the first leftover units (in `chosen` order)
    that still have images. The caller checks budget <= sum(avail[chosen])."""
    lo, hi = 0, 0
    for u in chosen:
        hi = max(hi, avail[u])
    while lo < hi:
        mid = (lo + hi + 1) // 2
        total = 0
        for u in chosen:
            total += min(avail[u], mid)
        if total <= budget:
            lo = mid
        else:
            hi = mid - 1
    cap = np.zeros(avail.shape[0], np.int64)
    left = budget
    for u in chosen:
        cap[u] = min(avail[u], lo)
        left -= cap[u]
    for u in chosen:
        if left == 0:
            break
        if avail[u] > lo:
            cap[u] += 1
            left -= 1
    return cap


@njit(cache=True)
def select_rows(order, class_in_order, class_to_unit, cap, num_classes):
    """Walk the rows in key order; a row is taken while its unit is under its cap. Returns the selected rows
    (sorted) and the number taken per class. Stops as soon as every cap is met."""
    n = order.shape[0]
    need = 0
    for u in range(cap.shape[0]):
        need += cap[u]
    taken = np.zeros(cap.shape[0], np.int64)
    per_class = np.zeros(num_classes, np.int64)
    mask = np.zeros(n, np.bool_)
    got = 0
    for j in range(n):
        if got == need:
            break
        c = class_in_order[j]
        u = class_to_unit[c]
        if u >= 0 and taken[u] < cap[u]:
            taken[u] += 1
            per_class[c] += 1
            mask[order[j]] = True
            got += 1
    rows = np.empty(got, np.int64)
    m = 0
    for i in range(n):
        if mask[i]:
            rows[m] = i
            m += 1
    return rows, per_class


@njit(cache=True)
def relabel(class_label, per_class, num_labels):
    """Compact label ids over the labels that got images (ascending old id); classes without images -> -1."""
    new_id = np.full(num_labels, -1, np.int32)
    for c in range(class_label.shape[0]):
        if per_class[c] > 0 and class_label[c] >= 0:
            new_id[class_label[c]] = 0
    m = 0
    for lab in range(num_labels):
        if new_id[lab] == 0:
            new_id[lab] = m
            m += 1
    lookup = np.full(class_label.shape[0], -1, np.int32)
    for c in range(class_label.shape[0]):
        if per_class[c] > 0 and class_label[c] >= 0:
            lookup[c] = new_id[class_label[c]]
    return lookup, new_id


def compile_kernels() -> None:
    """Run every kernel once on tiny arrays of the production dtypes: compiles them (or loads Numba's cache=True
    cache from __pycache__), so later timings exclude JIT."""
    class_id = np.array([0, 1, 1, 2], np.int32)
    counts, _ = count_per_class(class_id, 3)
    class_to_unit = np.array([0, 1, -1], np.int32)
    avail = sum_per_unit(counts, class_to_unit, 2)
    chosen = choose_units(np.array([1, 0], np.int64), avail > 0, -1)
    cap = fill_budget(avail, chosen, 2)
    order = np.array([3, 1, 0, 2], np.int64)
    _, per_class = select_rows(order, class_id[order], class_to_unit, cap, 3)
    relabel(class_to_unit, per_class, 2)


# ---- building manifests -----------------------------------------------------------------------------------------

class ManifestBuilder:
    """Builds manifests from one index's class_id column; caches per-class counts and the seeded row order,
    so a whole manifest list costs one permutation per seed and one kernel pass per manifest."""

    def __init__(self, class_id, class_wnids, index_path=None, fingerprint=""):
        self.fingerprint = fingerprint  # of the index, stored in every manifest built here
        self.class_id = np.ascontiguousarray(class_id, dtype=np.int32)
        self.class_wnids = np.asarray([str(w) for w in class_wnids], dtype=str)
        self.index_path = str(index_path) if index_path is not None else None
        seen = set()
        twice = [w for w in self.class_wnids.tolist() if w in seen or seen.add(w)]
        if twice:
            raise FastloadError(f"the index's class_wnids list {', '.join(twice[:5])} more than once")
        self.class_counts, bad = count_per_class(self.class_id, len(self.class_wnids))
        if bad >= 0:
            raise FastloadError(f"index row {bad} has class id {self.class_id[bad]}, "
                                f"outside 0..{len(self.class_wnids) - 1}")
        self._orders = {}

    def _order(self, sel):
        key = (sel.seed, sel.nested, None if sel.nested else (sel.per_class, sel.budget))
        if key not in self._orders:
            order = image_order(len(self.class_id), sel)
            self._orders = {key: (order, self.class_id[order])}  # keep one seed's order: 15 MB at ImageNet scale
        return self._orders[key]

    def build(self, sel: Selection, label_set=None, namer=label_names) -> Manifest:
        """The manifest for `sel`; `label_set` (a LabelSet) overrides resolving `sel.label_set` by name."""
        label_set = label_set if label_set is not None else resolve_label_set(sel.label_set, self.class_wnids)
        present, class_label, class_to_unit, num_units = self._units(sel, label_set)
        avail = sum_per_unit(self.class_counts, class_to_unit, num_units)
        chosen = self._choose(sel, avail, label_set.name)
        cap = self._caps(sel, avail, chosen)
        order, class_in_order = self._order(sel)
        rows, per_class = select_rows(order, class_in_order, class_to_unit, cap, len(class_label))
        if len(rows) == 0:
            raise FastloadError(f"label set '{label_set.name}' keeps {int((class_label >= 0).sum())} of this index's "
                                f"{len(class_label)} classes ({', '.join(self.class_wnids[:3])}, ...) and no images: "
                                "the manifest would be empty")
        lookup, new_id = relabel(class_label, per_class, len(present))
        kept = [lab for lab, i in zip(present, new_id) if i >= 0]
        recipe = dict(asdict(sel), label_set_resolved=label_set.name, index=self.index_path,
                      num_images=int(len(rows)), num_labels=len(kept), num_units=int(len(chosen)),
                      min_per_unit=int(cap[chosen].min()), max_per_unit=int(cap[chosen].max()))
        return Manifest(rows, lookup, np.asarray(kept, dtype=str), np.asarray(namer(kept), dtype=str), recipe,
                        self.class_wnids, self.fingerprint)

    def _units(self, sel, label_set):
        """Label wnids present, each class's label id (-1 excluded), each class's unit (-1 excluded), unit count."""
        mapped = class_labels(label_set, self.class_wnids)
        present = sorted({lab for lab in mapped if lab is not None})
        lab_id = {lab: i for i, lab in enumerate(present)}
        class_label = np.array([lab_id[lab] if lab is not None else -1 for lab in mapped], dtype=np.int32)
        if sel.unit == "label":
            return present, class_label, class_label, len(present)
        class_to_unit = np.where(class_label >= 0, np.arange(len(class_label)), -1).astype(np.int32)
        return present, class_label, class_to_unit, len(class_label)

    def _choose(self, sel, avail, label_set_name):
        eligible = avail > 0
        if sel.classes is not None and sel.classes > int(eligible.sum()):
            raise UsageError(f"classes={sel.classes} but label set '{label_set_name}' keeps only {int(eligible.sum())} "
                             f"{PLURAL[sel.unit]} with images in this index; choose at most that many")
        return choose_units(unit_order(len(avail), sel), eligible, -1 if sel.classes is None else sel.classes)

    def _caps(self, sel, avail, chosen):
        if sel.budget is not None:
            have = int(avail[chosen].sum())
            if sel.budget > have:
                raise UsageError(f"budget={sel.budget} images but the chosen {len(chosen)} {PLURAL[sel.unit]} "
                                 f"hold only {have}")
            return fill_budget(avail, chosen, sel.budget)
        cap = np.zeros(len(avail), np.int64)
        cap[chosen] = avail[chosen] if sel.per_class is None else np.minimum(avail[chosen], sel.per_class)
        return cap


def build_manifest(class_id, class_wnids, sel: Selection, label_set=None, index_path=None, namer=label_names,
                   fingerprint=""):
    """One manifest from plain arrays (class_id per row, class_wnids in class-id order)."""
    return ManifestBuilder(class_id, class_wnids, index_path, fingerprint).build(sel, label_set, namer)


# ---- manifest lists: many manifests from a YAML file (datasets/paper_manifests.yaml) -----------------------------

LIST_KEYS = {"name", "kind", "question", "label_set", "per_class", "classes", "budget", "unit", "seed", "nested"}


class ManifestListEntry(NamedTuple):
    """One manifest of a manifest list: its file name stem, its kind (the paper question it serves) and recipe."""
    name: str
    kind: str
    selection: Selection


def manifest_list_path(name_or_path) -> Path:
    """`paper` -> datasets/paper_manifests.yaml; anything else is a YAML file path (FastloadError if missing)."""
    from .resources import dataset_file
    if str(name_or_path) == "paper":
        return dataset_file(PAPER_MANIFESTS)
    if not Path(name_or_path).is_file():
        raise FastloadError(f"manifest list '{name_or_path}' is neither 'paper' nor an existing YAML file")
    return Path(name_or_path)


def load_manifest_list(name_or_path) -> list:
    """[ManifestListEntry] of a manifest list: `seed` (default for all) and a `manifests` list. The one reader."""
    path = manifest_list_path(name_or_path)
    doc = read_yaml(path, "manifest list")
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise FastloadError(f"{path}: expected a mapping with a 'manifests' list")
    unknown = set(doc) - {"seed", "manifests"}
    if unknown:
        raise FastloadError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: seed, manifests")
    entries, names = [], set()
    for n, entry in enumerate(doc["manifests"], 1):
        bad = set(entry) - LIST_KEYS if isinstance(entry, dict) else {"<not a mapping>"}
        if bad or "name" not in entry:
            raise FastloadError(f"{path}: manifest #{n}: unknown keys {sorted(bad)} or no name; "
                                f"allowed: {sorted(LIST_KEYS)}")
        check_plain_name(entry["name"], "manifest name", str(path))  # it becomes OUT/<name>.npz
        if entry["name"] in names:
            raise FastloadError(f"{path}: manifest name '{entry['name']}' appears twice")
        names.add(entry["name"])
        fields = {k: v for k, v in entry.items() if k not in ("name", "kind", "question")}
        fields.setdefault("seed", doc.get("seed", 0))
        try:
            entries.append(ManifestListEntry(str(entry["name"]), str(entry.get("kind", "")), Selection(**fields)))
        except (UsageError, TypeError) as e:
            raise FastloadError(f"{path}: manifest '{entry['name']}': {e}") from None
    return entries


def build_manifest_list(index, manifests, out, only=None, scale: bool = True, log=print) -> list:
    """Build and save every manifest of a manifest list (or those named in `only`) from the train index file
    `index` into OUT/<name>.npz, plus OUT/manifests.tsv when the whole list is built. Counts are scaled to the
    index (list_scales) unless `scale` is False. Returns [(ManifestListEntry, Manifest)]."""
    entries = load_manifest_list(manifests)
    if only:
        unknown = sorted(set(only) - {e.name for e in entries})
        if unknown:
            raise UsageError(f"--only: no manifest named {', '.join(unknown)}; the list has: "
                             f"{', '.join(e.name for e in entries)}")
        entries = [e for e in entries if e.name in only]
    builder = builder_for_index(index)
    class_scale, image_scale = list_scales(builder.class_counts) if scale else (1.0, 1.0)
    log(f"index: {len(builder.class_id)} images, {len(builder.class_wnids)} classes; counts scaled by "
        f"{class_scale:.4g} (classes) and {image_scale:.4g} (images per class)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FastloadError(f"{out} is a file: --out must be a folder for a manifest list")
    built, kept = [], 0
    for entry in entries:
        target = out / f"{entry.name}.npz"
        manifest = finished_manifest(target, entry, manifests, builder.fingerprint, class_scale, image_scale)
        if manifest is not None:  # a rerun (after a full disk, say) keeps what an earlier run finished
            built.append((entry, manifest))
            kept += 1
            continue
        try:
            manifest = builder.build(scale_selection(entry.selection, class_scale, image_scale))
        except FastloadError as e:
            raise type(e)(f"manifest '{entry.name}' of {manifests}: {e}") from None
        manifest.recipe.update(manifest_list=str(manifests), list_name=entry.name,
                               list_selection=asdict(entry.selection), class_scale=class_scale,
                               image_scale=image_scale)
        manifest.save(target)
        built.append((entry, manifest))
    if kept:
        log(f"kept {kept} manifest(s) an earlier run had written from the same list entry and index")
    if not only:  # a partial build (one step of `fastload reproduce`) leaves the whole list's summary alone
        write_text(out / "manifests.tsv", "".join(line + "\n" for line in summary_lines(built)))
    return built


def finished_manifest(path: Path, entry, manifests, fingerprint: str, class_scale: float, image_scale: float):
    """The manifest at `path` when an earlier build wrote it from the same list entry (selection), list, index
    fingerprint and scales; else None (missing or unreadable files are rebuilt)."""
    if not path.is_file():
        return None
    try:
        manifest = load_manifest(path)
    except FastloadError:
        return None
    r = manifest.recipe
    same = (r.get("list_selection") == json.loads(json.dumps(asdict(entry.selection)))
            and r.get("manifest_list") == str(manifests) and r.get("list_name") == entry.name
            and manifest.fingerprint == fingerprint and r.get("class_scale") == class_scale
            and r.get("image_scale") == image_scale)
    return manifest if same else None


def builder_for_index(index) -> "ManifestBuilder":
    """A ManifestBuilder over a train index file (its class column and fingerprint)."""
    class_id, class_wnids = load_index_classes(index)
    return ManifestBuilder(class_id, class_wnids, index_path=Path(index).resolve(), fingerprint=load_fingerprint(index))


def summary_lines(built):
    """Tab-separated summary rows (header first) of [(entry or name, kind, Manifest)]-like pairs."""
    yield "name\tkind\tlabel_set\tlabels\tunits\timages\tper_unit"
    for entry, m in built:
        r = m.recipe
        yield (f"{entry.name}\t{entry.kind}\t{r['label_set_resolved']}\t{m.num_labels}\t{r['num_units']}\t"
               f"{m.num_images}\t{r['min_per_unit']}..{r['max_per_unit']}")


def list_scales(class_counts) -> tuple:
    """(class scale, image scale) turning ImageNet-1k counts into counts for a smaller index: classes / 1000 and
    largest class / 1300, each capped at 1 (an index as big as ImageNet or bigger keeps the paper's counts)."""
    return (min(1.0, len(class_counts) / IMAGENET_CLASSES),
            min(1.0, float(np.max(class_counts)) / IMAGENET_MAX_PER_CLASS) if len(class_counts) else 1.0)


def scale_selection(sel: Selection, class_scale: float, image_scale: float) -> Selection:
    """The selection with per_class x image_scale, classes x class_scale, budget x both (rounded half up, >= 1)."""
    def scaled(value, factor):
        return None if value is None else max(1, math.floor(value * factor + 0.5))
    return Selection(sel.label_set, scaled(sel.per_class, image_scale), scaled(sel.classes, class_scale),
                     scaled(sel.budget, class_scale * image_scale), sel.unit, sel.seed, sel.nested)
