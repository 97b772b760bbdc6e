"""Nearest-neighbour picture grids like the paper's Fig. 5.

For each chosen val image (query) there is one row per model: the query, then its k nearest train images by cosine
similarity of fc7 features, each framed green (same fine class as the query), orange (another fine class of the
same coarse class in the chosen label set, default top_down_127) or red (anything else). Images are read from the
original files named in the index (under the index's root, or --image-root), centre-cropped to squares.
"""
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
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
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    image.save(tmp)
    tmp.replace(out_path)
    return image.size


def choose_queries(val_index, args) -> np.ndarray:
    """Val rows to show: --query-rows as given, else --queries distinct classes' images drawn with --seed."""
    if args.query_rows:
        rows = np.array(args.query_rows, dtype=np.int64)
        if rows.min() < 0 or rows.max() >= len(val_index):
            raise UsageError(f"--query-rows must be val rows 0..{len(val_index) - 1}, got {rows.tolist()}")
        if len(np.unique(rows)) != len(rows):
            raise UsageError(f"--query-rows has repeats: {rows.tolist()}")
        return rows
    rng = np.random.default_rng(args.seed)
    classes = rng.permutation(np.unique(val_index.class_id))[:args.queries]
    return np.array([rng.choice(np.flatnonzero(val_index.class_id == c)) for c in classes], dtype=np.int64)


def neighbours_of_model(checkpoint, files, indexes, db_rows, query_rows, args) -> np.ndarray:
    """[queries, k] train rows nearest to each query under one checkpoint's features."""
    model, meta = F.load_model(checkpoint)
    kw = dict(layer=args.layer, batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
              resolution=args.resolution or F.default_resolution(meta))
    db, _ = F.extract_from_beton(model, files["train"][0], indexes["train"], db_rows, desc="database", **kw)
    order = np.argsort(query_rows)  # the loader reads sorted rows; put the queries back in the asked order
    q_sorted, _ = F.extract_from_beton(model, files["val"][0], indexes["val"], query_rows[order], desc="queries", **kw)
    q = np.empty_like(q_sorted)
    q[order] = q_sorted
    idx, _ = knn_search(q, db, args.k, device=args.device)
    return db_rows[idx]


def run_neighbours(args):
    from ..index import load_index
    from ..labelsets import class_labels as labels_of_classes, resolve_label_set
    import torch
    args.device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    files = F.beton_dir_files(args.beton_dir)
    indexes = {split: load_index(files[split][1]) for split in files}
    class_wnids = [str(w) for w in indexes["train"].class_wnids]
    labels = labels_of_classes(resolve_label_set(args.labelset, class_wnids), class_wnids)
    coarse_ids = {w: i for i, w in enumerate(sorted({lab for lab in labels if lab is not None}))}
    class_to_coarse = np.array([coarse_ids[lab] if lab is not None else -1 for lab in labels])
    names = args.names or [Path(c).parent.name or Path(c).stem for c in args.checkpoints]
    if len(names) != len(args.checkpoints):
        raise UsageError(f"--names gives {len(names)} names for {len(args.checkpoints)} --checkpoints")
    query_rows = choose_queries(indexes["val"], args)
    db_rows = F.sample_rows(indexes["train"].class_id, np.ones(len(class_wnids), bool), args.db_per_class, args.seed)
    found = [neighbours_of_model(c, files, indexes, db_rows, query_rows, args) for c in args.checkpoints]
    roots = {s: Path(args.image_root or indexes[s].root) for s in indexes}
    rows = []
    for qi, q in enumerate(query_rows):
        q_class = int(indexes["val"].class_id[q])
        query_thumb = square_thumbnail(roots["val"] / indexes["val"].path[q], args.cell)
        for name, nn_rows in zip(names, found):
            kinds = frame_kinds(q_class, indexes["train"].class_id[nn_rows[qi]], class_to_coarse)
            thumbs = [square_thumbnail(roots["train"] / indexes["train"].path[r], args.cell) for r in nn_rows[qi]]
            rows.append((name, query_thumb, list(zip(thumbs, kinds))))
    size = draw_grid(rows, args.out, cell=args.cell)
    print(f"wrote {args.out} ({size[0]}x{size[1]}): {len(query_rows)} queries x {len(names)} models, k={args.k}; "
          "frames: green same class, orange same coarse class, red other")
    return rows
