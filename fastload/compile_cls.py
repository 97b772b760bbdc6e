"""Compile a classification transfer dataset (any layout of fastload.transfer_data.LAYOUTS) into FFCV betons.

    fastload compile cls sun397 /data/sun OUT [--option partition=1] [--side 256] [--write-mode raw]

Storage follows the transfer protocol's data layer, so that training reads bytes instead of decoding files: every
image is decoded as MMEngine's LoadImageFromFile decodes it (OpenCV, cv2.IMREAD_COLOR: EXIF orientation applied,
grey and alpha images made 3-channel), cropped to its Sample.box if it has one, warped to side x side ignoring its
aspect ratio with the interpolation of mmcv.imresize (cv2.INTER_LINEAR, bilinear; Caffe's 256 x 256 warp, the
file configs' `Resize(scale=(256, 256), keep_ratio=False)`), and stored raw in RGB order (FFCV's RGBImageField).
A training crop is then a byte copy of a window. Raw storage costs side * side * 3 bytes per image (196,608 at 256)
plus FFCV's per-row metadata and page padding (well under 1%).

OUT holds, per split of the layout: {split}.beton (fields image, label), {split}.beton.json (what it holds, the
fingerprint of its index, its size and checksums), {split}_index.npz (row i = beton row i: path, label, original
size); plus classes.txt, compile.json (layout, options, metric, counts, fingerprints, settings), skipped.jsonl and
converted.jsonl. As `fastload compile imagenet`: staged beside OUT and swapped in when complete, OUT locked, writer
processes dying with this one; `fastload compile verify OUT` checks every checksum.
"""
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import beton
from . import compile as compile_mod
from . import index as index_mod
from .errors import FastloadError, UsageError
from .ffcv_writer import page_size_for, write_beton
from .files import OutputLock, staged_folder, write_json, write_text
from .transfer_data import LAYOUTS

DEFAULT_SIDE = 256   # Caffe's warp (the transfer configs' img_scale)
DEFAULT_WRITE_MODE = "raw"


@dataclass
class ClsSettings:
    side: int = DEFAULT_SIDE            # every image stored as side x side (aspect ratio not kept)
    write_mode: str = DEFAULT_WRITE_MODE
    jpeg_quality: int = compile_mod.DEFAULT_JPEG_QUALITY
    compress_probability: float = compile_mod.DEFAULT_COMPRESS_PROBABILITY
    num_workers: int = 2
    strict: bool = False

    def check(self):
        """Check every value (UsageError naming the flag)."""
        if self.side < 8:
            raise UsageError(f"--side {self.side}: must be >= 8")
        compile_mod.check_writer_settings(self)
        return self


def layout_options(layout_name: str, pairs) -> dict:
    """The layout's options with --option k=v pairs applied (unknown keys refused, naming the known ones)."""
    if layout_name not in LAYOUTS:
        raise UsageError(f"layout {layout_name!r}: choose one of {', '.join(sorted(LAYOUTS))}")
    options = dict(LAYOUTS[layout_name].options)
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or key not in options:
            known = ", ".join(f"{k}={v}" for k, v in options.items()) or "none"
            raise UsageError(f"--option {pair!r}: layout {layout_name} takes KEY=VALUE options {known}")
        try:
            options[key] = type(options[key])(value) if options[key] is not None else value
        except ValueError:
            raise UsageError(f"--option {pair!r}: {key} takes a {type(options[key]).__name__} "
                             f"(default {options[key]!r})") from None
    return options


def decode_warped(path: str, side: int, box=None) -> np.ndarray:
    """The image as the file pipeline sees it after Resize(scale=(side, side), keep_ratio=False), in RGB order:
    cv2.imdecode(IMREAD_COLOR) (mmcv.imfrombytes, LoadImageFromFile's default), the box crop, cv2.resize with
    INTER_LINEAR (mmcv.imresize's 'bilinear')."""
    import cv2
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise FastloadError(f"{path}: OpenCV cannot decode it")
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        bgr = bgr[max(0, y0):y1, max(0, x0):x1]
        if bgr.size == 0:
            raise FastloadError(f"{path}: crop box {box} is empty on a {bgr.shape[1]}x{bgr.shape[0]} image")
    warped = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(warped[:, :, ::-1])


