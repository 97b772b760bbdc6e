"""fastload.loader on the CPU: shapes, dtypes, normalisation, labels = label_lookup[class id] of the requested rows,
the Numba LookupLabel operation with JIT on and off, and the distributed split under 2 gloo processes."""
import numba
import numpy as np
import pytest
import torch

from fastload.errors import FastloadError
from fastload.loader import (IMAGENET_MEAN, IMAGENET_STD, LookupLabel, NormalizeToCHW, SeededCropDecoder,
                             batch_key, caffe_resize_side, copy_window, device_random_resized_crop, make_loader,
                             mirror_in_place, sample_seed)

# numba's dispatcher finalizer raises a harmless KeyError when ffcv's compiled closures are garbage-collected
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

N_ROWS = 24
CLASS_OF_ROW = np.arange(N_ROWS) % 4


def colour_of_row(i):
    return np.array([10 + 9 * i, 250 - 7 * i, 100 + (i * 37) % 120], np.uint8)


def write_solid_beton(path, labels):
    """Row i: a solid image of colour_of_row(i) (sizes vary) with label labels[i]; written with ffcv directly."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    items = [(np.full((30 + i % 5, 40 + i % 7, 3), colour_of_row(i), np.uint8), int(label))
             for i, label in enumerate(labels)]
    DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                  num_workers=1).from_indexed_dataset(items)
    return path


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    return write_solid_beton(tmp_path_factory.mktemp("loader") / "solid.beton", CLASS_OF_ROW)


def rows_of(images):
    """Recover each image's row from its (exact, solid) colour after undoing the normalisation."""
    pixel = images[:, :, 0, 0].numpy() * (np.array(IMAGENET_STD) * 255) + np.array(IMAGENET_MEAN) * 255
    colours = np.stack([colour_of_row(i) for i in range(N_ROWS)]).astype(np.float64)
    return [int(np.argmin(np.abs(colours - p).sum(1))) for p in pixel]


def test_eval_loader_yields_requested_rows_relabelled_in_order(beton):
    rows = np.array([3, 0, 7, 8, 13, 21, 22])
    lookup = np.array([2, -1, 0, 1], np.int32)  # class 1 excluded: rows 13, 21 have class 1 -> pick others
    rows = rows[lookup[CLASS_OF_ROW[rows]] >= 0]
    loader = make_loader(beton, rows, lookup, batch_size=2, resolution=16, train=False)
    assert len(loader) == 3  # eval keeps the last partial batch
    seen, labels = [], []
    for images, y in loader:
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 16, 16) and images.is_contiguous()
        assert y.dtype == torch.int64 and y.shape == images.shape[:1]
        # a solid image stays solid through the crop and resize: every pixel equals the normalised colour
        assert torch.allclose(images, images[:, :, :1, :1].expand_as(images))
        seen += rows_of(images)
        labels += y.tolist()
    assert seen == rows.tolist()
    assert labels == lookup[CLASS_OF_ROW[rows]].tolist()


