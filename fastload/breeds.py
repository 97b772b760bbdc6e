"""BREEDS taxonomies (Santurkar, Tsipras, Madry, ICLR 2021): entity13, entity30, living17, nonliving26.

The hierarchy is BREEDS' "modified" ImageNet hierarchy, calibrated for visual similarity: three files the user
supplies (they are not part of fastload; datasets/breeds/README.md says where to get them), read from
$FASTLOAD_BREEDS_DIR when set, else from datasets/breeds/ in the checkout. Without them every BREEDS use is a
one-line error saying which file is missing where; everything else works. It is a graph of parent -> child edges;
nodes that are not WordNet synsets have ids like `dummy32`. The rules, as the BREEDS reference generator applies them:

- the graph kept is every edge on a path from a node down to one of the 1000 ImageNet classes (the leaves);
- a node's level is its LONGEST path from the root `n00001740` (entity);
- the leaves of a node are the ImageNet classes met walking down from it, not walking on below a leaf;
- a set is made of the nodes at one level (optionally below one ancestor), sorted by id, keeping those with at
  least N leaves (N: subclasses per superclass, even); each kept superclass, in id order, draws N of its
  subclasses from ONE numpy RandomState(2) shared by all superclasses, the first N/2 drawn being the source and
  the rest the target ("rand" split). The pool drawn from is: go down from the superclass while a node has a
  single child; then the leaves of each child of that node, concatenated (a leaf reached through two children
  appears twice) and sorted.

`rand` is the split of the published benchmarks. The paper's other two (`split_type` "good" / "bad") draw
nothing: the children of that same node, biggest first (by leaf count; ties in id order), each give their
sorted leaves: "good" puts half of each child's leaves in the source and the next ones in the target (so similar
subclasses sit on both sides), "bad" fills the smaller side with whole children (so similar subclasses sit on
one side), with the leaves cut off a child kept as spares to top up a side at the end.
"""
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FastloadError
from .resources import DATASETS_DIR

BREEDS_DIR = DATASETS_DIR / "breeds"  # used when $FASTLOAD_BREEDS_DIR is not set
BREEDS_ENV = "FASTLOAD_BREEDS_DIR"
BREEDS_FILES = ("class_hierarchy.txt", "dataset_class_info.json", "node_names.txt")
BREEDS_SOURCE = ("imagenet_class_hierarchy/modified/ of https://github.com/MadryLab/BREEDS-Benchmarks (commit "
                 "f83be50; datasets/breeds/README.md)")
BREEDS_ROOT = "n00001740"
BREEDS_SEED = 2
SPLIT_PARTS = ("source", "target")
SPLIT_TYPES = ("rand", "good", "bad")


@dataclass(frozen=True)
class BreedsRecipe:
    """One BREEDS benchmark: the superclass level, the ancestor it lies under (None: anywhere) and the
    subclasses per superclass (half source, half target)."""
    level: int
    ancestor: str
    subclasses: int
    description: str


BREEDS_SETS = {
    "entity13": BreedsRecipe(3, None, 20, "BREEDS ENTITY-13: 13 level-3 superclasses x 20 subclasses"),
    "entity30": BreedsRecipe(4, None, 8, "BREEDS ENTITY-30: 30 level-4 superclasses x 8 subclasses"),
    "living17": BreedsRecipe(5, "n00004258", 4, "BREEDS LIVING-17: 17 level-5 living-thing superclasses x 4"),
    "nonliving26": BreedsRecipe(5, "n00021939", 4, "BREEDS NONLIVING-26: 26 level-5 non-living superclasses x 4"),
}


def breeds_dir() -> Path:
    """The folder the BREEDS hierarchy files are read from: $FASTLOAD_BREEDS_DIR when set, else datasets/breeds."""
    env = os.environ.get(BREEDS_ENV, "").strip()
    return Path(env).expanduser() if env else BREEDS_DIR


def missing_breeds_files(folder=None) -> list:
    """The hierarchy files (BREEDS_FILES) that `folder` (default: breeds_dir()) lacks."""
    folder = Path(folder) if folder is not None else breeds_dir()
    return [f for f in BREEDS_FILES if not (folder / f).is_file()]


def breeds_available() -> bool:
    """Whether breeds_dir() holds the three hierarchy files."""
    return not missing_breeds_files()


def missing_hierarchy_error(folder, missing) -> FastloadError:
    """The one-line error for hierarchy files absent from `folder`: which, where it looked, how to get them."""
    via = f"${BREEDS_ENV}" if os.environ.get(BREEDS_ENV, "").strip() else f"${BREEDS_ENV} is not set"
    files = f"file{'s' if len(missing) > 1 else ''} {', '.join(missing)} {'are' if len(missing) > 1 else 'is'}"
    return FastloadError(f"the BREEDS hierarchy {files} missing from {folder} ({via}): copy the three files of "
                         f"{BREEDS_SOURCE} into that folder, or set {BREEDS_ENV} to a folder holding them")


