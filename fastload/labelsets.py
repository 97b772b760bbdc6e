"""Label sets by name: the built-in ones over ImageNet-1k, and any name resolved over a dataset's classes.

Every set maps each class (a wnid) to a label synset, or excludes it (paper sections 4 to 6), and is built from the
WordNet tree, none typed in by hand:
- the paper's cuts (fastload.label_tree): bottom-up, top-down, PASCAL-removed, the minimal and random splits;
- BREEDS (fastload.breeds): entity13, entity30, living17, nonliving26 labelled by superclass, and their
  `_source` / `_target` halves; classes outside a set are excluded. Built only when the BREEDS hierarchy files
  are found (fastload.breeds.breeds_dir); naming one without them is the error saying which file is missing;
- any cut of the tree from a declarative spec (fastload.taxonomy): a .yaml file or an inline `{...}` mapping.

A `LabelSet` (fastload.label_tree) is the one label-lookup path used by manifests, training, evaluation and analyses.
"""
import functools
import re
from pathlib import Path

from .errors import FastloadError, UsageError
from .label_tree import LabelSet, bottom_up, minimal_split, pascal_removed, random_split, top_down
from .resources import imagenet_wnids
from .wordnet import default_tree


# ---- the built-in label sets ---------------------------------------------------------------------------------

def build_label_sets(wnids=None, tree=None, split_depth=4, random_seed=0) -> dict:
    """Every built-in label set over `wnids` (default: the ImageNet-1k classes), by name."""
    tree = tree or default_tree()
    wnids = list(wnids) if wnids is not None else imagenet_wnids()
    for w in wnids:
        tree.synset(w)  # unknown wnids fail here, with the id in the message
    sets = {}

    def add(name, mapping, description):
        sets[name] = LabelSet(name, wnids, mapping, description)

    add("full", list(wnids), f"all {len(wnids)} classes, each its own label")
    for mapping in bottom_up(tree, wnids):
        k = len(set(mapping))
        add(f"bottom_up_{k}", mapping, "bottom-up: deepest labels replaced by their parents (Fig. 3)")
    for mapping in top_down(tree, wnids):
        k = len(set(mapping))
        add(f"top_down_{k}", mapping, "top-down: parents, merged into labels on their parent chain")
    add("pascal_removed", pascal_removed(tree, wnids), "classes under any PASCAL VOC category removed")
    in_a, in_b = minimal_split(tree, wnids, split_depth)
    add("minimal_split_a", [w if a else None for w, a in zip(wnids, in_a)],
        f"split A: no depth-{split_depth} ancestor shared with split B")
    add("minimal_split_b", [w if b else None for w, b in zip(wnids, in_b)],
        f"split B: no depth-{split_depth} ancestor shared with split A")
    ra, rb = random_split(len(wnids), sum(in_a), random_seed)
    add("random_split_a", [w if a else None for w, a in zip(wnids, ra)], f"random split A (seed {random_seed})")
    add("random_split_b", [w if b else None for w, b in zip(wnids, rb)], f"random split B (seed {random_seed})")
    from .breeds import breeds_available
    if breeds_available():  # optional user-supplied files; `labelsets list` says when they are absent
        add_breeds_sets(add, wnids)
    return sets


def add_breeds_sets(add, wnids):
    """The BREEDS benchmarks over `wnids` (fastload.breeds): `add(name, mapping, description)` for each."""
    from .breeds import breeds_class_labels, breeds_set_descriptions, parse_breeds_name
    for name, description in breeds_set_descriptions().items():
        base, part = parse_breeds_name(name)
        add(name, breeds_class_labels(base, wnids, part), description)


def breeds_folder_key():
    """The BREEDS folder in use as a cache key: its path when it holds the files, else None."""
    from .breeds import breeds_dir, missing_breeds_files
    folder = breeds_dir()
    return None if missing_breeds_files(folder) else str(folder)


def builtin_label_sets() -> dict:
    """Every built-in label set over ImageNet-1k (the BREEDS ones when the hierarchy files are found)."""
    return _builtin_label_sets(breeds_folder_key())


@functools.lru_cache(maxsize=None)
def _builtin_label_sets(breeds_folder) -> dict:
    return build_label_sets()


def require_breeds_for(name: str):
    """A BREEDS set name without the hierarchy files: the error naming the missing file, before 'unknown'."""
    from .breeds import parse_breeds_name, require_breeds_dir
    if parse_breeds_name(name):
        require_breeds_dir()


def get_label_set(name: str) -> LabelSet:
    """A built-in label set by name, a label set read from a `class<TAB>label` .tsv file path, or one built
    from a spec (a .yaml/.yml file or an inline `{...}` mapping, see fastload.taxonomy) over ImageNet-1k."""
    if is_spec(name):
        from .taxonomy import label_set_from_spec
        return label_set_from_spec(name, imagenet_wnids())
    if name.endswith(".tsv") or "/" in name:
        if not Path(name).is_file():
            raise FastloadError(f"label-set file {name} does not exist")
        return LabelSet.from_tsv(name)
    sets = builtin_label_sets()
    if name not in sets:
        require_breeds_for(name)
        raise UsageError(f"unknown label set '{name}'; choose one of: {', '.join(sets)} (or a .tsv file)")
    return sets[name]


