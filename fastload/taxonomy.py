"""Any cut of a class hierarchy as a label set, from a small declarative spec (a YAML file or an inline mapping).

Keys (every one optional; unknown keys are an error):

    name: my_set                  # the label set's name (default: the file's stem, or 'spec')
    hierarchy: wordnet            # wordnet (fastload's single-parent WordNet tree) or breeds (the BREEDS files the user
                                  #   supplies: $FASTLOAD_BREEDS_DIR, else datasets/breeds; fastload.breeds)
    keep: [animal.n.01]           # keep only classes with one of these synsets among their hypernyms (any path)
    remove: [dog.n.01, n02121808] # drop classes with one of these among their hypernyms (any path) or equal to one
    depth: 6                      # label = the class's ancestor at this depth (the class itself if not deeper);
                                  #   breeds: the node at this level above the class (BREEDS' longest-path levels)
    climb: 3                      # wordnet: 3 top-down steps (parents, merged into labels on their parent chain)
    min_classes_per_label: 2      # drop labels with fewer classes
    max_classes_per_label: 10     # keep a seeded random 10 classes of bigger labels
    balance: true                 # every label keeps as many classes as the smallest label
    split: {kind: minimal, depth: 4, part: a}   # or {kind: random, part: b, seed: 0} (sized as minimal's A)
    classes_per_label: 8          # breeds: draw 8 subclasses per superclass with BREEDS' "rand" rule, dropping
    part: source                  #   superclasses with fewer; part: all (default), source or target
    breeds_split: rand            # breeds: rand (default, the published benchmarks), good or bad (BREEDS paper)
    seed: 0                       # seed of max_classes_per_label / balance (breeds draws: default 2, as BREEDS)
    fine: true                    # last: every kept class is its own label (the same classes, fine labels)

Order of application: keep/remove, labels (depth or climb), the split, min, max, balance, fine. Synsets are wnids
('n02084071') or names ('dog.n.01'); BREEDS-only node ids ('dummy32') are accepted with hierarchy: breeds.
`builtin_specs()` writes every built-in label set of fastload.labelsets in this language.
"""
from pathlib import Path

import numpy as np

from .errors import FastloadError, UsageError
from .label_tree import LabelSet, merge_into_ancestors, minimal_split, random_split

SPEC_KEYS = ("name", "hierarchy", "keep", "remove", "depth", "climb", "min_classes_per_label",
             "max_classes_per_label", "balance", "split", "classes_per_label", "part", "seed", "fine",
             "breeds_split")
SPLIT_KEYS = ("kind", "depth", "part", "seed")
HIERARCHIES = ("wordnet", "breeds")
MAX_SPEC_BYTES = 65536
MAX_SYNSETS = 1000
INT_RANGES = {"depth": (0, 64), "climb": (1, 64), "min_classes_per_label": (1, 100000),
              "max_classes_per_label": (1, 100000), "classes_per_label": (2, 100000), "seed": (0, 2**32 - 1)}


def read_spec(text: str) -> tuple:
    """(spec dict, where) from a .yaml/.yml path or an inline `{...}` YAML mapping; one-line errors."""
    import yaml
    if text.lstrip().startswith("{"):
        where, source, err = "--labelset spec", text, UsageError
    else:
        where, err = text, FastloadError
        path = Path(text)
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise FastloadError(f"label-set spec {path} is over {MAX_SPEC_BYTES} bytes: not a spec")
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise FastloadError(f"cannot read label-set spec {path}: {e}") from None
    if len(source) > MAX_SPEC_BYTES:
        raise err(f"{where}: over {MAX_SPEC_BYTES} characters: not a spec")
    try:
        spec = yaml.safe_load(source)
    except yaml.YAMLError as e:
        raise err(f"{where}: not valid YAML (only plain YAML, no tags): {' '.join(str(e).split())}") from None
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise err(f"{where}: a spec is a mapping of keys ({', '.join(SPEC_KEYS)}), got {type(spec).__name__}")
    check_spec(spec, where, err)
    if "name" not in spec:
        spec = dict(spec, name=Path(text).stem if where == text else "spec")
    return spec, where


