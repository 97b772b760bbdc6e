"""BREEDS label sets: fastload's rules on a small synthetic hierarchy in the BREEDS file format
(tests/breeds_fixture.py), the published class lists against the real hierarchy files when they are supplied,
what every BREEDS use says without them, the label-set spec language, `labelsets tree`, the synthetic BREEDS
ImageNet and the subpopulation-shift evaluation."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import breeds_fixture as fx
from fastload.breeds import (BREEDS_DIR, BREEDS_SETS, BreedsHierarchy, breeds_dir, breeds_splits, default_hierarchy,
                             superclass_splits)
from fastload.errors import FastloadError, UsageError
from fastload.labelsets import builtin_label_sets, get_label_set, resolve_label_set
from fastload.resources import imagenet_wnids
from fastload.taxonomy import build_from_spec, builtin_specs, label_set_from_spec

EXPECTED = json.loads((Path(__file__).parent / "data" / "breeds_expected.json").read_text())


# ---- the rules, on the synthetic hierarchy ---------------------------------------------------------------------

def _leaves(*names):
    return [fx.wnid(n) for n in names]


def test_levels_are_longest_paths_and_only_edges_down_to_a_class_are_kept(synthetic_breeds):
    h = default_hierarchy()
    assert {n: h.level.get(fx.wnid(n)) for n in fx.LEVELS} == fx.LEVELS  # cat: level 5 although animal -> cat
    assert "dummy10" not in h.level and "dummy10" not in h.children.get("n01503061", [])  # no class below it
    outside = fx.wnid("c44")
    assert outside in h.leaf_set and outside not in h.level  # a class the hierarchy does not reach
    assert h.nodes_at_level(3) == ["dummy12", "dummy2", "dummy23"]
    assert h.nodes_at_level(5, "n00004258") == ["dummy6", "dummy7", "dummy8", "dummy9", "n02084071"]
    assert len(h.leaves_under("n01861778")) == 14 and len(h.split_pool("n01861778")) == 15  # c12 twice
    assert h.name("dummy18") == "machine" and h.name("n00001740") == "entity"


def _drawn_by_hand(name, seed=2):
    """The rand split re-derived from the fixture's hand-written pools: one RandomState for all superclasses."""
    rng, n = np.random.RandomState(seed), BREEDS_SETS[name].subclasses
    out = {}
    for sc in fx.SUPERCLASSES[name]:
        drawn = [str(w) for w in rng.choice(sorted(_leaves(*fx.POOLS[sc])), n, replace=False)]
        out[sc] = (drawn[:n // 2], drawn[n // 2:])
    return out


@pytest.mark.parametrize("name", list(BREEDS_SETS))
def test_superclass_selection_and_the_seeded_rand_draw(synthetic_breeds, name):
    got = breeds_splits(name)
    assert list(got) == fx.SUPERCLASSES[name]  # at the set's level (under its ancestor), enough classes, id order
    assert got == _drawn_by_hand(name)
    for source, target in got.values():
        assert len(source) == len(target) == BREEDS_SETS[name].subclasses // 2 and not set(source) & set(target)
    sets = builtin_label_sets()
    for part, side in (("_source", 0), ("_target", 1), ("", None)):
        want = {w: sc for sc, halves in got.items() for i, half in enumerate(halves) if side in (None, i)
                for w in half}
        ls = sets[name + part]
        assert {w: lab for w, lab in zip(ls.class_wnids, ls.class_to_label) if lab} == want


def test_another_seed_draws_again_and_a_repeated_subclass_is_an_error(synthetic_breeds):
    """entity30's mammal pool holds c12 twice: a seed whose draw takes both copies is refused, the others match."""
    r, refused = BREEDS_SETS["entity30"], 0
    for seed in range(12):
        expected = _drawn_by_hand("entity30", seed)
        if any(len(set(s + t)) < r.subclasses for s, t in expected.values()):
            refused += 1
            with pytest.raises(FastloadError, match="n01861778: the draw repeated a subclass"):
                superclass_splits(default_hierarchy(), r.level, r.subclasses, seed=seed)
        else:
            assert superclass_splits(default_hierarchy(), r.level, r.subclasses, seed=seed) == expected
    assert 0 < refused < 12
    with pytest.raises(FastloadError, match="subclasses per superclass must be even"):
        superclass_splits(default_hierarchy(), 5, 3)


@pytest.mark.parametrize("split_type, machine, vessel", [
    # machine: one child (engine), whose children hold c36..c38 and c39..c41; vessel: four single classes
    ("good", (["c36", "c39"], ["c37", "c38"]), (["c23", "c24"], ["c25", "c26"])),
    ("bad", (["c36", "c37"], ["c39", "c40"]), (["c23", "c25"], ["c24", "c26"])),
])
def test_good_and_bad_splits_follow_the_children(synthetic_breeds, split_type, machine, vessel):
    got = superclass_splits(default_hierarchy(), 5, 4, "n00021939", split_type=split_type)
    assert list(got) == fx.SUPERCLASSES["nonliving26"]
    assert got["dummy18"] == tuple(_leaves(*half) for half in machine)
    assert got["dummy15"] == tuple(_leaves(*half) for half in vessel)
    spec = build_from_spec({"hierarchy": "breeds", "depth": 5, "keep": ["n00021939"], "classes_per_label": 4,
                            "part": "target", "breeds_split": split_type}, imagenet_wnids())
    assert {w: lab for w, lab in zip(spec.class_wnids, spec.class_to_label) if lab} == \
        {w: sc for sc, (_, target) in got.items() for w in target}


def test_a_changed_hierarchy_changes_the_sets(synthetic_breeds, tmp_path):
    """The sets come from the files: dropping one edge under a living17 superclass changes its draw."""
    for f in ("dataset_class_info.json", "node_names.txt"):
        (tmp_path / f).write_text((synthetic_breeds / f).read_text())
    edges = (synthetic_breeds / "class_hierarchy.txt").read_text().splitlines()
    dropped = next(e for e in edges if e.split()[1] == breeds_splits("living17")["n02084071"][0][0])
    (tmp_path / "class_hierarchy.txt").write_text("\n".join(e for e in edges if e != dropped) + "\n")
    changed = superclass_splits(BreedsHierarchy(tmp_path), 5, 4, "n00004258")
    assert changed != breeds_splits("living17") and dropped.split()[1] not in str(changed)


def test_breeds_sets_over_a_small_index_select_only_their_half(synthetic_breeds):
    source, target = breeds_splits("living17")["n02084071"]
    wnids = sorted(source + target + imagenet_wnids()[900:904])
    ls = resolve_label_set("living17_source", wnids)
    assert sorted(w for w, lab in zip(ls.class_wnids, ls.class_to_label) if lab) == sorted(source)
    assert ls.labels == ["n02084071"]
    assert resolve_label_set("living17_source+living17_target", wnids).class_to_label == \
        resolve_label_set("living17", wnids).class_to_label


# ---- without the hierarchy files ---------------------------------------------------------------------------------

def test_the_folder_is_the_variable_else_datasets_breeds(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTLOAD_BREEDS_DIR", raising=False)
    assert breeds_dir() == BREEDS_DIR
    monkeypatch.setenv("FASTLOAD_BREEDS_DIR", str(tmp_path))
    assert breeds_dir() == tmp_path


def test_every_breeds_use_without_the_files_is_a_one_line_error(monkeypatch, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FASTLOAD_BREEDS_DIR", str(empty))
    missing = f"class_hierarchy.txt, dataset_class_info.json, node_names.txt are missing from {empty}"
    for use in (default_hierarchy, lambda: breeds_splits("entity30"), lambda: get_label_set("living17_target"),
                lambda: resolve_label_set("entity13", imagenet_wnids()[:10]),
                lambda: label_set_from_spec("{hierarchy: breeds, depth: 3}", imagenet_wnids())):
        with pytest.raises(FastloadError, match=missing) as info:
            use()
        assert not isinstance(info.value, UsageError)
    sets = builtin_label_sets()  # the paper's sets need no BREEDS file
    assert len(sets) == 27 and "entity30" not in sets and sets["top_down_10"].num_labels == 10
    (empty / "class_hierarchy.txt").write_text("n00001740 n00004258\n")
    np.savez(tmp_path / "train_index.npz", class_id=np.arange(4, dtype=np.int32),
             class_wnids=np.asarray(imagenet_wnids()[:4]), path=np.array([f"x{i}.JPEG" for i in range(4)]))
    with pytest.raises(FastloadError, match=r"files dataset_class_info.json, node_names.txt are missing"):
        default_hierarchy()
    for args in (("labelsets", "show", "entity30"), ("labelsets", "tree", "--hierarchy", "breeds"),
                 ("synth", "imagenet", tmp_path / "raw", "--classes-from", "breeds:living17"),
                 ("subset", "--index", tmp_path / "train_index.npz", "--labelset", "entity30_source",
                  "--out", tmp_path / "x.npz")):
        proc = cli(*args)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "dataset_class_info.json, node_names.txt are missing from" in proc.stderr, (args, proc.stderr)
        assert "FASTLOAD_BREEDS_DIR" in proc.stderr and "BREEDS-Benchmarks" in proc.stderr
    proc = cli("labelsets", "list", check=True)
    rows = {line.split()[0]: line.split()[1:3] for line in proc.stdout.splitlines()[1:]}
    assert len(rows) == 39 and rows["entity30_source"] == ["-", "-"] and rows["top_down_10"] == ["10", "1000"]
    assert "12 BREEDS label sets left out" in proc.stderr and str(empty) in proc.stderr
    assert not (tmp_path / "raw").exists()


# ---- the published lists, on the real hierarchy files ------------------------------------------------------------

@pytest.mark.parametrize("name", list(BREEDS_SETS))
def test_breeds_sets_equal_the_reference_code_output(real_breeds, name):
    expected = EXPECTED["sets"][name]
    got = breeds_splits(name)
    assert sorted(got) == sorted(expected)
    for sc, (source, target) in got.items():
        assert (source, target) == (expected[sc]["source"], expected[sc]["target"])  # drawn order too
        assert default_hierarchy().name(sc) == expected[sc]["name"]
    sets = builtin_label_sets()
    for part, column in (("_source", "source"), ("_target", "target"), ("", None)):
        ls = sets[name + part]
        want = {w: sc for sc, e in expected.items() for c in ("source", "target") if column in (None, c)
                for w in e[c]}
        assert {w: lab for w, lab in zip(ls.class_wnids, ls.class_to_label) if lab} == want


def test_published_sizes_and_disjoint_halves(real_breeds):
    sizes = {"entity13": (13, 260), "entity30": (30, 240), "living17": (17, 68), "nonliving26": (26, 104)}
    for name, (labels, classes) in sizes.items():
        ls = builtin_label_sets()[name]
        assert (ls.num_labels, ls.num_classes_kept) == (labels, classes)
        for source, target in breeds_splits(name).values():
            assert len(source) == len(target) == BREEDS_SETS[name].subclasses // 2 and not set(source) & set(target)


def test_hierarchy_levels_and_living17_match_the_notebook_printout(real_breeds):
    h = default_hierarchy()
    assert {str(k): v for k, v in sorted(Counter(h.level.values()).items())} == EXPECTED["notebook"]["nodes_per_level"]
    number = dict(zip(h.leaves, range(len(h.leaves))))
    by_name = {h.name(sc): halves for sc, halves in breeds_splits("living17").items()}
    for name, shown in EXPECTED["notebook"]["living17"].items():
        # the notebook cut long cells with '...': match those names by their shown start
        source, target = next(h for full, h in by_name.items() if full == name or
                              (name.endswith("...") and full.startswith(name[:-3])))
        for drawn, printed in ((source, shown["source"]), (target, shown["target"])):
            assert [number[w] for w in drawn][:len(printed)] == printed


@pytest.mark.parametrize("split_type", ["good", "bad"])
def test_good_and_bad_splits_equal_the_reference_code_output(real_breeds, split_type):
    expected = EXPECTED[f"sets_{split_type}"]
    for name, r in BREEDS_SETS.items():
        got = superclass_splits(default_hierarchy(), r.level, r.subclasses, r.ancestor, split_type=split_type)
        assert {sc: (list(s), list(t)) for sc, (s, t) in got.items()} == \
            {sc: (e["source"], e["target"]) for sc, e in expected[name].items()}, name
    spec = build_from_spec({"hierarchy": "breeds", "depth": 5, "keep": ["n00004258"], "classes_per_label": 4,
                            "part": "target", "breeds_split": split_type}, imagenet_wnids())
    assert {w for w, lab in zip(spec.class_wnids, spec.class_to_label) if lab} == \
        {w for e in expected["living17"].values() for w in e["target"]}


# ---- the spec language ------------------------------------------------------------------------------------------

def test_every_builtin_label_set_comes_out_of_its_spec(synthetic_breeds):
    sets, specs = builtin_label_sets(), builtin_specs()
    assert len(sets) == 39 and sorted(sets) == sorted(specs)
    for name, ls in sets.items():
        assert build_from_spec(specs[name], ls.class_wnids, name).class_to_label == ls.class_to_label, name


def test_spec_cut_keep_remove_limits_and_balance(tmp_path, synthetic_breeds):
    from fastload.wordnet import default_tree
    tree, wnids = default_tree(), imagenet_wnids()
    path = tmp_path / "dogs.yaml"
    path.write_text("keep: [dog.n.01]\nremove: [n02087122]\ndepth: 10\nmin_classes_per_label: 2\n"
                    "max_classes_per_label: 5\nseed: 3\n")
    ls = label_set_from_spec(str(path), wnids)
    dog, hunting = tree.wnid_of_name("dog.n.01"), "n02087122"
    for w, lab in zip(wnids, ls.class_to_label):
        if lab:
            assert dog in tree.all_hypernyms(w) and hunting not in tree.all_hypernyms(w)
            assert lab == tree.ancestor_at_depth(w, 10)
    assert ls.name == "dogs" and all(2 <= len(m) <= 5 for m in ls.members().values())
    balanced = label_set_from_spec("{keep: [dog.n.01], depth: 10, balance: true}", wnids)
    assert len({len(m) for m in balanced.members().values()}) == 1
    assert label_set_from_spec("{keep: [dog.n.01], depth: 10, max_classes_per_label: 5, seed: 4}", wnids) \
        .class_to_label != label_set_from_spec("{keep: [dog.n.01], depth: 10, max_classes_per_label: 5, seed: 3}",
                                               wnids).class_to_label
    breeds = label_set_from_spec("{hierarchy: breeds, depth: 2}", wnids)  # animal, artifact, natural object
    assert breeds.labels == ["dummy1", "dummy11", "dummy22"] and breeds.num_classes_kept == 44
    dogs = label_set_from_spec("{hierarchy: breeds, keep: [dog.n.01]}", wnids)  # a WordNet name of a BREEDS node
    assert sorted(dogs.labels) == _leaves("c00", "c01", "c02", "c03", "c04", "c05")


@pytest.mark.parametrize("text, error", [
    ("!!python/object/apply:os.system ['true']", "not valid YAML"),
    ("depth: 100000000000000000000", "depth must be an integer in 0..64"),
    ("max_classes_per_label: true", "max_classes_per_label must be an integer"),
    ("depth: 4\ncolour: red", "unknown key.*colour.*allowed"),
    ("- depth\n- 4", "a spec is a mapping"),
    ("keep: [nope.n.99]", "unknown WordNet synset 'nope.n.99'"),
    ("split: {kind: minimal, part: c}", "split part must be a or b"),
    ("hierarchy: breeds\nclimb: 2", "climb not allowed with hierarchy breeds"),
    ("depth: 3\nclimb: 2", "depth or climb, not both"),
    ("keep: {a: 1}", "keep must be a list"),
])
def test_hostile_specs_give_one_line_errors(tmp_path, cli, text, error):
    import re
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FastloadError, match=error) as info:
        label_set_from_spec(str(path), imagenet_wnids())
    assert str(path) in str(info.value)
    proc = cli("labelsets", "show", path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert re.search(error, proc.stderr)


def test_inline_spec_errors_are_usage_errors_and_big_files_are_refused(tmp_path, cli):
    with pytest.raises(UsageError, match="--labelset spec: unknown key"):
        label_set_from_spec("{deep: 3}", imagenet_wnids())
    proc = cli("labelsets", "show", "{depth: -1}")
    assert proc.returncode == 2 and "depth must be an integer in 0..64" in proc.stderr
    big = tmp_path / "big.yaml"
    big.write_text("# x\n" * 20000)
    with pytest.raises(FastloadError, match="over 65536 bytes"):
        label_set_from_spec(str(big), imagenet_wnids())


def test_tree_command_counts(cli, synthetic_breeds):
    from fastload.wordnet import default_tree
    tree = default_tree()
    proc = cli("labelsets", "tree", "dog.n.01", "--depth", "1", check=True)
    lines = proc.stdout.splitlines()
    dog = tree.wnid_of_name("dog.n.01")
    under_dog = sum(dog in tree.path_to_root(w) for w in imagenet_wnids())
    assert lines[0].split()[:2] == [dog, str(under_dog)]
    assert sum(int(line.split()[1]) for line in lines[1:]) == under_dog  # one tree parent per class
    proc = cli("labelsets", "tree", "--hierarchy", "breeds", "--depth", "1", check=True)
    rows = [line.split()[:3] for line in proc.stdout.splitlines()]
    assert rows == [["n00001740", "44", "L0"], ["n00004258", "23", "L1"], ["n00021939", "21", "L1"]]  # largest first
    proc = cli("labelsets", "tree", "dummy18", "--hierarchy", "breeds", "--depth", "2", check=True)
    assert [line.split()[:3] for line in proc.stdout.splitlines()] == [
        ["dummy18", "6", "L5"], ["dummy19", "6", "L6"], ["dummy20", "3", "L7"], ["dummy21", "3", "L7"]]
    assert cli("labelsets", "tree", "--depth", "99").returncode == 2
    proc = cli("labelsets", "tree", "nothing.n.01")
    assert proc.returncode == 2 and "nothing.n.01" in proc.stderr and "Traceback" not in proc.stderr


# ---- synthetic BREEDS ImageNet and the subpop evaluation ---------------------------------------------------------

def test_synth_classes_from_breeds_are_whole_superclasses(synthetic_breeds):
    from fastload.synth.imagenet import choose_breeds_classes
    splits = sorted(breeds_splits("living17").items())
    assert choose_breeds_classes("breeds:living17", 8) == sorted(w for _, h in splits[:2] for half in h for w in half)
    assert choose_breeds_classes("breeds:living17", 11) == choose_breeds_classes("breeds:living17", 8)
    assert len(choose_breeds_classes("breeds:living17", 12)) == 12
    assert len(choose_breeds_classes("breeds:living17")) == 16
    with pytest.raises(UsageError, match="fewer than two whole superclasses"):
        choose_breeds_classes("breeds:living17", 5)
    with pytest.raises(UsageError, match="breeds:NAME"):
        choose_breeds_classes("breeds:living18")


def test_subpop_lookups_share_superclass_ids_and_need_two(synthetic_breeds):
    from fastload.analysis.subpop import subpop_lookups
    splits = sorted(breeds_splits("entity30").items())[:3]
    wnids = sorted(w for _, h in splits for half in h for w in half) + ["n15075141"]
    superclasses, source, target = subpop_lookups("entity30", wnids)
    assert superclasses == [sc for sc, _ in splits]
    for i, w in enumerate(wnids):
        sc = next((k for k, (s, t) in splits if w in s + t), None)
        if sc is None:
            assert source[i] == target[i] == -1
        else:
            in_source = w in dict(splits)[sc][0]
            assert (source[i], target[i]) == ((superclasses.index(sc), -1) if in_source else (-1, superclasses.index(sc)))
    source, target = breeds_splits("living17")["n02084071"]
    with pytest.raises(FastloadError, match="hold 1 living17 superclass.*need at least 2"):
        subpop_lookups("living17", sorted(source + target))
    with pytest.raises(UsageError, match="choose one of"):
        subpop_lookups("living99", wnids)


@pytest.mark.slow
def test_subpop_end_to_end_on_a_synthetic_breeds_imagenet(tmp_path, cli, synthetic_breeds):
    """synth (2 living17 superclasses) -> compile -> source manifest -> pre-train -> subpop."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    cli("synth", "imagenet", raw, "--classes-from", "breeds:living17", "--classes", "8", "--train-per-class", "8",
        "--val-per-class", "3", "--size", "48", "--workers", "1", check=True)
    cli("compile", "imagenet", raw, data, "--max-resolution", "64", "--num-workers", "1", check=True)
    cli("subset", "--index", data / "train_index.npz", "--labelset", "living17_source", "--out", tmp_path / "src.npz",
        check=True)
    manifest = np.load(tmp_path / "src.npz")
    source = {w for sc, (s, _) in breeds_splits("living17").items() for w in s}
    kept = [str(w) for w, lab in zip(manifest["class_wnids"], manifest["label_lookup"]) if lab >= 0]
    assert len(kept) == 4 and set(kept) <= source and len(manifest["indices"]) == 32
    cli("pretrain", "--recipe", "smoke", "--manifest", tmp_path / "src.npz", "--data", data, "--out", tmp_path / "run",
        "--num-workers", "1", "--epochs", "1", "--batch-size", "8", "--min-res", "48", "--max-res", "48",
        "--val-res", "48", "--device", "cpu", check=True)
    out = tmp_path / "subpop.json"
    cli("subpop", "--checkpoint", tmp_path / "run" / "last.pt", "--beton-dir", data, "--breeds", "living17",
        "--epochs", "2", "--batch-size", "8", "--num-workers", "1", "--device", "cpu", "--out", out, check=True)
    result = json.loads(out.read_text())
    assert result["source_classes"] == result["target_classes"] == 4 and len(result["superclasses"]) == 2
    assert result["source_val_images"] == result["target_val_images"] == 12 and result["iterations"] == 8
    assert 0 <= result["source_top1"] <= 1 and 0 <= result["target_top1"] <= 1
    assert result["shift_top1"] == pytest.approx(result["source_top1"] - result["target_top1"])
    proc = cli("subpop", "--checkpoint", tmp_path / "run" / "last.pt", "--beton-dir", data, "--breeds", "entity13",
               "--device", "cpu", "--batch-size", "8")
    assert proc.returncode == 1 and "need at least 2" in proc.stderr


def test_report_subpop_table_shows_source_beside_target():
    from fastload.plan import load_plan
    from fastload.report import collect, subpop_table
    plan = load_plan(str(Path(__file__).parent.parent / "datasets" / "breeds_plan.yaml"))
    done = [{"kind": "subpop", "evaluation": "subpop_entity30", "run": "entity30", "seed": seed, "status": "done",
             "metrics": {"breeds": "entity30", "source_top1": src, "target_top1": tgt, "shift_top1": src - tgt}}
            for seed, src, tgt in ((0, 0.8, 0.5), (1, 0.6, 0.5))]
    lines = subpop_table(plan, done)
    row = next(line for line in lines if line.startswith("| entity30 |"))
    assert "| entity30 | 70.00 ± 14.14 (2) | 50.00 ± 0.00 (2) | 20.00 ± 14.14 (2) |" in row
    assert collect(plan, done)[("entity30", "subpop_entity30")] == {0: 0.5, 1: 0.5}  # the kind's metric: target
    assert subpop_table(plan, [dict(done[0], evaluation="imagenet_cls")]) == []


def test_subset_with_breeds_halves_and_a_spec_on_an_imagenet_index(cli, tmp_path, synthetic_breeds):
    """`fastload subset --labelset entity30_target` on an index of all 1000 classes keeps exactly the target
    classes, labelled by their superclasses; an inline spec works the same way."""
    from fastload.manifest import load_manifest
    wnids = imagenet_wnids()
    np.savez(tmp_path / "train_index.npz", class_id=np.repeat(np.arange(1000, dtype=np.int32), 3),
             class_wnids=np.asarray(wnids), path=np.array([f"x{i}.JPEG" for i in range(3000)]))
    cli("subset", "--index", tmp_path / "train_index.npz", "--labelset", "entity30_target", "--per-class", 2,
        "--out", tmp_path / "t.npz", check=True)
    m = load_manifest(tmp_path / "t.npz")
    target = {w: sc for sc, (_, t) in breeds_splits("entity30").items() for w in t}
    kept = {wnids[c] for c in np.flatnonzero(m.label_lookup >= 0)}
    assert len(target) == 16 and kept == set(target) and m.num_images == 32
    assert sorted(m.label_wnids) == fx.SUPERCLASSES["entity30"]
    for c in np.flatnonzero(m.label_lookup >= 0):
        assert m.label_wnids[m.label_lookup[c]] == target[wnids[c]]
    cli("subset", "--index", tmp_path / "train_index.npz", "--labelset", "{keep: [dog.n.01], fine: true}",
        "--out", tmp_path / "d.npz", check=True)
    assert load_manifest(tmp_path / "d.npz").num_labels == 118
    bad = cli("subset", "--index", tmp_path / "train_index.npz", "--labelset", "{keep: [dog.n.01], colour: 1}",
              "--out", tmp_path / "x.npz")
    assert bad.returncode == 2 and "unknown key(s) colour" in bad.stderr
