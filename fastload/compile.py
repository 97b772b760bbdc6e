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

Output directory OUT: {split}.beton, {split}.beton.json (what the beton holds, the fingerprint of its index, its
size and checksums), {split}_index.npz (row i = beton row i), classes.txt, compile.json (settings, counts and the
fingerprints), skipped.jsonl (every entry under a split folder that is not in the index, with the reason) and
converted.jsonl (files stored after a conversion, or with a property compile ignores: see `image_notes`).
The compile is staged in a sibling folder and swapped in at the end (one rename): an interrupted compile leaves OUT
as it was, a previous compile there whole and usable. Disk space: once the images are indexed and before any beton
is written, the free space beside OUT is checked against `estimate_compile_bytes` (from the index: raw = stored
width x height x 3 per image, jpg = stored pixels x the source file's bytes per pixel, plus FFCV's page overhead);
a disk that fills up anyway is one DiskFullError naming the beton and its estimated size, OUT untouched.
OUT is locked (fastload.files.OutputLock) for the duration.
"""
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import index as index_mod
from .errors import FastloadError, UsageError
from .files import (DISK_FULL_ERRNOS, DiskFullError, OutputLock, atomic_path, check_free_space, is_temp_name,
                    write_json, write_text)

WRITE_MODES = ("raw", "jpg", "proportion")
DEFAULT_MAX_RESOLUTION = 256
DEFAULT_WRITE_MODE = "proportion"
DEFAULT_SQUARE_WRITE_MODE = "raw"  # a square beton feeds `augment: device`, which copies raw bytes
DEFAULT_JPEG_QUALITY = 90
DEFAULT_COMPRESS_PROBABILITY = 0.5
DEFAULT_MIN_SIDE = 8  # every crop decoder gets >= 7 pixels (FFCV's centre crop takes 224/256 of the shorter side)
MIN_PAGE_SIZE = 1 << 23  # FFCV's default page (8 MiB); grown when one raw image would not fit
NARROW_LEVELS = 64  # a high-depth image spanning fewer 8-bit grey levels than this at its bit depth is stretched
FLAT_STD = 1.0  # pixel standard deviation (8-bit grey levels) under which a stored image is noted as near-constant
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
REPORTS = ("skipped.jsonl", "converted.jsonl")
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
                                                     initargs=(os.getpid(),))
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

def page_size_for(max_raw_bytes: int) -> int:
    """FFCV needs every sample inside one page: a power of two >= 8 MiB and >= 4x the largest raw image."""
    size = MIN_PAGE_SIZE
    while size < 4 * max_raw_bytes:
        size *= 2
    return size


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
    beton = out / f"{split}.beton"
    write_beton(dataset, image_fields(settings), beton, settings.num_workers, page, f"write {split}",
                expected_bytes=estimate_beton_bytes(index, settings))
    digest = index_mod.save_index(index, out / f"{split}_index.npz")
    write_json(out / f"{split}.beton.json", dict(beton_description(split, len(index), settings), fingerprint=digest,
                                                 **describe_file(beton)))
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
            "compress_probability": settings.compress_probability, "index": f"{split}_index.npz",
            "classes": "classes.txt"}


# ---------------------------------------------------------------------------------------------- the FFCV writer

def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed (SIGKILL) when the parent dies, even by SIGKILL (Linux PR_SET_PDEATHSIG)."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class AnonymousMemory:
    """Stands in for multiprocessing.shared_memory.SharedMemory in FFCV's writer: an anonymous shared mapping that
    forked workers inherit and the kernel frees with the last process; nothing in /dev/shm to leak."""

    def __init__(self, create=True, size=0):
        import mmap
        self.buf = mmap.mmap(-1, max(1, size))
        self.size = size

    def close(self):
        self.buf.close()

    def unlink(self):
        pass


def writer_worker(slot, current, errors, parent_pid, input_queue, metadata_sm, metadata_type, fields, allocator,
                  done_number, allocations_queue, dataset):
    """FFCV's worker_job_indexed_dataset, plus: dies with the parent, records the row it is on in current[slot],
    and on an exception reports it (with that row) and exits at once, leaving no page half-flushed to wait for."""
    from ffcv.writer import handle_sample
    die_with_parent(parent_pid)
    metadata = np.frombuffer(metadata_sm.buf, dtype=metadata_type)
    try:
        with allocator:  # leaving it flushes the last page: a full disk can fail there, after the last row
            for chunk in iter(input_queue.get, None):
                for dest_ix, source_ix in chunk:
                    current[slot] = source_ix
                    try:
                        handle_sample(dataset[source_ix], dest_ix, metadata_type.names, metadata, allocator, fields)
                    except OSError as e:
                        if e.errno in DISK_FULL_ERRNOS:
                            raise  # the output's fault, not the image's
                        report_worker_error(errors, source_ix, e)
                    except BaseException as e:  # reported to the parent, which fails the compile naming the file
                        report_worker_error(errors, source_ix, e)
                with done_number.get_lock():
                    done_number.value += len(chunk)
    except OSError as e:  # writing a page: a full disk (or another write error) names the output, not an image
        report_worker_error(errors, -1, e)
    current[slot] = -1
    allocations_queue.put(allocator.allocations)


def report_worker_error(errors, row, error) -> None:
    """In a writer process: hand (row or -1, message, errno) to the parent and exit at once (no traceback)."""
    errors.put((int(row), f"{type(error).__name__}: {error}", getattr(error, "errno", None)))
    errors.close()
    errors.join_thread()
    os._exit(1)


def watched_writer_class():
    """ffcv.writer.DatasetWriter with watched workers (a subclass built on first use: ffcv imports late)."""
    from ffcv.writer import DatasetWriter

    class WatchedWriter(DatasetWriter):
        """A worker that dies (signal, exception) fails the write at once with the file it was on; workers die with
        this process; the metadata lives in anonymous shared memory."""

        def prepare(self):
            import ffcv.writer
            original = ffcv.writer.shared_memory
            ffcv.writer.shared_memory = type("AnonymousSharedMemory", (), {"SharedMemory": AnonymousMemory})
            try:
                super().prepare()
            finally:
                ffcv.writer.shared_memory = original

        def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
            run_watched(self, num_samples, queue_content, extra_worker_args[0])

    return WatchedWriter


def run_watched(writer, num_samples, queue_content, dataset) -> None:
    """The body of DatasetWriter._write_common with a parent that watches its workers."""
    import ctypes

    from ffcv.memory_allocator import MemoryAllocator
    ctx = multiprocessing.get_context("fork")
    writer.num_samples = num_samples
    writer.prepare()
    work, allocations, errors = ctx.Queue(), ctx.Queue(), ctx.Queue()
    for todo in queue_content:
        work.put(todo)
    for _ in range(writer.num_workers):
        work.put(None)
    done = ctx.Value(ctypes.c_uint64, 0)
    current = ctx.Array("q", [-1] * writer.num_workers, lock=False)
    allocator = MemoryAllocator(writer.fname, writer.data_region_start, writer.page_size)
    workers = [ctx.Process(target=writer_worker, daemon=True,
                           args=(k, current, errors, os.getpid(), work, writer.metadata_sm, writer.metadata_type,
                                 writer.fields, allocator, done, allocations, dataset))
               for k in range(writer.num_workers)]
    try:
        for p in workers:
            p.start()
        wait_for_rows(workers, done, num_samples, current, errors, dataset, writer.progress_label)
        allocation_list = []
        for _ in workers:
            allocation_list.extend(get_watched(allocations, workers, current, errors, dataset))
        writer.finalize(allocation_list)
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join()
        writer.metadata_sm.close()


def wait_for_rows(workers, done, total: int, current, errors, dataset, desc: str) -> None:
    """Follow the workers' row count with a progress bar (images/s), checking every 50 ms that none has died."""
    from tqdm import tqdm
    previous = 0
    with tqdm(total=total, desc=desc, unit="img", smoothing=0.1) as bar:  # closed (line ended) before any error
        while previous != total:
            check_workers(workers, current, errors, dataset)
            value = done.value
            if value > previous:
                bar.update(value - previous)
                previous = value
            time.sleep(0.05)