def check_spec(spec: dict, where: str, err=FastloadError):
    """Reject unknown keys, wrong types and out-of-range numbers, naming `where` and the key."""
    unknown = [str(k) for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise err(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SPEC_KEYS)}")
    for key, (low, high) in INT_RANGES.items():
        if key in spec:
            _check_int(spec[key], low, high, f"{where}: {key}", err)
    if "name" in spec and not (isinstance(spec["name"], str) and spec["name"].strip() and len(spec["name"]) <= 100):
        raise err(f"{where}: name must be a non-empty string of at most 100 characters")
    if spec.get("hierarchy", "wordnet") not in HIERARCHIES:
        raise err(f"{where}: hierarchy must be one of {', '.join(HIERARCHIES)}, got {spec['hierarchy']!r}")
    for key in ("keep", "remove"):
        value = spec.get(key, [])
        if isinstance(value, str):
            value = spec[key] = [value]
        if not (isinstance(value, list) and len(value) <= MAX_SYNSETS and all(isinstance(v, str) for v in value)):
            raise err(f"{where}: {key} must be a list of at most {MAX_SYNSETS} synsets (wnids or names like dog.n.01)")
    for key in ("balance", "fine"):
        if key in spec and not isinstance(spec[key], bool):
            raise err(f"{where}: {key} must be true or false, got {spec[key]!r}")
    if "part" in spec and spec["part"] not in ("all", "source", "target"):
        raise err(f"{where}: part must be all, source or target, got {spec['part']!r}")
    if "breeds_split" in spec and spec["breeds_split"] not in ("rand", "good", "bad"):
        raise err(f"{where}: breeds_split must be rand, good or bad, got {spec['breeds_split']!r}")
    breeds = spec.get("hierarchy") == "breeds"
    wordnet_only = [k for k in ("climb", "split") if k in spec] if breeds else []
    breeds_only = [] if breeds else [k for k in ("classes_per_label", "part", "breeds_split") if k in spec]
    if wordnet_only or breeds_only:
        raise err(f"{where}: {', '.join(wordnet_only + breeds_only)} not allowed with hierarchy "
                  f"{'breeds' if breeds else 'wordnet'}")
    if "depth" in spec and "climb" in spec:
        raise err(f"{where}: give depth or climb, not both")
    if breeds and "classes_per_label" in spec and "depth" not in spec:
        raise err(f"{where}: classes_per_label needs depth (the superclass level)")
    if "split" in spec:
        _check_split(spec["split"], where, err)


def _check_split(split, where, err):
    if not isinstance(split, dict):
        raise err(f"{where}: split must be a mapping with keys {', '.join(SPLIT_KEYS)}")
    unknown = [str(k) for k in split if k not in SPLIT_KEYS]
    if unknown:
        raise err(f"{where}: unknown split key(s) {', '.join(unknown)}; allowed: {', '.join(SPLIT_KEYS)}")
    if split.get("kind") not in ("minimal", "random"):
        raise err(f"{where}: split kind must be minimal or random, got {split.get('kind')!r}")
    if split.get("part") not in ("a", "b"):
        raise err(f"{where}: split part must be a or b, got {split.get('part')!r}")
    for key in ("depth", "seed"):
        if key in split:
            _check_int(split[key], *INT_RANGES[key], f"{where}: split {key}", err)


def _check_int(value, low, high, what, err):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise err(f"{what} must be an integer in {low}..{high}, got {value!r}")


def label_set_from_spec(text: str, class_wnids) -> LabelSet:
    """The label set a spec (a .yaml/.yml path or an inline `{...}` mapping) defines over `class_wnids`."""
    spec, where = read_spec(text)
    return build_from_spec(spec, class_wnids, where)


def build_from_spec(spec: dict, class_wnids, where: str = "spec") -> LabelSet:
    """A checked spec dict applied to `class_wnids` (module docstring for the keys and their order)."""
    check_spec(spec, where)
    wnids = [str(w) for w in class_wnids]
    if spec.get("hierarchy") == "breeds":
        labels = _breeds_labels(spec, wnids, where)
    else:
        labels = _wordnet_labels(spec, wnids, where)
    labels = _limit_per_label(spec, wnids, labels)
    if spec.get("fine"):
        labels = [w if lab else None for w, lab in zip(wnids, labels)]
    return LabelSet(str(spec.get("name", "spec")), wnids, labels, f"spec {where}")


def _wordnet_labels(spec, wnids, where) -> list:
    from .wordnet import default_tree
    tree = default_tree()
    for w in wnids:
        tree.synset(w)
    keep = {_wordnet_id(tree, s, where) for s in spec.get("keep", [])}
    remove = {_wordnet_id(tree, s, where) for s in spec.get("remove", [])}
    labels = []
    for w in wnids:
        above = tree.all_hypernyms(w) | {w}
        kept = (not keep or above & keep) and not above & remove
        labels.append(w if kept else None)
    if "depth" in spec:
        labels = [tree.ancestor_at_depth(lab, spec["depth"]) if lab else None for lab in labels]
    elif "climb" in spec:
        labels = _climb(tree, labels, spec["climb"])
    if "split" in spec:
        labels = _split(tree, spec["split"], wnids, labels)
    return labels


