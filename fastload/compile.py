"""Compile an ImageNet-style folder once into FFCV .beton files (image + fine class id) and their indices.

Defaults, chosen for AlexNet-scale training (224/227-pixel crops, as in the paper's Caffe AlexNet on 256-pixel
images):
- max side 256: the paper trains on 256-pixel images; a larger store only costs disk and decode time, and
  random-resized crops at 224 need no more.
- write mode 'proportion' with compress probability 0.5 and JPEG quality 90 (FFCV's ImageNet settings): half the
  images are stored raw (no decode cost: a 2-core machine is decode-bound) and half as JPEG (disk), about 85 KB per
  image on average, so ~110 GB for ImageNet-1k train. Use 'jpg' when disk is short, 'raw' when CPUs are.
- square S (off by default): every image resized so its shorter side is S, then its centre S x S kept, for
  pre-training with `augment: device` (one image size per beton, copied as bytes and cropped on the GPU). Raw
  storage is then the natural write mode (the CLI picks it unless told otherwise): S=176 is 93 KB per image.

Output directory OUT: {split}.beton, {split}.beton.json (what the beton holds: image size or max side, write mode,
rows), {split}_index.npz (row i = beton row i), classes.txt, compile.json,
skipped.tsv (files that could not be decoded, with the reason) and converted.tsv (files decoded after conversion
to RGB: CMYK, grayscale, palette, or another format behind a .JPEG name).
Every beton is written to OUT/.{split}.beton.tmp and renamed at the end: an interrupted compile never leaves a
beton at its final path, and a rerun starts from scratch.
"""
import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from . import index as index_mod
from .errors import FastloadError, UsageError
from .files import write_json

WRITE_MODES = ("raw", "jpg", "proportion")
DEFAULT_MAX_RESOLUTION = 256
DEFAULT_WRITE_MODE = "proportion"
DEFAULT_JPEG_QUALITY = 90
DEFAULT_COMPRESS_PROBABILITY = 0.5
MIN_PAGE_SIZE = 1 << 23  # FFCV's default page (8 MiB); grown when one raw image would not fit


@dataclass
class CompileSettings:
    max_resolution: int = DEFAULT_MAX_RESOLUTION  # longest side after resizing; 0 keeps the original size
    write_mode: str = DEFAULT_WRITE_MODE
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    compress_probability: float = DEFAULT_COMPRESS_PROBABILITY
    num_workers: int = 2
    strict: bool = False
    square: int = 0  # > 0: shorter side resized to `square`, centre square x square kept; max_resolution = square

    def check(self):
        """Check every value; with `square` set, max_resolution becomes `square` (the longest stored side)."""
        if self.square < 0:
            raise UsageError(f"--square {self.square}: must be > 0 (or 0 to keep each image's aspect ratio)")
        if self.square:
            self.max_resolution = self.square
        if self.write_mode not in WRITE_MODES:
            raise UsageError(f"--write-mode {self.write_mode!r}: choose one of {', '.join(WRITE_MODES)}")
        if self.max_resolution < 0:
            raise UsageError(f"--max-resolution {self.max_resolution}: must be >= 0 (0 keeps the original size)")
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality {self.jpeg_quality}: must be in 1..100")
        if not 0.0 <= self.compress_probability <= 1.0:
            raise UsageError(f"--compress-probability {self.compress_probability}: must be in [0, 1]")
        if self.num_workers < 1:
            raise UsageError(f"--num-workers {self.num_workers}: must be >= 1")
        return self


# ---------------------------------------------------------------------------------------------- reading images

