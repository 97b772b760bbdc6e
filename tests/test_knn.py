"""fastload.analysis.knn against a brute-force float64 reference: exact equality of neighbour indices."""
import numpy as np
import pytest
import torch

from fastload.analysis.knn import chunk_topk, knn_search, topk_accuracy
from fastload.errors import UsageError


def brute_force(queries, database, k):
    """Reference: normalise in float64, full similarity matrix, order by (similarity desc, index asc)."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    d = database / np.maximum(np.linalg.norm(database, axis=1, keepdims=True), 1e-12)
    sims = q @ d.T
    order = [np.lexsort((np.arange(len(d)), -row))[:k] for row in sims]
    return np.array(order), np.take_along_axis(sims, np.array(order), 1)


def dyadic_features(rng, n, dim=32):
    """Rows with one entry +-3 and seven entries +-1 (norm 4): normalised entries are +-0.75/+-0.25, so every
    cosine similarity is a multiple of 1/16, exact in any summation order -- and ties are everywhere."""
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        cols = rng.choice(dim, 8, replace=False)
        row[cols] = rng.choice([-1.0, 1.0], 8)
        row[cols[0]] *= 3
    return x


@pytest.mark.parametrize("chunk_rows,query_rows,block", [(7, 5, 9), (16, 64, 100), (1000, 3, 2), (1, 1, 1)])
def test_exact_ties_across_chunk_boundaries(chunk_rows, query_rows, block):
    rng = np.random.default_rng(0)
    database = dyadic_features(rng, 150)
    database[40:48] = database[3]          # duplicates straddling chunk boundaries
    queries = np.concatenate([dyadic_features(rng, 20), database[[3, 44, 149]]])
    ref_idx, ref_sims = brute_force(queries.astype(np.float64), database.astype(np.float64), 9)
    idx, sims = knn_search(queries, database, 9, chunk_rows=chunk_rows, query_rows=query_rows, device="cpu",
                           query_block_rows=block)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-6)
    # the duplicates of row 3 come first, in index order
    assert idx[-3][:9].tolist() == [3, 40, 41, 42, 43, 44, 45, 46, 47]


def test_random_features_float16_database_and_memmap(tmp_path):
    rng = np.random.default_rng(1)
    database = rng.standard_normal((500, 48)).astype(np.float16)
    path = tmp_path / "db.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=database.shape)
    mm[:] = database
    mm.flush()
    queries = rng.standard_normal((40, 48)).astype(np.float32)
    ref_idx, _ = brute_force(queries.astype(np.float64), database.astype(np.float64), 5)
    idx, _ = knn_search(queries, np.load(path, mmap_mode="r"), 5, chunk_rows=64, device="cpu")
    np.testing.assert_array_equal(idx, ref_idx)


def test_chunk_topk_picks_smallest_tied_columns():
    sims = torch.tensor([[0.5, 1.0, 0.5, 0.5, 0.2, 0.5], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]])
    top_sims, top_idx = chunk_topk(sims, 3)
    assert top_idx.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert top_sims[0].tolist() == [1.0, 0.5, 0.5]


def test_topk_accuracy_and_errors():
    acc = topk_accuracy(np.array([0, 1, 2]), np.array([[0, 5, 5, 5, 5], [3, 3, 1, 3, 3], [4, 4, 4, 4, 4]]))
    assert acc == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}
    with pytest.raises(UsageError, match="k=11"):
        knn_search(np.zeros((2, 4)), np.ones((10, 4)), 11)
    with pytest.raises(UsageError, match="same feature size"):
        knn_search(np.zeros((2, 4)), np.ones((10, 5)), 1)