def _climb(tree, labels, steps) -> list:
    kept = [i for i, lab in enumerate(labels) if lab]
    current = merge_into_ancestors(tree, [labels[i] for i in kept])
    for _ in range(steps):
        current = merge_into_ancestors(tree, [tree.parent(lab) or lab for lab in current])
    out = [None] * len(labels)
    for i, lab in zip(kept, current):
        out[i] = lab
    return out


def _split(tree, split, wnids, labels) -> list:
    """Keep only part a or b of a minimal (whole depth-D subtrees) or random split of the kept classes; the
    random split has the minimal split's sizes."""
    kept = [i for i, lab in enumerate(labels) if lab]
    in_a, _ = minimal_split(tree, [wnids[i] for i in kept], split.get("depth", 4))
    if split["kind"] == "random":
        in_a, _ = random_split(len(kept), sum(in_a), split.get("seed", 0))
    out = [None] * len(labels)
    for i, a in zip(kept, in_a):
        if a == (split["part"] == "a"):
            out[i] = labels[i]
    return out


def _wordnet_id(tree, synset: str, where) -> str:
    if len(synset) == 9 and synset[0] == "n" and synset[1:].isdigit():
        tree.synset(synset)
        return synset
    try:
        return tree.wnid_of_name(synset)
    except FastloadError:
        raise FastloadError(f"{where}: unknown WordNet synset '{synset}' (give a wnid like n02084071 or a name "
                            "like dog.n.01)") from None


def _breeds_labels(spec, wnids, where) -> list:
    from .breeds import BREEDS_SEED, SPLIT_PARTS, default_hierarchy, superclass_splits
    h = default_hierarchy()
    keep, remove = (_breeds_ids(h, spec.get(k, []), where) for k in ("keep", "remove"))
    below_keep = set().union(*(h.leaves_under(n) for n in keep)) if keep else None
    below_remove = set().union(*(h.leaves_under(n) for n in remove)) if remove else set()
    allowed = {w for w in h.leaves if (below_keep is None or w in below_keep) and w not in below_remove}
    if "classes_per_label" in spec:
        if len(keep) > 1:
            raise FastloadError(f"{where}: with classes_per_label, keep names at most one ancestor (as BREEDS)")
        splits = superclass_splits(h, spec["depth"], spec["classes_per_label"], keep[0] if keep else None,
                                   spec.get("seed", BREEDS_SEED), spec.get("breeds_split", "rand"))
        part = spec.get("part", "all")
        label = {w: sc for sc, halves in splits.items() for name, half in zip(SPLIT_PARTS, halves)
                 if part in ("all", name) for w in half if w in allowed}
        return [label.get(w) for w in wnids]
    if "depth" not in spec:
        return [w if w in allowed else None for w in wnids]
    label = {}
    for node in h.nodes_at_level(spec["depth"]):  # sorted: a class under two level-D nodes takes the first
        for w in h.leaves_under(node):
            label.setdefault(w, node)
    return [label.get(w) if w in allowed else None for w in wnids]


def _breeds_ids(h, names, where) -> list:
    from .wordnet import default_tree
    out = []
    for s in names:
        node = s if s in h.level else None
        if node is None and "." in s:
            node = _wordnet_id(default_tree(), s, where)
        if node not in h.level:
            raise FastloadError(f"{where}: '{s}' is not a node of the BREEDS hierarchy (see `fastload labelsets tree "
                                "--hierarchy breeds`)")
        out.append(node)
    return out


def _limit_per_label(spec, wnids, labels) -> list:
    """min_classes_per_label, then max_classes_per_label and balance (seeded draws, label by label in id order)."""
    members = {}
    for i, lab in enumerate(labels):
        if lab is not None:
            members.setdefault(lab, []).append(i)
    low = spec.get("min_classes_per_label", 1)
    members = {lab: idx for lab, idx in members.items() if len(idx) >= low}
    cap = spec.get("max_classes_per_label")
    if spec.get("balance") and members:
        smallest = min(len(idx) for idx in members.values())
        cap = smallest if cap is None else min(cap, smallest)
    rng = np.random.default_rng(spec.get("seed", 0))
    out = [None] * len(labels)
    for lab in sorted(members):
        idx = members[lab]
        if cap is not None and len(idx) > cap:
            idx = sorted(rng.choice(idx, cap, replace=False).tolist())
        for i in idx:
            out[i] = lab
    return out


