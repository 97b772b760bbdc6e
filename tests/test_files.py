"""The atomic writer and the output-folder lock every stage uses."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastload.errors import FastloadError
from fastload.files import (LOCK_NAME, DiskFullError, OutputLock, atomic_open, atomic_path, check_free_space,
                            check_plain_name, publish_folder, remove_staging_folders, staged_folder, staging_name,
                            write_json, write_text)
from small_disk import fill, small_disk  # noqa: F401 (a fixture)


def test_atomic_path_keeps_extension_and_renames(tmp_path):
    target = tmp_path / "sub" / "arrays.npz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith("arrays.npz") and tmp.parent == target.parent
        np.savez(tmp, a=np.arange(3))  # numpy appends .npz unless the name already ends with it
        assert not target.exists()
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    assert os.listdir(target.parent) == ["arrays.npz"]


def test_failed_write_leaves_previous_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("new, half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_second_writer_is_refused_with_holder(tmp_path):
    with OutputLock(tmp_path / "out", "fastload pretrain"):
        with pytest.raises(FastloadError, match=r"in use by fastload pretrain \(pid %d on host" % os.getpid()):
            OutputLock(tmp_path / "out").acquire()
    OutputLock(tmp_path / "out").acquire().release()  # free again once released


def test_lock_of_a_killed_holder_is_not_stale(tmp_path):
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import os, signal
        from fastload.files import OutputLock
        OutputLock({str(out)!r}).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code])
    assert (out / ".fastload.lock").exists()  # the file stays behind ...
    OutputLock(out).acquire().release()  # ... but does not block the next writer


def test_lock_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FastloadError, match="not a folder"):
        OutputLock(tmp_path / "f").acquire()


# ---------------------------------------------------------------------------------------------- full disks

def test_a_full_disk_is_one_error_naming_the_path_and_the_bytes_needed(small_disk):
    target = small_disk / "results" / "table.json"
    write_json(target, {"old": 1})
    filler = fill(small_disk, 0)
    with pytest.raises(DiskFullError) as caught:
        write_text(target, "x" * 200_000)
    message = str(caught.value)
    assert message.startswith(f"no space left on the device to write {target}: ") and "\n" not in message
    assert "at least" in message and "needed" in message and caught.value.__cause__ is None
    with pytest.raises(DiskFullError, match="arrays.npz"):
        with atomic_path(small_disk / "arrays.npz") as tmp:
            np.savez(tmp, a=np.zeros(100_000))
    with pytest.raises(DiskFullError, match=r"64\.0 KiB \(65536 bytes\) needed"):  # a declared size is named
        with atomic_path(small_disk / "sized.bin", expected_bytes=65536) as tmp:
            tmp.write_bytes(b"y" * 300_000)
    assert target.read_text() == '{\n  "old": 1\n}\n'  # the previous file is intact, no temp file is left
    assert sorted(p.name for p in small_disk.rglob("*")) == ["filler", "results", "table.json"]
    filler.unlink()
    write_text(target, "new")
    assert target.read_text() == "new"


def test_a_feature_file_that_cannot_fit_is_refused_before_it_is_written(small_disk):
    """A memory-mapped feature file is reserved on disk first: a full disk is one error, not a SIGBUS mid-way."""
    from fastload.analysis.features import allocate
    target = small_disk / "features.npy"
    with pytest.raises(DiskFullError, match=f"to write {target}: .* free there, 97\\.7 MiB"):
        with atomic_path(target) as tmp:
            allocate(50_000, 1024, tmp, np.float16)
    assert not list(small_disk.iterdir())
    with atomic_path(target) as tmp:  # one that fits
        allocate(100, 8, tmp, np.float16)[:] = 1
    assert np.load(target).sum() == 800


def test_check_free_space_refuses_before_writing(tmp_path):
    check_free_space(tmp_path, 1, "small")
    with pytest.raises(DiskFullError, match=f"to write {tmp_path / 'huge'}: .* free there, .*needed"):
        check_free_space(tmp_path, 1 << 60, tmp_path / "huge")


# ---------------------------------------------------------------------------------------------- folders

def test_a_staged_folder_appears_whole_at_its_name(tmp_path):
    out = tmp_path / "sub" / "out"
    with staged_folder(out) as staging:
        assert staging == staging_name(out) == out.parent / f".out.tmp{os.getpid()}" and staging.is_dir()
        (staging / "a.txt").write_text("a")
        assert not out.exists()
        publish_folder(staging, out)
    assert (out / "a.txt").read_text() == "a" and os.listdir(out.parent) == ["out"]


def test_a_failed_staging_leaves_nothing_and_the_final_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError):
        with staged_folder(out, "compile-stage-") as staging:
            (staging / "half").write_text("x")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == []


def test_publishing_over_a_non_empty_folder_fails_unless_it_is_exchanged(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("old.beton", "notes.txt", LOCK_NAME, ".tmp-1-x"):
        (out / name).write_text("previous")
    with staged_folder(out) as staging:
        (staging / "new.beton").write_text("new")
        with pytest.raises(OSError):
            publish_folder(staging, out)
        publish_folder(staging, out, keep_previous=lambda name: name != "old.beton")
        assert sorted(os.listdir(staging)) == sorted([".tmp-1-x", LOCK_NAME, "old.beton"])  # the previous rest
    assert sorted(os.listdir(out)) == ["new.beton", "notes.txt"] and os.listdir(tmp_path) == ["out"]


def test_stale_staging_folders_are_removed_by_tag(tmp_path):
    for name in (".out.compile-stage-1", ".out.compile-stage-22", ".out.tmp3", ".other.compile-stage-4"):
        (tmp_path / name).mkdir()
    remove_staging_folders(tmp_path / "out", "compile-stage-")
    assert sorted(os.listdir(tmp_path)) == [".other.compile-stage-4", ".out.tmp3"]


# ---------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", ["..", ".", "../escaped", "/abs/path", "a/b", "", ".hidden", "a\\b", "x\ny", None,
                                  3])
def test_names_that_would_leave_their_folder_are_refused(name):
    with pytest.raises(FastloadError, match="names become file names") as caught:
        check_plain_name(name, "manifest name", "list.yaml")
    assert str(caught.value).startswith("list.yaml: manifest name ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["bottom_up_127", "run-1.a", "caf\u00e9_\u6f22\u5b57", "x@918"])
def test_plain_names_pass(name):
    assert check_plain_name(name, "run id") == name
