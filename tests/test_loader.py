"""fastload.loader on the CPU: shapes, dtypes, normalisation, labels = label_lookup[class id] of the requested rows,
the Numba LookupLabel operation with JIT on and off, and the distributed split under 2 gloo processes."""
import numba
import numpy as np
import pytest
import torch

from fastload.errors import FastloadError
from fastload.loader import IMAGENET_MEAN, IMAGENET_STD, LookupLabel, NormalizeToCHW, make_loader

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
