"""The results store: one append-only JSON-lines file (RESULTS/results.jsonl) that every step writes to.

Why JSON lines: each record is one `write()` of one line on a file opened with O_APPEND, under an exclusive
`flock` (Slurm jobs on the same file system append concurrently), followed by `fsync`. A crash can at worst leave
the last line torn; readers skip a torn line and the next writer starts on a fresh line, so earlier records are
never lost or changed. Records are never rewritten: a step's state is its latest record.

Every record holds: step, kind, status (started | done | failed | submitted | reset), run, evaluation, recipe, seed,
metrics, code_version, host, started / finished (UTC ISO), wall_s, fingerprint, argv, log, launcher, job_id.
"""
import errno
import fcntl
import json
import os
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .errors import FastloadError
from .files import DISK_FULL_ERRNOS, DiskFullError

STORE_NAME = "results.jsonl"
STATUSES = ("started", "done", "failed", "submitted", "reset")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_version() -> str:
    """The git commit of the fastload checkout ('-dirty' with uncommitted changes), or 'unknown' outside git."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit.stdout.strip()[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class ResultsStore:
    """Append records; read them back; say which steps are complete."""

    def __init__(self, results_dir):
        self.dir = Path(results_dir)
        self.path = self.dir / STORE_NAME
        self.torn_lines = 0

    def append(self, record: dict) -> dict:
        """Write one record durably. Fills in `time` and `host`; returns the record as written."""
        if record.get("status") not in STATUSES:
            raise FastloadError(f"results store {self.path}: status {record.get('status')!r} "
                                f"is not one of {', '.join(STATUSES)}")
        record = {"time": utc_now(), "host": socket.gethostname(), **record}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _ends_torn(fd):
                os.write(fd, b"\n")  # a writer died mid-line: start ours on a line of its own
            _write_whole_line(fd, line, self.path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return record

    def records(self) -> list:
        """Every intact record in write order (torn lines are skipped and counted in .torn_lines)."""
        if not self.path.exists():
            return []
        out, self.torn_lines = [], 0
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    self.torn_lines += 1
                    continue
                if isinstance(rec, dict) and "step" in rec:
                    out.append(rec)
        return out

    def latest(self) -> dict:
        """step id -> its latest record."""
        return {r["step"]: r for r in self.records()}

    def done(self) -> dict:
        """step id -> its latest 'done' record (a later 'started' of a re-run does not undo a completed result)."""
        out = {}
        for r in self.records():
            if r["status"] == "done":
                out[r["step"]] = r
        return out

    def is_done(self, step, done=None) -> bool:
        rec = (self.done() if done is None else done).get(step.id)
        return rec is not None and rec.get("fingerprint") == step.fingerprint()


def _write_whole_line(fd, line: bytes, path) -> None:
    """Append `line` and fsync; on a full disk the file is cut back to where it was (no torn line left behind)
    and one DiskFullError names the store and the bytes needed."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, line)
        if written != len(line):  # a short write: the file system ran out of room mid-line
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        os.ftruncate(fd, size)
        raise DiskFullError(path, needed=len(line)) from None


def _ends_torn(fd) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def base_record(step, status: str, **extra) -> dict:
    """The fields every record of a step carries."""
    return {"step": step.id, "kind": step.kind, "status": status, "run": step.run, "evaluation": step.evaluation,
            "recipe": step.recipe, "arch": step.arch, "seed": step.seed, "fingerprint": step.fingerprint(),
            "code_version": code_version(), **extra}


def read_metrics(path) -> dict:
    """A step's result (JSON, or a TSV table as {'rows': [...]}); a clear error when the command did not write it."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FastloadError(f"the step finished but wrote no result file {p}")
    if p.suffix == ".tsv":
        return {"rows": read_tsv(p)}
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise FastloadError(f"result file {p} is not valid JSON: {e}") from None


def read_tsv(path) -> list:
    """A header + rows TSV as a list of dicts, numbers converted."""
    import csv
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f, delimiter="\t")]


def _number(text):
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text
