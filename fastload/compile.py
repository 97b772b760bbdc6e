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
  storage is then the default write mode: S=176 is 93 KB per image.
- min side 8: an image whose stored shorter side would be under 8 pixels (a 1x1 file, a 600x2 strip, a 10000x50
  panorama stored as 256x1) is skipped with the reason in skipped.jsonl, so every row of a beton can be cropped by
  every decoding pipeline (FFCV's centre crop aborts the process on a 1-pixel side).

Output directory OUT (file names: fastload.beton): {split}.beton, {split}.beton.json (what the beton holds, the
fingerprint of its index, its size and checksums), {split}_index.npz (row i = beton row i), classes.txt,
compile.json (settings, counts and the fingerprints), skipped.jsonl (every entry under a split folder that is not in
the index, with the reason) and converted.jsonl (files stored after a conversion, or with a property compile
ignores: see `image_notes`). The compile is staged in a sibling folder and swapped in at the end (one rename,
fastload.files.publish_folder): an interrupted compile leaves OUT as it was, a previous compile there whole and
usable. Disk space: once the images are indexed and before any beton is written, the free space beside OUT is
checked against `estimate_compile_bytes` (from the index: raw = stored width x height x 3 per image, jpg = stored
pixels x the source file's bytes per pixel, plus FFCV's page overhead); a disk that fills up anyway is one
DiskFullError naming the beton and its estimated size, OUT untouched.
OUT is locked (fastload.files.OutputLock) for the duration. The FFCV writer and its overrides: fastload.ffcv_writer.
"""
import json
import multiprocessing
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import beton
from . import index as index_mod
from .errors import FastloadError, UsageError
from .ffcv_writer import StoredImages, page_size_for, stored_image_field, write_beton
from .files import (DiskFullError, OutputLock, check_free_space, publish_folder, remove_staging_folders,
                    staged_folder, write_json, write_text)
from .stepwatch import die_with_parent

WRITE_MODES = ("raw", "jpg", "proportion")
DEFAULT_MAX_RESOLUTION = 256
DEFAULT_WRITE_MODE = "proportion"
DEFAULT_SQUARE_WRITE_MODE = "raw"  # a square beton feeds `augment: device`, which copies raw bytes
DEFAULT_JPEG_QUALITY = 90
DEFAULT_COMPRESS_PROBABILITY = 0.5
DEFAULT_MIN_SIDE = 8  # every crop decoder gets >= 7 pixels (FFCV's centre crop takes 224/256 of the shorter side)
NARROW_LEVELS = 64  # a high-depth image spanning fewer 8-bit grey levels than this at its bit depth is stretched
FLAT_STD = 1.0  # pixel standard deviation (8-bit grey levels) under which a stored image is noted as near-constant
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
REPORTS = ("skipped.jsonl", "converted.jsonl")
STAGE_TAG = "compile-stage-"  # a compile into OUT is built in the sibling .OUT.compile-stage-PID
ESTIMATE_BYTES_PER_ROW = 64  # FFCV row metadata (image mode/size/pointer, label) plus its allocation-table entry
ESTIMATE_SLACK_BYTES = 1 << 20  # indices, sidecars, classes.txt and the reports beside the betons


def check_writer_settings(settings) -> None:
    """The beton writer's flags, shared by `compile imagenet` and `compile cls` (UsageError naming the flag)."""
    if settings.write_mode not in WRITE_MODES:
        raise UsageError(f"--write-mode {settings.write_mode!r}: choose one of {', '.join(WRITE_MODES)}")
    if not 1 <= settings.jpeg_quality <= 100:
        raise UsageError(f"--jpeg-quality {settings.jpeg_quality}: must be in 1..100")
    if not 0.0 <= settings.compress_probability <= 1.0:
        raise UsageError(f"--compress-probability {settings.compress_probability}: must be in [0, 1]")
    if settings.num_workers < 1:
        raise UsageError(f"--num-workers {settings.num_workers}: must be >= 1")


@dataclass
class CompileSettings:
    max_resolution: int = None  # longest stored side; 0 keeps the original size; None: 256, or `square`
    write_mode: str = None  # None: 'proportion', or 'raw' with `square`
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    compress_probability: float = DEFAULT_COMPRESS_PROBABILITY
    num_workers: int = 2
    strict: bool = False
    square: int = 0  # > 0: shorter side resized to `square`, centre square x square kept
    min_side: int = DEFAULT_MIN_SIDE  # images stored with a shorter side under this are skipped

    def check(self):
        """Check every value and fill the defaults that depend on `square`."""
        if self.square < 0:
            raise UsageError(f"--square {self.square}: must be > 0 (or 0 to keep each image's aspect ratio)")
        if self.square and self.max_resolution not in (None, self.square):
            raise UsageError(f"--max-resolution {self.max_resolution} conflicts with --square {self.square}: square "
                             f"images are {self.square} pixels on each side; drop --max-resolution")
        if self.max_resolution is None:
            self.max_resolution = self.square or DEFAULT_MAX_RESOLUTION
        if self.write_mode is None:
            self.write_mode = DEFAULT_SQUARE_WRITE_MODE if self.square else DEFAULT_WRITE_MODE
        check_writer_settings(self)
        if self.max_resolution < 0:
            raise UsageError(f"--max-resolution {self.max_resolution}: must be >= 0 (0 keeps the original size)")
        if self.min_side < 2:
            raise UsageError(f"--min-side {self.min_side}: must be >= 2 (a crop of a 1-pixel side is empty)")
        if self.max_resolution and self.max_resolution < self.min_side:
            raise UsageError(f"--max-resolution {self.max_resolution} is below --min-side {self.min_side}")
        return self


# ---------------------------------------------------------------------------------------------- reading images

def check_image(path: str):
    """(width, height, nbytes, problem, notes) of one file. problem: why it must be skipped (else '');
    notes: what storing it changes or ignores (see image_notes). Decodes the whole file (JPEGs at 1/8 scale,
    which still finds truncation)."""
    from PIL import Image
    nbytes = os.path.getsize(path)
    if nbytes == 0:
        return 0, 0, 0, "empty file (0 bytes)", []
    try:
        with Image.open(path) as im:
            width, height = im.width, im.height
            notes = image_notes(im, path)
            im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
            if im.mode in HIGH_DEPTH_MODES:
                notes.append(to_8bit(np.asarray(im), im.mode)[1])
            flat = flat_note(np.asarray(to_rgb(im)))
            if flat:
                notes.append(flat)
    except Exception as e:  # PIL raises many types for bad files; each becomes a reported skip, not a crash
        return 0, 0, nbytes, f"cannot decode: {type(e).__name__}: {e}", []
    return width, height, nbytes, "", notes


def image_notes(im, path: str) -> list:
    """What compile does to one opened image besides resizing: format and mode conversions, and the properties it
    ignores (EXIF orientation: pixels stored as they lie in the file, as PIL-based ImageNet loaders do; alpha:
    dropped; animation: first frame only)."""
    notes = []
    suffix = os.path.splitext(path)[1]
    if im.format != "JPEG" and suffix.lower() in (".jpeg", ".jpg"):
        notes.append(f"{im.format} file named {suffix}")
    if im.mode not in ("RGB",) + HIGH_DEPTH_MODES:
        notes.append(f"{im.mode} converted to RGB")
    if "A" in im.mode or "transparency" in im.info:
        notes.append("alpha dropped (transparent pixels keep their stored colour)")
    orientation = im.getexif().get(0x0112)
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation} ignored (stored as the pixels lie in the file)")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated: first of {frames} frames stored")
    return notes


