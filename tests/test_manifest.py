"""fastload.manifest: Numba selection == the NumPy/Python reference for every manifest kind, plus its guarantees
(nesting, exact counts and budgets, determinism), errors, the .npz file, label-set resolution and the CLI."""
import json

import numpy as np
import pytest

from fastload.errors import FastloadError, UsageError
from fastload.label_tree import LabelSet
from fastload.manifest import (ManifestBuilder, Selection, build_manifest, class_labels, list_scales,
                               load_manifest, load_manifest_list, resolve_label_set, scale_selection)
from fastload.manifest_reference import select_reference
from small_disk import fill, small_disk  # noqa: F401 (a fixture)

NUM_CLASSES = 30


@pytest.fixture(scope="module")
def index():
    """Synthetic index: 30 classes of 0..60 images (one empty, several under N), rows shuffled, and a label set
    with 6 labels that excludes every 7th class."""
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 61, NUM_CLASSES)
    counts[4], counts[5], counts[6] = 0, 3, 60
    class_id = rng.permutation(np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), counts))
    wnids = [f"c{i:03d}" for i in range(NUM_CLASSES)]
    labels = [None if i % 7 == 0 else f"L{i % 6}" for i in range(NUM_CLASSES)]
    return class_id, wnids, LabelSet("six", wnids, labels), labels


def names(wnids):
    return [f"name of {w}" for w in wnids]


KINDS = [
    Selection(),
    Selection(per_class=1), Selection(per_class=10), Selection(per_class=50), Selection(per_class=1000),
    Selection(classes=1), Selection(classes=7), Selection(classes=7, per_class=5), Selection(classes=24),
    Selection(budget=1), Selection(budget=100), Selection(budget=300, classes=10), Selection(budget=10, classes=12),
    Selection(unit="label", per_class=20), Selection(unit="label", classes=2), Selection(unit="label", budget=77),
    Selection(unit="label", classes=3, budget=40), Selection(per_class=10, seed=5),
    Selection(per_class=10, nested=False), Selection(budget=99, classes=9, nested=False, seed=2),
]


def kind_id(s):
    return f"{s.unit}-N{s.per_class}-k{s.classes}-B{s.budget}-s{s.seed}-n{int(s.nested)}"


@pytest.mark.parametrize("sel", KINDS, ids=kind_id)
def test_numba_equals_reference(index, sel):
    class_id, wnids, ls, labels = index
    m = build_manifest(class_id, wnids, sel, label_set=ls, namer=names)
    indices, lookup, kept = select_reference(class_id, labels, sel)
    np.testing.assert_array_equal(m.indices, indices)
    np.testing.assert_array_equal(m.label_lookup, lookup)
    assert list(m.label_wnids) == kept and list(m.label_names) == names(kept)
    assert m.indices.dtype == np.int64 and m.label_lookup.dtype == np.int32
    assert np.all(np.diff(m.indices) > 0)


def test_per_class_counts_are_min_of_n_and_available(index):
    class_id, wnids, ls, labels = index
    have = np.bincount(class_id, minlength=NUM_CLASSES)
    kept = np.array([lab is not None for lab in labels])
    for n in (3, 25, 1000):
        m = build_manifest(class_id, wnids, Selection(per_class=n), label_set=ls, namer=names)
        got = np.bincount(class_id[m.indices], minlength=NUM_CLASSES)
        np.testing.assert_array_equal(got, np.where(kept, np.minimum(have, n), 0))
        assert np.all(m.labels(class_id) >= 0)


def test_selections_are_nested(index):
    class_id, wnids, ls, _ = index
    b = ManifestBuilder(class_id, wnids)
    for small, big in [(dict(per_class=5), dict(per_class=12)), (dict(classes=4), dict(classes=11)),
                       (dict(budget=50), dict(budget=51)), (dict(budget=60, classes=5), dict(budget=200, classes=8))]:
        a, c = b.build(Selection(**small), ls, names), b.build(Selection(**big), ls, names)
        assert set(a.indices) < set(c.indices), (small, big)