def get_watched(queue, workers, current, errors, dataset):
    import queue as queue_mod
    while True:
        try:
            return queue.get(timeout=0.2)
        except queue_mod.Empty:
            check_workers(workers, current, errors, dataset)


def check_workers(workers, current, errors, dataset) -> None:
    """Raise FastloadError naming the file when a worker has died before finishing."""
    import queue as queue_mod
    import signal
    for slot, p in enumerate(workers):
        if p.exitcode is None or p.exitcode == 0:
            continue
        row, message, error_number = int(current[slot]), "", None
        try:
            row, message, error_number = errors.get(timeout=1.0)
        except queue_mod.Empty:
            pass
        if error_number in DISK_FULL_ERRNOS:  # write_beton's atomic_path turns it into one DiskFullError
            raise OSError(error_number, os.strerror(error_number))
        if row < 0 and message:
            raise FastloadError(f"a beton writer process failed writing its output: {message}")
        how = (f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit status {p.exitcode}")
        where = dataset.describe(row) if row >= 0 else "an unknown row"
        raise FastloadError(f"a beton writer process ({how}) failed on {where}"
                            f"{': ' + message if message else ''}; remove or replace that file and rerun")


def write_beton(dataset, fields: dict, out_path: Path, num_workers: int, page_size: int, desc: str,
                expected_bytes: int = None) -> None:
    """Write `dataset` (with a `describe(row)` naming each row's source) as an FFCV beton, atomically. A full disk
    is one DiskFullError naming `out_path` and `expected_bytes` (the estimated size, when given)."""
    with atomic_path(out_path, expected_bytes=expected_bytes) as tmp:
        writer = watched_writer_class()(str(tmp), fields, page_size=page_size, num_workers=num_workers)
        writer.progress_label = desc
        writer.from_indexed_dataset(dataset, chunksize=max(1, min(100, len(dataset) // (4 * num_workers))))


# ---------------------------------------------------------------------------------------------- checking betons

CHUNK_BYTES = 1 << 26  # 64 MiB per checksum: ~1700 for a 110 GB beton


def beton_layout(path) -> dict:
    """The regions of an FFCV beton read from its header, checked against the file size; FastloadError (naming the
    file) for anything that is not a whole beton: missing, empty, truncated, a zeroed or foreign header."""
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType, get_handlers, \
        get_metadata_type
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"beton {path} does not exist" if not path.exists() else f"{path} is not a beton file")
    size = path.stat().st_size
    if size < HeaderType.itemsize:
        raise FastloadError(f"{path} is not a beton: {size} bytes, shorter than an FFCV header (truncated?)")
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if header["version"] != CURRENT_VERSION or not 1 <= header["num_fields"] <= 64:
        raise FastloadError(f"{path} is not an FFCV beton (format version {header['version']}, "
                            f"{header['num_fields']} fields): a zeroed, foreign or damaged header")
    descriptors_end = HeaderType.itemsize + FieldDescType.itemsize * int(header["num_fields"])
    if descriptors_end > size:
        raise FastloadError(f"{path} is truncated: {size} bytes, its header needs {descriptors_end}")
    try:
        descriptors = np.fromfile(path, dtype=FieldDescType, count=int(header["num_fields"]),
                                  offset=HeaderType.itemsize)
        metadata_type = get_metadata_type(get_handlers(descriptors))
    except Exception as e:  # unknown field type ids: FFCV raises KeyError/TypeError/ValueError
        raise FastloadError(f"{path}: damaged field descriptors ({type(e).__name__}: {e})") from None
    metadata_end = descriptors_end + int(header["num_samples"]) * metadata_type.itemsize
    table = int(header["alloc_table_ptr"])
    if not metadata_end <= table <= size or (size - table) % ALLOC_TABLE_TYPE.itemsize:
        raise FastloadError(f"{path} is truncated or damaged: {size} bytes, but its header puts "
                            f"{header['num_samples']} rows' metadata up to byte {metadata_end} and the allocation "
                            f"table at byte {table}")
    return {"size": size, "rows": int(header["num_samples"]), "metadata_end": metadata_end, "table": table}


def tables_checksum(path, layout: dict) -> str:
    """sha256 of the header, field descriptors, row metadata and allocation table (everything but image pages)."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(layout["metadata_end"]))
        f.seek(layout["table"])
        digest.update(f.read())
    return digest.hexdigest()


def chunk_checksums(path):
    """sha256 of every CHUNK_BYTES of the file, in order."""
    import hashlib
    out = []
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            out.append(hashlib.sha256(block).hexdigest())
    return out


def describe_file(path) -> dict:
    """The sidecar entries check_beton and verify_beton compare against (written when the beton is complete)."""
    layout = beton_layout(path)
    return {"bytes": layout["size"], "tables_sha256": tables_checksum(path, layout), "chunk_bytes": CHUNK_BYTES,
            "chunk_sha256": chunk_checksums(path)}


def read_sidecar(beton_path) -> dict:
    """BETON.json (what the beton holds, its fingerprint and checksums); {} when the beton has none."""
    path = Path(f"{beton_path}.json")
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FastloadError(f"{path}: the beton's sidecar is not valid JSON ({e}); recompile") from None


def check_beton(path) -> dict:
    """Check a beton before opening it: whole by its header (beton_layout) and, when it has a sidecar, of the size
    and header/tables checksum recorded at compile time. Reads no image pages. Returns the sidecar ({} if none)."""
    layout = beton_layout(path)
    sidecar = read_sidecar(path)
    if "bytes" not in sidecar:
        return sidecar
    if layout["size"] != sidecar["bytes"]:
        raise FastloadError(f"{path} is {layout['size']} bytes but was written as {sidecar['bytes']} "
                            f"(see {path}.json): truncated or damaged copy")
    if tables_checksum(path, layout) != sidecar["tables_sha256"]:
        raise FastloadError(f"{path}: header or row tables differ from the ones written (checksum in {path}.json): "
                            "damaged beton; run `fastload compile verify` and recompile or copy it again")
    return sidecar


def verify_beton(path) -> str:
    """check_beton plus every page checksum; returns a one-line summary, raises FastloadError at the first bad
    chunk (with its byte range)."""
    sidecar = check_beton(path)
    if "chunk_sha256" not in sidecar:
        raise FastloadError(f"{path} has no checksums (no {path}.json from `fastload compile`): cannot verify")
    for k, (got, want) in enumerate(zip(chunk_checksums(path), sidecar["chunk_sha256"])):
        if got != want:
            start = k * sidecar["chunk_bytes"]
            raise FastloadError(f"{path}: bytes {start}..{start + sidecar['chunk_bytes'] - 1} differ from the ones "
                                "written (checksum mismatch): damaged beton; recompile or copy it again")
    return f"{path}: {sidecar.get('rows', '?')} rows, {sidecar['bytes']} bytes, {len(sidecar['chunk_sha256'])} " \
           "checksums ok"


def beton_fingerprint(path) -> str:
    """The fingerprint of the index a beton's rows follow: from BETON.json, else from STEM_index.npz beside it."""
    sidecar = read_sidecar(path)
    if sidecar.get("fingerprint"):
        return sidecar["fingerprint"]
    index = Path(path).with_name(f"{Path(path).name.removesuffix('.beton')}_index.npz")
    if index.is_file():
        return index_mod.load_fingerprint(index)
    raise FastloadError(f"{path}: no {Path(path).name}.json or {index.name} beside it tells which compile it comes "
                        "from; recompile it with `fastload compile`")


def verify_compile(out) -> list:
    """`fastload compile verify OUT`: every beton of a compile folder (or one beton) in full, and each index
    against its beton's fingerprint. Returns one line per beton; FastloadError at the first problem."""
    out = Path(out)
    betons = [out] if out.is_file() else sorted(out.glob("*.beton")) if out.is_dir() else []
    if not betons:
        raise FastloadError(f"{out}: no .beton file to verify" if out.exists() else f"{out} does not exist")
    lines = []
    for beton in betons:
        lines.append(verify_beton(beton))
        index = beton.with_name(f"{beton.name.removesuffix('.beton')}_index.npz")
        if index.is_file():
            rows, digest = len(index_mod.load_index(index)), index_mod.load_fingerprint(index)
            sidecar = read_sidecar(beton)
            if digest != sidecar.get("fingerprint") or rows != beton_layout(beton)["rows"]:
                raise FastloadError(f"{index} ({rows} rows, fingerprint {digest[:12]}) does not belong to {beton} "
                                    f"({sidecar.get('fingerprint', '?')[:12]}): recompile")
    return lines


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
        stage = out.parent / f".{out.name}.compile-stage-{os.getpid()}"
        try:
            with OutputLock(stage, "fastload compile"):
                try:
                    summary = compile_into(stage, root, classes, settings, splits, devkit_class_order)
                except DiskFullError as e:  # name the file as it would have appeared in OUT, not in the stage
                    if e.path.parent != stage:
                        raise
                    raise DiskFullError(out / e.path.name, needed=e.needed, free=e.free) from None
                summary["wnid_class_names"] = wnid_names
                write_json(stage / "compile.json", summary)
                swap_in(stage, out, splits)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return summary


def compile_into(folder: Path, root: Path, classes, settings, splits, devkit_class_order) -> dict:
    """Every output of a compile but compile.json, written into `folder`; returns the summary."""
    started = time.time()
    indices, skipped, converted = {}, [], []
    for split in splits:
        indices[split] = check_split(root, split, classes, settings, devkit_class_order, skipped, converted)
    # the previous OUT stays until the swap, so the whole new compile must fit beside it
    check_free_space(folder, estimate_compile_bytes(indices, settings),
                     folder.parent / folder.name.split(".compile-stage-")[0].lstrip("."))
    write_report(folder / "skipped.jsonl", skipped)
    write_report(folder / "converted.jsonl", converted)
    lost = [row for row in skipped if row["image"]]
    if settings.strict and lost:
        raise FastloadError(f"--strict: {len(lost)} file(s) could not be decoded or stored, first {lost[0]['path']} "
                            f"({lost[0]['reason']}); all skipped entries are listed in skipped.jsonl")
    write_text(folder / "classes.txt", "".join(f"{c}\n" for c in classes))
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
    if out.parent.is_dir():
        for entry in out.parent.iterdir():
            if entry.name.startswith(f".{out.name}.compile-stage-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


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
    names = {"classes.txt", "compile.json", "skipped.tsv", "converted.tsv", *REPORTS}
    for split in set(splits) | {"train", "val"}:
        names |= {f"{split}.beton", f"{split}.beton.json", f"{split}_index.npz"}
    return names


def swap_in(stage: Path, out: Path, splits) -> None:
    """Exchange the finished stage folder with OUT in one rename; then move back what OUT held that a compile does
    not write (other files the user keeps there). The old compile ends up in `stage`, removed by the caller."""
    refuse_if_read(out)  # a reader may have started while this compile ran
    exchange_folders(stage, out)
    owned = compile_names(splits)
    for entry in stage.iterdir():
        if entry.name not in owned and entry.name != ".fastload.lock" and not is_temp_name(entry.name):
            os.rename(entry, out / entry.name)


def exchange_folders(a: Path, b: Path) -> None:
    """Swap two folders atomically (Linux renameat2 RENAME_EXCHANGE); three renames where it is unsupported."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if hasattr(libc, "renameat2") and libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                                                     rename_exchange) == 0:
        return
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


# ---------------------------------------------------------------------------------------------- reports

def report_row(path: str, split: str, reason: str = None, notes: list = None) -> dict:
    """One row of skipped.jsonl (reason; `image`: the entry has an image suffix) or converted.jsonl (notes)."""
    if notes is not None:
        return {"path": path, "split": split, "notes": list(notes)}
    return {"path": path, "split": split, "reason": reason, "image": index_mod.is_image_file(path)}


def write_report(path: Path, rows) -> None:
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

    def describe(self, i) -> str:
        return f"row {self.rows[i]} of {self.path}"


def copy_stored_image(destination, stored, malloc):
    """RGBImageField.encode for an already-encoded record (mode, width, height, payload bytes)."""
    mode, width, height, payload = stored
    destination["mode"], destination["width"], destination["height"] = mode, width, height
    destination["data_ptr"], storage = malloc(payload.nbytes)
    storage[:] = payload


def materialize(manifest_path, beton_path, out_path, num_workers: int = 2) -> int:
    """Write the rows of one manifest (its `indices`, in order) of `beton_path` into a standalone beton, with
    OUT_index.npz (those rows of the base index) and OUT.beton.json. Labels stay fine class ids; apply the
    manifest's label_lookup at load time as for the base beton. Returns the row count."""
    from ffcv.fields import IntField, RGBImageField

    from .manifest import check_source, load_manifest
    manifest_path, beton_path, out_path = Path(manifest_path), Path(beton_path), Path(out_path)
    if num_workers < 1:
        raise UsageError(f"--num-workers {num_workers}: must be >= 1")
    if out_path.is_dir():
        raise FastloadError(f"{out_path} is a folder: give the .beton file to write")
    manifest = load_manifest(manifest_path)
    check_beton(beton_path)
    check_source(manifest, beton_path)
    base_index = beton_path.with_name(f"{beton_path.name.removesuffix('.beton')}_index.npz")
    index = index_mod.load_index(base_index)
    rows = np.asarray(manifest.indices, dtype=np.int64)
    dataset = StoredImages(beton_path, rows)
    if len(rows) and (rows.max() >= len(dataset.metadata) or rows.max() >= len(index)):
        raise FastloadError(f"{manifest_path}: index {rows.max()} is past the end of {beton_path} "
                            f"({len(dataset.metadata)} rows): is this manifest for that beton?")
    image_field = RGBImageField()
    image_field.encode = copy_stored_image  # same field type id, so readers decode it as any RGBImageField
    page = page_size_for(int(dataset.sizes.max()) if len(dataset.sizes) else 0)
    write_beton(dataset, {"image": image_field, "label": IntField()}, out_path, num_workers, page,
                f"materialize {out_path.name}")
    stem = out_path.name.removesuffix(".beton")
    digest = index_mod.save_index(index.select(rows), out_path.with_name(f"{stem}_index.npz"))
    write_json(Path(f"{out_path}.json"), {"rows": len(rows), "materialized_from": str(beton_path),
                                          "manifest": str(manifest_path), "index": f"{stem}_index.npz",
                                          "fingerprint": digest, **describe_file(out_path)})
    return len(rows)
