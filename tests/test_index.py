"""fastload.index: layouts found, labels read from each ground-truth format, clear errors, npz round trip."""
import os
import shutil

import numpy as np
import pytest

from fastload import index as ix
from fastload.errors import FastloadError
from tiny_imagenet import WNIDS, make_tree


def listed(root, split, devkit_class_order=None):
    """(paths, class ids) of a split; its report rows must be empty (see the test of odd entries)."""
    paths, class_ids, report = listed_with_report(root, split, devkit_class_order)
    assert report == []
    return paths, class_ids


def listed_with_report(root, split, devkit_class_order=None):
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


def test_train_lists_every_image_file_and_reports_other_files(tmp_path):
    make_tree(tmp_path, bad=True)
    paths, class_ids, report = listed_with_report(tmp_path, "train")
    names = {p.rsplit("/", 1)[1] for p in paths}
    assert {"zero.JPEG", "truncated.JPEG", "garbage.JPEG", "cmyk.JPEG", "png_named.JPEG"} <= names
    assert "notes.txt" not in names
    assert report == [(f"train/{WNIDS[0]}/notes.txt", "not an image file name (suffix .txt)")]
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
    digest = ix.save_index(index, tmp_path / "train_index.npz")
    assert sorted(os.listdir(tmp_path)) == ["train_index.npz"]  # no temporary file left
    assert ix.load_fingerprint(tmp_path / "train_index.npz") == digest == ix.fingerprint(index)
    back = ix.load_index(tmp_path / "train_index.npz")
    assert back.path.tolist() == ["a/x.JPEG", "b/y.JPEG", "b/z.JPEG"]
    assert back.class_id.dtype == np.int32 and back.nbytes.dtype == np.int64
    assert back.wnid.tolist() == ["n01440764", "n01443537", "n01443537"]
    assert back.root == str(tmp_path) and back.num_classes == 2
    sub = back.select([2, 0])
    assert sub.path.tolist() == ["b/z.JPEG", "a/x.JPEG"] and sub.width.tolist() == [30, 10]
    with pytest.raises(FastloadError, match="does not exist"):
        ix.load_index(tmp_path / "missing.npz")


def test_fingerprint_follows_the_contents_not_the_root(tmp_path):
    def make(root, paths=("a/x.JPEG", "b/y.JPEG"), nbytes=(100, 200)):
        return ix.build_index(root, list(paths), [0, 1], [10, 20], [5, 6], list(nbytes), ["n01440764", "n01443537"])
    base = ix.fingerprint(make(tmp_path))
    assert ix.fingerprint(make("/elsewhere")) == base  # a moved dataset keeps its fingerprint
    assert ix.fingerprint(make(tmp_path, paths=("a/x.JPEG", "b/w.JPEG"))) != base  # another image
    assert ix.fingerprint(make(tmp_path, nbytes=(100, 201))) != base  # a replaced file
    assert ix.fingerprint(make(tmp_path).select([1, 0])) != base  # another row order


def test_truncated_and_foreign_index_files_are_one_line_errors(tmp_path):
    index = ix.build_index(tmp_path, ["a/x.JPEG"], [0], [10], [5], [100], ["n01440764"])
    ix.save_index(index, tmp_path / "val_index.npz")
    data = (tmp_path / "val_index.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("path,class\na.JPEG,0\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("cut.npz", "text.npz", "empty.npz"):
        for read in (ix.load_index, ix.load_index_classes, ix.load_fingerprint):
            with pytest.raises(FastloadError, match=name):
                read(tmp_path / name)