def test_budget_is_exact_and_even(index):
    class_id, wnids, ls, labels = index
    have = np.bincount(class_id, minlength=NUM_CLASSES)
    eligible = (have > 0) & np.array([lab is not None for lab in labels])
    for budget, k in [(100, None), (333, 12), (7, 10), (40, 10)]:
        m = build_manifest(class_id, wnids, Selection(budget=budget, classes=k), label_set=ls, namer=names)
        assert m.num_images == budget
        got = np.bincount(class_id[m.indices], minlength=NUM_CLASSES)
        assert not np.any(got[~eligible])
        assert (got > 0).sum() == min(budget, eligible.sum() if k is None else k)
        open_ = got[(got > 0) & (got < have)]  # classes that still had images left: even within one image
        assert open_.max() - open_.min() <= 1
        assert got.max() <= open_.max()  # a class that ran out never got more than one still open


def test_budget_kernel_equals_reference_water_filling():
    from fastload.manifest import fill_budget
    from fastload.manifest_reference import budget_caps
    rng = np.random.default_rng(0)
    cases = [([4, 5, 9], [0, 1, 2], 13), ([4, 5, 9], [2, 1, 0], 13), ([3, 3, 3], [1, 0, 2], 7), ([1, 8], [0, 1], 9)]
    for _ in range(300):
        avail = rng.integers(0, 12, rng.integers(1, 9))
        chosen = rng.permutation(len(avail))[: rng.integers(1, len(avail) + 1)]
        cases.append((avail, chosen, int(rng.integers(0, avail[chosen].sum() + 1))))
    for avail, chosen, budget in cases:
        avail, chosen = np.asarray(avail, np.int64), np.asarray(chosen, np.int64)
        cap = fill_budget(avail, chosen, budget)
        ref = budget_caps({u: int(a) for u, a in enumerate(avail)}, chosen.tolist(), budget)
        assert {u: int(cap[u]) for u in chosen.tolist()} == ref, (avail, chosen, budget)
        assert cap.sum() == budget and np.all(cap <= avail)


def test_deterministic_for_a_seed_and_seed_matters(index):
    class_id, wnids, ls, _ = index
    build = lambda s: build_manifest(class_id, wnids, s, label_set=ls, namer=names).indices
    np.testing.assert_array_equal(build(Selection(per_class=10, seed=3)), build(Selection(per_class=10, seed=3)))
    assert not np.array_equal(build(Selection(per_class=10, seed=3)), build(Selection(per_class=10, seed=4)))


def test_class_subset_relabels_compactly(index):
    class_id, wnids, ls, labels = index
    m = build_manifest(class_id, wnids, Selection(classes=3), label_set=ls, namer=names)
    chosen = np.flatnonzero(m.label_lookup >= 0)
    assert len(chosen) == 3
    assert sorted(set(m.label_lookup[chosen])) == list(range(m.num_labels))
    assert [m.label_wnids[m.label_lookup[c]] for c in chosen] == [labels[c] for c in chosen]


@pytest.mark.parametrize("kwargs, match", [
    (dict(per_class=0), "per_class must be a positive integer"), (dict(per_class=-5), "per_class"),
    (dict(classes=0), "classes must be"), (dict(budget=0), "budget must be"), (dict(per_class=2.5), "per_class"),
    (dict(per_class=5, budget=10), "not both"), (dict(unit="image"), "unit must be one of class, label"),
    (dict(seed=-1), "seed must be"),
])
def test_bad_selection_is_a_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        Selection(**kwargs)


def test_too_many_classes_or_too_big_budget(index):
    class_id, wnids, ls, _ = index
    kept_nonempty = sum(1 for c in range(NUM_CLASSES) if c % 7 != 0 and c != 4)
    with pytest.raises(UsageError, match=f"keeps only {kept_nonempty} classes"):
        build_manifest(class_id, wnids, Selection(classes=kept_nonempty + 1), label_set=ls)
    with pytest.raises(UsageError, match="keeps only 6 labels"):
        build_manifest(class_id, wnids, Selection(classes=7, unit="label"), label_set=ls)
    with pytest.raises(UsageError, match="budget=100000"):
        build_manifest(class_id, wnids, Selection(budget=100000), label_set=ls)


def test_index_errors(index):
    class_id, wnids, ls, _ = index
    with pytest.raises(FastloadError, match="class id 30, outside 0..29"):
        ManifestBuilder(np.append(class_id, 30), wnids)
    other = LabelSet("other", wnids[1:], [w for w in wnids[1:]])
    with pytest.raises(FastloadError, match="class c000 of the index is not among the 29 classes of label set 'other'"):
        build_manifest(class_id, wnids, Selection(), label_set=other)


