"""Files that a crash never leaves half-written, and output folders that only one writer uses at a time.

Every file fastload writes goes through `atomic_path` (or `atomic_open`, `write_text`, `write_json` on top of
it): the data goes to a temporary file in the same folder, named `.tmp-<pid>-<name>` so it keeps its extension
(numpy, matplotlib and FFCV pick the format from it), and is renamed over the final name only once it is
complete. A crash leaves the previous file, or none, never a torn one.

A full disk (ENOSPC, or EDQUOT past a quota) while writing is one `DiskFullError` naming the final path, the
bytes free there and the bytes needed: the temporary file is removed, the previous file kept, and the message
is printed on one line by the command line (exit status 1). `check_free_space` refuses a long job before it
starts when an estimate of its output does not fit.

`check_plain_name` is the one check for a name read from a file (a manifest list, a plan) that becomes a file
or folder name: one path component, so no entry can write outside the folder it belongs in.

`staged_folder` and `publish_folder` do for a folder what `atomic_path` does for a file: the folder is built in a
sibling `.NAME.TAG<pid>` (same file system, so the publishing rename is atomic) and appears at its final name in
one rename once complete; a crash leaves the previous folder, or none, and at most a staging sibling. A folder
that replaces a non-empty one (a recompile) is exchanged with it in one rename, and chosen entries of the previous
one are moved into it.

`OutputLock` is an exclusive lock on an output folder (compile, pretrain, reproduce): a second writer is refused
with one line naming the holder's host and pid. The lock is a `flock` on `.fastload.lock` inside the folder, so
it is released by the kernel when its holder dies, even by SIGKILL: a stale lock file never blocks anyone.
"""
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import FastloadError