def to_8bit(values: np.ndarray, mode: str):
    """(uint8 array, how) for a 16-bit, 32-bit integer or float grey image.

    The rule: integer values in 0..65535 (modes I;16*, or I holding such values) are scaled by their nominal bit
    depth, 12 bits (x 255/4095) when the largest value is at most 4095 (12-bit camera and scanner TIFFs), else 16
    bits (x 255/65535); when that would leave the image's own range under NARROW_LEVELS grey levels (a narrow-range
    image, e.g. values 291..694), its min..max is stretched to 0..255 instead. Floats in [0, 1]: value x 255. Mode I
    values already in 0..255: as they are. Anything else (negative or larger values, other floats): stretched from
    its min..max. Each `how` says which rule applied, for converted.jsonl.
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "I" and low >= 0 and high <= 255:
        scaled, how = values, f"{mode} stored as 8 bits (values already in 0..255)"
    elif mode.startswith("I") and low >= 0 and high <= 65535:
        bits = 12 if high <= 4095 else 16
        full = float((1 << bits) - 1)
        if (high - low) * 255.0 / full >= NARROW_LEVELS or high == low:
            scaled, how = values * (255.0 / full), f"{mode} scaled to 8 bits as {bits}-bit (value x 255/{full:g})"
        else:
            scaled, how = (values - low) * (255.0 / (high - low)), \
                f"{mode} stretched from {low:g}..{high:g} to 0..255 (narrow range for {bits} bits)"
    elif mode == "F" and low >= 0 and high <= 1:
        scaled, how = values * 255.0, "F scaled to 8 bits (value x 255)"
    elif low >= 0 and high <= 255:
        scaled, how = values, f"{mode} stored as 8 bits (values already in 0..255)"
    else:
        span = high - low or 1.0
        scaled, how = (values - low) * (255.0 / span), f"{mode} stretched from {low:g}..{high:g} to 0..255"
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), how


def flat_note(rgb: np.ndarray) -> str:
    """A converted.jsonl note when an image is nearly one flat colour once converted to 8-bit RGB (standard
    deviation under FLAT_STD grey levels): blank scans, or a conversion that lost the picture. '' otherwise."""
    std = float(np.asarray(rgb, dtype=np.float32).std()) if np.size(rgb) else 0.0
    if std >= FLAT_STD:
        return ""
    return (f"near-constant after conversion to 8-bit RGB (pixel std {std:.2f} grey levels, under {FLAT_STD:g}): "
            "stored almost blank; check the file")


def to_rgb(im):
    """An open PIL image as an RGB PIL image (high-depth grey scaled by to_8bit, alpha dropped, first frame)."""
    from PIL import Image
    if im.mode in HIGH_DEPTH_MODES:
        return Image.fromarray(to_8bit(np.asarray(im), im.mode)[0], "L").convert("RGB")
    return im.convert("RGB")


def stored_shape(width: int, height: int, max_side: int, square: int = 0):
    """(width, height) an image is stored at: square x square, or the longest side scaled down to max_side
    (rounded, at least 1), or the original size."""
    if square:
        return square, square
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        return max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    return width, height


def read_rgb(path: str, max_side: int, square: int = 0) -> np.ndarray:
    """The image as stored: an RGB uint8 array of stored_shape (square > 0: see read_square). JPEGs are decoded at
    the smallest DCT scale that still covers the stored size (PIL's draft), then resized (bilinear, antialiased)."""
    from PIL import Image
    with Image.open(path) as im:
        if square:
            return read_square(im, square)
        size = stored_shape(im.width, im.height, max_side)
        im.draft("RGB", size)
        im = to_rgb(im)
        if im.size != size:
            im = im.resize(size, Image.BILINEAR)
        return np.asarray(im)


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
    im = to_rgb(im)
    if im.size != (new_w, new_h):
        im = im.resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(im)[top:top + side, left:left + side]


def check_images(root: Path, paths, num_workers: int, desc: str):
    """check_image over all files in `num_workers` processes (which die with this one), with a progress bar."""
    from tqdm import tqdm
    full = [str(root / p) for p in paths]
    chunk = max(1, min(256, len(full) // (8 * num_workers) or 1))
    pool = multiprocessing.get_context("fork").Pool(num_workers, initializer=die_with_parent,
                                                     initargs=(signal.SIGKILL, os.getpid()))
    with pool:
        return list(tqdm(pool.imap(check_image, full, chunksize=chunk), total=len(full), desc=f"check {desc}",
                         unit="img", smoothing=0.1))


class ImageFiles:
    """The indexable dataset FFCV's writer reads: (RGB array, class id) per index row. An exception here stops the
    compile with the file's name (write_beton watches its writer processes)."""

    def __init__(self, root, paths, class_ids, max_side, square=0):
        self.root, self.paths, self.class_ids, self.max_side = str(root), list(paths), list(class_ids), max_side
        self.square = square

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_rgb(self.describe(i), self.max_side, self.square), int(self.class_ids[i])

    def describe(self, i) -> str:
        return os.path.join(self.root, self.paths[i])


# ---------------------------------------------------------------------------------------------- writing betons


def image_fields(settings: CompileSettings) -> dict:
    from ffcv.fields import IntField, RGBImageField
    return {"image": RGBImageField(write_mode=settings.write_mode, max_resolution=settings.max_resolution or None,
                                   jpeg_quality=settings.jpeg_quality,
                                   compress_probability=settings.compress_probability),
            "label": IntField()}


def stored_size(width, height, max_side, square=0):
    """Largest stored image size in bytes (raw RGB) over these images (see stored_shape)."""
    sizes = [np.prod(stored_shape(int(w), int(h), max_side, square)) * 3 for w, h in zip(width, height)]
    return int(max(sizes)) if sizes else 0


def estimate_beton_bytes(index, settings: CompileSettings) -> int:
    """The size a split's beton will have, from its index (an estimate: the check before writing).

    Image bytes per row: raw = stored width x height x 3; jpg = stored pixels x the source file's bytes per pixel
    (nbytes / (width x height), at most 3: a JPEG source re-encoded at a similar quality keeps its ratio);
    proportion = compress_probability x jpg + (1 - compress_probability) x raw. FFCV writes whole pages (8 MiB or
    more, page_size_for): the header and row metadata fill the first page(s), then ceil(image bytes / page) pages
    plus one more partly filled last page per writer process beyond the first, then the allocation table
    (ESTIMATE_BYTES_PER_ROW per row covers metadata and table)."""
    width, height = index.width.astype(np.float64), index.height.astype(np.float64)
    stored = np.asarray([stored_shape(int(w), int(h), settings.max_resolution, settings.square)
                         for w, h in zip(index.width, index.height)], dtype=np.float64).reshape(-1, 2)
    stored_pixels = stored[:, 0] * stored[:, 1]
    raw = stored_pixels * 3
    source_ratio = np.minimum(index.nbytes / np.maximum(width * height, 1), 3.0)
    jpg = stored_pixels * source_ratio
    p = {"raw": 0.0, "jpg": 1.0, "proportion": settings.compress_probability}[settings.write_mode]
    image_bytes = float(np.sum(p * jpg + (1 - p) * raw))
    page = page_size_for(int(raw.max()) if len(raw) else 0)
    rows = len(index)
    header_pages = -(-(rows * ESTIMATE_BYTES_PER_ROW + 4096) // page)
    data_pages = -(-int(image_bytes) // page) + max(0, min(settings.num_workers, rows) - 1)
    return int(page * (header_pages + data_pages) + rows * ESTIMATE_BYTES_PER_ROW)


def estimate_compile_bytes(indices: dict, settings: CompileSettings) -> int:
    """Every beton of a compile plus the indices and reports beside them (ESTIMATE_SLACK_BYTES)."""
    return sum(estimate_beton_bytes(index, settings) for index in indices.values()) + ESTIMATE_SLACK_BYTES


def write_split(index, out: Path, split: str, settings: CompileSettings) -> str:
    """The split's beton (rows in index order), its index and its sidecar; returns the index fingerprint."""
    dataset = ImageFiles(index.root, index.path, index.class_id, settings.max_resolution, settings.square)
    page = page_size_for(stored_size(index.width, index.height, settings.max_resolution, settings.square))
    path = beton.beton_path(out, split)
    write_beton(dataset, image_fields(settings), path, settings.num_workers, page, f"write {split}",
                expected_bytes=estimate_beton_bytes(index, settings))
    digest = index_mod.save_index(index, beton.index_path(out, split))
    beton.write_sidecar(path, beton_description(split, len(index), settings), digest)
    return digest


def beton_description(split: str, rows: int, settings: CompileSettings) -> dict:
    """What the beton holds, for a reader who has only the folder (the sidecar OUT/{split}.beton.json)."""
    if settings.square:
        images = f"{settings.square}x{settings.square} centre crops (shorter side resized to {settings.square})"
    elif settings.max_resolution:
        images = f"whole images, longest side at most {settings.max_resolution}"
    else:
        images = "whole images at their original size"
    return {"split": split, "rows": rows, "fields": {"image": "RGBImageField", "label": "IntField (fine class id)"},
            "images": images, "image_size": [settings.square] * 2 if settings.square else None,
            "square": settings.square, "max_resolution": settings.max_resolution, "min_side": settings.min_side,
            "write_mode": settings.write_mode, "jpeg_quality": settings.jpeg_quality,
            "compress_probability": settings.compress_probability, "index": beton.index_name(split),
            "classes": beton.CLASSES_FILE}


# ---------------------------------------------------------------------------------------------- compile

def compile_imagenet(root, out, settings: CompileSettings, splits=("train", "val"), devkit_class_order=None) -> dict:
    """Index, check and compile ROOT into OUT (staged beside OUT, swapped in when complete). Returns the summary
    also written to OUT/compile.json."""
    settings.check()
    root, out = Path(root).resolve(), Path(out).resolve()  # a symlinked OUT: stage beside the real folder
    image_root = index_mod.find_image_root(root)
    classes = index_mod.list_classes(image_root / "train")
    wnid_names = index_mod.check_class_names(classes, image_root / "train")
    with OutputLock(out, "fastload compile"):
        remove_stale_stages(out)
        # the stage's lock is held until the swap is done: OUT's lock file is then the stage's
        with staged_folder(out, STAGE_TAG) as stage, OutputLock(stage, "fastload compile"):
            try:
                summary = compile_into(stage, out, root, classes, settings, splits, devkit_class_order)
            except DiskFullError as e:  # name the file as it would have appeared in OUT, not in the stage
                if e.path.parent != stage:
                    raise
                raise DiskFullError(out / e.path.name, needed=e.needed, free=e.free) from None
            summary["wnid_class_names"] = wnid_names
            write_json(stage / beton.COMPILE_FILE, summary)
            swap_in(stage, out, splits)
    return summary


def compile_into(folder: Path, out: Path, root: Path, classes, settings, splits, devkit_class_order) -> dict:
    """Every output of a compile into `out` but compile.json, written into `folder` (its stage); returns the
    summary."""
    started = time.time()
    indices, skipped, converted = {}, [], []
    for split in splits:
        indices[split] = check_split(root, split, classes, settings, devkit_class_order, skipped, converted)
    # the previous OUT stays until the swap, so the whole new compile must fit beside it
    check_free_space(folder, estimate_compile_bytes(indices, settings), out)
    write_jsonl_report(folder / "skipped.jsonl", skipped)
    write_jsonl_report(folder / "converted.jsonl", converted)
    lost = [row for row in skipped if row["image"]]
    if settings.strict and lost:
        raise FastloadError(f"--strict: {len(lost)} file(s) could not be decoded or stored, first {lost[0]['path']} "
                            f"({lost[0]['reason']}); all skipped entries are listed in skipped.jsonl")
    write_text(folder / beton.CLASSES_FILE, "".join(f"{c}\n" for c in classes))
    fingerprints = {split: write_split(indices[split], folder, split, settings) for split in splits}
    return {"root": str(root), "splits": {s: len(indices[s]) for s in splits}, "num_classes": len(classes),
            "image_size": [settings.square] * 2 if settings.square else None, "fingerprint": fingerprints,
            "skipped": len(skipped), "skipped_images": len(lost), "converted": len(converted),
            "skipped_reasons": count_reasons(skipped),
            "near_constant": sum(any(n.startswith("near-constant") for n in row["notes"]) for row in converted),
            "estimated_bytes": estimate_compile_bytes(indices, settings),
            "settings": asdict(settings), "seconds": round(time.time() - started, 1)}


def check_split(root, split, classes, settings, devkit_class_order, skipped, converted):
    """The split's index of storable images; report rows (dicts) for everything else are appended."""
    paths, class_ids, unlisted = index_mod.list_split(root, split, classes, devkit_class_order)
    skipped += [report_row(path, split, reason=reason) for path, reason in unlisted]
    results = check_images(root, paths, settings.num_workers, split)
    keep = []
    for row, (path, (w, h, nbytes, problem, notes)) in enumerate(zip(paths, results)):
        problem = problem or size_problem(w, h, settings)
        if problem:
            skipped.append(report_row(path, split, reason=problem))
            continue
        if notes:
            converted.append(report_row(path, split, notes=notes))
        keep.append(row)
    if not keep:
        raise FastloadError(f"no storable images in split {split} of {root} (see skipped.jsonl)")
    keep = np.asarray(keep)
    w, h, nbytes = (np.asarray([r[k] for r in results]) for k in range(3))
    index = index_mod.build_index(root, np.asarray(paths)[keep], np.asarray(class_ids)[keep], w[keep], h[keep],
                                  nbytes[keep], classes)
    check_no_empty_class(index, classes, split, root, class_ids)
    return index


def count_reasons(skipped) -> dict:
    """{reason kind: count} of skipped.jsonl rows, most frequent first; a reason's kind is its text before ':' or
    ' (' (so 'cannot decode: OSError: ...' rows count together, and 'not an image file name (suffix .txt)' with
    '(suffix none)')."""
    counts = {}
    for row in skipped:
        kind = str(row["reason"]).split(":", 1)[0].split(" (", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def size_problem(width: int, height: int, settings: CompileSettings) -> str:
    """Why an image would be stored too small for every crop decoder ('' when it is fine). With --square the stored
    side is always `square`: the file's own shorter side must reach min_side (no 600x2 strip blown up to a square)."""
    sw, sh = stored_shape(width, height, settings.max_resolution, settings.square)
    if settings.square:
        if min(width, height) >= settings.min_side:
            return ""
        return f"too small: {width}x{height}, shorter side under --min-side {settings.min_side} (--square)"
    if min(sw, sh) >= settings.min_side:
        return ""
    return (f"too small: {width}x{height} would be stored as {sw}x{sh}, shorter side under --min-side "
            f"{settings.min_side}")


def check_no_empty_class(index, classes, split, root, listed_class_ids):
    """A class whose every image was skipped is an error: training would silently lose it."""
    listed = set(np.unique(listed_class_ids).tolist())
    kept = set(np.unique(index.class_id).tolist())
    lost = sorted(listed - kept)
    if lost:
        raise FastloadError(f"class {classes[lost[0]]} of split {split} in {root} has no storable image left "
                            f"(see skipped.jsonl)")


def remove_stale_stages(out: Path) -> None:
    """Stage folders of killed compiles into OUT (we hold OUT's lock, so no live compile owns one). Also refuses a
    compile into a folder that another process is reading (see refuse_if_read)."""
    refuse_if_read(out)
    remove_staging_folders(out, STAGE_TAG)


def folder_readers(folder: Path) -> list:
    """(pid, command line) of the other processes on this machine that hold a file under `folder` open or memory-
    mapped (FFCV maps the betons it reads), from /proc; [] where there is no /proc."""
    prefix = os.path.realpath(folder) + os.sep
    found = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit() and int(e.name) != os.getpid()]
    except OSError:
        return found
    for pid in entries:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                held = any(line.split(maxsplit=5)[-1].rstrip("\n").startswith(prefix) for line in maps
                           if " /" in line)
            if not held:
                held = any(os.readlink(fd.path).startswith(prefix) for fd in os.scandir(f"/proc/{pid}/fd"))
            if held:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                found.append((int(pid), command))
        except OSError:  # gone, or not ours to read
            continue
    return found


def refuse_if_read(out: Path) -> None:
    """A (re)compile swaps OUT's files; a transfer, pre-training or analysis reading them would go on with the old
    files it opened and read the new ones it opens later (e.g. its test split): refuse, naming the reader."""
    if not Path(out).is_dir():
        return
    readers = folder_readers(out)
    if readers:
        pid, command = readers[0]
        more = f" and {len(readers) - 1} other process(es)" if len(readers) > 1 else ""
        raise FastloadError(f"{out} is being read by pid {pid} ({command[:160]}){more}: a compile would replace its "
                            "files under it; wait for it to finish or compile into another folder")


def compile_names(splits) -> set:
    """File names a compile owns in OUT: replaced by a recompile; anything else there is kept."""
    names = {beton.CLASSES_FILE, beton.COMPILE_FILE, "skipped.tsv", "converted.tsv", *REPORTS}
    for split in set(splits) | {"train", "val"}:
        names |= beton.split_file_names(split)
    return names


def swap_in(stage: Path, out: Path, splits) -> None:
    """Exchange the finished stage folder with OUT in one rename; then move back what OUT held that a compile does
    not write (other files the user keeps there). The old compile ends up in `stage`, removed by the caller."""
    refuse_if_read(out)  # a reader may have started while this compile ran
    owned = compile_names(splits)
    publish_folder(stage, out, keep_previous=lambda name: name not in owned)


# ---------------------------------------------------------------------------------------------- reports

def report_row(path: str, split: str, reason: str = None, notes: list = None) -> dict:
    """One row of skipped.jsonl (reason; `image`: the entry has an image suffix) or converted.jsonl (notes)."""
    if notes is not None:
        return {"path": path, "split": split, "notes": list(notes)}
    return {"path": path, "split": split, "reason": reason, "image": index_mod.is_image_file(path)}


def write_jsonl_report(path: Path, rows) -> None:
    """JSON lines, ASCII only: any file name (TAB, newline, bytes that are not UTF-8) survives the round trip;
    `os.fsencode(row["path"])` gives a name's original bytes."""
    write_text(path, "".join(json.dumps(row, ensure_ascii=True) + "\n" for row in rows))


def read_report(path) -> list:
    """The rows of OUT/skipped.jsonl or OUT/converted.jsonl, as dicts."""
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"report {path} does not exist (it is written by `fastload compile`)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise FastloadError(f"{path}:{number}: not a JSON line: {e}") from None
    return rows


# ---------------------------------------------------------------------------------------------- materialize

def materialize(manifest_path, beton_path, out_path, num_workers: int = 2) -> int:
    """Write the rows of one manifest (its `indices`, in order) of `beton_path` into a standalone beton, with
    OUT_index.npz (those rows of the base index) and OUT.beton.json. Labels stay fine class ids; apply the
    manifest's label_lookup at load time as for the base beton. Returns the row count."""
    from ffcv.fields import IntField

    from .manifest import check_source, load_manifest
    manifest_path, beton_path, out_path = Path(manifest_path), Path(beton_path), Path(out_path)
    if num_workers < 1:
        raise UsageError(f"--num-workers {num_workers}: must be >= 1")
    if out_path.is_dir():
        raise FastloadError(f"{out_path} is a folder: give the .beton file to write")
    manifest = load_manifest(manifest_path)
    beton.check_beton(beton_path)
    check_source(manifest, beton_path)
    index = index_mod.load_index(beton.index_beside(beton_path))
    rows = np.asarray(manifest.indices, dtype=np.int64)
    dataset = StoredImages(beton_path, rows)
    if len(rows) and (rows.max() >= len(dataset.metadata) or rows.max() >= len(index)):
        raise FastloadError(f"{manifest_path}: index {rows.max()} is past the end of {beton_path} "
                            f"({len(dataset.metadata)} rows): is this manifest for that beton?")
    page = page_size_for(int(dataset.sizes.max()) if len(dataset.sizes) else 0)
    write_beton(dataset, {"image": stored_image_field(), "label": IntField()}, out_path, num_workers, page,
                f"materialize {out_path.name}")
    index_out = beton.index_beside(out_path)
    digest = index_mod.save_index(index.select(rows), index_out)
    beton.write_sidecar(out_path, {"rows": len(rows), "materialized_from": str(beton_path),
                                   "manifest": str(manifest_path), "index": index_out.name}, digest)
    return len(rows)