def test_empty_selection_is_an_error(index):
    class_id, wnids, _, _ = index
    nothing = LabelSet("nothing", wnids, [None] * NUM_CLASSES)
    with pytest.raises(FastloadError, match="keeps 0 of this index.s 30 classes .* the manifest would be empty"):
        build_manifest(class_id, wnids, Selection(), label_set=nothing)


def test_save_load_roundtrip_and_val_indices(index, tmp_path):
    class_id, wnids, ls, labels = index
    m = build_manifest(class_id, wnids, Selection(per_class=4, classes=5), label_set=ls, namer=names)
    path = m.save(tmp_path / "sub" / "m.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.npz"]  # no temporary file left
    back = load_manifest(path)
    for key in ("indices", "label_lookup", "label_wnids", "label_names", "class_wnids"):
        np.testing.assert_array_equal(getattr(back, key), getattr(m, key))
    assert back.recipe == json.loads(json.dumps(m.recipe)) and back.recipe["per_class"] == 4
    assert back.num_labels == m.num_labels and back.num_images == m.num_images

    val_class = np.array([0, 1, 2, 3, 5, 8, 8, 29], dtype=np.int32)
    val = type("V", (), {"class_id": val_class, "class_wnids": np.asarray(wnids)})
    expect = [i for i, c in enumerate(val_class) if m.label_lookup[c] >= 0]
    np.testing.assert_array_equal(back.val_indices(val), expect)
    np.savez(tmp_path / "val_index.npz", class_id=val_class, class_wnids=np.asarray(wnids))
    np.testing.assert_array_equal(back.val_indices(tmp_path / "val_index.npz"), expect)
    val.class_wnids = np.asarray(wnids[::-1])
    with pytest.raises(FastloadError, match="differ"):
        back.val_indices(val)


