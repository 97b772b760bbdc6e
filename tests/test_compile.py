"""fastload.compile: betons row-aligned with their index, bad files reported, --strict, interrupted writes,
materialized subsets identical to the base beton."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fastload import beton as fb
from fastload import compile as fc
from fastload.cli import main as cli_main
from fastload.errors import FastloadError
from fastload.index import load_index
from tiny_imagenet import CONVERTED, SKIPPED, WNIDS, make_tree

RAW = fc.CompileSettings(max_resolution=0, write_mode="raw", num_workers=2)


@pytest.fixture
def cli(capsys):
    """`fastload ARGS` run in this process (fast: no interpreter start); returns returncode, stdout, stderr."""
    def run(*args, check=False):
        try:
            code = cli_main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
        out, err = capsys.readouterr()
        if check and code:
            raise AssertionError(f"fastload {' '.join(map(str, args))} failed ({code}):\n{out}\n{err}")
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A tiny tree with planted bad files, compiled raw at full size so pixels can be compared to the files."""
    base = tmp_path_factory.mktemp("compiled")
    good = make_tree(base / "root", val_layout="kaggle")
    summary = fc.compile_imagenet(base / "root", base / "out", RAW)
    return base, good, summary


def stored_images(beton):
    """(label, stored bytes, width, height, mode) per row, read with ffcv's Reader and a plain file read."""
    from ffcv.reader import Reader
    reader = Reader(str(beton))
    data = np.fromfile(beton, dtype=np.uint8)
    ptrs, sizes = reader.alloc_table["ptr"], reader.alloc_table["size"]
    size_of = dict(zip(ptrs.tolist(), sizes.tolist()))
    rows = []
    for image, label in reader.metadata:
        ptr = int(image["data_ptr"])
        rows.append((int(label), data[ptr:ptr + size_of[ptr]], int(image["width"]), int(image["height"]),
                     int(image["mode"])))
    return rows


def test_index_matches_the_written_files(compiled):
    base, good, summary = compiled
    assert summary["splits"] == {"train": len(good["train"]), "val": len(good["val"])}
    for split in ("train", "val"):
        index = load_index(base / "out" / f"{split}_index.npz")
        assert index.path.tolist() == [r[0] for r in good[split]]
        assert index.class_id.tolist() == [r[1] for r in good[split]]
        assert index.width.tolist() == [r[2] for r in good[split]]
        assert index.height.tolist() == [r[3] for r in good[split]]
        assert index.nbytes.tolist() == [os.path.getsize(base / "root" / r[0]) for r in good[split]]
        assert index.class_wnids.tolist() == WNIDS and index.root == str(base / "root")
    assert (base / "out" / "classes.txt").read_text().split() == WNIDS


def test_beton_rows_are_index_rows_with_the_files_pixels(compiled):
    base, good, _ = compiled
    for split in ("train", "val"):
        index = load_index(base / "out" / f"{split}_index.npz")
        rows = stored_images(base / "out" / f"{split}.beton")
        assert [r[0] for r in rows] == index.class_id.tolist()
        for (label, payload, w, h, mode), path in zip(rows, index.path):
            reference = np.asarray(Image.open(base / "root" / path).convert("RGB"))
            assert mode == 1 and (h, w) == reference.shape[:2]  # raw
            assert np.array_equal(payload.reshape(h, w, 3), reference), path


def test_bad_files_are_skipped_or_converted_and_reported(compiled):
    base, _, summary = compiled
    skipped = {row["path"].rsplit("/", 1)[1]: row for row in fc.read_report(base / "out" / "skipped.jsonl")}
    assert set(skipped) == set(SKIPPED) | {"notes.txt"}
    assert "0 bytes" in skipped["zero.JPEG"]["reason"] and "truncated" in skipped["truncated.JPEG"]["reason"]
    assert "cannot identify" in skipped["garbage.JPEG"]["reason"]
    assert skipped["notes.txt"]["reason"] == "not an image file name (suffix .txt)"
    assert {name for name, row in skipped.items() if row["image"]} == set(SKIPPED)
    converted = {row["path"].rsplit("/", 1)[1]: row["notes"] for row in fc.read_report(base / "out" / "converted.jsonl")}
    assert set(converted) == set(CONVERTED)
    assert converted["cmyk.JPEG"] == ["CMYK converted to RGB"] and "PNG file named .JPEG" in converted["png_named.JPEG"]
    assert summary["skipped"] == 4 and summary["skipped_images"] == 3 and summary["converted"] == 3
    assert sorted(os.listdir(base / "out")) == sorted(
        [".fastload.lock", "classes.txt", "compile.json", "converted.jsonl", "skipped.jsonl", "train.beton",
         "train.beton.json", "train_index.npz", "val.beton", "val.beton.json", "val_index.npz"])
    assert not [n for n in os.listdir(base) if n.startswith(".")]  # no stage folder left beside OUT


