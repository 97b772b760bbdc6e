"""Transfer-suite layouts: each reader parses a synthetic tree written in its dataset's published format, and a
malformed tree of each format fails with one line naming the file (and line, where there is one)."""
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastload.errors import FastloadError
from fastload.synth.suite import NAMES, SPLITS, write_suite
from fastload.transfer_data import LAYOUTS

K, TRAIN, VAL, TEST = 3, 5, 2, 2
OPTIONS = {"caltech101": {"train_per_class": 3}}   # the synthetic tree has 7 images per category


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """{layout: root} of a synthetic tree per layout (written once; malformed cases copy theirs)."""
    base = tmp_path_factory.mktemp("suite")
    for name in SPLITS:
        write_suite(name, base / name, classes=K, train_per_class=TRAIN, val_per_class=VAL, test_per_class=TEST,
                    size="40x32", seed=1)
    return {name: base / name for name in SPLITS}


@pytest.fixture
def tree(trees, tmp_path, request):
    import shutil
    name = request.param
    shutil.copytree(trees[name], tmp_path / name)
    return tmp_path / name


def read(name, root):
    return LAYOUTS[name].read(Path(root), **OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_reader_parses_its_synthetic_tree(trees, name):
    listing = read(name, trees[name])
    assert listing.name == name and listing.metric == LAYOUTS[name].metric
    assert set(listing.splits) == set(SPLITS[name])
    if name == "voc07":
        assert len(listing.classes) == 20 and listing.multilabel
        for samples in listing.splits.values():
            masks = np.array([s.label for s in samples])
            assert np.all(masks > 0) and np.all(masks < 1 << K)   # only the first K classes appear
        return
    assert listing.classes == NAMES[name][:K]
    expected = {"train": TRAIN, "val": VAL, "test": TEST}
    if name == "caltech101":
        expected = {"train": 3, "test": TRAIN + TEST - 3}
    for split, samples in listing.splits.items():
        counts = np.bincount([s.label for s in samples], minlength=K)
        assert counts.tolist() == [expected[split]] * K, split
        if LAYOUTS[name].load is None:
            assert all((trees[name] / s.path).is_file() for s in samples)


def test_splits_are_disjoint(trees):
    for name in SPLITS:
        listing = read(name, trees[name])
        paths = [s.path for samples in listing.splits.values() for s in samples]
        assert len(paths) == len(set(paths)), name


def test_cifar_load_hook_decodes_the_planes(trees):
    root = trees["cifar10"]
    listing = read("cifar10", root)
    sample = listing.splits["test"][4]
    image = LAYOUTS["cifar10"].load(root, sample)
    with open(root / "test_batch", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][4]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0].reshape(-1), row[:1024])     # red plane first
    assert np.array_equal(image[..., 2].reshape(-1), row[2048:])


def test_aircraft_box_leaves_out_the_banner(trees):
    root = trees["aircraft"]
    for sample in read("aircraft", root).splits["train"]:
        x0, y0, x1, y1 = sample.box
        width, height = Image.open(root / sample.path).size
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height - 20
    assert all(s.box is None for s in LAYOUTS["aircraft"].read(root, box="false").splits["test"])


def test_box_option_takes_true_or_false(trees):
    from fastload.errors import UsageError
    with pytest.raises(UsageError, match="aircraft option box=maybe: choose true or false"):
        LAYOUTS["aircraft"].read(trees["aircraft"], box="maybe")
    crops = LAYOUTS["cars"].read(trees["cars"], box="true").splits["train"]
    assert all(s.box is not None for s in crops)


def test_aircraft_box_is_one_based_inclusive(tmp_path):
    from fastload.transfer_data.aircraft import read_boxes
    path = tmp_path / "images_box.txt"
    path.write_text("0034309 1 1 10 20\n")
    assert read_boxes(path) == {"0034309": (0, 0, 10, 20)}


def test_voc_difficult_option(trees):
    root = trees["voc07"]
    main = root / "ImageSets" / "Main"
    difficult = [(name, line.split()[0]) for name in ("aeroplane", "bicycle", "bird")
                 for line in (main / f"{name}_train.txt").read_text().splitlines() if line.split()[1] == "0"]
    assert difficult, "the synthetic tree marks some objects difficult"
    pos = {s.path: s.label for s in read("voc07", root).splits["train"]}
    neg = {s.path: s.label for s in LAYOUTS["voc07"].read(root, difficult="negative").splits["train"]}
    for name, image in difficult:
        bit = 1 << ("aeroplane", "bicycle", "bird").index(name)
        assert pos[f"JPEGImages/{image}.jpg"] & bit and not neg[f"JPEGImages/{image}.jpg"] & bit


def test_caltech_split_is_seeded_and_background_optional(trees):
    root = trees["caltech101"]
    a = LAYOUTS["caltech101"].read(root, train_per_class=3, seed=0).splits["train"]
    b = LAYOUTS["caltech101"].read(root, train_per_class=3, seed=0).splits["train"]
    c = LAYOUTS["caltech101"].read(root, train_per_class=3, seed=1).splits["train"]
    assert a == b and a != c
    listing = LAYOUTS["caltech101"].read(root, train_per_class=3, background="exclude")
    assert "BACKGROUND_Google" not in listing.classes and len(listing.classes) == K - 1


