"""The FFCV loader over `fastload compile cls` betons: centre and random windows of the stored images (byte for
byte), labels in listing order, seeded order and crops, every row once per epoch."""
import numpy as np
import pytest

from fastload.ffcv_writer import StoredImages
from fastload.compile_cls import ClsSettings, compile_cls
from fastload.errors import FastloadError
from fastload.beton import read_classes
from fastload.transfer_data.loader import cls_loader
from fastload.transfer_data.sun397 import read_sun397

SIDE, CROP = 32, 24


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from fastload.synth.sun import write_sun
    root = tmp_path_factory.mktemp("sun") / "data"
    write_sun(root, classes=3, train_per_class=4, test_per_class=2, size="60x40", seed=1)
    out = tmp_path_factory.mktemp("compiled") / "sun"
    compile_cls("sun397", root, out, ClsSettings(side=SIDE, num_workers=1))
    return root, out


def stored(beton, rows):
    images = StoredImages(beton, rows)
    return [images[i][0][3].reshape(SIDE, SIDE, 3) for i in range(len(rows))]


def windows_of(image):
    """Every CROP x CROP window of `image` and of its mirror image."""
    out = []
    for source in (image, image[:, ::-1]):
        out += [source[y:y + CROP, x:x + CROP] for y in range(SIDE - CROP + 1) for x in range(SIDE - CROP + 1)]
    return out


def test_test_split_gives_centre_crops_in_listing_order(compiled):
    root, out = compiled
    listing = read_sun397(root, 1)
    images, labels = zip(*[(x.numpy().copy(), y.view(-1).numpy().copy()) for x, y in cls_loader(out, "test", 4, CROP, False,
                                                                                 num_workers=1)])
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert labels.tolist() == [s.label for s in listing.splits["test"]]
    offset = (SIDE - CROP) // 2
    for got, full in zip(images, stored(out / "test.beton", range(len(labels)))):
        assert np.array_equal(got, full[offset:offset + CROP, offset:offset + CROP])
    assert read_classes(out) == listing.classes


def test_train_crops_are_seeded_windows_covering_every_row_once_per_epoch(compiled):
    _, out = compiled
    originals = stored(out / "train.beton", range(12))
    labels = [StoredImages(out / "train.beton", [r])[0][1] for r in range(12)]

    def epoch(loader):
        return [(x.numpy().copy(), y.view(-1).numpy().copy()) for x, y in loader]   # FFCV reuses its buffers

    loader = cls_loader(out, "train", 4, CROP, True, seed=3, num_workers=1)
    first, second = epoch(loader), epoch(loader)
    again = epoch(cls_loader(out, "train", 4, CROP, True, seed=3, num_workers=1))
    other = epoch(cls_loader(out, "train", 4, CROP, True, seed=4, num_workers=1))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))   # a new order each epoch
    crops = np.concatenate([b[0] for b in first])
    seen_labels = np.concatenate([b[1] for b in first])
    matched, flipped = [], 0
    for crop, label in zip(crops, seen_labels):
        rows = [r for r, image in enumerate(originals) if any(np.array_equal(crop, w) for w in windows_of(image))]
        assert len(rows) == 1 and labels[rows[0]] == label
        matched.append(rows[0])
        flipped += not any(np.array_equal(crop, w) for w in windows_of(originals[rows[0]])[:(SIDE - CROP + 1) ** 2])
    assert sorted(matched) == list(range(12)) and 0 < flipped < 12


def test_a_missing_split_is_named(compiled):
    _, out = compiled
    with pytest.raises(FastloadError, match=r"val.beton does not exist \(splits there: test, train"):
        cls_loader(out, "val", 4, CROP, False)
    with pytest.raises(ValueError, match="does not fit"):
        next(iter(cls_loader(out, "test", 4, SIDE + 1, False, num_workers=1)))