def test_cli_default_compile_and_strict(tmp_path, cli):
    make_tree(tmp_path / "root", per_class=2, val_per_class=1, val_layout="devkit")
    args = ["compile", "imagenet", tmp_path / "root", tmp_path / "out", "--splits", "val",
            "--devkit-class-order", tmp_path / "root" / "class_order.txt"]
    proc = cli(*args, check=True)
    assert "val 3 images" in proc.stdout and "skipped 0" in proc.stdout
    assert load_index(tmp_path / "out" / "val_index.npz").class_id.tolist() == [0, 1, 2]

    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "strict", "--splits", "train", "--strict")
    assert proc.returncode == 1
    assert "--strict: 3 file(s) could not be decoded or stored" in proc.stderr and "skipped.jsonl" in proc.stderr
    assert not (tmp_path / "strict" / "train.beton").exists()

    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "x", "--write-mode", "png")
    assert proc.returncode == 2 and "'raw', 'jpg', 'proportion'" in proc.stderr


def test_summary_counts_skipped_files_per_reason(tmp_path, cli):
    """A loose image in a class-folder val/ is compiled around, and the summary line says so."""
    make_tree(tmp_path / "root", per_class=2, val_per_class=1)
    loose = tmp_path / "root" / "val" / "loose.JPEG"
    loose.write_bytes((next((tmp_path / "root" / "val").rglob("*.JPEG"))).read_bytes())
    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "out", "--num-workers", "1", check=True)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("skipped ")]
    assert len(summary) == 1, proc.stdout
    assert "; 1 image beside the class folders of val/" in summary[0], summary
    for part in ("; 2 cannot decode", "; 1 empty file", "; 1 not an image file name"):
        assert part in summary[0], summary
    compiled = json.loads((tmp_path / "out" / "compile.json").read_text())
    assert compiled["skipped_reasons"]["image beside the class folders of val/"] == 1
    assert sum(compiled["skipped_reasons"].values()) == compiled["skipped"] == 5


def test_interrupted_compile_leaves_no_beton_and_rerun_works(tmp_path, monkeypatch):
    from ffcv.writer import DatasetWriter
    make_tree(tmp_path / "root", per_class=2, val_per_class=1, bad=False)
    out = tmp_path / "out"

    def interrupted(self, allocations):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetWriter, "finalize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fc.compile_imagenet(tmp_path / "root", out, fc.CompileSettings(num_workers=1), splits=("train",))
    assert os.listdir(out) == [".fastload.lock"] and sorted(os.listdir(tmp_path)) == ["out", "root"]

    monkeypatch.undo()
    (tmp_path / ".out.compile-stage-1").mkdir()  # as if a killed compile left its stage folder
    (tmp_path / ".out.compile-stage-1" / "train.beton").write_bytes(b"stale")
    summary = fc.compile_imagenet(tmp_path / "root", out, fc.CompileSettings(num_workers=1), splits=("train",))
    assert summary["splits"] == {"train": 6} and (out / "compile.json").exists()
    assert len(stored_images(out / "train.beton")) == 6 and sorted(os.listdir(tmp_path)) == ["out", "root"]


def write_manifest(base, path, rows, sel=None):
    """A real manifest over the compiled train index, keeping `rows` (as subset would, with its fingerprint)."""
    from fastload.index import load_fingerprint, load_index_classes
    from fastload.manifest import Manifest
    class_id, wnids = load_index_classes(base / "out" / "train_index.npz")
    Manifest(np.asarray(rows, np.int64), np.arange(len(wnids), dtype=np.int32), wnids, wnids, {}, wnids,
             load_fingerprint(base / "out" / "train_index.npz")).save(path)
    return path


def test_materialized_beton_reads_back_identically(compiled, tmp_path, cli):
    base, _, _ = compiled
    rows = np.array([1, 4, 5, 10, 13])
    write_manifest(base, tmp_path / "m.npz", rows)
    cli("compile", "materialize", tmp_path / "sub.beton", "--manifest", tmp_path / "m.npz",
        "--beton", base / "out" / "train.beton", check=True)
    original = stored_images(base / "out" / "train.beton")
    copied = stored_images(tmp_path / "sub.beton")
    assert len(copied) == len(rows)
    for row, got in zip(rows, copied):
        want = original[row]
        assert got[0] == want[0] and got[2:] == want[2:] and np.array_equal(got[1], want[1])
    sub_index = load_index(tmp_path / "sub_index.npz")
    assert sub_index.path.tolist() == load_index(base / "out" / "train_index.npz").path[rows].tolist()
    assert fb.check_beton(tmp_path / "sub.beton")["rows"] == len(rows)
    proc = cli("compile", "verify", tmp_path / "sub.beton", check=True)
    assert "5 rows" in proc.stdout and "checksums ok" in proc.stdout


