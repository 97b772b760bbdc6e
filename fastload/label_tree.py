"""A label set and the cuts of the WordNet tree that build one (paper sections 4 to 6), over any list of wnids:
- bottom-up (Fig. 3): repeatedly replace every label at the deepest depth by its parent;
- top-down: replace every label by its parent, then merge each label into any other label on its parent chain;
- PASCAL-removed: drop every class with a PASCAL VOC category among its hypernyms (any path);
- minimal split: whole depth-4 subtrees to two splits, largest first, each to the currently smaller split;
- random split: a seeded random partition of the same sizes.

fastload.labelsets names the built-in sets made from these and resolves a name over a dataset's classes;
fastload.taxonomy builds a set from a declarative spec with the same cuts.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FastloadError
from .resources import dataset_file
from .wordnet import WordNetTree


@dataclass
class LabelSet:
    """`class_to_label[i]` is the label wnid of class `class_wnids[i]`, or None when the class is excluded."""
    name: str
    class_wnids: list
    class_to_label: list
    description: str = ""
    labels: list = field(init=False)

    def __post_init__(self):
        if len(self.class_to_label) != len(self.class_wnids):
            raise ValueError(f"label set {self.name}: {len(self.class_to_label)} labels for {len(self.class_wnids)} classes")
        self.labels = sorted({lab for lab in self.class_to_label if lab is not None})

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def num_classes_kept(self) -> int:
        return sum(lab is not None for lab in self.class_to_label)

    def lookup(self) -> np.ndarray:
        """int32 array: class id -> label id (index into `labels`), -1 for excluded classes."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        return np.array([index[lab] if lab is not None else -1 for lab in self.class_to_label], dtype=np.int32)

    def members(self) -> dict:
        """label wnid -> list of class wnids mapped to it."""
        out = {lab: [] for lab in self.labels}
        for wnid, lab in zip(self.class_wnids, self.class_to_label):
            if lab is not None:
                out[lab].append(wnid)
        return out

    def to_tsv(self) -> str:
        return "".join(f"{c}\t{lab or ''}\n" for c, lab in zip(self.class_wnids, self.class_to_label))

    @classmethod
    def from_tsv(cls, path, name=None):
        path = Path(path)
        wnids, labels, seen = [], [], {}
        try:
            text = path.read_text(encoding="utf-8")  # class names may be non-ASCII, whatever the locale
        except (OSError, UnicodeDecodeError) as e:
            raise FastloadError(f"cannot read label-set file {path}: {e}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip():
                raise FastloadError(f"{path}:{n}: expected 'class_wnid<TAB>label_wnid', got {line!r}")
            if parts[0] in seen:
                raise FastloadError(f"{path}:{n}: class {parts[0]!r} is listed twice (line {seen[parts[0]]})")
            seen[parts[0]] = n
            wnids.append(parts[0])
            labels.append(parts[1] or None)
        return cls(name or path.stem, wnids, labels, description=f"from {path}")


# ---- constructions -------------------------------------------------------------------------------------------

def bottom_up(tree: WordNetTree, wnids: list) -> list:
    """Fig. 3: each step replaces every label at the current deepest depth by its parent. Returns the list of
    class->label mappings after each step, down to the single root label."""
    labels = list(wnids)
    steps = []
    while True:
        depths = [tree.depth(lab) for lab in labels]
        deepest = max(depths)
        if deepest == 0:
            return steps
        labels = [tree.parent(lab) if d == deepest else lab for lab, d in zip(labels, depths)]
        steps.append(list(labels))


def merge_into_ancestors(tree: WordNetTree, labels: list) -> list:
    """Map every label whose parent chain passes through another label to the highest such label."""
    present = set(labels)
    merged = {}
    for lab in present:
        top = lab
        for anc in tree.path_to_root(lab)[1:]:
            if anc in present:
                top = anc
        merged[lab] = top
    return [merged[lab] for lab in labels]


def top_down(tree: WordNetTree, wnids: list) -> list:
    """Replace every label by its parent, then merge labels into labels on their parent chain; repeat.
    Returns each distinct mapping, down to (excluding) the single root label."""
    labels = merge_into_ancestors(tree, list(wnids))
    steps = []
    while True:
        labels = merge_into_ancestors(tree, [tree.parent(lab) or lab for lab in labels])
        if len(set(labels)) <= 1:
            return steps
        steps.append(list(labels))


PASCAL_MAPPING_FILE = "pascal_voc_wordnet.tsv"


def read_pascal_mapping() -> dict:
    """The 20 PASCAL VOC categories -> WordNet synset names (datasets/pascal_voc_wordnet.tsv)."""
    path = dataset_file(PASCAL_MAPPING_FILE)
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            category, synset_name = line.split("\t")[:2]
            out[category] = synset_name
    return out


def pascal_removed(tree: WordNetTree, wnids: list, pascal_synsets=None) -> list:
    """Exclude every class that has one of the PASCAL synsets among its hypernyms (any path) or is one."""
    names = pascal_synsets if pascal_synsets is not None else list(read_pascal_mapping().values())
    pascal = {tree.wnid_of_name(n) for n in names}
    return [None if (w in pascal or tree.all_hypernyms(w) & pascal) else w for w in wnids]


def minimal_split(tree: WordNetTree, wnids: list, depth: int = 4):
    """Group classes by their depth-`depth` ancestor; whole groups go to two splits, largest group first (ties by
    ancestor wnid), each to the currently smaller split (A on ties). Returns (in_a, in_b) boolean lists."""
    groups = {}
    for i, w in enumerate(wnids):
        groups.setdefault(tree.ancestor_at_depth(w, depth), []).append(i)
    size_a = size_b = 0
    in_a = [False] * len(wnids)
    for anc in sorted(groups, key=lambda a: (-len(groups[a]), a)):
        members = groups[anc]
        if size_a <= size_b:
            for i in members:
                in_a[i] = True
            size_a += len(members)
        else:
            size_b += len(members)
    return in_a, [not a for a in in_a]


def random_split(n: int, size_a: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(n)[:size_a].tolist())
    in_a = [i in chosen for i in range(n)]
    return in_a, [not a for a in in_a]
