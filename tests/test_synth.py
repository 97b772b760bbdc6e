"""Synthetic ImageNet / VOC / SUN397: exact layouts parsed back, determinism, and learnable, tree-shaped appearance."""
import csv
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastload.cli import main as cli_main
from fastload.errors import UsageError
from fastload.resources import imagenet_wnids, read_imagenet_classes
from fastload.synth import imagenet as synth_imagenet
from fastload.synth.imagenet import TreeCodes, choose_classes, parse_size, write_imagenet
from fastload.synth.render import draw_object, make_appearance
from fastload.synth.sun import SUN_CATEGORIES, write_sun
from fastload.synth.voc import write_voc
from fastload.voc import VOC_ACTIONS, VOC_CLASSES
from fastload.wordnet import default_tree


@pytest.fixture(scope="module")
def codes():
    return TreeCodes()


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "imagenet"
    write_imagenet(out, classes=6, train_per_class=3, val_per_class=2, size="40x32", seed=3, workers=2)
    return out


def highest_ancestor_with_at_most(tree, wnid, limit, counts):
    for anc in reversed(tree.path_to_root(wnid)):
        if counts.get(anc, 0) <= limit:
            return anc
    return wnid


def files_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- renderer -----------------------------------------------------------------------------------------------

def test_parse_size():
    assert parse_size("128") == (128, 128)
    assert parse_size("400x350") == (400, 350)
    for bad in ("0", "abc", "10x", "12", "400x350x2"):
        with pytest.raises(UsageError, match="--size"):
            parse_size(bad)


def test_draw_object_box_matches_painted_pixels():
    img = np.zeros((50, 60, 3), np.float32)
    app = make_appearance("s", "c", "t")
    full, visible = draw_object(img, app, 30, 25, 12, 0.3)
    painted = np.nonzero(img.any(axis=2))
    assert visible == (painted[1].min(), painted[0].min(), painted[1].max(), painted[0].max())
    assert full == visible  # fully inside
    img2 = np.zeros((50, 60, 3), np.float32)
    full2, visible2 = draw_object(img2, app, 2, 25, 12, 0.3)  # leaves the image on the left
    assert full2[0] < 0 and visible2[0] == 0 and full2 != visible2


def test_appearance_is_deterministic_and_code_driven():
    a, b = make_appearance("x", "y", "z"), make_appearance("x", "y", "z")
    assert a == b
    sibling = make_appearance("x", "y", "other")
    assert (sibling.shape, sibling.secondary) == (a.shape, a.secondary)  # texture code changes texture only
    assert make_appearance("x2", "y", "z") != a


# ---- synthetic ImageNet -------------------------------------------------------------------------------------

def test_classes_are_whole_wordnet_groups(codes):
    tree = default_tree()
    all_wnids = imagenet_wnids()
    counts = Counter(a for w in all_wnids for a in tree.path_to_root(w))  # independent of TreeCodes
    chosen = choose_classes(100, 0, codes)
    assert len(chosen) == len(set(chosen)) == 100 and set(chosen) <= set(all_wnids) and chosen == sorted(chosen)
    assert chosen == choose_classes(100, 0, codes) and chosen != choose_classes(100, 1, codes)
    shape = Counter(highest_ancestor_with_at_most(tree, w, 80, counts) for w in chosen)
    assert len(shape) == 5 and set(shape.values()) == {20}
    tops = {tree.ancestor_at_depth(g, 4) for g in shape}
    assert len(tops) >= 2  # both sides of the tree (e.g. living thing and artifact)
    # colour groups are taken whole, except at most one cut group per shape group
    colour_members = {}
    for w in all_wnids:
        colour_members.setdefault(highest_ancestor_with_at_most(tree, w, 12, counts), set()).add(w)
    cut = [g for g in {highest_ancestor_with_at_most(tree, w, 12, counts) for w in chosen}
           if not colour_members[g] <= set(chosen)]
    assert len(cut) <= len(shape)
    with pytest.raises(UsageError, match="--classes"):
        choose_classes(1, 0, codes)


