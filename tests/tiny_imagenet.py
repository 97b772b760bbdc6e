"""A tiny ImageNet-layout tree with planted bad files, for the index/compile/loader tests (not a test module)."""
import csv
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]  # tench, goldfish, great white shark
# planted in train/<first wnid>: name -> what it is; the first three cannot be decoded
SKIPPED = {"zero.JPEG": "empty", "truncated.JPEG": "truncated", "garbage.JPEG": "garbage"}
CONVERTED = {"cmyk.JPEG": "CMYK", "gray.JPEG": "L", "png_named.JPEG": "PNG"}


def picture(rng, width, height, class_id):
    """Smooth, class-coloured image (compresses like a photo, unlike noise)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]][class_id % 3], np.float64)
    wave = np.sin(x / (5 + rng.integers(5))) * np.cos(y / (4 + rng.integers(5)))
    return np.clip(base + 50 * wave[..., None] + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)


def make_tree(root, per_class=4, val_per_class=2, val_layout="folders", bad=True, seed=0):
    """Write ROOT/train/<wnid>/*.JPEG and ROOT/val (layout 'folders', 'kaggle' or 'devkit').
    Returns {split: [(relative path, class id, width, height)]} of the decodable files, sorted like the index."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    good = {"train": [], "val": []}
    for c, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            w, h = int(rng.integers(40, 90)), int(rng.integers(30, 80))
            Image.fromarray(picture(rng, w, h, c)).save(folder / f"{wnid}_{i}.JPEG", quality=90)
            good["train"].append((f"train/{wnid}/{wnid}_{i}.JPEG", c, w, h))
    if bad:
        plant_bad_files(root / "train" / WNIDS[0], rng, good["train"])
    write_val(root, val_per_class, val_layout, rng, good["val"])
    for rows in good.values():
        rows.sort(key=lambda r: (r[1], r[0].rsplit("/", 1)[1]))
    return good


def plant_bad_files(folder, rng, good):
    (folder / "zero.JPEG").write_bytes(b"")
    Image.fromarray(picture(rng, 64, 48, 0)).save(folder / "full.tmp.jpg", quality=90)
    data = (folder / "full.tmp.jpg").read_bytes()
    (folder / "full.tmp.jpg").unlink()
    (folder / "truncated.JPEG").write_bytes(data[: len(data) // 2])
    (folder / "garbage.JPEG").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    rgb = Image.fromarray(picture(rng, 50, 40, 0))
    rgb.convert("CMYK").save(folder / "cmyk.JPEG", format="JPEG")
    rgb.convert("L").save(folder / "gray.JPEG", format="JPEG")
    rgb.save(folder / "png_named.JPEG", format="PNG")
    wnid = folder.name
    good += [(f"train/{wnid}/{name}", 0, 50, 40) for name in CONVERTED]
    (folder / "notes.txt").write_text("not an image; must be ignored")


def write_val(root, per_class, layout, rng, good):
    val = root / "val"
    val.mkdir()
    rows = []
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            w, h = int(rng.integers(40, 90)), int(rng.integers(30, 80))
            n = len(rows) + 1
            name = f"ILSVRC2012_val_{n:08d}.JPEG"
            rel = f"val/{wnid}/{name}" if layout == "folders" else f"val/{name}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture(rng, w, h, c)).save(root / rel, quality=90)
            rows.append((rel, c, w, h, wnid))
    if layout == "kaggle":
        with open(root / "LOC_val_solution.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["ImageId", "PredictionString"])
            for rel, _, _, _, wnid in rows:
                out.writerow([Path(rel).stem, f"{wnid} 1 2 30 40 {wnid} 3 4 10 10"])
    elif layout == "devkit":
        order = list(reversed(WNIDS))  # ILSVRC2012_ID order differs from sorted order in the real devkit too
        (root / "ILSVRC2012_validation_ground_truth.txt").write_text(
            "".join(f"{order.index(wnid) + 1}\n" for *_, wnid in rows))
        (root / "class_order.txt").write_text("\n".join(order) + "\n")
    good += [r[:4] for r in rows]