def test_load_manifest_errors(tmp_path):
    with pytest.raises(FastloadError, match="does not exist"):
        load_manifest(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", indices=np.arange(3))
    with pytest.raises(FastloadError, match="missing label_lookup"):
        load_manifest(tmp_path / "bad.npz")


# ---- label sets over real WordNet classes ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_wnids():
    from fastload.resources import imagenet_wnids
    return imagenet_wnids()[::25]  # 40 classes spread over the hierarchy


def test_label_sets_are_rebuilt_over_a_small_dataset(small_wnids):
    from fastload.labelsets import build_label_sets
    ours = build_label_sets(small_wnids)
    ls = resolve_label_set("bottom_up@486", small_wnids)
    steps = [s.num_labels for n, s in ours.items() if n.startswith("bottom_up_")]
    assert ls.num_labels == min(steps, key=lambda k: (abs(k - 486 * 40 / 1000), -k))
    assert ls.class_wnids == list(small_wnids)
    assert resolve_label_set("bottom_up@9", small_wnids).num_labels == min(k for k in steps if k > 1)
    assert resolve_label_set("bottom_up@1", small_wnids).num_labels == 1
    with pytest.raises(UsageError, match="not defined over this index's 40 classes.*bottom_up@K"):
        resolve_label_set("bottom_up_918", small_wnids)
    for bad in ("bottom_up@x", "sideways@9", "top_down@0"):
        with pytest.raises(UsageError, match="FAMILY@K"):
            resolve_label_set(bad, small_wnids)
    union = resolve_label_set("minimal_split_a+minimal_split_b", small_wnids)
    assert union.lookup().tolist() == resolve_label_set("full", small_wnids).lookup().tolist()


def test_full_imagenet_names_resolve_to_the_papers_sets():
    from fastload.labelsets import builtin_label_sets
    from fastload.resources import imagenet_wnids
    wnids = imagenet_wnids()
    assert resolve_label_set("bottom_up@918", wnids) is builtin_label_sets()["bottom_up_918"]
    assert resolve_label_set("top_down@127", wnids).num_labels == 127
    shuffled = list(reversed(wnids))  # class order of the index may differ: mapping is by wnid
    class_id = np.repeat(np.arange(1000, dtype=np.int32), 2)
    m = build_manifest(class_id, shuffled, Selection(label_set="pascal_removed"))
    assert m.num_labels == 771 and m.num_images == 2 * 771
    assert m.label_names[0].count(".") >= 2  # a WordNet synset name such as 'tench.n.01'


# ---- manifest lists and the command line ----------------------------------------------------------------------------------

def test_paper_manifest_list_covers_the_paper():
    plan = {name: sel for name, _, sel in load_manifest_list("paper")}
    assert [plan[f"full_x{n}"].per_class for n in (50, 125, 250, 500, 1000)] == [50, 125, 250, 500, 1000]
    for k in (918, 753, 486, 79, 9):
        assert plan[f"bottom_up_{k}"].label_set == f"bottom_up@{k}"
    for n in (500, 250, 125):
        assert plan[f"budget{n}k_1000cls"].budget == plan[f"budget{n}k_{n}cls"].budget == n * 1000
        assert plan[f"budget{n}k_{n}cls"].classes == n and plan[f"budget{n}k_1000cls"].classes is None
    for name in ("top_down_127", "pascal_removed", "minimal_split_a", "minimal_split_b", "random_split_a",
                 "random_split_b", "minimal_split_a+b"):
        assert name in plan


def test_manifest_list_rejects_unknown_keys_and_missing_files(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("manifests:\n  - {name: a, per_clas: 5}\n")
    with pytest.raises(FastloadError, match="per_clas"):
        load_manifest_list(path)
    path.write_text("manifests:\n  - {name: a, per_class: 0}\n")
    with pytest.raises(FastloadError, match="manifest 'a': per_class"):
        load_manifest_list(path)
    path.write_text("manifests: [{name: a\n")
    with pytest.raises(FastloadError, match="not valid YAML"):
        load_manifest_list(path)
    with pytest.raises(FastloadError, match="nope.yaml' is neither 'paper' nor an existing YAML file") as e:
        load_manifest_list(tmp_path / "nope.yaml")
    assert not isinstance(e.value, UsageError)  # a missing input file is exit 1


@pytest.mark.parametrize("entry, message", [
    ("{name: !!python/object/apply:os.system [echo pwned]}", "not valid YAML at line 2, column 12: could not "
                                                             "determine a constructor for the tag"),
    ("{name: a, per_class: 99999999999999999999999}", "manifest 'a': per_class must be a positive integer up to "
                                                      "2147483647 or unset, got 99999999999999999999999"),
    ("{name: a, budget: -5}", "manifest 'a': budget must be a positive integer"),
    ("{name: a, seed: 99999999999999999999999}", "manifest 'a': seed must be an integer in 0..4294967295"),
    ("{name: a, colour: red}", "unknown keys \\['colour'\\]"),
    ("{name: ../escaped_manifest}", "manifest name '../escaped_manifest' contains a path separator"),
    ("{name: /tmp/abs}", "manifest name '/tmp/abs' contains a path separator"),
    ("{name: ..}", "manifest name '..' starts with '.'"),
    ("{name: ''}", "manifest name '' is empty"),
    ("{name: [a, b]}", "manifest name \\['a', 'b'\\] must be a string"),
])
def test_hostile_manifest_lists_are_one_line_errors(tmp_path, entry, message, capfd):
    path = tmp_path / "list.yaml"
    path.write_text(f"manifests:\n  - {entry}\n")
    with pytest.raises(FastloadError, match=message) as caught:
        load_manifest_list(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert "pwned" not in capfd.readouterr().out


def test_non_ascii_manifest_names_and_label_set_files(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_bytes("manifests:\n  - {name: caf\u00e9_\u6f22, per_class: 2}\n".encode())
    assert load_manifest_list(path)[0].name == "caf\u00e9_\u6f22"
    tsv = tmp_path / "set.tsv"
    tsv.write_bytes("c\u00e9\tL\u6f22\nd\t\n".encode())
    assert LabelSet.from_tsv(tsv).class_to_label == ["L\u6f22", None]
    tsv.write_bytes(b"c\tL\nc\tM\n")
    with pytest.raises(FastloadError, match="set.tsv:2: class 'c' is listed twice"):
        LabelSet.from_tsv(tsv)


def test_plan_scaling():
    assert list_scales(np.full(1000, 1300)) == (1.0, 1.0)
    cs, im = list_scales(np.array([100] * 40))
    assert (cs, im) == (0.04, 100 / 1300)
    s = scale_selection(Selection(classes=125, budget=125000), cs, im)
    assert (s.classes, s.budget, s.per_class) == (5, 385, None)
    assert scale_selection(Selection(per_class=50), cs, im).per_class == 4


def write_index(path, wnids, per_class):
    class_id = np.repeat(np.arange(len(wnids), dtype=np.int32), per_class)
    np.savez(path, class_id=class_id, class_wnids=np.asarray(wnids),
             path=np.array([f"x{i}.JPEG" for i in range(len(class_id))]))
    return class_id


def test_cli_subset_one_manifest_and_errors(cli, tmp_path, small_wnids):
    class_id = write_index(tmp_path / "train_index.npz", small_wnids, 20)
    r = cli("subset", "--index", tmp_path / "train_index.npz", "--labelset", "top_down@127", "--per-class", 7,
            "--classes", 30, "--seed", 1, "--out", tmp_path / "m.npz", check=True)
    m = load_manifest(tmp_path / "m.npz")
    ls = resolve_label_set("top_down@127", small_wnids)
    indices, lookup, kept = select_reference(class_id, class_labels(ls, small_wnids),
                                             Selection("top_down@127", 7, 30, seed=1))
    np.testing.assert_array_equal(m.indices, indices)
    np.testing.assert_array_equal(m.label_lookup, lookup)
    assert m.num_images == 210 and m.recipe["label_set_resolved"] == ls.name and "210" in r.stdout
    bad = cli("subset", "--index", tmp_path / "train_index.npz", "--classes", 41, "--out", tmp_path / "x.npz")
    assert bad.returncode == 2 and "keeps only 40 classes" in bad.stderr
    bad = cli("subset", "--index", tmp_path / "nope.npz", "--out", tmp_path / "x.npz")
    assert bad.returncode == 1 and "nope.npz does not exist" in bad.stderr


def test_cli_subset_paper_manifest_list(cli, tmp_path, small_wnids):
    write_index(tmp_path / "train_index.npz", small_wnids, 26)
    r = cli("subset", "--index", tmp_path / "train_index.npz", "--manifests", "paper", "--out", tmp_path / "m",
            check=True)
    plan = load_manifest_list("paper")
    written = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert written == sorted([f"{n}.npz" for n, _, _ in plan] + ["manifests.tsv"])
    got = {n: load_manifest(tmp_path / "m" / f"{n}.npz") for n, _, _ in plan}
    # 26 images per class = 0.02 x 1300: 50, 125, 250, 500, 1000 scale to 1, 3 (2.5 rounded up), 5, 10, 20
    assert [got[f"full_x{n}"].num_images for n in (50, 125, 250, 500, 1000)] == [40, 120, 200, 400, 800]
    assert got["budget500k_1000cls"].num_images == got["budget500k_500cls"].num_images == 400
    assert got["budget500k_500cls"].num_labels == 20
    np.testing.assert_array_equal(got["minimal_split_a+b"].label_lookup, got["full"].label_lookup)
    a, b = got["minimal_split_a"], got["minimal_split_b"]
    assert not np.any((a.label_lookup >= 0) & (b.label_lookup >= 0))
    assert "budget125k_125cls" in r.stdout and "scaled by 0.04" in r.stdout


def test_bench_synthetic_index_is_imagenet_shaped():
    from fastload.benchmarks.manifest import synthetic_class_ids
    counts = np.bincount(synthetic_class_ids(0))
    assert len(counts) == 1000 and counts.sum() == 1_281_167 and counts.min() == 732 and counts.max() == 1300


def test_cli_subset_on_a_full_disk_keeps_finished_manifests(cli, tmp_path, small_disk, small_wnids):
    """A manifest list built into a full disk: one line naming the manifest that did not fit, exit 1, no torn file;
    after freeing space the rerun keeps the manifests already written and writes the rest."""
    write_index(tmp_path / "train_index.npz", small_wnids, 26)
    out = small_disk / "m"
    filler = fill(small_disk, 48 << 10)
    r = cli("subset", "--index", tmp_path / "train_index.npz", "--manifests", "paper", "--out", out)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"fastload subset: error: no space left on the device to write {out}/"), lines
    assert ".npz: " in lines[0] and "needed" in lines[0]
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert first and not any(name.startswith(".tmp-") for name in first)
    assert all(load_manifest(out / name).num_images > 0 for name in first)
    filler.unlink()
    r = cli("subset", "--index", tmp_path / "train_index.npz", "--manifests", "paper", "--out", out, check=True)
    assert f"kept {len(first)} manifest(s)" in r.stdout
    assert all((out / name).stat().st_mtime_ns == t for name, t in first.items())  # not rewritten
    assert len(list(out.glob("*.npz"))) == len(load_manifest_list("paper"))
