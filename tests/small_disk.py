"""A small file system for disk-full tests (not a test module): a tmpfs mounted on a folder, unmounted after.

Mounting needs root (CI runs as root); elsewhere the tests that use it are skipped, saying why."""
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path):
    """An 80 MiB tmpfs at tmp_path/disk (room for a tiny compile and its recompile: FFCV writes 8 MiB pages); use
    `fill` to leave only a little free."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder, leave_bytes: int) -> Path:
    """Write a filler file in `folder` so that about `leave_bytes` stay free; returns it (delete it to free space)."""
    filler = Path(folder) / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler
