"""Classification transfer data: the SUN397 layout reader, `fastload compile cls` (pixels equal to the file
pipeline's warp, reports, checksums, errors) on tiny synthetic SUN397 folders."""
import json

import cv2
import numpy as np
import pytest

from fastload.beton import verify_compile
from fastload.ffcv_writer import StoredImages
from fastload.compile_cls import ClsSettings, compile_cls, decode_warped, layout_options
from fastload.errors import DataError, FastloadError, UsageError
from fastload.transfer_data import LAYOUTS
from fastload.transfer_data.sun397 import read_sun397


@pytest.fixture(scope="module")
def sun_root(tmp_path_factory):
    from fastload.synth.sun import write_sun
    root = tmp_path_factory.mktemp("sun") / "data"
    write_sun(root, classes=3, train_per_class=3, test_per_class=2, size="70x50", seed=0, partitions=2)
    return root


@pytest.fixture(scope="module")
def compiled(sun_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "sun"
    compile_cls("sun397", sun_root, out, ClsSettings(side=64, num_workers=1), {"partition": 2})
    return out


def stored_image(beton, row):
    mode, width, height, payload = StoredImages(beton, [row])[0][0]
    return payload.reshape(height, width, 3)


def test_sun397_reads_the_partition_files(sun_root):
    classes = tuple((sun_root / "Partitions" / "ClassName.txt").read_text().split())
    for partition in (1, 2):
        listing = read_sun397(sun_root, partition=partition)
        assert listing.classes == classes and listing.metric == "mean_class_acc" == LAYOUTS["sun397"].metric
        for split, stem, per_class in (("train", "Training", 3), ("test", "Testing", 2)):
            lines = (sun_root / "Partitions" / f"{stem}_{partition:02d}.txt").read_text().split()
            samples = listing.splits[split]
            assert [s.path for s in samples] == ["SUN397" + line for line in lines] and len(lines) == 3 * per_class
            assert [classes[s.label] for s in samples] == [line.rsplit("/", 1)[0] for line in lines]
            assert all((sun_root / s.path).is_file() for s in samples)


def test_sun397_errors_name_the_file_and_line(sun_root, tmp_path):
    import shutil
    root = tmp_path / "sun"
    shutil.copytree(sun_root, root)
    with pytest.raises(UsageError, match="partition 11"):
        read_sun397(root, partition=11)
    bad = root / "Partitions" / "Training_01.txt"
    bad.write_text(bad.read_text() + "not/a/path.jpg\n")
    with pytest.raises(DataError, match=r"Training_01.txt:\d+: 'not/a/path.jpg'"):
        read_sun397(root, partition=1)
    with pytest.raises(DataError, match="Training_03.txt does not exist"):
        read_sun397(root, partition=3)
    lines = (sun_root / "Partitions" / "Training_01.txt").read_text().split()
    bad.write_text("\n".join(lines + [lines[0]]) + "\n")  # an image listed twice
    with pytest.raises(DataError, match=rf"Training_01.txt:{len(lines) + 1}: {lines[0]} is listed twice"):
        read_sun397(root, partition=1)
    first_class = lines[0].rsplit("/", 1)[0]
    bad.write_text("\n".join(line for line in lines if not line.startswith(first_class + "/")) + "\n")
    with pytest.raises(DataError, match=rf"Training_01.txt: no training image of 1 class\(es\).*{first_class}"):
        read_sun397(root, partition=1)


def test_layout_options_are_checked():
    assert layout_options("sun397", ["partition=3"]) == {"partition": 3}
    with pytest.raises(UsageError, match="partition=1"):
        layout_options("sun397", ["split=2"])
    with pytest.raises(UsageError, match="sun397"):
        layout_options("caltech", [])
    with pytest.raises(UsageError, match=r"--option 'partition=two': partition takes a int \(default 1\)"):
        layout_options("sun397", ["partition=two"])


def test_compile_writes_every_split_with_reports_and_checksums(compiled, sun_root):
    info = json.loads((compiled / "compile.json").read_text())
    assert info["layout"] == "sun397" and info["options"] == {"partition": 2} and info["metric"] == "mean_class_acc"
    assert info["splits"] == {"train": 9, "test": 6} and info["skipped"] == 0
    assert (compiled / "classes.txt").read_text().split() == list(read_sun397(sun_root, 2).classes)
    lines = verify_compile(compiled)
    assert len(lines) == 2 and all("checksums ok" in line for line in lines)
    sidecar = json.loads((compiled / "train.beton.json").read_text())
    assert sidecar["image_size"] == [64, 64] and sidecar["rows"] == 9 and sidecar["write_mode"] == "raw"


def test_stored_pixels_equal_the_file_pipelines_resize(compiled, sun_root):
    """Row i of each beton holds the listing's i-th image as LoadImageFromFile + Resize(keep_ratio=False) give it
    (BGR there), in RGB order, byte for byte, with its label."""
    pytest.importorskip("mmcv")
    from mmcv.transforms import LoadImageFromFile, Resize
    listing = read_sun397(sun_root, 2)
    for split in ("train", "test"):
        for row, sample in enumerate(listing.splits[split]):
            results = LoadImageFromFile()(dict(img_path=str(sun_root / sample.path)))
            warped = Resize(scale=(64, 64), keep_ratio=False)(results)["img"]
            stored = stored_image(compiled / f"{split}.beton", row)
            assert stored.shape == (64, 64, 3) and np.array_equal(stored, warped[:, :, ::-1])
            assert StoredImages(compiled / f"{split}.beton", [row])[0][1] == sample.label


def test_a_damaged_file_is_skipped_and_reported(sun_root, tmp_path):
    import shutil
    root = tmp_path / "sun"
    shutil.copytree(sun_root, root)
    victim = read_sun397(root, 1).splits["train"][0].path
    (root / victim).write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    compile_cls("sun397", root, out, ClsSettings(side=32, num_workers=1))
    rows = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [victim] and "cannot decode" in rows[0]["reason"]
    assert json.loads((out / "compile.json").read_text())["splits"]["train"] == 8
    with pytest.raises(FastloadError, match="--strict"):
        compile_cls("sun397", root, tmp_path / "strict", ClsSettings(side=32, num_workers=1, strict=True))
    assert not (tmp_path / "strict" / "train.beton").exists()


def test_decode_warped_applies_the_box(sun_root):
    path = str(sun_root / read_sun397(sun_root, 1).splits["test"][0].path)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    expected = cv2.resize(bgr[5:40, 10:60], (16, 16), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    assert np.array_equal(decode_warped(path, 16, box=(10, 5, 60, 40)), expected)


def test_cli_compile_cls(cli, sun_root, tmp_path):
    proc = cli("compile", "cls", "sun397", sun_root, tmp_path / "out", "--side", "32", "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "train 9 images, test 6 images, 3 classes" in proc.stdout
    proc = cli("compile", "cls", "sun397", sun_root, tmp_path / "bad", "--option", "partition=0")
    assert proc.returncode == 2 and "partition" in proc.stderr


def test_a_compile_into_a_folder_being_read_is_refused_naming_the_reader(cli, sun_root, tmp_path):
    """A transfer reading a compiled folder (FFCV memory-maps its betons) must not have the folder swapped under it:
    the recompile is refused with one line naming the reader; once the reader is gone it goes through."""
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    assert cli("compile", "cls", "sun397", sun_root, out, "--side", "32", "--num-workers", "1").returncode == 0
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time, numpy as np; "
                               f"m = np.memmap({str(out / 'train.beton')!r}, mode='r'); print('mapped', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "mapped"
        proc = cli("compile", "cls", "sun397", sun_root, out, "--side", "32", "--num-workers", "1")
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"{out} is being read by pid {reader.pid} (" in proc.stderr and "np.memmap" in proc.stderr
    finally:
        reader.kill()
        reader.wait()
    time.sleep(0.1)
    assert cli("compile", "cls", "sun397", sun_root, out, "--side", "32", "--num-workers", "1").returncode == 0


def test_exif_orientation_is_applied_as_opencv_does(sun_root, tmp_path):
    """LoadImageFromFile decodes with cv2.IMREAD_COLOR, which turns an image by its EXIF orientation: so does
    compile, and converted.jsonl says so."""
    import shutil

    from PIL import Image
    root = tmp_path / "sun"
    shutil.copytree(sun_root, root)
    sample = read_sun397(root, 1).splits["train"][0]
    with Image.open(root / sample.path) as im:
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(root / sample.path, exif=exif.tobytes(), quality=95)
    out = tmp_path / "out"
    compile_cls("sun397", root, out, ClsSettings(side=40, num_workers=1))
    notes = [json.loads(line) for line in (out / "converted.jsonl").read_text().splitlines()]
    assert notes == [{"path": sample.path, "split": "train",
                      "notes": ["EXIF orientation 6 applied (OpenCV's IMREAD_COLOR, as LoadImageFromFile decodes)"]}]
    turned = cv2.imread(str(root / sample.path), cv2.IMREAD_COLOR)
    assert turned.shape[0] > turned.shape[1]   # 70x50 stored, 50x70 once turned
    expected = cv2.resize(turned, (40, 40), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    assert np.array_equal(stored_image(out / "train.beton", 0), expected)