def test_normalisation_is_imagenet_mean_std(beton):
    images, _ = next(iter(make_loader(beton, [5], np.arange(4), 1, 8, train=False)))
    want = (colour_of_row(5) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(images[0, :, 3, 3].numpy(), want, atol=1e-5)


def test_train_loader_shuffles_drops_last_and_relabels(beton):
    rows = np.arange(0, N_ROWS, 2)  # classes 0 and 2 only
    lookup = np.array([1, -1, 0, -1])
    loader = make_loader(beton, rows, lookup, batch_size=5, resolution=12, train=True, seed=3)
    assert len(loader) == len(rows) // 5
    seen, labels = [], []
    for images, y in loader:
        assert images.shape == (5, 3, 12, 12) and images.dtype == torch.float32
        seen += rows_of(images)
        labels += y.tolist()
    assert len(set(seen)) == 10 and set(seen) <= set(rows.tolist()) and seen != sorted(seen)
    assert labels == lookup[CLASS_OF_ROW[seen]].tolist()


def test_loader_rejects_bad_requests(beton):
    with pytest.raises(FastloadError, match="excludes"):
        make_loader(beton, [0, 1], np.array([0, -1, 1, 2]), 2, 16, train=False)
    with pytest.raises(FastloadError, match="outside"):
        make_loader(beton, [0, N_ROWS], np.arange(4), 2, 16, train=False)
    with pytest.raises(FastloadError, match="only 3 entries"):
        make_loader(beton, [3], np.arange(3), 2, 16, train=False)
    with pytest.raises(FastloadError, match="order 'shuffled'"):
        make_loader(beton, [0], np.arange(4), 1, 16, train=False, order="shuffled")
    with pytest.raises(FastloadError, match="torch.distributed"):
        make_loader(beton, [0], np.arange(4), 1, 16, train=False, distributed=True)
    with pytest.raises(FastloadError, match="crop 'center': choose one of rrc, caffe"):
        make_loader(beton, [0], np.arange(4), 1, 16, train=False, crop="center")


@pytest.mark.parametrize("damage", ["header", "tables", "missing", "empty", "zeroed"])
def test_a_damaged_beton_is_one_error_from_the_library_entry(beton, tmp_path, damage):
    """make_loader checks the beton as the command line does: no raw ValueError/IndexError/AssertionError."""
    import json
    from fastload.beton import describe_file
    data = beton.read_bytes()
    copy = tmp_path / "copy.beton"
    cut = {"header": 100, "tables": len(data) - 10, "empty": 0}.get(damage, len(data))
    if damage != "missing":
        copy.write_bytes(b"\0" * len(data) if damage == "zeroed" else data[:cut])
    if damage == "tables":  # a sidecar records the whole file: the cut copy differs from it
        (tmp_path / "copy.beton.json").write_text(json.dumps(describe_file(beton)))
    with pytest.raises(FastloadError, match="copy.beton") as caught:
        make_loader(copy, [0, 1], np.arange(4), 2, 16, train=False)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("jit", [False, True])
def test_lookup_label_operation(jit):
    table = np.array([4, -1, 0, 7])
    code = LookupLabel(table).generate_code()
    kernel = numba.njit(parallel=True)(code) if jit else code
    labels = np.array([[3], [0], [2], [3]], np.int64)
    out = kernel(labels, np.full(6, 99, np.int64))
    assert out.tolist() == [7, 4, 0, 7]


@pytest.mark.parametrize("jit", [False, True])
def test_normalize_to_chw_operation(jit):
    from ffcv.pipeline.state import State
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 50.0, 40.0])
    op = NormalizeToCHW(mean, std)
    state, query = op.declare_state_and_memory(State(True, torch.device("cpu"), (4, 5, 3), np.dtype(np.uint8)))
    assert state.shape == (3, 4, 5) and query.dtype == np.float32
    code = op.generate_code()
    kernel = numba.njit(parallel=True)(code) if jit else code
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    out = kernel(images, np.zeros((3, 3, 4, 5), np.float32))
    want = ((images - mean) / std).transpose(0, 3, 1, 2)
    assert out.shape == (2, 3, 4, 5) and np.allclose(out, want, atol=1e-5)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        op.declare_state_and_memory(State(True, torch.device("cpu"), (4, 5, 1), np.dtype(np.uint8)))


def test_lookup_label_rejects_a_beton_with_more_classes():
    from ffcv.pipeline.state import State
    op = LookupLabel(np.arange(3))
    op.accept_globals(np.array([0, 2, 5]), None)
    with pytest.raises(ValueError, match="class id 5"):
        op.declare_state_and_memory(State(True, torch.device("cpu"), (1,), np.dtype(np.int64)))
    op.accept_globals(np.array([0, 2]), None)
    state, query = op.declare_state_and_memory(State(True, torch.device("cpu"), (1,), np.dtype(np.int64)))
    assert state.shape == () and query.dtype == np.int64


