"""fastload.index: layouts found, labels read from each ground-truth format, clear errors, npz round trip."""
import os
import shutil

import numpy as np
import pytest

from fastload import index as ix
from fastload.errors import FastloadError
from tiny_imagenet import WNIDS, make_tree


def listed(root, split, devkit_class_order=None):
    classes = ix.list_classes(ix.find_image_root(root) / "train")
    return ix.list_split(root, split, classes, devkit_class_order)


def expected(rows):
    return [r[0] for r in rows], [r[1] for r in rows]


@pytest.mark.parametrize("layout", ["folders", "kaggle", "devkit"])
def test_val_layouts_give_the_written_labels(tmp_path, layout):
    good = make_tree(tmp_path, val_layout=layout, bad=False)
    order = tmp_path / "class_order.txt" if layout == "devkit" else None
    assert listed(tmp_path, "val", order) == expected(good["val"])
    assert listed(tmp_path, "train") == expected(good["train"])


def test_train_lists_every_image_file_and_ignores_other_files(tmp_path):
    make_tree(tmp_path, bad=True)
    paths, class_ids = listed(tmp_path, "train")
    names = {p.rsplit("/", 1)[1] for p in paths}
    assert {"zero.JPEG", "truncated.JPEG", "garbage.JPEG", "cmyk.JPEG", "png_named.JPEG"} <= names
    assert "notes.txt" not in names
    assert len(paths) == 3 * 4 + 6
    assert class_ids == sorted(class_ids)


def test_devkit_ground_truth_needs_the_class_order(tmp_path):
    make_tree(tmp_path, val_layout="devkit", bad=False)
    with pytest.raises(FastloadError, match="--devkit-class-order"):
        listed(tmp_path, "val")


def test_flat_val_without_ground_truth_names_the_folder(tmp_path):
    make_tree(tmp_path, val_layout="kaggle", bad=False)
    (tmp_path / "LOC_val_solution.csv").unlink()
    with pytest.raises(FastloadError, match=f"{tmp_path / 'val'}.*no ground truth"):
        listed(tmp_path, "val")


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    make_tree(tmp_path, bad=False)
    (tmp_path / "train" / "n01491361").mkdir()
    with pytest.raises(FastloadError, match="n01491361 has no image files"):
        listed(tmp_path, "train")


def test_unknown_folder_among_wnids_is_an_error(tmp_path):
    make_tree(tmp_path, bad=False)
    (tmp_path / "train" / "backup").mkdir()
    with pytest.raises(FastloadError, match=r"unknown class folder.*train/backup"):
        ix.check_class_names(ix.list_classes(tmp_path / "train"), tmp_path / "train")


def test_unknown_val_folder_is_an_error(tmp_path):
    make_tree(tmp_path, bad=False)
    shutil.copytree(tmp_path / "val" / WNIDS[0], tmp_path / "val" / "n09999999")
    with pytest.raises(FastloadError, match="n09999999"):
        listed(tmp_path, "val")


def test_plain_image_folder_compiles_but_label_sets_need_wnids(tmp_path):
    for name in ("abbey", "airfield"):
        (tmp_path / "train" / name).mkdir(parents=True)
        shutil.copy(__file__, tmp_path / "train" / name / "a.jpg")  # content is irrelevant for listing
    classes = ix.list_classes(tmp_path / "train")
    assert ix.check_class_names(classes, tmp_path / "train") is False
    with pytest.raises(FastloadError, match="'abbey' are not WordNet ids"):
        ix.require_wnids(classes, tmp_path)
    ix.require_wnids(WNIDS, tmp_path)


def test_kaggle_cls_loc_layout_is_found(tmp_path):
    good = make_tree(tmp_path / "ILSVRC" / "Data" / "CLS-LOC", val_layout="kaggle", bad=False)
    shutil.move(tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "LOC_val_solution.csv", tmp_path)
    paths, class_ids = listed(tmp_path, "val")
    assert paths == [f"ILSVRC/Data/CLS-LOC/{p}" for p, *_ in good["val"]]
    assert class_ids == [r[1] for r in good["val"]]


def test_index_round_trip_and_select(tmp_path):
    index = ix.build_index(tmp_path, ["a/x.JPEG", "b/y.JPEG", "b/z.JPEG"], [0, 1, 1], [10, 20, 30], [5, 6, 7],
                           [100, 200, 300], ["n01440764", "n01443537"])
    ix.save_index(index, tmp_path / "train_index.npz")
    assert sorted(os.listdir(tmp_path)) == ["train_index.npz"]  # no temporary file left
    back = ix.load_index(tmp_path / "train_index.npz")
    assert back.path.tolist() == ["a/x.JPEG", "b/y.JPEG", "b/z.JPEG"]
    assert back.class_id.dtype == np.int32 and back.nbytes.dtype == np.int64
    assert back.wnid.tolist() == ["n01440764", "n01443537", "n01443537"]
    assert back.root == str(tmp_path) and back.num_classes == 2
    sub = back.select([2, 0])
    assert sub.path.tolist() == ["b/z.JPEG", "a/x.JPEG"] and sub.width.tolist() == [30, 10]
    with pytest.raises(FastloadError, match="does not exist"):
        ix.load_index(tmp_path / "missing.npz")
