"""Nearest-neighbour picture grids like the paper's Fig. 5.

For each chosen val image (query) there is one row per model: the query, then its k nearest train images by cosine
similarity of fc7 features (a ResNet's pooled features), each framed green (same fine class as the query), orange (another fine class of the
same coarse class in the chosen label set, default top_down_127) or red (anything else). Images are read from the
original files named in the index (under the index's root, or --image-root), centre-cropped to squares.
"""
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
from ..files import atomic_path
from . import features as F
from .knn import knn_search

FRAME_COLOURS = {"fine": (0, 170, 0), "coarse": (255, 140, 0), "other": (210, 0, 0), "query": (40, 40, 40)}
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def frame_kinds(query_class: int, neighbour_classes, class_to_coarse) -> list:
    """'fine', 'coarse' or 'other' for each neighbour of a query (class ids; class_to_coarse -1 = no coarse label)."""
    q_coarse = class_to_coarse[query_class]
    kinds = []
    for c in neighbour_classes:
        if c == query_class:
            kinds.append("fine")
        elif q_coarse >= 0 and class_to_coarse[c] == q_coarse:
            kinds.append("coarse")
        else:
            kinds.append("other")
    return kinds


def square_thumbnail(path, size: int):
    """The centre square of an image file, resized to size x size RGB."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except OSError as e:
        raise FastloadError(f"cannot read image {path} for the picture grid: {e} (set --image-root?)") from e
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side)).resize((size, size))


def draw_grid(rows, out_path, cell: int = 96, border: int = 5, label_width: int = 140):
    """Write a PNG grid. rows: list of (row label, query thumbnail, [(thumbnail, kind), ...]) of equal length."""
    from PIL import Image, ImageDraw
    if not rows:
        raise UsageError("no rows to draw")
    k = len(rows[0][2])
    step = cell + 2 * border + 4
    width = label_width + step * (k + 1) + step // 2
    image = Image.new("RGB", (width, step * len(rows) + 4), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for r, (label, query, neighbours) in enumerate(rows):
        y = r * step + 2
        draw.text((4, y + step // 2 - 6), label[:22], fill=TEXT)
        cells = [(query, "query", label_width)] + [
            (thumb, kind, label_width + step * (j + 1) + step // 2) for j, (thumb, kind) in enumerate(neighbours)]
        for thumb, kind, x in cells:
            draw.rectangle([x, y, x + cell + 2 * border - 1, y + cell + 2 * border - 1], fill=FRAME_COLOURS[kind])
            image.paste(thumb, (x + border, y + border))
    with atomic_path(out_path) as tmp:
        image.save(tmp)
    return image.size


def choose_queries(val_index, queries: int, query_rows, seed: int) -> np.ndarray:
    """Val rows to show: `query_rows` as given, else `queries` distinct classes' images drawn with `seed`."""
    if query_rows:
        rows = np.array(query_rows, dtype=np.int64)
        if rows.min() < 0 or rows.max() >= len(val_index):
            raise UsageError(f"--query-rows must be val rows 0..{len(val_index) - 1}, got {rows.tolist()}")
        if len(np.unique(rows)) != len(rows):
            raise UsageError(f"--query-rows has repeats: {rows.tolist()}")
        return rows
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(val_index.class_id))[:queries]
    return np.array([rng.choice(np.flatnonzero(val_index.class_id == c)) for c in classes], dtype=np.int64)


def neighbours_of_model(checkpoint, betons, indexes, db_rows, query_rows, k: int, layer: str,
                        extraction: F.Extraction) -> np.ndarray:
    """[queries, k] train rows nearest to each query under one checkpoint's features (`layer` None: its
    architecture's feature layer)."""
    model, meta = F.load_model(checkpoint)
    kw = dict(layer=layer or F.feature_layer(meta["arch"]), **extraction.loader_kwargs(meta))
    db, _ = F.extract_from_beton(model, betons["train"], indexes["train"], db_rows, desc="database", **kw)
    order = np.argsort(query_rows)  # the loader reads sorted rows; put the queries back in the asked order
    q_sorted, _ = F.extract_from_beton(model, betons["val"], indexes["val"], query_rows[order], desc="queries", **kw)
    q = np.empty_like(q_sorted)
    q[order] = q_sorted
    idx, _ = knn_search(q, db, k, device=extraction.device)
    return db_rows[idx]


def neighbours(checkpoints, beton_dir, out, *, names=None, labelset: str = "top_down@127", queries: int = 4,
               query_rows=None, k: int = 8, layer=None, db_per_class: int = 0, seed: int = 0,
               cell: int = 96, image_root=None, batch_size: int = F.DEFAULT_BATCH_SIZE, resolution: int = 0,
               device: str = "auto", num_workers: int = 2) -> list:
    """Write the picture grid of `checkpoints` (one row each per query) to the PNG `out`; returns its rows."""
    from ..labelsets import class_labels as labels_of_classes, resolve_label_set
    from .coarse_fine import coarse_ids
    names = names or [Path(c).parent.name or Path(c).stem for c in checkpoints]
    if len(names) != len(checkpoints):
        raise UsageError(f"--names gives {len(names)} names for {len(checkpoints)} --checkpoints")
    ex = F.extraction(batch_size, resolution, device, num_workers)
    betons, indexes = F.load_compiled(beton_dir)
    class_wnids = [str(w) for w in indexes["train"].class_wnids]
    _, class_to_coarse = coarse_ids(labels_of_classes(resolve_label_set(labelset, class_wnids), class_wnids))
    chosen = choose_queries(indexes["val"], queries, query_rows, seed)
    db_rows = F.sample_rows(indexes["train"].class_id, np.ones(len(class_wnids), bool), db_per_class, seed)
    if len(db_rows) < k:
        raise UsageError(f"--k {k}: the database has only {len(db_rows)} train images")
    found = [neighbours_of_model(c, betons, indexes, db_rows, chosen, k, layer, ex) for c in checkpoints]
    roots = {s: Path(image_root or indexes[s].root) for s in indexes}
    rows = []
    for qi, q in enumerate(chosen):
        q_class = int(indexes["val"].class_id[q])
        query_thumb = square_thumbnail(roots["val"] / indexes["val"].path[q], cell)
        for name, nn_rows in zip(names, found):
            kinds = frame_kinds(q_class, indexes["train"].class_id[nn_rows[qi]], class_to_coarse)
            thumbs = [square_thumbnail(roots["train"] / indexes["train"].path[r], cell) for r in nn_rows[qi]]
            rows.append((name, query_thumb, list(zip(thumbs, kinds))))
    size = draw_grid(rows, out, cell=cell)
    print(f"wrote {out} ({size[0]}x{size[1]}): {len(chosen)} queries x {len(names)} models, k={k}; "
          "frames: green same class, orange same coarse class, red other")
    return rows