def distributed_worker(rank, beton, rows, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        loader = make_loader(beton, rows, np.arange(N_ROWS), batch_size=3, resolution=8, train=False,
                             distributed=True, num_workers=1)
        labels = [y for _, ys in loader for y in ys.tolist()]
        np.save(f"{out_dir}/rank{rank}.npy", np.array(labels))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_loader_covers_the_rows_once(tmp_path):
    beton = write_solid_beton(tmp_path / "ids.beton", np.arange(N_ROWS))  # label = row, lookup = identity
    rows = np.array([1, 2, 4, 5, 9, 11, 16, 17, 20, 23])
    torch.multiprocessing.spawn(distributed_worker, args=(str(beton), rows, str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    parts = [np.load(tmp_path / f"rank{r}.npy").tolist() for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 5
    assert sorted(parts[0] + parts[1]) == rows.tolist()


# ------------------------------------------------------------------ crop='caffe'

def pixels_of(images):
    """Undo the normalisation: uint8-valued HWC arrays (exact for values that were uint8)."""
    x = images.numpy().transpose(0, 2, 3, 1) * (np.array(IMAGENET_STD) * 255) + np.array(IMAGENET_MEAN) * 255
    return np.rint(x).astype(np.int64)


@pytest.fixture(scope="module")
def caffe_beton(tmp_path_factory):
    """Non-square images of random 1x2 / 2x1 pixel blocks: their 256x256 resize (aspect ignored) is exactly the
    block grid, whatever area-averaging resampler computes it. Label = row."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    rng = np.random.default_rng(0)
    images = [np.repeat(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), 2, axis=1 - r % 2) for r in range(4)]
    path = tmp_path_factory.mktemp("caffe") / "blocks.beton"
    DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                  num_workers=1).from_indexed_dataset([(im, r) for r, im in enumerate(images)])
    # the reference 256x256 resize, computed independently with PIL (box filter = area average)
    from PIL import Image
    resized = [np.asarray(Image.fromarray(im).resize((256, 256), Image.BOX)).astype(np.int64) for im in images]
    return path, images, resized


def windows_of(reference, crop):
    """(top, left, mirrored) of every position where `crop` is a window of `reference`, mirrored or not."""
    s, hits = crop.shape[0], []
    for top in range(reference.shape[0] - s + 1):
        for left in range(reference.shape[1] - s + 1):
            window = reference[top:top + s, left:left + s]
            for mirrored, w in ((False, window), (True, window[:, ::-1])):
                if np.array_equal(w[0, 0], crop[0, 0]) and np.array_equal(w, crop):
                    hits.append((top, left, mirrored))
    return hits


def test_caffe_eval_crop_is_the_centre_227_of_the_256_resize(caffe_beton):
    path, images, resized = caffe_beton
    assert images[0].shape == (256, 512, 3) and images[1].shape == (512, 256, 3)
    loader = make_loader(path, np.arange(4), np.arange(4), batch_size=4, resolution=227, train=False, crop="caffe",
                         num_workers=1)
    batch, labels = next(iter(loader))
    assert batch.shape == (4, 3, 227, 227) and batch.dtype == torch.float32 and labels.tolist() == [0, 1, 2, 3]
    got = pixels_of(batch)
    for r in range(4):
        assert np.array_equal(got[r], resized[r][14:241, 14:241]), r  # Caffe: offset (256 - 227) // 2 = 14


def test_caffe_train_crops_are_random_mirrored_227_windows_of_the_256_resize(caffe_beton):
    path, _, resized = caffe_beton
    loader = make_loader(path, np.arange(4), np.arange(4), batch_size=2, resolution=227, train=True, crop="caffe",
                         num_workers=1, seed=1)
    found = []
    for epoch in range(4):
        loader.next_epoch = epoch
        for batch, labels in loader:
            assert batch.shape == (2, 3, 227, 227)
            for crop, label in zip(pixels_of(batch), labels.tolist()):
                hits = windows_of(resized[label], crop)
                assert len(hits) == 1, (label, hits)  # a window of the resized image, flipped or not
                found.append(hits[0])
    assert len({(t, l) for t, l, _ in found}) > 8  # positions vary over the 30 x 30 possible ones
    assert {m for *_, m in found} == {False, True}  # both mirrored and plain windows occur


def test_caffe_crop_at_other_resolutions_keeps_caffe_proportions(beton):
    assert caffe_resize_side(227) == 256 and caffe_resize_side(128) == 144 and caffe_resize_side(16) == 18
    rows = np.array([2, 5, 9])
    for train in (False, True):
        loader = make_loader(beton, rows, np.arange(4), batch_size=3, resolution=16, train=train, crop="caffe",
                             num_workers=1, drop_last=False, order="sequential")
        images, labels = next(iter(loader))
        assert images.shape == (3, 3, 16, 16) and rows_of(images) == rows.tolist()
        assert torch.allclose(images, images[:, :, :1, :1].expand_as(images))  # solid images stay solid


@pytest.mark.parametrize("jit", [False, True])
def test_window_and_mirror_kernels(jit):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    window = numba.njit(copy_window) if jit else copy_window
    mirror = numba.njit(mirror_in_place) if jit else mirror_in_place
    out = np.zeros((5, 5, 3), np.uint8)
    window(images, out, 2, 3, False)
    assert np.array_equal(out, images[2:7, 3:8])
    window(images, out, 4, 7, True)
    assert np.array_equal(out, images[4:9, 7:12][:, ::-1])
    for width in (12, 11):  # even and odd widths
        flipped = images[:, :width].copy()
        mirror(flipped)
        assert np.array_equal(flipped, images[:, :width][:, ::-1])


@pytest.mark.parametrize("jit", [False, True])
def test_augmentation_seeds_depend_on_seed_rows_and_position(jit):
    key = numba.njit(batch_key) if jit else batch_key
    seed_of = numba.njit(sample_seed) if jit else sample_seed
    rows = np.array([5, 2, 9, 2**40 + 3], dtype=np.uint64)
    assert key(0, rows) == key(0, rows.copy()) == batch_key(0, rows)  # JIT and Python agree
    keys = {key(0, rows), key(1, rows), key(0, rows[::-1].copy()), key(0, rows[:3].copy())}
    assert len(keys) == 4 and all(0 <= k < 2**32 for k in keys)
    seeds = {seed_of(key(0, rows), i) for i in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**32 for s in seeds)
    with pytest.raises(ValueError, match="does not fit"):
        SeededCropDecoder("caffe", 20, 0, side=18)


@pytest.mark.parametrize("crop", ["rrc", "caffe"])
def test_train_crops_repeat_for_the_same_seed_and_epoch(caffe_beton, crop):
    """Two loaders with one seed draw the same crops in an epoch (what an exact resume needs); other epochs and
    other seeds draw other crops."""
    path = caffe_beton[0]

    def epoch_batches(seed, epoch):
        loader = make_loader(path, np.arange(4), np.arange(4), batch_size=2, resolution=64, train=True, crop=crop,
                             num_workers=2, seed=seed)
        loader.next_epoch = epoch
        return [(images.clone(), labels.clone()) for images, labels in loader]

    first, again = epoch_batches(3, 1), epoch_batches(3, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other_epoch, other_seed = epoch_batches(3, 2), epoch_batches(4, 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other_epoch))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other_seed))


def test_device_random_resized_crop_against_reference():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    # scale 1 and ratio 1: the whole image, possibly mirrored, normalised like the loader
    out = device_random_resized_crop(images, 32, torch.float32, False, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    ref = (images.permute(0, 3, 1, 2).float() - mean) / std
    for i in range(6):
        assert (torch.allclose(out[i], ref[i], atol=1e-4) or torch.allclose(out[i], ref[i].flip(-1), atol=1e-4))
    crops = device_random_resized_crop(images, 20, torch.bfloat16, True)
    assert crops.shape == (6, 3, 20, 20) and crops.dtype == torch.bfloat16
    assert crops.is_contiguous(memory_format=torch.channels_last)
    lo, hi = ((0 - mean) / std).min(), ((255 - mean) / std).max()
    assert lo - 0.05 <= crops.float().min() and crops.float().max() <= hi + 0.05
    # a seeded generator repeats its draws (exact resume of augment 'device'); another seed draws others
    seeded = [device_random_resized_crop(images, 20, torch.float32, False, torch.Generator().manual_seed(s))
              for s in (7, 7, 8)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])