def test_materialize_refuses_rows_past_the_end_bad_betons_and_workers(compiled, tmp_path, cli):
    base, _, _ = compiled
    write_manifest(base, tmp_path / "m.npz", [0, 999])
    with pytest.raises(FastloadError, match="999 is past the end"):
        fc.materialize(tmp_path / "m.npz", base / "out" / "train.beton", tmp_path / "sub.beton")
    write_manifest(base, tmp_path / "ok.npz", [0, 1])
    (tmp_path / "text.beton").write_text("not a beton at all, but long enough to hold a header........\n")
    proc = cli("compile", "materialize", tmp_path / "sub.beton", "--manifest", tmp_path / "ok.npz",
               "--beton", tmp_path / "text.beton")
    assert proc.returncode == 1 and "text.beton is not an FFCV beton" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("compile", "materialize", tmp_path / "sub.beton", "--manifest", tmp_path / "ok.npz",
               "--beton", base / "out" / "train.beton", "--num-workers", "-1")
    assert proc.returncode == 2 and "--num-workers -1" in proc.stderr
    proc = cli("compile", "materialize", tmp_path, "--manifest", tmp_path / "ok.npz",
               "--beton", base / "out" / "train.beton")
    assert proc.returncode == 1 and "is a folder" in proc.stderr


def test_settings_are_checked():
    with pytest.raises(FastloadError, match="jpeg-quality 0"):
        fc.CompileSettings(jpeg_quality=0).check()
    with pytest.raises(FastloadError, match="compress-probability 2"):
        fc.CompileSettings(compress_probability=2).check()


# ---------------------------------------------------------------------------------------------- --square

SQUARE = 32


def centre_square_reference(path, side):
    """Independent reference: full PIL decode, shorter side resized to `side` (bilinear), centre side x side."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if w < h:
        size = (side, round(h * side / w))
    else:
        size = (round(w * side / h), side)
    im = im.resize(size, Image.BILINEAR)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return np.asarray(im.crop((left, top, left + side, top + side))).astype(np.float64)


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    base = tmp_path_factory.mktemp("square")
    make_tree(base / "root", val_layout="folders", seed=1)
    summary = fc.compile_imagenet(base / "root", base / "out", fc.CompileSettings(square=SQUARE, write_mode="raw"))
    return base, summary


def test_square_compile_stores_centre_crops_of_the_short_side_resize(squares):
    base, summary = squares
    for split in ("train", "val"):
        index = load_index(base / "out" / f"{split}_index.npz")
        rows = stored_images(base / "out" / f"{split}.beton")
        assert len(rows) == len(index) > 0
        for (label, payload, w, h, mode), path, w0, h0 in zip(rows, index.path, index.width, index.height):
            assert (w, h, mode) == (SQUARE, SQUARE, 1), path  # every image SxS, raw
            got = payload.reshape(SQUARE, SQUARE, 3).astype(np.float64)
            want = centre_square_reference(base / "root" / path, SQUARE)
            # JPEGs are decoded at a reduced DCT scale before resizing: close to, not bit-equal with, the reference
            err = np.abs(got - want).mean()
            assert err < 3.0, (path, err)
            # ... and closer than a window shifted by one pixel or the whole image squashed to SxS would be
            squashed = np.asarray(Image.open(base / "root" / path).convert("RGB").resize((SQUARE, SQUARE),
                                                                                         Image.BILINEAR))
            assert err < np.abs(got[:, 1:] - want[:, :-1]).mean() and err < np.abs(got[1:] - want[:-1]).mean()
            if abs(int(w0) - int(h0)) > 10:
                assert err < np.abs(got - squashed).mean(), path


def test_square_compile_says_what_it_holds(squares):
    base, summary = squares
    settings = json.loads((base / "out" / "compile.json").read_text())
    assert settings["image_size"] == [SQUARE, SQUARE] == summary["image_size"]
    assert settings["settings"]["square"] == SQUARE and settings["settings"]["max_resolution"] == SQUARE
    for split in ("train", "val"):
        sidecar = json.loads((base / "out" / f"{split}.beton.json").read_text())
        assert sidecar["image_size"] == [SQUARE, SQUARE] and sidecar["write_mode"] == "raw"
        assert sidecar["rows"] == summary["splits"][split] and sidecar["index"] == f"{split}_index.npz"


def test_cli_square_defaults_to_raw_and_rejects_conflicts(tmp_path, cli):
    make_tree(tmp_path / "root", per_class=2, val_per_class=1, bad=False)
    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "out", "--splits", "train", "--square", "24",
               check=True)
    assert "raw, 24x24 centre squares" in proc.stdout
    assert {(w, h, mode) for _, _, w, h, mode in stored_images(tmp_path / "out" / "train.beton")} == {(24, 24, 1)}
    sidecar = json.loads((tmp_path / "out" / "train.beton.json").read_text())
    assert sidecar["square"] == 24 and sidecar["write_mode"] == "raw"
    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "x", "--square", "24", "--max-resolution", "64")
    assert proc.returncode == 2 and "--max-resolution 64 conflicts with --square 24" in proc.stderr
    proc = cli("compile", "imagenet", tmp_path / "root", tmp_path / "x", "--square", "-5")
    assert proc.returncode == 2 and "--square -5" in proc.stderr


def test_square_geometry():
    assert fc.square_geometry(400, 300, 200) == (267, 200, 33, 0)
    assert fc.square_geometry(300, 400, 200) == (200, 267, 0, 33)
    assert fc.square_geometry(50, 50, 64) == (64, 64, 0, 0)