LOCK_NAME = ".fastload.lock"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a full disk as a RuntimeError without an errno ("basic_ios::clear: iostream error", then
# "unexpected pos ..."): a RuntimeError while writing is taken for a full disk when the file system has less left
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(FastloadError):
    """No space left where `path` is written: names the path, the bytes free there and the bytes needed."""

    def __init__(self, path, needed: int = None, free: int = None, at_least: bool = False):
        self.path, self.needed = Path(path), needed
        self.free = free_bytes(self.path) if free is None else free
        if needed is None:
            need = "more space"
        else:
            need = f"{'at least ' if at_least else ''}{format_bytes(needed)} ({needed} bytes)"
        super().__init__(f"no space left on the device to write {self.path}: {format_bytes(self.free)} free there, "
                         f"{need} needed; free space or choose another output folder and rerun (finished files "
                         "are kept and the previous output is intact)")


def format_bytes(n) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def free_bytes(path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path` (or its nearest existing
    parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def is_disk_full(error: BaseException, path=None) -> bool:
    """True for ENOSPC/EDQUOT, and for a RuntimeError (torch.save's write errors carry no errno) raised while
    writing `path` on a file system that has under NEARLY_FULL_BYTES left."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError):
        return error.errno in DISK_FULL_ERRNOS
    return isinstance(error, RuntimeError) and path is not None and free_bytes(path) < NEARLY_FULL_BYTES


def reserve_space(path, nbytes: int) -> None:
    """Allocate the first `nbytes` of the existing file `path` on disk now (posix_fallocate). A file written
    through a memory map (np.lib.format.open_memmap) is sparse: a full disk would kill the writer with SIGBUS at
    the page it cannot store, with no message; reserved, it fails here, as one DiskFullError."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        raise DiskFullError(path, needed=nbytes) from None
    finally:
        os.close(fd)


def check_free_space(folder, needed: int, what: str) -> None:
    """DiskFullError before a job starts when `needed` bytes (its estimated output) exceed the free space in
    `folder`. `what` names the output for the message."""
    free = free_bytes(folder)
    if needed > free:
        raise DiskFullError(what, needed=needed, free=free)


def check_plain_name(name, what: str, where: str = "") -> str:
    """`name` as a str when it is a plain file or folder name: one path component, not empty, no '/' or '\\', not
    '.' or '..', not starting with '.' (hidden, and the temporary files' prefix), no NUL or line break. Else a
    FastloadError naming `what` (e.g. "manifest name") and `where` (the file it was read from)."""
    text = name if isinstance(name, str) else None
    problem = ("must be a string" if text is None else "is empty" if not text
               else "contains a path separator" if "/" in text or "\\" in text
               else "starts with '.'" if text.startswith(".")
               else "contains a control character" if any(ord(c) < 32 for c in text) else "")
    if problem:
        prefix = f"{where}: " if where else ""
        raise FastloadError(f"{prefix}{what} {name!r} {problem}: names become file names, so they must be one plain "
                            "path component (no '/', not '..', not starting with '.')")
    return text


def temp_path(path) -> Path:
    """The temporary name `atomic_path` writes `path` under (same folder, same extension)."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".tmp-")


@contextmanager
def atomic_path(path, expected_bytes: int = None):
    """Yield a temporary path to write `path` through; renamed over `path` when the block ends without error.

    On an error the temporary file is removed and the previous `path`, if any, is left as it was; a full disk
    becomes one DiskFullError naming `path` and the bytes needed (`expected_bytes` when the caller knows them, else
    at least what had been written). Parent folders are created. Works for any writer that takes a file name
    (torch.save, np.savez, savefig, FFCV's DatasetWriter).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(path, needed=expected_bytes) from None
        raise
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if isinstance(e, DiskFullError) and e.path == tmp:  # reserve_space on the temporary file: name the real one
            raise DiskFullError(path, needed=e.needed, free=e.free) from None
        if not is_disk_full(e, tmp) or isinstance(e, DiskFullError):
            raise
        written = tmp.stat().st_size if tmp.exists() else 0
        if tmp.exists():
            tmp.unlink()
        if expected_bytes:
            raise DiskFullError(path, needed=expected_bytes) from None
        # unknown size: at least what got written, and about the size of the file it would replace
        previous = path.stat().st_size if path.is_file() else 0
        raise DiskFullError(path, needed=max(written + 1, previous), at_least=True) from None
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


def read_yaml(path, what: str):
    """The document of a YAML file read by the safe loader (no Python tags: nothing in the file is executed), as
    UTF-8 whatever the locale. Unreadable, not UTF-8 or not valid YAML: one FastloadError line naming the file,
    `what` it is and the line and column."""
    import yaml
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FastloadError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise FastloadError(f"{what} {path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise FastloadError(f"{what} {path}: not valid YAML{yaml_error_where(e)}: {yaml_error_text(e)}") from None


def yaml_error_where(error) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def yaml_error_text(error) -> str:
    """A YAML error's problem on one line ('could not determine a constructor for the tag ...', without the
    multi-line source excerpt PyYAML appends)."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    text = "; ".join(str(p) for p in parts if p) or str(error).splitlines()[0]
    return " ".join(text.split())


def staging_name(final, tag: str = "tmp") -> Path:
    """The sibling folder `final` is built in before it is published: `.NAME.TAG<pid>` beside it."""
    final = Path(final)
    return final.parent / f".{final.name}.{tag}{os.getpid()}"


@contextmanager
def staged_folder(final, tag: str = "tmp"):
    """Yield a fresh, empty staging folder beside `final` (staging_name; parent folders created); it is removed
    when the block ends, whatever happened. Publish it inside the block with publish_folder: afterwards it is gone,
    or holds the previous folder that the exchange put there."""
    staging = staging_name(final, tag)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_folder(staging, final, keep_previous=None) -> None:
    """Put the finished `staging` folder at `final` in one rename.

    Without `keep_previous`: `final` must be absent or an empty folder (replaced); an OSError when another process
    published a non-empty one first. With `keep_previous(name)`: `final` is exchanged with `staging` in one rename
    (exchange_folders), then each entry of the previous `final` for which it returns True is moved into the new
    one (never the lock file or a temporary file); the rest of the previous folder is left in `staging`."""
    staging, final = Path(staging), Path(final)
    if keep_previous is None:
        os.replace(staging, final)
        return
    exchange_folders(staging, final)
    for entry in staging.iterdir():
        if entry.name != LOCK_NAME and not is_temp_name(entry.name) and keep_previous(entry.name):
            os.rename(entry, final / entry.name)


def remove_staging_folders(final, tag: str) -> None:
    """Every `.NAME.TAG*` staging folder beside `final`, left by killed writers. Only for a caller that holds
    `final`'s OutputLock: no live writer of `final` then owns one."""
    final = Path(final)
    if final.parent.is_dir():
        for entry in final.parent.iterdir():
            if entry.name.startswith(f".{final.name}.{tag}") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


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
            raise FastloadError(self.busy_message(holder)) from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def busy_message(self, holder: str) -> str:
        return f"{self.folder} is in use by {holder}; wait for it to finish or stop it (one writer per output folder)"

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
