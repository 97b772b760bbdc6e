"""Files that a crash never leaves half-written, and output folders that only one writer uses at a time.

Every file fastload writes goes through `atomic_path` (or `atomic_open`, `write_text`, `write_json` on top of
it): the data goes to a temporary file in the same folder, named `.tmp-<pid>-<name>` so it keeps its extension
(numpy, matplotlib and FFCV pick the format from it), and is renamed over the final name only once it is
complete. A crash leaves the previous file, or none, never a torn one.

`OutputLock` is an exclusive lock on an output folder (compile, pretrain, reproduce): a second writer is refused
with one line naming the holder's host and pid. The lock is a `flock` on `.fastload.lock` inside the folder, so
it is released by the kernel when its holder dies, even by SIGKILL: a stale lock file never blocks anyone.
"""
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import FastloadError

LOCK_NAME = ".fastload.lock"


def temp_path(path) -> Path:
    """The temporary name `atomic_path` writes `path` under (same folder, same extension)."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".tmp-")


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write `path` through; renamed over `path` when the block ends without error.

    On an error the temporary file is removed and the previous `path`, if any, is left as it was.
    Parent folders are created. Works for any writer that takes a file name (torch.save, np.savez,
    savefig, FFCV's DatasetWriter).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """`open()` for writing whose file appears at `path` only once it is complete (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def _fsync_file(path) -> None:
    if not Path(path).is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path, text: str) -> Path:
    """Write `text` to `path` atomically (parent folders created); returns the path."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_json(path, obj, indent: int = 2, default=None) -> Path:
    """Write `obj` as JSON (one trailing newline) to `path` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")


class OutputLock:
    """Exclusive use of an output folder by one fastload process: `with OutputLock(out, "fastload pretrain"):`.

    A second process asking for the same folder gets a FastloadError naming the holder (host, pid, command,
    start time). Held through `flock`, which the kernel drops when the holder exits or is killed.
    """

    def __init__(self, folder, command: str = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command or " ".join(["fastload"] + sys.argv[1:2])
        self._fd = None

    def acquire(self) -> "OutputLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise FastloadError(f"{self.folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FastloadError(f"{self.folder} is in use by {holder}; wait for it to finish or stop it "
                                "(one writer per output folder)") from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd) -> str:
    try:
        h = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"{h['command']} (pid {h['pid']} on host {h['host']}, since {h['since']})"
    except (ValueError, KeyError, UnicodeDecodeError):
        return "another fastload process"