def test_birdsnap_leaves_out_absent_images_and_says_so(trees, capsys):
    listing = read("birdsnap", trees["birdsnap"])
    assert not any("gone" in s.path for s in listing.splits["train"])
    assert "1 images listed" in capsys.readouterr().err


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def append_line(path: Path, line: str) -> int:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [line]) + "\n")
    return len(lines) + 1


def break_cifar10(root):
    (root / "batches.meta").write_bytes(b"not a pickle")
    return "batches.meta"


def break_cifar100(root):
    with open(root / "train", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    del d[b"fine_labels"]
    with open(root / "train", "wb") as f:
        pickle.dump(d, f)
    return "train: no 'fine_labels'"


def break_food101(root):
    (root / "meta" / "train.json").unlink()
    return f"train.txt:{append_line(root / 'meta' / 'train.txt', 'sushi/123')}:"


def break_birdsnap(root):
    number = append_line(root / "images.txt", "http://x\t0\tA/1.jpg")
    return f"images.txt:{number}:"


def break_cars(root):
    (root / "devkit" / "cars_meta.mat").write_bytes(b"garbage" * 20)
    return "cars_meta.mat"


def break_aircraft(root):
    return f"images_box.txt:{append_line(root / 'data' / 'images_box.txt', '1234567 10 20')}:"


def break_voc07(root):
    path = root / "ImageSets" / "Main" / "cat_test.txt"
    first = path.read_text().splitlines()[0]
    rewrite(path, first, first.split()[0] + "  2")
    return "cat_test.txt:1:"


def break_dtd(root):
    return f"val1.txt:{append_line(root / 'labels' / 'val1.txt', 'banded banded_0001.jpg')}:"


def break_pets(root):
    return f"trainval.txt:{append_line(root / 'annotations' / 'trainval.txt', 'Abyssinian_1 x 1 1')}:"


def break_caltech101(root):
    for f in list((root / "Faces").iterdir())[:5]:
        f.unlink()
    return "Faces has 2 images"


def break_flowers102(root):
    import scipy.io
    setid = scipy.io.loadmat(root / "setid.mat")
    setid["tstid"] = np.append(setid["tstid"], 9999)[None, :].astype(np.uint16)
    scipy.io.savemat(root / "setid.mat", {k: v for k, v in setid.items() if not k.startswith("__")})
    return "setid.mat: 'tstid' names image 9999"


BREAKERS = {name: globals()[f"break_{name}"] for name in SPLITS}


@pytest.mark.parametrize("tree", sorted(SPLITS), indirect=True)
def test_malformed_tree_fails_naming_the_file(tree):
    name = tree.name
    expected = BREAKERS[name](tree)
    with pytest.raises(FastloadError) as e:
        read(name, tree)
    message = str(e.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_missing_list_file_names_what_the_folder_needs(tmp_path, name):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FastloadError) as e:
        read(name, tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value) and "\n" not in str(e.value)


def test_synth_suite_cli(tmp_path, cli):
    proc = cli("synth", "suite", "flowers102", tmp_path / "f", "--classes", "2", "--train-per-class", "2")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and (tmp_path / "f" / "setid.mat").is_file()
    bad = cli("synth", "suite", "imagenet21k", tmp_path / "g")
    assert bad.returncode == 2 and "choose one of" in bad.stderr


@pytest.mark.slow
def test_every_suite_layout_compiles_from_its_synthetic_tree(trees, tmp_path):
    """`fastload compile cls` (in process) on each layout's tree, SUN397 included: one beton per split with every
    listed image, the classes and the layout's metric."""
    import json

    from fastload.compile_cls import ClsSettings, compile_cls
    from fastload.synth.suite import write_suite
    roots = dict(trees)
    roots["sun397"] = tmp_path / "sun397"
    write_suite("sun397", roots["sun397"], classes=3, train_per_class=3, test_per_class=2, size="40x32")
    for name, root in roots.items():
        out = tmp_path / f"{name}_compiled"
        compile_cls(name, root, out, ClsSettings(side=24, num_workers=1), OPTIONS.get(name))
        info = json.loads((out / "compile.json").read_text())
        listing = LAYOUTS[name].read(root, **OPTIONS.get(name, {}))
        assert info["metric"] == LAYOUTS[name].metric and info["layout"] == name
        assert info["splits"] == {s: len(v) for s, v in listing.splits.items()}, name
        assert (out / "classes.txt").read_text().splitlines() == list(listing.classes)
        for split in listing.splits:
            assert (out / f"{split}.beton").stat().st_size > 0


@pytest.mark.slow
def test_cifar_beton_holds_the_pickled_pixels(trees, tmp_path):
    """The load hook's arrays reach the beton: row 0 of the test beton is test_batch's row 0 (side 32: no resize)."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    from fastload.compile_cls import ClsSettings, compile_cls
    out = tmp_path / "cifar"
    compile_cls("cifar10", trees["cifar10"], out, ClsSettings(side=32, num_workers=1))
    loader = Loader(str(out / "test.beton"), batch_size=1, num_workers=1, order=OrderOption.SEQUENTIAL,
                    pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    image, label = next(iter(loader))
    sample = LAYOUTS["cifar10"].read(trees["cifar10"]).splits["test"][0]
    assert np.array_equal(np.asarray(image[0]), LAYOUTS["cifar10"].load(trees["cifar10"], sample))
    assert int(np.asarray(label).reshape(-1)[0]) == sample.label