# ---- label sets over any dataset's classes: the one lookup path for manifests, training and analyses ---------

IMAGENET_CLASSES = 1000  # FAMILY@K counts are in ImageNet-1k terms
FAMILIES = ("bottom_up", "top_down")


def _label_sets_over(class_wnids: tuple) -> dict:
    return _label_sets_over_cached(class_wnids, breeds_folder_key())


@functools.lru_cache(maxsize=8)
def _label_sets_over_cached(class_wnids: tuple, breeds_folder) -> dict:
    if sorted(class_wnids) == imagenet_wnids():
        return builtin_label_sets()
    return build_label_sets(list(class_wnids))


def resolve_label_set(name: str, class_wnids):
    """A LabelSet for `name` usable with these classes.

    - `full`: every class its own label (needs no WordNet, so works for any folder names);
    - a built-in name (`bottom_up_918`, `pascal_removed`, ...): for the 1000 ImageNet classes the paper's label sets;
      for any other class list the label sets are rebuilt over exactly those classes (their sizes differ then);
    - `bottom_up@K` / `top_down@K`: the step of that family whose label count is nearest to K/1000 of the index's
      classes (ties: the larger; never the 1-label step unless K=1), i.e. K in ImageNet-1k terms; on ImageNet-1k
      `bottom_up@918` is `bottom_up_918`;
    - `A+B`: the union of two label sets that keep disjoint classes (e.g. minimal_split_a+minimal_split_b = full);
    - a path to a `class<TAB>label` .tsv file;
    - a spec: a .yaml/.yml file or an inline `{...}` YAML mapping (fastload.taxonomy), built over these classes.
    """
    class_wnids = [str(w) for w in class_wnids]
    if is_spec(name):
        from .taxonomy import label_set_from_spec
        return label_set_from_spec(name, class_wnids)
    if "+" in name:
        return _union(name, [resolve_label_set(part, class_wnids) for part in name.split("+")], class_wnids)
    if name == "full":
        return LabelSet("full", class_wnids, list(class_wnids), f"all {len(class_wnids)} classes, each its own label")
    if name.endswith(".tsv") or "/" in name:
        return get_label_set(name)
    sets = _label_sets_over(tuple(class_wnids))
    if "@" in name:
        return _nearest_step(name, sets, len(class_wnids))
    if name not in sets:
        require_breeds_for(name)
        hint = "; for a family step in ImageNet-1k terms use bottom_up@K or top_down@K" if "_" in name else ""
        raise UsageError(f"label set '{name}' is not defined over this index's {len(class_wnids)} classes; choose "
                         f"one of: {', '.join(sets)}{hint}")
    return sets[name]


def is_spec(name: str) -> bool:
    """A label-set spec rather than a name: an inline `{...}` mapping or a .yaml/.yml file."""
    return name.lstrip().startswith("{") or name.endswith((".yaml", ".yml"))


def _nearest_step(name, sets, num_classes):
    family, _, k = name.partition("@")
    if family not in FAMILIES or not k.isdigit() or int(k) <= 0:
        raise UsageError(f"bad label set '{name}': expected FAMILY@K with FAMILY in {', '.join(FAMILIES)} and K a "
                         "positive label count in ImageNet-1k terms, e.g. bottom_up@918")
    target = int(k) * num_classes / IMAGENET_CLASSES
    # a single label trains nothing: only K=1 asks for it
    steps = [ls for n, ls in sets.items() if re.fullmatch(f"{family}_\\d+", n) and (ls.num_labels > 1 or int(k) == 1)]
    if not steps:
        raise UsageError(f"no {family} label sets over these {num_classes} classes")
    return min(steps, key=lambda ls: (abs(ls.num_labels - target), -ls.num_labels))


def _union(name, parts, class_wnids):
    mapped = [class_labels(ls, class_wnids) for ls in parts]
    out = []
    for i, labels in enumerate(zip(*mapped)):
        kept = {lab for lab in labels if lab is not None}
        if len(kept) > 1:
            raise UsageError(f"label set '{name}': class {class_wnids[i]} has different labels in its parts {kept}")
        out.append(kept.pop() if kept else None)
    return LabelSet(name, list(class_wnids), out, f"union of {', '.join(ls.name for ls in parts)}")


def class_labels(label_set, class_wnids) -> list:
    """Label wnid (or None = excluded) of each of the index's classes, matched by wnid."""
    pos = {w: i for i, w in enumerate(label_set.class_wnids)}
    out = []
    for w in class_wnids:
        i = pos.get(str(w))
        if i is None:
            raise FastloadError(f"class {w} of the index is not among the {len(pos)} classes of label set "
                                f"'{label_set.name}'")
        out.append(label_set.class_to_label[i])
    return out
