"""What compile guarantees: no stored row too small to crop, writers that cannot hang or outlive the
compile, every entry under a split folder indexed or reported, high-depth images scaled, fingerprints that tie
manifests to betons, checksums, a locked OUT swapped in whole, and one-line errors for damaged inputs."""
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastload import beton as fb
from fastload import compile as fc
from fastload.cli import main as cli_main
from fastload.errors import FastloadError
from fastload.files import OutputLock
from fastload.index import load_fingerprint, load_index
from fastload.manifest import Selection, builder_for_index, check_source, load_manifest
from small_disk import fill, small_disk  # noqa: F401 (a fixture)
from tiny_imagenet import WNIDS, picture

REPO = Path(__file__).resolve().parent.parent


def jpeg(path, w=40, h=30, seed=0, **save):
    path = Path(os.fsdecode(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture(np.random.default_rng(seed), w, h, seed % 3)).save(path, "JPEG", quality=90, **save)
    return path


def plain_tree(root, per_class=3):
    for c, wnid in enumerate(WNIDS[:2]):
        for i in range(per_class):
            jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", seed=10 * c + i)
        jpeg(root / "val" / wnid / f"v{c}.JPEG", seed=100 + c)
    return root


def beton_sizes(beton):
    from ffcv.reader import Reader
    return [(int(image["width"]), int(image["height"])) for image, _ in Reader(str(beton)).metadata]


def raw_pixels(beton, row):
    from ffcv.reader import Reader
    reader = Reader(str(beton))
    image = reader.metadata[row][0]
    size = dict(zip(reader.alloc_table["ptr"].tolist(), reader.alloc_table["size"].tolist()))[int(image["data_ptr"])]
    data = np.fromfile(beton, dtype=np.uint8, count=size, offset=int(image["data_ptr"]))
    return data.reshape(int(image["height"]), int(image["width"]), 3)


@contextmanager
def deadline(seconds):
    """Fail (instead of hanging the suite) when the block runs longer than `seconds`."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------- odd files

ODD_NAMES = ["tab\tname.JPEG", "new\nline.JPEG"]
NARROW_16BIT = {"twelve.png": (0, 4095), "dim.png": (0, 30), "narrow.png": (291, 694)}


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """A tree salted with odd entries and images, compiled raw at the default max side 256."""
    base = tmp_path_factory.mktemp("odd")
    root = plain_tree(base / "root")
    cls = root / "train" / WNIDS[0]
    for name in ODD_NAMES:
        jpeg(cls / name, seed=5)
    jpeg(os.fsencode(cls) + b"/bad\xff.JPEG", seed=6)
    os.symlink(base / "nowhere.JPEG", cls / "gone.JPEG")
    jpeg(cls / "dir.JPEG" / "inner.JPEG")
    (cls / "odd\tnotes\n.txt").write_text("not an image")
    jpeg(root / "val" / "loose.JPEG")
    for name, (w, h) in {"one.png": (1, 1), "strip.png": (600, 2), "pano.png": (10000, 50), "thin.png": (300, 5),
                         "wide.png": (300, 40)}.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(cls / name)
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(cls / "i16.png")  # uint16: mode I;16
    Image.fromarray(np.linspace(0, 1, 48 * 64).reshape(48, 64).astype(np.float32), "F").save(cls / "float.tif")
    Image.fromarray(np.linspace(0, 4000, 48 * 64).reshape(48, 64).astype(np.int32), "I").save(cls / "int32.tif")
    for name, (low, high) in NARROW_16BIT.items():  # 12-bit and narrow-range 16-bit images
        Image.fromarray(np.linspace(low, high, 48 * 64).reshape(48, 64).astype(np.uint16)).save(cls / name)
    Image.fromarray(np.full((48, 64), 1000, np.uint16)).save(cls / "blank16.png")
    Image.new("RGBA", (40, 30), (10, 200, 30, 0)).save(cls / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg(cls / "rotated.JPEG", exif=exif.tobytes())
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(cls / "anim.JPEG", format="GIF", save_all=True, append_images=frames[1:])
    settings = fc.CompileSettings(write_mode="raw", num_workers=1)
    summary = fc.compile_imagenet(root, base / "out", settings)
    return base, root, summary


def by_name(rows):
    return {row["path"].rsplit("/", 1)[-1]: row for row in rows}


def test_every_entry_is_indexed_or_reported_whatever_its_name(odd):
    base, root, _ = odd
    skipped = by_name(fc.read_report(base / "out" / "skipped.jsonl"))
    index = load_index(base / "out" / "train_index.npz")
    names = {p.rsplit("/", 1)[-1] for p in index.path.tolist()}
    assert set(ODD_NAMES) <= names  # TAB and NEWLINE names are ordinary images
    assert "not valid UTF-8" in skipped["bad\udcff.JPEG"]["reason"] and skipped["bad\udcff.JPEG"]["image"]
    assert os.path.exists(root / skipped["bad\udcff.JPEG"]["path"])  # the name round-trips to the file
    assert skipped["gone.JPEG"]["reason"] == "broken symbolic link"
    assert skipped["dir.JPEG"]["reason"] == "folder inside a class folder (not searched)"
    assert skipped["odd\tnotes\n.txt"]["reason"] == "not an image file name (suffix .txt)"
    assert "beside the class folders of val/" in skipped["loose.JPEG"]["reason"]
    listed = set(os.listdir(root / "train" / WNIDS[0]))
    assert "bad\udcff.JPEG" in listed and listed <= names | set(skipped)  # nothing in the folder is in neither
    lines = (base / "out" / "skipped.jsonl").read_bytes().splitlines()
    assert len(lines) == len(skipped) and all(line.isascii() for line in lines)


def test_images_too_small_to_crop_are_skipped_at_compile_time(odd):
    base, _, summary = odd
    skipped = by_name(fc.read_report(base / "out" / "skipped.jsonl"))
    for name, stored in (("one.png", "1x1"), ("strip.png", "256x1"), ("pano.png", "256x1"), ("thin.png", "256x4")):
        assert f"would be stored as {stored}, shorter side under --min-side 8" in skipped[name]["reason"], name
    assert "wide.png" not in skipped
    for split in ("train", "val"):
        assert min(min(wh) for wh in beton_sizes(base / "out" / f"{split}.beton")) >= 8
    index = load_index(base / "out" / "train_index.npz")
    wide = index.path.tolist().index(f"train/{WNIDS[0]}/wide.png")
    assert beton_sizes(base / "out" / "train.beton")[wide] == (256, 34)


def test_min_side_at_max_side_64_and_no_hang(tmp_path):
    root = plain_tree(tmp_path / "root")
    cls = root / "train" / WNIDS[1]
    Image.new("RGB", (10000, 50), (1, 2, 3)).save(cls / "pano.png")  # 64x0 in FFCV's resize: used to hang the writer
    Image.new("RGB", (600, 2), (1, 2, 3)).save(cls / "strip.png")
    Image.new("RGB", (300, 40), (1, 2, 3)).save(cls / "wide.png")  # 64x9: kept
    with deadline(300):
        fc.compile_imagenet(root, tmp_path / "out", fc.CompileSettings(max_resolution=64, num_workers=2),
                            splits=("train",))
    skipped = by_name(fc.read_report(tmp_path / "out" / "skipped.jsonl"))
    assert "stored as 64x1" in skipped["pano.png"]["reason"] and "stored as 64x1" in skipped["strip.png"]["reason"]
    assert sorted(beton_sizes(tmp_path / "out" / "train.beton"))[0] == (40, 30) and \
        (64, 9) in beton_sizes(tmp_path / "out" / "train.beton")
    fc.compile_imagenet(root, tmp_path / "sq", fc.CompileSettings(square=16, num_workers=1), splits=("train",))
    skipped = by_name(fc.read_report(tmp_path / "sq" / "skipped.jsonl"))
    assert "600x2, shorter side under --min-side 8 (--square)" in skipped["strip.png"]["reason"]
    assert set(skipped) == {"strip.png"}  # 10000x50 has a 50-px side: its centre 16x16 is a fine square
    assert set(beton_sizes(tmp_path / "sq" / "train.beton")) == {(16, 16)}


def test_high_depth_images_are_scaled_and_noted(odd):
    base, root, _ = odd
    converted = by_name(fc.read_report(base / "out" / "converted.jsonl"))
    index = load_index(base / "out" / "train_index.npz")
    rows = {p.rsplit("/", 1)[-1]: i for i, p in enumerate(index.path.tolist())}
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64)
    def stored16(name):  # the uint16 values written to the file
        low, high = NARROW_16BIT[name]
        return np.linspace(low, high, 48 * 64).reshape(48, 64).astype(np.uint16).astype(float)
    cases = {"i16.png": (ramp / 257, "I;16 scaled to 8 bits as 16-bit (value x 255/65535)"),
             "float.tif": (np.linspace(0, 1, 48 * 64).reshape(48, 64) * 255, "F scaled to 8 bits (value x 255)"),
             "int32.tif": (np.linspace(0, 4000, 48 * 64).reshape(48, 64).astype(np.int32) * 255 / 4095,
                           "I scaled to 8 bits as 12-bit (value x 255/4095)"),
             # a 12-bit image fills the 8-bit range (it was 0..16 at value / 257)
             "twelve.png": (stored16("twelve.png") * 255 / 4095, "I;16 scaled to 8 bits as 12-bit (value x 255/4095)"),
             # narrow ranges are stretched (they were stored as all 0, and as 1..3)
             "dim.png": (stored16("dim.png") * 255 / 30,
                         "I;16 stretched from 0..30 to 0..255 (narrow range for 12 bits)"),
             "narrow.png": ((stored16("narrow.png") - 291) * 255 / (694 - 291),
                            "I;16 stretched from 291..694 to 0..255 (narrow range for 12 bits)")}
    for name, (want, note) in cases.items():
        got = raw_pixels(base / "out" / "train.beton", rows[name])
        assert np.abs(got[..., 0].astype(float) - want).max() <= 1.0, name  # neither white nor black
        assert (got[..., 0] == got[..., 1]).all() and note in converted[name]["notes"], name
        assert not any(n.startswith("near-constant") for n in converted[name]["notes"]), name
    assert any(n.startswith("near-constant after conversion") for n in converted["blank16.png"]["notes"])
    assert not any("near-constant" in " ".join(converted.get(n, {"notes": []})["notes"]) for n in ODD_NAMES)
    assert "alpha dropped" in " ".join(converted["alpha.png"]["notes"])
    assert "EXIF orientation 6 ignored" in " ".join(converted["rotated.JPEG"]["notes"])
    assert "animated: first of 2 frames stored" in converted["anim.JPEG"]["notes"]
    assert (raw_pixels(base / "out" / "train.beton", rows["anim.JPEG"])[0, 0] == [255, 0, 0]).all()


# ---------------------------------------------------------------------------------------------- writers

def test_a_dying_writer_fails_the_compile_naming_the_file(tmp_path, monkeypatch):
    root = plain_tree(tmp_path / "root")
    jpeg(root / "train" / WNIDS[0] / "die.JPEG")
    jpeg(root / "train" / WNIDS[1] / "boom.JPEG")
    original = fc.read_rgb

    def fragile(path, *args, **kwargs):
        if path.endswith("die.JPEG"):
            os.kill(os.getpid(), signal.SIGKILL)  # a segfaulting decoder, as seen by the parent
        if path.endswith("boom.JPEG"):
            raise ValueError("decoder exploded")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(fc, "read_rgb", fragile)
    for workers, match in ((1, r"killed by SIGKILL\) failed on .*die\.JPEG"), (2, r"die\.JPEG|boom\.JPEG")):
        with deadline(120), pytest.raises(FastloadError, match=match):
            fc.compile_imagenet(root, tmp_path / f"out{workers}", fc.CompileSettings(num_workers=workers),
                                splits=("train",))
    (root / "train" / WNIDS[0] / "die.JPEG").unlink()
    with deadline(120), pytest.raises(FastloadError, match=r"exit status 1\) failed on .*boom\.JPEG: ValueError: "
                                                           "decoder exploded"):
        fc.compile_imagenet(root, tmp_path / "out3", fc.CompileSettings(num_workers=2), splits=("train",))
    assert not list(tmp_path.glob(".out*"))  # no stage folder left


def test_sigkilled_compile_leaves_no_process_and_no_shared_memory(tmp_path):
    import psutil
    root = plain_tree(tmp_path / "root", per_class=20)
    script = (f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
              "from fastload import compile as fc\n"
              "slow = fc.read_rgb\n"
              "fc.read_rgb = lambda *a, **k: (time.sleep(0.5), slow(*a, **k))[1]\n"
              f"fc.compile_imagenet({str(root)!r}, {str(tmp_path / 'out')!r}, fc.CompileSettings(num_workers=2),"
              " splits=('train',))\n")
    shm_before = set(os.listdir("/dev/shm"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started, children = time.time(), []
        while len(children) < 2 or not list(tmp_path.glob(".out.compile-stage-*/.tmp-*train.beton")):
            assert proc.poll() is None and time.time() - started < 240, "compile ended before it could be killed"
            time.sleep(0.2)
            children = psutil.Process(proc.pid).children(recursive=True)  # the two writers, once at work
    finally:
        proc.kill()
        proc.wait()
    deadline_at = time.time() + 10
    alive = children
    while alive and time.time() < deadline_at:
        time.sleep(0.2)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"writer processes outlived the compile: {[c.pid for c in alive]}"
    assert not [n for n in set(os.listdir("/dev/shm")) - shm_before if n.startswith("psm_")]


# ---------------------------------------------------------------------------------------------- fingerprints

@pytest.fixture(scope="module")
def two_compiles(tmp_path_factory):
    """One tree compiled, then compiled again after one image was removed."""
    base = tmp_path_factory.mktemp("fp")
    root = plain_tree(base / "root")
    fc.compile_imagenet(root, base / "a", fc.CompileSettings(num_workers=1))
    (root / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG").unlink()
    fc.compile_imagenet(root, base / "b", fc.CompileSettings(num_workers=1))
    return base


def test_fingerprint_is_recorded_and_ties_manifests_to_their_beton(two_compiles, tmp_path):
    base = two_compiles
    summary = json.loads((base / "a" / "compile.json").read_text())
    assert summary["fingerprint"]["train"] == load_fingerprint(base / "a" / "train_index.npz")
    assert json.loads((base / "a" / "train.beton.json").read_text())["fingerprint"] == summary["fingerprint"]["train"]
    assert summary["fingerprint"]["train"] != json.loads((base / "b" / "compile.json").read_text())["fingerprint"]["train"]
    manifest = builder_for_index(base / "a" / "train_index.npz").build(Selection(per_class=2))
    manifest.save(tmp_path / "m.npz")
    loaded = load_manifest(tmp_path / "m.npz")
    assert loaded.fingerprint == summary["fingerprint"]["train"]
    check_source(loaded, base / "a" / "train.beton")
    check_source(tmp_path / "m.npz", base / "a" / "train.beton")
    with pytest.raises(FastloadError, match=r"m\.npz was built from another compile than .*b/train\.beton"):
        check_source(loaded, base / "b" / "train.beton")
    with pytest.raises(FastloadError, match="another compile"):
        fc.materialize(tmp_path / "m.npz", base / "b" / "train.beton", tmp_path / "sub.beton")
    assert not (tmp_path / "sub.beton").exists()
    loaded.fingerprint = ""
    with pytest.raises(FastloadError, match="records no fingerprint"):
        check_source(loaded, base / "a" / "train.beton")


def test_subset_cli_stores_the_fingerprint(two_compiles, tmp_path, capsys):
    base = two_compiles
    assert cli_main(["subset", "--index", str(base / "b" / "train_index.npz"), "--per-class", "1",
                     "--out", str(tmp_path / "m.npz")]) == 0
    assert load_manifest(tmp_path / "m.npz").fingerprint == load_fingerprint(base / "b" / "train_index.npz")


# ---------------------------------------------------------------------------------------------- checksums

def damaged_copy(src, dst, change):
    data = bytearray(Path(src).read_bytes())
    data = change(data)
    Path(dst).write_bytes(bytes(data))
    Path(f"{dst}.json").write_text(Path(f"{src}.json").read_text())
    return dst


def test_damaged_betons_are_refused_on_open_or_by_verify(two_compiles, tmp_path, capsys):
    beton = two_compiles / "a" / "train.beton"
    assert fb.check_beton(beton)["rows"] == 6
    assert "checksums ok" in fb.verify_beton(beton)
    size = beton.stat().st_size
    sidecar = json.loads(Path(f"{beton}.json").read_text())
    middle = (size // 2) & ~0xFFF

    def overwrite(data):
        data[middle:middle + 4096] = os.urandom(4096)
        return data

    cases = {"truncated": lambda d: d[: len(d) - 100], "empty": lambda d: bytearray(),
             "zeroed_header": lambda d: bytearray(64) + d[64:], "header_byte": lambda d: d[:9] + b"\x07" + d[10:]}
    for name, change in cases.items():
        bad = damaged_copy(beton, tmp_path / f"{name}.beton", change)
        with pytest.raises(FastloadError, match=f"{name}.beton"):
            fb.check_beton(bad)
    Path(tmp_path / "bare.beton").write_bytes(beton.read_bytes()[:-10])  # no sidecar: the header alone catches it
    with pytest.raises(FastloadError, match="truncated or damaged"):
        fb.check_beton(tmp_path / "bare.beton")
    bad = damaged_copy(beton, tmp_path / "middle.beton", overwrite)
    assert middle > sidecar["bytes"] // 4 and fb.check_beton(bad)  # image pages are not read on open...
    assert cli_main(["compile", "verify", str(bad)]) == 1  # ...but verify reads every one
    err = capsys.readouterr().err.strip()
    assert "middle.beton: bytes 0..67108863 differ" in err and len(err.splitlines()) == 1
    assert cli_main(["compile", "verify", str(two_compiles / "a")]) == 0
    assert capsys.readouterr().out.count("checksums ok") == 2


# ---------------------------------------------------------------------------------------------- OUT

def test_interrupted_recompile_leaves_the_previous_compile_whole(tmp_path, monkeypatch):
    from ffcv.writer import DatasetWriter
    root = plain_tree(tmp_path / "root")
    out = tmp_path / "out"
    fc.compile_imagenet(root, out, fc.CompileSettings(num_workers=1))
    (out / "my_notes.md").write_text("kept")
    def contents():
        return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".fastload.lock"}
    before = contents()
    jpeg(root / "train" / WNIDS[0] / "new.JPEG")

    def interrupted(self, allocations):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetWriter, "finalize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fc.compile_imagenet(root, out, fc.CompileSettings(num_workers=1))
    assert contents() == before
    assert len(fb.verify_compile(out)) == 2 and sorted(os.listdir(tmp_path)) == ["out", "root"]
    monkeypatch.undo()
    summary = fc.compile_imagenet(root, out, fc.CompileSettings(num_workers=1))
    assert summary["splits"]["train"] == 7 and (out / "my_notes.md").read_text() == "kept"
    assert len(load_index(out / "train_index.npz")) == 7


def test_a_second_writer_is_refused_and_a_file_is_no_out(tmp_path, capsys):
    root = plain_tree(tmp_path / "root")
    with OutputLock(tmp_path / "out", "fastload compile"):
        with pytest.raises(FastloadError, match=r"out is in use by fastload compile \(pid"):
            fc.compile_imagenet(root, tmp_path / "out", fc.CompileSettings(num_workers=1))
    (tmp_path / "file").write_text("x")
    assert cli_main(["compile", "imagenet", str(root), str(tmp_path / "file")]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- one-line errors

def test_damaged_inputs_and_bad_outputs_are_one_line_errors(two_compiles, tmp_path, capsys):
    base = two_compiles
    manifest = builder_for_index(base / "a" / "train_index.npz").build(Selection(per_class=1))
    data = Path(manifest.save(tmp_path / "m.npz")).read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "index.txt").write_text("path\tclass\n")
    (tmp_path / "file").write_text("x")
    cases = [
        (["compile", "materialize", str(tmp_path / "s.beton"), "--manifest", str(tmp_path / "cut.npz"),
          "--beton", str(base / "a" / "train.beton")], 1, "cut.npz is not a readable manifest"),
        (["subset", "--index", str(tmp_path / "index.txt"), "--out", str(tmp_path / "x.npz")], 1,
         "index.txt is not a readable index"),
        (["subset", "--index", str(base / "a" / "train_index.npz"), "--manifests", "paper", "--only", "full",
          "--out", str(tmp_path / "file")], 1, "file is a file"),
        (["subset", "--index", str(base / "a" / "train_index.npz"), "--out", str(tmp_path)], 1, "is a folder"),
        (["labelsets", "export", str(tmp_path / "file")], 1, "file exists and is not a folder"),
        (["labelsets", "show", str(tmp_path / "missing.tsv")], 1, "missing.tsv does not exist"),
        (["compile", "verify", str(tmp_path / "nothing")], 1, "nothing does not exist"),
    ]
    for argv, code, message in cases:
        assert cli_main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)


def test_subset_plan_flag_is_a_deprecated_alias(two_compiles, tmp_path, capsys):
    index = str(two_compiles / "a" / "train_index.npz")
    assert cli_main(["subset", "--index", index, "--plan", "paper", "--only", "full,full_x50",
                     "--out", str(tmp_path / "m")]) == 0
    assert "--plan is deprecated, use --manifests" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "m")) == ["full.npz", "full_x50.npz"]


# ---------------------------------------------------------------------------------------------- full disks

def error_lines(text):
    """The lines of captured stderr that are not progress bars."""
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip() and "img/s" not in line
            and "it/s" not in line and not line.startswith(("check ", "write "))]


def test_a_full_disk_is_one_line_and_keeps_the_previous_compile(tmp_path, small_disk, capfd, monkeypatch):
    root = plain_tree(tmp_path / "root")
    out = small_disk / "out"
    args = ["compile", "imagenet", str(root), str(out), "--write-mode", "raw", "--num-workers", "1"]
    assert cli_main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".fastload.lock"}
    filler = fill(small_disk, 4 << 20)  # 4 MiB left: less than one 8 MiB FFCV page
    capfd.readouterr()

    # refused before writing, from the index's estimate
    assert cli_main(args) == 1
    lines = error_lines(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"fastload compile: error: no space left on the device to write "
                                                   f"{out}: "), lines
    assert "MiB free there" in lines[0] and "needed" in lines[0]

    # the disk fills up while the writer processes write pages: the output is named, not an image
    monkeypatch.setattr(fc, "check_free_space", lambda *args: None)
    assert cli_main(args) == 1
    lines = error_lines(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("fastload compile: error: no space left on the device to write "
                                                   f"{out / 'train.beton'}: "), lines
    assert ".JPEG" not in lines[0] and "needed" in lines[0], lines
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".fastload.lock"}
    assert after == before  # byte-identical
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "out"]  # no stage or temp file left

    filler.unlink()  # space freed: the rerun finishes
    monkeypatch.undo()
    assert cli_main(args) == 0
    fb.verify_compile(out)