def builtin_specs(wnids=None, tree=None) -> dict:
    """Every built-in label set of fastload.labelsets over `wnids` (default ImageNet-1k), as a spec dict."""
    from .breeds import BREEDS_SETS, SPLIT_PARTS
    from .label_tree import read_pascal_mapping
    from .resources import imagenet_wnids
    from .wordnet import default_tree
    tree = tree or default_tree()
    wnids = list(wnids) if wnids is not None else imagenet_wnids()
    specs = {"full": {}}
    for depth in range(max(tree.depth(w) for w in wnids) - 1, -1, -1):
        k = len({tree.ancestor_at_depth(w, depth) for w in wnids})
        specs[f"bottom_up_{k}"] = {"depth": depth}
    climb = 1
    while True:
        k = len(set(_climb(tree, list(wnids), climb)))
        if k <= 1:
            break
        specs[f"top_down_{k}"] = {"climb": climb}
        climb += 1
    specs["pascal_removed"] = {"remove": sorted(read_pascal_mapping().values())}
    for kind in ("minimal", "random"):
        for part in ("a", "b"):
            specs[f"{kind}_split_{part}"] = {"split": {"kind": kind, "depth": 4, "part": part, "seed": 0}}
    for name, r in BREEDS_SETS.items():
        base = {"hierarchy": "breeds", "depth": r.level, "classes_per_label": r.subclasses}
        if r.ancestor:
            base["keep"] = [r.ancestor]
        for part in ("all",) + SPLIT_PARTS:
            specs[name if part == "all" else f"{name}_{part}"] = dict(base, part=part)
    return {name: dict(spec, name=name) for name, spec in specs.items()}


def label_display(tree, label: str) -> tuple:
    """(synset name, readable name) of a label: WordNet's for wnids, BREEDS' node name for BREEDS-only ids."""
    if len(label) == 9 and label[0] == "n" and label[1:].isdigit():
        return tree.name(label), tree.lemma(label)
    from .breeds import default_hierarchy
    return label, default_hierarchy().name(label)


def print_tree(start, depth: int, hierarchy: str = "wordnet") -> list:
    """Lines of the hierarchy below `start` (default: the root), `depth` levels down, each node with the number
    of ImageNet-1k classes under it; nodes with none are left out."""
    if hierarchy == "breeds":
        return _breeds_tree_lines(start, depth)
    from .resources import imagenet_wnids
    from .wordnet import default_tree
    tree = default_tree()
    children, count = {}, {}
    for w in imagenet_wnids():
        path = tree.path_to_root(w)
        for node in path:
            count[node] = count.get(node, 0) + 1
        for child, parent in zip(path, path[1:]):
            children.setdefault(parent, set()).add(child)
    root = path[-1]
    node = root if start is None else _wordnet_id(tree, start, "SYNSET")
    if node not in count:
        raise UsageError(f"SYNSET {start}: no ImageNet-1k class lies under it in fastload's WordNet tree")
    lines = []

    def walk(n, level):
        lines.append(f"{'  ' * level}{n}  {count[n]:4d}  {tree.name(n)}")
        if level < depth:
            for c in sorted(children.get(n, ()), key=lambda c: (-count[c], c)):
                walk(c, level + 1)

    walk(node, 0)
    return lines


def _breeds_tree_lines(start, depth) -> list:
    from .breeds import default_hierarchy
    from .wordnet import default_tree
    h = default_hierarchy()
    node = h.root if start is None else start
    if node not in h.level and "." in node:
        node = _wordnet_id(default_tree(), node, "SYNSET")
    if node not in h.level:
        raise UsageError(f"SYNSET {start}: not a node of the BREEDS hierarchy (ids like n01861778 or dummy32)")
    lines = []

    def walk(n, level):
        lines.append(f"{'  ' * level}{n}  {len(h.leaves_under(n)):4d}  L{h.level.get(n, '?')}  {h.name(n)}")
        if level < depth and n not in h.leaf_set:
            for c in sorted(h.children.get(n, ()), key=lambda c: (-len(h.leaves_under(c)), c)):
                walk(c, level + 1)

    walk(node, 0)
    return lines