def require_breeds_dir() -> Path:
    """breeds_dir(), or the missing-files error when it lacks one of the hierarchy files."""
    folder = breeds_dir()
    missing = missing_breeds_files(folder)
    if missing:
        raise missing_hierarchy_error(folder, missing)
    return folder


class BreedsHierarchy:
    """The BREEDS class hierarchy read from a folder holding dataset_class_info.json, class_hierarchy.txt and
    node_names.txt (default: breeds_dir(), which must hold them)."""

    def __init__(self, folder=None, root: str = BREEDS_ROOT):
        folder = Path(folder) if folder is not None else require_breeds_dir()
        try:
            info = json.loads((folder / "dataset_class_info.json").read_text())
            edges = [line.split() for line in (folder / "class_hierarchy.txt").read_text().splitlines() if line.strip()]
            names = [line.split("\t") for line in (folder / "node_names.txt").read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as e:
            raise FastloadError(f"cannot read the BREEDS hierarchy in {folder}: {e}") from None
        if any(len(e) != 2 for e in edges) or any(len(n) < 2 for n in names):
            raise FastloadError(f"{folder}: class_hierarchy.txt needs 'parent child' lines, node_names.txt "
                                "'id<TAB>name' lines")
        self.leaves = [c[1] for c in info]
        self.leaf_set = set(self.leaves)
        self.leaf_names = {c[1]: c[2] for c in info}
        self.node_names = {n[0]: n[1] for n in names}
        self.root = root
        self.children = self._kept_children(edges)
        self.level = self._levels()

    def _kept_children(self, edges) -> dict:
        """parent -> sorted children, over the edges that lead down to a leaf (walked up from the leaves)."""
        parents = {}
        for p, c in edges:
            parents.setdefault(c, []).append(p)
        kept, frontier, seen = {}, [w for w in self.leaves if w in parents], set()
        while frontier:
            nxt = set()
            for node in frontier:
                for p in parents.get(node, ()):
                    kept.setdefault(p, set()).add(node)
                    nxt.add(p)
            frontier = [n for n in nxt if n not in seen]
            seen.update(frontier)
        return {p: sorted(cs) for p, cs in kept.items()}

    def _levels(self) -> dict:
        """node -> length of its longest path from the root."""
        level, order = {}, self._topological_from_root()
        level[self.root] = 0
        for node in order:
            for c in self.children.get(node, ()):
                level[c] = max(level.get(c, 0), level[node] + 1)
        return level

    def _topological_from_root(self) -> list:
        visited, order = set(), []

        def visit(node, stack):
            if node in stack:
                raise FastloadError(f"the BREEDS hierarchy has a cycle at {node}")
            if node in visited:
                return
            stack.add(node)
            for c in self.children.get(node, ()):
                visit(c, stack)
            stack.discard(node)
            visited.add(node)
            order.append(node)

        visit(self.root, set())
        return order[::-1]

    def name(self, node: str) -> str:
        return self.node_names.get(node) or self.leaf_names.get(node) or node

    def descendants(self, node: str) -> set:
        """`node` and every node below it."""
        out, stack = {node}, [node]
        while stack:
            for c in self.children.get(stack.pop(), ()):
                if c not in out:
                    out.add(c)
                    stack.append(c)
        return out

    def leaves_under(self, node: str) -> set:
        """The ImageNet classes reached walking down from `node` without walking on below a class."""
        found = {node} if node in self.leaf_set else set()
        frontier = [node]
        while frontier:
            nxt = set()
            for n in frontier:
                for c in self.children.get(n, ()):
                    if c in self.leaf_set:
                        found.add(c)
                    else:
                        nxt.add(c)
            frontier = nxt
        return found

    def nodes_at_level(self, level: int, ancestor=None) -> list:
        """Sorted nodes at `level`, restricted to those below `ancestor` when given."""
        below = self.descendants(ancestor) if ancestor else None
        return sorted(n for n, lv in self.level.items() if lv == level and (below is None or n in below))

    def split_groups(self, superclass: str) -> dict:
        """child -> its sorted leaves, for the children of the first node at or below `superclass` with more than
        one child (module docstring)."""
        kids = self.children.get(superclass, [])
        while len(kids) == 1:
            kids = self.children.get(kids[0], [])
        return {kid: sorted(self.leaves_under(kid)) for kid in kids}

    def split_pool(self, superclass: str) -> list:
        """The sorted list the "rand" subclasses are drawn from: every child's leaves (a leaf reached through
        two children counted twice)."""
        return sorted(w for leaves in self.split_groups(superclass).values() for w in leaves)


def superclass_splits(hierarchy: BreedsHierarchy, level: int, subclasses: int, ancestor=None,
                      seed: int = BREEDS_SEED, split_type: str = "rand") -> dict:
    """superclass -> (source wnids, target wnids): `subclasses` (even, >= 2) per superclass, split by
    `split_type` (module docstring)."""
    if subclasses < 2 or subclasses % 2:
        raise FastloadError(f"BREEDS subclasses per superclass must be even and >= 2, got {subclasses}")
    if split_type not in SPLIT_TYPES:
        raise FastloadError(f"BREEDS split type {split_type!r}: choose one of {', '.join(SPLIT_TYPES)}")
    rng = np.random.RandomState(seed)  # the legacy generator: its stream is fixed across numpy versions
    half = subclasses // 2
    out = {}
    for sc in hierarchy.nodes_at_level(level, ancestor):
        if len(hierarchy.leaves_under(sc)) < subclasses:
            continue
        if split_type != "rand":
            out[sc] = _similarity_split(hierarchy, sc, half, split_type == "good")
            continue
        pool = hierarchy.split_pool(sc)
        if len(pool) < subclasses:
            raise FastloadError(f"BREEDS superclass {sc} has {len(pool)} subclasses to draw, fewer than {subclasses}")
        drawn = [str(w) for w in rng.choice(pool, subclasses, replace=False)]
        if len(set(drawn)) != subclasses:
            raise FastloadError(f"BREEDS superclass {sc}: the draw repeated a subclass reached by two paths")
        out[sc] = (drawn[:half], drawn[half:])
    return out


def _similarity_split(hierarchy, superclass, half: int, good: bool) -> tuple:
    """The "good" or "bad" split of one superclass: `half` subclasses a side, from its children's leaves."""
    by_child = hierarchy.split_groups(superclass)
    groups = sorted((by_child[k] for k in sorted(by_child)), key=len, reverse=True)  # stable: ties in id order
    source, target, spare = [], [], []
    for leaves in groups:
        if good:
            first = (1 if len(source) < half else 0) if len(leaves) == 1 else min(len(leaves) // 2, half - len(source))
            room_target = half - len(target)
            if len(source) < half:
                source.extend(leaves[:first])
            if room_target > 0:
                target.extend(leaves[first:first + room_target])
            continue
        side = source if len(source) <= len(target) and len(source) < half else (target if len(target) < half else None)
        if side is not None:
            room = half - len(side)
            spare.extend(leaves[room:])
            side.extend(leaves[:room])
    if not good:
        for side in (source, target):
            if len(side) < half:
                side.extend(spare[:half - len(side)])
    if len(source) != half or len(target) != half or set(source) & set(target):
        raise FastloadError(f"BREEDS superclass {superclass}: the {'good' if good else 'bad'} split does not give "
                            f"{half} distinct subclasses a side")
    return source, target


def default_hierarchy() -> BreedsHierarchy:
    """The hierarchy in breeds_dir() (read once per folder); the missing-files error when it is not there."""
    return _hierarchy_in(str(require_breeds_dir()))


@functools.lru_cache(maxsize=None)
def _hierarchy_in(folder: str) -> BreedsHierarchy:
    return BreedsHierarchy(folder)


def breeds_splits(name: str) -> dict:
    """superclass -> (source, target) of one of BREEDS_SETS, from the hierarchy in breeds_dir()."""
    return _splits_in(name, str(require_breeds_dir()))


@functools.lru_cache(maxsize=None)
def _splits_in(name: str, folder: str) -> dict:
    r = BREEDS_SETS[name]
    return superclass_splits(_hierarchy_in(folder), r.level, r.subclasses, r.ancestor)


def breeds_set_descriptions() -> dict:
    """name -> description of the 12 BREEDS label sets: each of BREEDS_SETS, then its source and target halves."""
    out = {}
    for name, recipe in BREEDS_SETS.items():
        out[name] = recipe.description + " (source and target)"
        for part in SPLIT_PARTS:
            out[f"{name}_{part}"] = f"{recipe.description}: {part} half"
    return out


def breeds_class_labels(name: str, wnids, part=None) -> list:
    """Superclass id of each of `wnids` in BREEDS set `name` (its source or target part only, when `part` is
    'source'/'target'), None for classes outside it."""
    label = {}
    for sc, halves in breeds_splits(name).items():
        for i, half in enumerate(halves):
            if part is None or part == SPLIT_PARTS[i]:
                label.update({w: sc for w in half})
    return [label.get(str(w)) for w in wnids]


def parse_breeds_name(name: str):
    """'living17_target' -> ('living17', 'target'); 'entity30' -> ('entity30', None); None if not a BREEDS set."""
    for part in SPLIT_PARTS:
        if name.endswith("_" + part) and name[: -len(part) - 1] in BREEDS_SETS:
            return name[: -len(part) - 1], part
    return (name, None) if name in BREEDS_SETS else None