def warp_array(rgb: np.ndarray, side: int, box=None) -> np.ndarray:
    """decode_warped's crop and resize for an image a layout's `load` hook gives in memory (RGB)."""
    import cv2
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        rgb = rgb[max(0, y0):y1, max(0, x0):x1]
    return np.ascontiguousarray(cv2.resize(rgb, (side, side), interpolation=cv2.INTER_LINEAR))


class WarpedFiles:
    """The indexable dataset FFCV's writer reads: (side x side RGB array, label) per row."""

    def __init__(self, root, samples, side: int, load=None):
        self.root, self.samples, self.side, self.load = str(root), list(samples), side, load

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        sample = self.samples[i]
        if self.load is not None:
            return warp_array(self.load(Path(self.root), sample), self.side, sample.box), int(sample.label)
        return decode_warped(self.describe(i), self.side, sample.box), int(sample.label)

    def describe(self, i) -> str:
        return os.path.join(self.root, self.samples[i].path)


def compile_cls(layout_name: str, root, out, settings: ClsSettings = None, options: dict = None) -> dict:
    """Read ROOT with the layout, check every listed image and compile each split into OUT (staged beside OUT,
    swapped in when complete). Returns the summary also written to OUT/compile.json."""
    settings = (settings or ClsSettings()).check()
    options = layout_options(layout_name, [f"{k}={v}" for k, v in (options or {}).items()])
    root, out = Path(root).resolve(), Path(out).resolve()
    if not root.is_dir():
        raise FastloadError(f"dataset folder {root} does not exist (layout {layout_name} needs "
                            f"{LAYOUTS[layout_name].needs})")
    listing = LAYOUTS[layout_name].read(root, **options)
    with OutputLock(out, "fastload compile"):
        compile_mod.remove_stale_stages(out)
        # as compile_imagenet: the stage's lock is held until the swap is done
        with staged_folder(out, compile_mod.STAGE_TAG) as stage, OutputLock(stage, "fastload compile"):
            summary = compile_listing(stage, root, listing, settings)
            summary.update(layout=layout_name, options=options)
            write_json(stage / beton.COMPILE_FILE, summary)
            compile_mod.swap_in(stage, out, list(listing.splits))
    return summary


def compile_listing(folder: Path, root: Path, listing, settings: ClsSettings) -> dict:
    """Every output of a compile but compile.json, written into `folder`; returns the summary."""
    started = time.time()
    kept, skipped, converted = {}, [], []
    load = LAYOUTS[listing.name].load
    for split, samples in listing.splits.items():
        kept[split] = (loaded_samples(root, samples, load) if load else
                       check_samples(root, split, samples, settings, skipped, converted))
    compile_mod.write_jsonl_report(folder / "skipped.jsonl", skipped)
    compile_mod.write_jsonl_report(folder / "converted.jsonl", converted)
    if settings.strict and skipped:
        raise FastloadError(f"--strict: {len(skipped)} listed file(s) cannot be stored, first {skipped[0]['path']} "
                            f"({skipped[0]['reason']}); all are listed in skipped.jsonl")
    write_text(folder / beton.CLASSES_FILE, "".join(f"{c}\n" for c in listing.classes))
    fingerprints = {split: write_split(folder, root, split, rows, listing, settings) for split, rows in kept.items()}
    return {"root": str(root), "metric": listing.metric, "multilabel": listing.multilabel,
            "splits": {s: len(rows) for s, rows in kept.items()}, "num_classes": len(listing.classes),
            "image_size": [settings.side, settings.side], "fingerprint": fingerprints, "skipped": len(skipped),
            "converted": len(converted), "settings": asdict(settings), "seconds": round(time.time() - started, 1)}