def test_imagenet_layout(small_imagenet):
    out = small_imagenet
    mapping = [line.split(" ", 1) for line in (out / "LOC_synset_mapping.txt").read_text().splitlines()]
    wnids = [w for w, _ in mapping]
    names = dict(read_imagenet_classes())
    assert wnids == sorted(wnids) and len(wnids) == 6 and all(names[w] == n for w, n in mapping)
    assert sorted(p.name for p in (out / "train").iterdir()) == wnids
    for w in wnids:
        assert sorted(p.name for p in (out / "train" / w).iterdir()) == sorted(f"{w}_{i}.JPEG" for i in (1, 2, 3))
        with Image.open(out / "train" / w / f"{w}_1.JPEG") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (40, 32)
    val_files = sorted(p.name for p in (out / "val").iterdir())
    assert val_files == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 13)]
    with open(out / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "PredictionString"]
    assert sorted(r[0] + ".JPEG" for r in rows[1:]) == val_files
    per_class = Counter()
    for image_id, pred in rows[1:]:
        w, x0, y0, x1, y1 = pred.split()
        per_class[w] += 1
        x0, y0, x1, y1 = map(int, (x0, y0, x1, y1))
        assert 0 <= x0 <= x1 < 40 and 0 <= y0 <= y1 < 32
    assert per_class == {w: 2 for w in wnids}
    assert [r[1].split()[0] for r in rows[1:]] != sorted(r[1].split()[0] for r in rows[1:])  # classes shuffled


def test_imagenet_deterministic_and_output_protected(small_imagenet, tmp_path):
    again = tmp_path / "again"
    write_imagenet(again, classes=6, train_per_class=3, val_per_class=2, size="40x32", seed=3, workers=1)
    assert files_bytes(again) == files_bytes(small_imagenet)  # 1 or 2 processes, same bytes
    other = tmp_path / "other"
    write_imagenet(other, classes=6, train_per_class=3, val_per_class=2, size="40x32", seed=4, workers=1)
    assert files_bytes(other) != files_bytes(small_imagenet)
    with pytest.raises(UsageError, match="not empty"):
        write_imagenet(again, classes=6, train_per_class=1, val_per_class=1, size="32", seed=3, workers=1)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folders left behind


def test_imagenet_cli(tmp_path, capsys):
    assert cli_main(["synth", "imagenet", str(tmp_path / "d"), "--classes", "2", "--train-per-class", "1",
                     "--val-per-class", "1", "--size", "32", "--workers", "1"]) == 0
    assert "2 classes" in capsys.readouterr().out
    assert cli_main(["synth", "imagenet", str(tmp_path / "e"), "--size", "big"]) == 2
    assert not (tmp_path / "e").exists()


def colour_histogram(path, bins=4):
    """Nearest-centroid feature: the normalised colour histogram of the downsampled image (a bag of pixels)."""
    with Image.open(path) as im:
        x = np.asarray(im.convert("RGB").resize((24, 24), Image.BILINEAR)) // (256 // bins)
    h = np.bincount(((x[..., 0] * bins + x[..., 1]) * bins + x[..., 2]).ravel(), minlength=bins ** 3)
    return np.sqrt(h / h.sum())


