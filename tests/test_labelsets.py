import os
import subprocess
import sys

import numpy as np
import pytest

from fastload.errors import UsageError
from fastload.breeds import default_hierarchy, parse_breeds_name
from fastload.label_tree import LabelSet, minimal_split, read_pascal_mapping
from fastload.labelsets import build_label_sets, builtin_label_sets, get_label_set
from fastload.resources import imagenet_wnids
from fastload.wordnet import default_tree


@pytest.fixture(scope="module")
def sets(synthetic_breeds_dir):
    """The 39 built-in sets, the BREEDS ones from the synthetic hierarchy (tests/breeds_fixture.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTLOAD_BREEDS_DIR", str(synthetic_breeds_dir))
        return builtin_label_sets()


@pytest.fixture(scope="module")
def tree():
    return default_tree()


def test_bottom_up_sizes(sets):
    sizes = [ls.num_labels for name, ls in sets.items() if name.startswith("bottom_up_")]
    assert len(sizes) == 18
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    for k in (918, 753, 486, 79, 9):
        assert f"bottom_up_{k}" in sets and sets[f"bottom_up_{k}"].num_labels == k


def test_top_down_sizes(sets):
    assert [ls.num_labels for n, ls in sets.items() if n.startswith("top_down_")] == [127, 10, 2]


def test_pascal_removed_keeps_771_and_removes_every_pascal_descendant(sets, tree):
    ls = sets["pascal_removed"]
    assert ls.num_classes_kept == 771
    pascal = {tree.wnid_of_name(n) for n in read_pascal_mapping().values()}
    assert len(pascal) == 20
    for wnid, lab in zip(ls.class_wnids, ls.class_to_label):
        # independent check along every hypernym path, through NLTK's closure
        s = tree.synset(wnid)
        ancestors = {f"n{h.offset():08d}" for h in s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())}
        ancestors.add(wnid)  # ImageNet's 'monitor' (n03782006) is PASCAL's tvmonitor synset itself
        assert (lab is None) == bool(ancestors & pascal)


def test_every_class_mapped_exactly_once_to_itself_or_an_ancestor(sets, tree, synthetic_breeds):
    wnids = imagenet_wnids()
    assert len(sets) == 39
    for name, ls in sets.items():
        assert ls.class_wnids == wnids and len(ls.class_to_label) == 1000
        above = default_hierarchy().leaves_under if parse_breeds_name(name) else None  # BREEDS' own hierarchy
        for wnid, lab in zip(ls.class_wnids, ls.class_to_label):
            assert lab is None or (wnid in above(lab) if above else lab in tree.path_to_root(wnid)), (name, wnid, lab)
        lookup = ls.lookup()
        assert lookup.dtype == np.int32 and lookup.max() == ls.num_labels - 1
        assert sorted(set(lookup[lookup >= 0].tolist())) == list(range(ls.num_labels))


def test_top_down_labels_never_nest(sets, tree):
    for name in ("top_down_127", "top_down_10", "top_down_2"):
        labels = set(sets[name].labels)
        for lab in labels:
            assert not (set(tree.path_to_root(lab)[1:]) & labels), (name, lab)


@pytest.mark.parametrize("kind", ["minimal_split", "random_split"])
def test_splits_are_disjoint_and_cover(sets, kind):
    a, b = sets[f"{kind}_a"].class_to_label, sets[f"{kind}_b"].class_to_label
    assert sum(x is not None for x in a) == 522 and sum(x is not None for x in b) == 478
    for x, y in zip(a, b):
        assert (x is None) != (y is None)


def test_minimal_split_shares_no_depth4_ancestor(sets, tree):
    a = {tree.ancestor_at_depth(w, 4) for w, lab in zip(imagenet_wnids(), sets["minimal_split_a"].class_to_label) if lab}
    b = {tree.ancestor_at_depth(w, 4) for w, lab in zip(imagenet_wnids(), sets["minimal_split_b"].class_to_label) if lab}
    assert a and b and not (a & b)


def test_random_split_depends_on_seed_only():
    sets1 = build_label_sets(random_seed=1)
    assert sets1["random_split_a"].class_to_label == build_label_sets(random_seed=1)["random_split_a"].class_to_label
    assert sets1["random_split_a"].class_to_label != build_label_sets(random_seed=2)["random_split_a"].class_to_label


def test_any_wnid_list_and_any_depth(tree):
    wnids = [w for w in imagenet_wnids() if tree.ancestor_at_depth(w, 8) == tree.wnid_of_name("dog.n.01")][:40]
    wnids += ["n02121808", "n02123045", "n02124075"]  # domestic cat (not in ImageNet-1k), tabby, Egyptian cat
    sets = build_label_sets(wnids)
    assert sets["full"].num_labels == len(wnids)
    assert sets["bottom_up_1"].num_labels == 1
    in_a, in_b = minimal_split(tree, wnids, depth=9)
    assert sum(in_a) + sum(in_b) == len(wnids)


def test_unknown_wnid_and_unknown_name_are_clear_errors(cli):
    with pytest.raises(Exception, match="n99999999"):
        build_label_sets(["n99999999"])
    with pytest.raises(UsageError, match="unknown label set 'nope'.*top_down_127"):
        get_label_set("nope")
    proc = cli("labelsets", "show", "nope")
    assert proc.returncode == 2 and "unknown label set 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("labelsets", "frobnicate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def _export(tmp_path, seed, breeds_dir):
    out = tmp_path / f"seed{seed}"
    env = dict(os.environ, PYTHONHASHSEED=str(seed), FASTLOAD_BREEDS_DIR=str(breeds_dir))
    proc = subprocess.run([sys.executable, "-m", "fastload.cli", "labelsets", "export", str(out)], env=env,
                          check=True, capture_output=True, text=True)
    return {p.name: p.read_text() for p in sorted(out.iterdir())}, proc.stderr


def test_identical_under_any_hash_seed(tmp_path, synthetic_breeds_dir):
    (first, _), (second, _) = _export(tmp_path, 0, synthetic_breeds_dir), _export(tmp_path, 12345, synthetic_breeds_dir)
    assert len(first) == 39 and first == second  # 27 of the paper + 12 BREEDS


def test_export_without_the_breeds_files_writes_the_paper_sets_and_says_so(tmp_path):
    files, stderr = _export(tmp_path, 3, tmp_path / "no_breeds")
    assert len(files) == 27 and "top_down_127.tsv" in files and "entity30.tsv" not in files
    assert "12 BREEDS label sets left out" in stderr and str(tmp_path / "no_breeds") in stderr


def test_export_format_and_tsv_round_trip(tmp_path, sets, synthetic_breeds_dir):
    files, _ = _export(tmp_path, 7, synthetic_breeds_dir)
    lines = files["top_down_127.tsv"].splitlines()
    assert len(lines) == 1000 and all(len(line.split("\t")) == 2 for line in lines)
    assert sum(1 for line in files["pascal_removed.tsv"].splitlines() if line.endswith("\t")) == 229
    ls = LabelSet.from_tsv(tmp_path / "seed7" / "top_down_127.tsv")
    assert ls.class_to_label == sets["top_down_127"].class_to_label


def test_cli_list_and_show(cli):
    proc = cli("labelsets", "list", check=True)
    assert "top_down_127" in proc.stdout and "pascal_removed" in proc.stdout
    proc = cli("labelsets", "show", "top_down_10", check=True)
    assert proc.stdout.startswith("top_down_10: 10 labels over 1000 of 1000 classes")
    counts = [int(line.split()[1]) for line in proc.stdout.splitlines()[1:]]
    assert sum(counts) == 1000
