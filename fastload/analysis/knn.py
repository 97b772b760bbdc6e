"""Exact cosine nearest neighbours, with the database streamed in chunks (paper sec. 5.3, Fig. 4 and 5).

Features are L2-normalised, so cosine similarity is a dot product. The database (e.g. 1.28M x 4096 fc7 features,
10.5 GB in float16) may be any array with row slicing, including an `np.memmap`: only one chunk at a time is
converted to float32 and moved to the device, so the search fits in memory on a GPU or on the CPU.

Order is exact and deterministic: neighbours by decreasing similarity, ties broken by the smaller database index,
also when a tie straddles a chunk boundary or the k-th place. (torch.topk alone picks an arbitrary member of a tie.)
"""
import numpy as np
import torch

from ..distributed import pick_device
from ..errors import UsageError

DEFAULT_CHUNK_ROWS = 65536   # database rows per chunk: 65536 x 4096 float32 = 1 GiB on the device
DEFAULT_QUERY_ROWS = 1024    # queries per batch: the similarity block is QUERY_ROWS x CHUNK_ROWS float32
DEFAULT_QUERY_BLOCK_ROWS = 65536  # queries held on the device at once (ImageNet val: all 50k in one block)


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length in float32; all-zero rows stay zero (their similarity to everything is 0)."""
    x = x.float()
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / norms.clamp_min(1e-12)


def _to_tensor(rows, device) -> torch.Tensor:
    if isinstance(rows, torch.Tensor):
        return rows.to(device)
    rows = np.asarray(rows)
    if not (rows.flags.writeable and rows.flags.c_contiguous):  # memmap slices are read-only: copy the chunk
        rows = np.array(rows, order="C")
    return torch.from_numpy(rows).to(device)


def sort_by_similarity(sims: torch.Tensor, idx: torch.Tensor):
    """Sort each row by (similarity descending, index ascending): a stable sort by index, then by similarity."""
    order = torch.argsort(idx, dim=1, stable=True)
    sims, idx = sims.gather(1, order), idx.gather(1, order)
    order = torch.argsort(sims, dim=1, descending=True, stable=True)
    return sims.gather(1, order), idx.gather(1, order)


def chunk_topk(sims: torch.Tensor, k: int):
    """The k best columns of each row of `sims`, ties at the k-th place resolved to the smallest column indices.
    Returns (similarities, column indices), both [rows, k], sorted by (similarity desc, index asc)."""
    top_sims, top_idx = torch.topk(sims, k, dim=1)
    kth = top_sims[:, -1:]
    # Rows where more than k columns reach the k-th value: topk's choice among the tied columns is arbitrary.
    tied_rows = ((sims >= kth).sum(dim=1) > k).nonzero().flatten()
    if tied_rows.numel():
        sub, sub_kth = sims[tied_rows], kth[tied_rows]
        above = sub > sub_kth
        equal = sub == sub_kth
        room = k - above.sum(dim=1, keepdim=True)            # places left for tied columns
        rank_in_tie = torch.cumsum(equal.to(torch.int32), dim=1)  # 1 for the leftmost tied column
        keep = above | (equal & (rank_in_tie <= room))
        cols = keep.nonzero()[:, 1].view(-1, k)              # exactly k per row, in column order
        top_idx[tied_rows] = cols
        top_sims[tied_rows] = sub.gather(1, cols)
    return sort_by_similarity(top_sims, top_idx)


def _merge(best, new, k):
    sims = torch.cat([best[0], new[0]], dim=1)
    idx = torch.cat([best[1], new[1]], dim=1)
    sims, idx = sort_by_similarity(sims, idx)
    return sims[:, :k], idx[:, :k]


def search_block(queries: torch.Tensor, database, k: int, chunk_rows: int, query_rows: int, device):
    """Exact top-k of already-normalised `queries` (on `device`) against the whole database.

    The database is the outer loop, so each chunk crosses to the device once per query block; the similarity
    matrix is computed `query_rows` queries at a time to bound its size."""
    # placeholders that sort after every real neighbour: similarity -inf, index past the end
    best_sims = torch.full((len(queries), k), float("-inf"), device=device)
    best_idx = torch.full((len(queries), k), len(database), dtype=torch.int64, device=device)
    for start in range(0, len(database), chunk_rows):
        chunk = l2_normalise(_to_tensor(database[start:start + chunk_rows], device))
        kk = min(k, chunk.shape[0])
        for q0 in range(0, len(queries), query_rows):
            sims, idx = chunk_topk(queries[q0:q0 + query_rows] @ chunk.T, kk)
            rows = slice(q0, q0 + len(sims))
            best_sims[rows], best_idx[rows] = _merge((best_sims[rows], best_idx[rows]), (sims, idx + start), k)
    return best_sims, best_idx


def knn_search(queries, database, k: int, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               query_rows: int = DEFAULT_QUERY_ROWS, device=None, query_block_rows: int = DEFAULT_QUERY_BLOCK_ROWS):
    """The k nearest database rows of every query row by cosine similarity.

    queries: [Q, D] and database: [N, D], numpy arrays (memmaps welcome) or tensors, any float dtype.
    Queries are kept on the device `query_block_rows` at a time (the database streams once per block).
    Returns (indices int64 [Q, k], similarities float32 [Q, k]) as numpy arrays, best first, ties by smaller index.
    """
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise UsageError(f"knn_search: queries {tuple(queries.shape)} and database {tuple(database.shape)} "
                         "must be 2-D with the same feature size")
    if not 1 <= k <= len(database):
        raise UsageError(f"knn_search: k={k} must be between 1 and the database size {len(database)}")
    if min(chunk_rows, query_rows, query_block_rows) < 1:
        raise UsageError(f"knn_search: chunk_rows={chunk_rows}, query_rows={query_rows} and "
                         f"query_block_rows={query_block_rows} must be >= 1")
    device = torch.device(device) if device is not None else pick_device(0, "auto")
    out_idx = np.empty((len(queries), k), dtype=np.int64)
    out_sims = np.empty((len(queries), k), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(queries), query_block_rows):
            q = l2_normalise(_to_tensor(queries[start:start + query_block_rows], device))
            sims, idx = search_block(q, database, k, chunk_rows, query_rows, device)
            out_idx[start:start + len(q)] = idx.cpu().numpy()
            out_sims[start:start + len(q)] = sims.cpu().numpy()
    return out_idx, out_sims


def topk_accuracy(query_labels, neighbour_labels, ks=(1, 5)) -> dict:
    """Fraction of queries whose label is among the labels of their first k neighbours, for each k in `ks`."""
    query_labels = np.asarray(query_labels)
    neighbour_labels = np.asarray(neighbour_labels)
    if neighbour_labels.shape[1] < max(ks):
        raise UsageError(f"top-{max(ks)} accuracy needs at least {max(ks)} neighbours, got {neighbour_labels.shape[1]}")
    hits = neighbour_labels == query_labels[:, None]
    return {f"top{k}": float(hits[:, :k].any(axis=1).mean()) if len(hits) else float("nan") for k in ks}