def nearest_centroid(train_x, train_y, test_x, n):
    centroids = np.stack([train_x[train_y == k].mean(0) for k in range(n)])
    return ((test_x[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)


def test_classes_learnable_and_coarse_easier_than_fine(tmp_path):
    """A numpy nearest-centroid classifier separates the fine classes well above chance, and the coarse groups
    (shape groups, read back from the tree independently) better still; its errors stay inside the coarse group."""
    out = tmp_path / "d"
    write_imagenet(out, classes=24, train_per_class=20, val_per_class=10, size="48", seed=0, workers=2)
    tree = default_tree()
    counts = Counter(a for w in imagenet_wnids() for a in tree.path_to_root(w))
    wnids = sorted(p.name for p in (out / "train").iterdir())
    groups = [highest_ancestor_with_at_most(tree, w, 80, counts) for w in wnids]
    group_of = np.array([sorted(set(groups)).index(g) for g in groups])
    x = np.array([colour_histogram(p) for w in wnids for p in sorted((out / "train" / w).iterdir())])
    y = np.repeat(np.arange(len(wnids)), 20)
    rows = (out / "LOC_val_solution.csv").read_text().splitlines()[1:]
    vx = np.array([colour_histogram(out / "val" / (r.split(",")[0] + ".JPEG")) for r in rows])
    vy = np.array([wnids.index(r.split(",")[1].split()[0]) for r in rows])
    fine = (nearest_centroid(x, y, vx, len(wnids)) == vy).mean()
    n_groups = len(set(groups))
    coarse = (nearest_centroid(x, group_of[y], vx, n_groups) == group_of[vy]).mean()
    assert n_groups == 2
    assert fine > 3.0 / len(wnids)  # chance is 1/24
    assert coarse > 0.6 and coarse > fine + 0.3  # chance is 1/2
    fine_pred = nearest_centroid(x, y, vx, len(wnids))
    wrong = fine_pred != vy
    within = (group_of[fine_pred[wrong]] == group_of[vy[wrong]]).mean()
    assert within > 11 / 23 + 0.1  # errors fall inside the true coarse group more often than at random


# ---- synthetic VOC --------------------------------------------------------------------------------------------

def parse_voc_xml(path):
    root = ET.parse(path).getroot()
    size = root.find("size")
    objects = []
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        actions = obj.find("actions")
        objects.append({"name": obj.findtext("name"), "difficult": int(obj.findtext("difficult")),
                        "truncated": int(obj.findtext("truncated")), "pose": obj.findtext("pose"),
                        "box": [int(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")],
                        "actions": None if actions is None else {a.tag: int(a.text) for a in actions}})
    return int(size.findtext("width")), int(size.findtext("height")), root.findtext("filename"), objects


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "voc"
    write_voc(out, trainval=10, test=11, action_train=10, action_val=6, seed=1)
    return out


def read_ids(path):
    return path.read_text().split()


def test_voc2007_layout(small_voc):
    root = small_voc / "VOCdevkit" / "VOC2007"
    main = root / "ImageSets" / "Main"
    trainval, test = read_ids(main / "trainval.txt"), read_ids(main / "test.txt")
    train, val = read_ids(main / "train.txt"), read_ids(main / "val.txt")
    assert len(trainval) == 10 and len(test) == 11 and not set(trainval) & set(test)
    assert sorted(train + val) == sorted(trainval) and not set(train) & set(val)
    assert sorted(p.stem for p in (root / "JPEGImages").glob("*.jpg")) == sorted(trainval + test)
    objects_of = {}
    for image_id in trainval + test:
        assert re.fullmatch(r"\d{6}", image_id)
        w, h, filename, objects = parse_voc_xml(root / "Annotations" / f"{image_id}.xml")
        assert filename == f"{image_id}.jpg" and 1 <= len(objects) <= 3
        with Image.open(root / "JPEGImages" / filename) as im:
            assert im.size == (w, h) and 160 <= w <= 256
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            assert o["name"] in VOC_CLASSES and o["pose"] in ("Left", "Right", "Frontal", "Unspecified")
            assert 1 <= x0 < x1 <= w and 1 <= y0 < y1 <= h and o["difficult"] in (0, 1) and o["truncated"] in (0, 1)
        objects_of[image_id] = objects
    assert {o["name"] for i in test for o in objects_of[i]} == set(VOC_CLASSES)  # >= 20 objects: all classes
    for cls in VOC_CLASSES:
        for split, ids in (("trainval", trainval), ("test", test), ("train", train), ("val", val)):
            lines = [line.split() for line in (main / f"{cls}_{split}.txt").read_text().splitlines()]
            assert [i for i, _ in lines] == ids
            for image_id, label in lines:
                mine = [o for o in objects_of[image_id] if o["name"] == cls]
                expected = 1 if any(not o["difficult"] for o in mine) else (0 if mine else -1)
                assert int(label) == expected


def test_voc2012_actions_layout(small_voc):
    root = small_voc / "VOCdevkit" / "VOC2012"
    action_dir = root / "ImageSets" / "Action"
    train, val = read_ids(action_dir / "train.txt"), read_ids(action_dir / "val.txt")
    assert len(train) == 10 and len(val) == 6 and read_ids(action_dir / "trainval.txt") == train + val
    persons = {}
    for image_id in train + val:
        assert re.fullmatch(r"2012_\d{6}", image_id)
        w, h, filename, objects = parse_voc_xml(root / "Annotations" / f"{image_id}.xml")
        assert (root / "JPEGImages" / filename).is_file() and 1 <= len(objects) <= 2
        for k, o in enumerate(objects, 1):
            assert o["name"] == "person"
            assert set(o["actions"]) == set(VOC_ACTIONS) | {"other"} and o["actions"]["other"] == 0
            assert sum(o["actions"][a] for a in VOC_ACTIONS) == 1
            x0, y0, x1, y1 = o["box"]
            assert 1 <= x0 < x1 <= w and 1 <= y0 < y1 <= h
            persons[(image_id, k)] = next(a for a in VOC_ACTIONS if o["actions"][a])
    for split, ids in (("train", train), ("val", val)):
        in_split = [persons[key] for key in persons if key[0] in ids]
        # actions come in seeded rounds of all ten: no repeat before every action has appeared
        assert len(set(in_split)) == min(len(in_split), len(VOC_ACTIONS))
        for action in VOC_ACTIONS:
            lines = [line.split() for line in (action_dir / f"{action}_{split}.txt").read_text().splitlines()]
            assert [(i, int(k)) for i, k, _ in lines] == [key for key in persons if key[0] in ids]
            for image_id, k, label in lines:
                assert int(label) == (1 if persons[(image_id, int(k))] == action else -1)


def test_voc_deterministic(small_voc, tmp_path):
    write_voc(tmp_path / "v", trainval=10, test=11, action_train=10, action_val=6, seed=1)
    assert files_bytes(tmp_path / "v") == files_bytes(small_voc)


# ---- synthetic SUN397 ---------------------------------------------------------------------------------------

def test_sun_layout_and_partitions(tmp_path):
    out = tmp_path / "sun"
    summary = write_sun(out, classes=3, train_per_class=2, test_per_class=3, size="48x32", seed=2, partitions=2)
    assert summary["train"] == 6 and summary["test"] == 9
    classes = (out / "Partitions" / "ClassName.txt").read_text().split()
    assert len(classes) == 3 and set(classes) <= set(SUN_CATEGORIES) and classes == sorted(classes)
    on_disk = sorted("/" + str(p.relative_to(out / "SUN397")) for p in (out / "SUN397").rglob("*.jpg"))
    assert len(on_disk) == 15
    for p in (1, 2):
        train = (out / "Partitions" / f"Training_{p:02d}.txt").read_text().split()
        test = (out / "Partitions" / f"Testing_{p:02d}.txt").read_text().split()
        assert sorted(train + test) == on_disk and not set(train) & set(test)
        for path in train + test:
            category, name = path.rsplit("/", 1)
            assert category in classes and re.fullmatch(r"sun_[a-z]{16}\.jpg", name)
            assert category.split("/")[2].startswith(category.split("/")[1])  # /<letter>/<name>
            assert (out / "SUN397" / path.lstrip("/")).is_file()
        assert Counter(x.rsplit("/", 1)[0] for x in train) == {c: 2 for c in classes}
    first = (out / "Partitions" / "Training_01.txt").read_text()
    assert first != (out / "Partitions" / "Training_02.txt").read_text()
    with Image.open(out / "SUN397" / on_disk[0].lstrip("/")) as im:
        assert im.size == (48, 32)
    again = tmp_path / "again"
    write_sun(again, classes=3, train_per_class=2, test_per_class=3, size="48x32", seed=2, partitions=2)
    assert files_bytes(again) == files_bytes(out)
    with pytest.raises(UsageError, match="--classes"):
        write_sun(tmp_path / "bad", classes=41)


def test_synth_module_exports():
    assert synth_imagenet.SHAPE_GROUP_MAX == 80  # the documented group sizes the tests above rely on
    assert synth_imagenet.COLOUR_GROUP_MAX == 12