def loaded_samples(root: Path, samples, load) -> list:
    """(sample, width, height, nbytes) of samples whose images the layout's `load` hook gives (CIFAR's arrays)."""
    rows = []
    for sample in samples:
        image = load(root, sample)
        rows.append((sample, image.shape[1], image.shape[0], image.nbytes))
    return rows


def check_samples(root: Path, split: str, samples, settings, skipped: list, converted: list) -> list:
    """(sample, width, height, nbytes) of every storable sample; report rows for the others."""
    present = [s for s in samples if (root / s.path).is_file()]
    skipped += [compile_mod.report_row(s.path, split, reason="listed but not a file")
                for s in samples if not (root / s.path).is_file()]
    results = compile_mod.check_images(root, [s.path for s in present], settings.num_workers, split)
    keep = []
    for sample, (w, h, nbytes, problem, notes) in zip(present, results):
        if problem:
            skipped.append(compile_mod.report_row(sample.path, split, reason=problem))
            continue
        if notes:
            converted.append(compile_mod.report_row(sample.path, split, notes=[opencv_note(n) for n in notes]))
        keep.append((sample, w, h, nbytes))
    if not keep:
        raise FastloadError(f"no storable images in split {split} of {root} (see skipped.jsonl)")
    return keep


def opencv_note(note: str) -> str:
    """compile.image_notes describes PIL's decode; this compile decodes with OpenCV, which applies EXIF rotation."""
    if note.startswith("EXIF orientation"):
        return note.split(" ignored")[0] + " applied (OpenCV's IMREAD_COLOR, as LoadImageFromFile decodes)"
    return note


def write_split(folder: Path, root: Path, split: str, rows: list, listing, settings: ClsSettings) -> str:
    """The split's beton (rows in listing order), its index and its sidecar; returns the index fingerprint."""
    from ffcv.fields import IntField, RGBImageField
    samples = [r[0] for r in rows]
    index = index_mod.build_index(root, [s.path for s in samples], [s.label for s in samples],
                                  [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], listing.classes)
    fields = {"image": RGBImageField(write_mode=settings.write_mode, max_resolution=None,
                                     jpeg_quality=settings.jpeg_quality,
                                     compress_probability=settings.compress_probability),
              "label": IntField()}
    path = beton.beton_path(folder, split)
    page = page_size_for(settings.side * settings.side * 3)
    images = WarpedFiles(root, samples, settings.side, LAYOUTS[listing.name].load)
    write_beton(images, fields, path, settings.num_workers, page, f"write {split}")
    digest = index_mod.save_index(index, beton.index_path(folder, split))
    label = "IntField (bitmask of classes)" if listing.multilabel else "IntField (class id, classes.txt order)"
    beton.write_sidecar(path, {
        "split": split, "rows": len(samples), "layout": listing.name, "metric": listing.metric,
        "fields": {"image": "RGBImageField", "label": label},
        "images": f"{settings.side}x{settings.side} RGB, warped (aspect ratio not kept) as mmcv's "
                  "Resize(keep_ratio=False) does", "image_size": [settings.side, settings.side],
        "write_mode": settings.write_mode, "index": beton.index_name(split), "classes": beton.CLASSES_FILE},
        digest)
    return digest


def read_compile_info(folder) -> dict:
    """OUT/compile.json of a `fastload compile cls` folder; FastloadError naming what is missing."""
    import json
    path = Path(folder) / beton.COMPILE_FILE
    if not path.is_file():
        raise FastloadError(f"{folder} holds no {beton.COMPILE_FILE}: compile the dataset first with "
                            "`fastload compile cls LAYOUT ROOT OUT`")
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise FastloadError(f"{path}: not valid JSON ({e}); recompile") from None
    if "layout" not in info:
        raise FastloadError(f"{path} was written by `fastload compile imagenet`, not `compile cls`")
    return info