def check_image(path: str):
    """(width, height, nbytes, problem, note) of one file. problem: why it must be skipped (else '');
    note: how it was made RGB (else ''). Decodes the whole file at 1/8 scale, which still finds truncation."""
    from PIL import Image
    nbytes = os.path.getsize(path)
    if nbytes == 0:
        return 0, 0, 0, "empty file (0 bytes)", ""
    try:
        with Image.open(path) as im:
            width, height, fmt, mode = im.width, im.height, im.format, im.mode
            im.draft(mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
    except Exception as e:  # PIL raises many types for bad files; each becomes a reported skip, not a crash
        return 0, 0, nbytes, f"cannot decode: {type(e).__name__}: {e}".replace("\t", " "), ""
    notes = []
    if fmt != "JPEG" and os.path.splitext(path)[1].lower() in (".jpeg", ".jpg"):
        notes.append(f"{fmt} file named {os.path.splitext(path)[1]}")
    if mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    return width, height, nbytes, "", "; ".join(notes)


def read_rgb(path: str, max_side: int, square: int = 0) -> np.ndarray:
    """The image as an RGB uint8 array (square > 0: its centre square x square, see read_square). JPEGs are decoded
    directly at the smallest DCT scale that is still at least the stored size (PIL's draft): the same pixels after
    resizing, several times faster than a full decode."""
    from PIL import Image
    with Image.open(path) as im:
        if square:
            return read_square(im, square)
        if max_side and max(im.size) > max_side:
            scale = max_side / max(im.size)
            im.draft("RGB", (max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        return np.asarray(im.convert("RGB"))


def square_geometry(width: int, height: int, side: int):
    """(resized width, resized height, left, top): the shorter side resized to `side`, the longer in proportion
    (rounded), and the top-left corner of the centred side x side window."""
    scale = side / min(width, height)
    new_w = side if width <= height else max(side, int(round(width * scale)))
    new_h = side if height < width else max(side, int(round(height * scale)))
    return new_w, new_h, (new_w - side) // 2, (new_h - side) // 2


def read_square(im, side: int) -> np.ndarray:
    """An open PIL image as its centre side x side RGB array after resizing the shorter side to `side` (bilinear,
    antialiased when shrinking). JPEGs are first decoded at the smallest DCT scale still covering that size."""
    from PIL import Image
    new_w, new_h, left, top = square_geometry(im.width, im.height, side)
    im.draft("RGB", (new_w, new_h))
    im = im.convert("RGB")
    if im.size != (new_w, new_h):
        im = im.resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(im)[top:top + side, left:left + side]


def check_images(root: Path, paths, num_workers: int, desc: str):
    """check_image over all files in `num_workers` processes, with a progress bar."""
    from tqdm import tqdm
    full = [str(root / p) for p in paths]
    chunk = max(1, min(256, len(full) // (8 * num_workers) or 1))
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        results = list(tqdm(pool.imap(check_image, full, chunksize=chunk), total=len(full),
                            desc=f"check {desc}", unit="img", smoothing=0.1))
    return results


class ImageFiles:
    """The indexable dataset FFCV's writer reads: (RGB array, class id) per index row.
    A file that fails here although it passed check_image is flagged, not raised: an exception inside an FFCV
    writer process would leave the parent waiting forever."""

    def __init__(self, root, paths, class_ids, max_side, square=0):
        self.root, self.paths, self.class_ids, self.max_side = str(root), list(paths), list(class_ids), max_side
        self.square = square
        self.failed = multiprocessing.get_context("fork").Array("b", len(self.paths), lock=False)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            image = read_rgb(os.path.join(self.root, self.paths[i]), self.max_side, self.square)
        except Exception:  # reported by write_split after the writer finishes
            self.failed[i] = 1
            image = np.zeros((1, 1, 3), np.uint8)
        return image, int(self.class_ids[i])


# ---------------------------------------------------------------------------------------------- writing betons

@contextmanager
def images_per_second_bar(desc: str):
    """FFCV's writer draws a bare tqdm bar; give it a name and images/s for the duration of one write."""
    import ffcv.writer
    from tqdm import tqdm
    original = ffcv.writer.tqdm
    ffcv.writer.tqdm = partial(tqdm, desc=desc, unit="img", smoothing=0.1)
    try:
        yield
    finally:
        ffcv.writer.tqdm = original


def page_size_for(max_raw_bytes: int) -> int:
    """FFCV needs every sample inside one page: a power of two >= 8 MiB and >= 4x the largest raw image."""
    size = MIN_PAGE_SIZE
    while size < 4 * max_raw_bytes:
        size *= 2
    return size


def write_beton(dataset, fields: dict, out_path: Path, num_workers: int, page_size: int, desc: str) -> None:
    """Write `dataset` with FFCV to OUT/.NAME.tmp, then rename; on any failure remove the temporary file."""
    from ffcv.writer import DatasetWriter
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.unlink(missing_ok=True)
    writer = DatasetWriter(str(tmp), fields, page_size=page_size, num_workers=num_workers)
    try:
        with images_per_second_bar(desc):
            writer.from_indexed_dataset(dataset, chunksize=max(1, min(100, len(dataset) // (4 * num_workers))))
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        release_shared_metadata(writer)
        raise


def release_shared_metadata(writer) -> None:
    """FFCV's writer only frees its shared-memory metadata block when it finishes; free it after a failure."""
    shm = getattr(writer, "metadata_sm", None)
    if hasattr(shm, "unlink"):
        try:
            shm.close()
            shm.unlink()
        except FileNotFoundError:
            pass


def image_fields(settings: CompileSettings) -> dict:
    from ffcv.fields import IntField, RGBImageField
    return {"image": RGBImageField(write_mode=settings.write_mode, max_resolution=settings.max_resolution or None,
                                   jpeg_quality=settings.jpeg_quality,
                                   compress_probability=settings.compress_probability),
            "label": IntField()}


def stored_size(width, height, max_side, square=0):
    """Largest stored image size in bytes (raw RGB) after the writer's resize to `max_side` (or the square crop)."""
    if square:
        return square * square * 3 if len(width) else 0
    w, h = np.asarray(width, np.float64), np.asarray(height, np.float64)
    if max_side:
        scale = np.minimum(1.0, max_side / np.maximum(np.maximum(w, h), 1))
        w, h = w * scale, h * scale
    return int((w * h * 3).max()) if len(w) else 0


def write_split(index, out: Path, split: str, settings: CompileSettings) -> None:
    """The split's beton (rows in index order), then its index; both through temporary files."""
    dataset = ImageFiles(index.root, index.path, index.class_id, settings.max_resolution, settings.square)
    page = page_size_for(stored_size(index.width, index.height, settings.max_resolution, settings.square))
    (out / f"{split}_index.npz").unlink(missing_ok=True)  # never an old index beside a new beton
    (out / f"{split}.beton.json").unlink(missing_ok=True)
    write_beton(dataset, image_fields(settings), out / f"{split}.beton", settings.num_workers, page, f"write {split}")
    failed = np.flatnonzero(np.frombuffer(dataset.failed, dtype=np.int8))
    if len(failed):
        (out / f"{split}.beton").unlink()
        names = ", ".join(str(Path(index.root) / index.path[i]) for i in failed[:5])
        raise FastloadError(f"{len(failed)} file(s) passed the check but failed to decode while writing {split}: "
                            f"{names}; remove or replace them and rerun")
    index_mod.save_index(index, out / f"{split}_index.npz")
    write_json(out / f"{split}.beton.json", beton_description(split, len(index), settings))


def beton_description(split: str, rows: int, settings: CompileSettings) -> dict:
    """The sidecar OUT/{split}.beton.json: what the beton holds, for a reader who has only the folder."""
    if settings.square:
        images = f"{settings.square}x{settings.square} centre crops (shorter side resized to {settings.square})"
    elif settings.max_resolution:
        images = f"whole images, longest side at most {settings.max_resolution}"
    else:
        images = "whole images at their original size"
    return {"split": split, "rows": rows, "fields": {"image": "RGBImageField", "label": "IntField (fine class id)"},
            "images": images, "image_size": [settings.square] * 2 if settings.square else None,
            "square": settings.square, "max_resolution": settings.max_resolution, "write_mode": settings.write_mode,
            "jpeg_quality": settings.jpeg_quality, "compress_probability": settings.compress_probability,
            "index": f"{split}_index.npz", "classes": "classes.txt"}


# ---------------------------------------------------------------------------------------------- compile

def compile_imagenet(root, out, settings: CompileSettings, splits=("train", "val"), devkit_class_order=None) -> dict:
    """Index, check and compile ROOT into OUT. Returns the summary also written to OUT/compile.json."""
    settings.check()
    root, out = Path(root).resolve(), Path(out)
    image_root = index_mod.find_image_root(root)
    classes = index_mod.list_classes(image_root / "train")
    wnid_names = index_mod.check_class_names(classes, image_root / "train")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile.json").unlink(missing_ok=True)  # present only once a compile has finished
    started = time.time()
    indices, skipped, converted = {}, [], []
    for split in splits:
        indices[split] = check_split(root, split, classes, settings, devkit_class_order, skipped, converted)
    write_reports(out, skipped, converted)
    if settings.strict and skipped:
        raise FastloadError(f"--strict: {len(skipped)} file(s) could not be decoded, first {skipped[0][0]} "
                            f"({skipped[0][2]}); all are listed in {out / 'skipped.tsv'}")
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split in splits:
        write_split(indices[split], out, split, settings)
    summary = {"root": str(root), "splits": {s: len(indices[s]) for s in splits}, "num_classes": len(classes),
               "image_size": [settings.square] * 2 if settings.square else None,
               "wnid_class_names": wnid_names, "skipped": len(skipped), "converted": len(converted),
               "settings": asdict(settings), "seconds": round(time.time() - started, 1)}
    write_json(out / "compile.json", summary)
    return summary


def check_split(root, split, classes, settings, devkit_class_order, skipped, converted):
    """The split's index of decodable files; skipped/converted rows (path, split, reason) are appended."""
    paths, class_ids = index_mod.list_split(root, split, classes, devkit_class_order)
    results = check_images(root, paths, settings.num_workers, split)
    keep = []
    for row, (path, (w, h, nbytes, problem, note)) in enumerate(zip(paths, results)):
        if problem:
            skipped.append((path, split, problem))
            continue
        if note:
            converted.append((path, split, note))
        keep.append(row)
    if not keep:
        raise FastloadError(f"no decodable images in split {split} of {root}")
    keep = np.asarray(keep)
    w, h, nbytes = (np.asarray([r[k] for r in results]) for k in range(3))
    index = index_mod.build_index(root, np.asarray(paths)[keep], np.asarray(class_ids)[keep], w[keep], h[keep],
                                  nbytes[keep], classes)
    check_no_empty_class(index, classes, split, root, class_ids)
    return index


def check_no_empty_class(index, classes, split, root, listed_class_ids):
    """A class whose every image was skipped is an error: training would silently lose it."""
    listed = set(np.unique(listed_class_ids).tolist())
    kept = set(np.unique(index.class_id).tolist())
    lost = sorted(listed - kept)
    if lost:
        raise FastloadError(f"class {classes[lost[0]]} of split {split} in {root} has no decodable image left "
                            f"(see skipped.tsv)")


def write_reports(out: Path, skipped, converted) -> None:
    for name, rows in (("skipped.tsv", skipped), ("converted.tsv", converted)):
        lines = ["path\tsplit\treason\n"] + [f"{p}\t{s}\t{r}\n" for p, s, r in rows]
        (out / name).write_text("".join(lines))


# ---------------------------------------------------------------------------------------------- materialize

class StoredImages:
    """Rows of an existing beton as (stored image record, label): the compressed or raw bytes are copied as they
    are, so a materialized beton decodes to exactly the same pixels as the base beton."""

    def __init__(self, beton_path, rows):
        from ffcv.reader import Reader
        reader = Reader(str(beton_path))
        self.path, self.rows = str(beton_path), np.asarray(rows, dtype=np.int64)
        self.metadata = reader.metadata
        order = np.argsort(reader.alloc_table["ptr"])
        self.ptrs = reader.alloc_table["ptr"][order]
        self.sizes = reader.alloc_table["size"][order]
        self.names = reader.field_names
        self._file = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if self._file is None:  # opened in the writer process, after the fork
            self._file = np.memmap(self.path, dtype=np.uint8, mode="r")
        record = self.metadata[self.rows[i]]
        image = record[self.names.index("image")]
        ptr = image["data_ptr"]
        size = self.sizes[np.searchsorted(self.ptrs, ptr)]
        payload = np.array(self._file[ptr:ptr + size])
        return (int(image["mode"]), int(image["width"]), int(image["height"]), payload), \
            int(record[self.names.index("label")])


def copy_stored_image(destination, stored, malloc):
    """RGBImageField.encode for an already-encoded record (mode, width, height, payload bytes)."""
    mode, width, height, payload = stored
    destination["mode"], destination["width"], destination["height"] = mode, width, height
    destination["data_ptr"], storage = malloc(payload.nbytes)
    storage[:] = payload


def materialize(manifest_path, beton_path, out_path, num_workers: int = 2) -> int:
    """Write the rows of one manifest (its `indices`, in order) of `beton_path` into a standalone beton, plus
    OUT_index.npz (those rows of the base index, when the base index sits next to the beton). Labels stay fine
    class ids; apply the manifest's label_lookup at load time as for the base beton. Returns the row count."""
    from ffcv.fields import IntField, RGBImageField
    manifest_path, beton_path, out_path = Path(manifest_path), Path(beton_path), Path(out_path)
    rows = read_manifest_indices(manifest_path)
    if not beton_path.is_file():
        raise FastloadError(f"beton {beton_path} does not exist")
    dataset = StoredImages(beton_path, rows)
    if len(rows) and rows.max() >= len(dataset.metadata):
        raise FastloadError(f"{manifest_path}: index {rows.max()} is past the end of {beton_path} "
                            f"({len(dataset.metadata)} rows): is this manifest for that beton?")
    image_field = RGBImageField()
    image_field.encode = copy_stored_image  # same field type id, so readers decode it as any RGBImageField
    page = page_size_for(int(dataset.sizes.max()) if len(dataset.sizes) else 0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_beton(dataset, {"image": image_field, "label": IntField()}, out_path, num_workers, page,
                f"materialize {out_path.name}")
    base_index = beton_path.with_name(f"{beton_path.stem}_index.npz")
    if base_index.is_file():
        index_mod.save_index(index_mod.load_index(base_index).select(rows),
                             out_path.with_name(f"{out_path.stem}_index.npz"))
    return len(rows)


def read_manifest_indices(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FastloadError(f"manifest {path} does not exist")
    with np.load(path, allow_pickle=False) as z:
        if "indices" not in z.files:
            raise FastloadError(f"{path} is not a manifest: it has no 'indices' array")
        rows = z["indices"].astype(np.int64)
    if len(rows) and rows.min() < 0:
        raise FastloadError(f"{path}: negative row index {rows.min()}")
    return rows
