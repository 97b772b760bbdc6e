"""The atomic writer and the output-folder lock every stage uses."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastload.errors import FastloadError
from fastload.files import OutputLock, atomic_open, atomic_path, write_text


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
