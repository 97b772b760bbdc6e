"""What made an analysis result, so that a rerun reuses it only when the same inputs would make it again; and one
writer per result file.

Each result of imagenet-cls, induction and coarse-fine records its inputs: the fingerprint of each checkpoint (a
hash of the file's bytes: a checkpoint trained again at the same path is another one), of each beton it read (the
index fingerprint of its rows plus the checksum of its tables, from its compile sidecar), the seed and every
setting that changes the numbers. A rerun whose --out already holds a result made from the same inputs prints
that result and computes nothing; one made from other inputs is refused with one line naming what differs (the
existing result is never overwritten by a result of other inputs: remove it, or give another --out).

`OutputFileLock` holds a result file for the whole analysis: a second analysis writing the same --out at once is
refused with one line naming the holder (the flock of fastload.files.OutputLock, on `.NAME.lock` beside the file,
so analyses writing other files of one folder, or a pre-training holding that folder, do not block each other).
"""
import hashlib
import json
import sys
from pathlib import Path

from ..errors import FastloadError
from ..files import OutputLock, write_json

HASH_BLOCK = 1 << 22


def file_fingerprint(path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): a checkpoint's identity, whatever its path or mtime."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(HASH_BLOCK), b""):
                digest.update(block)
    except OSError as e:
        raise FastloadError(f"{path}: cannot read it ({e.strerror})") from None
    return digest.hexdigest()[:16]


def beton_identity(path) -> str:
    """A beton's identity: the fingerprint of the index its rows follow and the checksum of its header and tables
    (two compiles of one index at other settings differ in the latter)."""
    from ..beton import beton_fingerprint, read_sidecar
    tables = read_sidecar(path).get("tables_sha256") or "unrecorded"
    return f"{beton_fingerprint(path)[:16]}/{tables[:16]}"


def inputs_of(checkpoints: dict, betons: dict, seed, settings: dict) -> dict:
    """The inputs record of a result: {name: checkpoint path} (None: not used), {split: beton path}, the seed
    and the settings (plain JSON values)."""
    return {"checkpoints": {name: file_fingerprint(p) for name, p in checkpoints.items() if p},
            "betons": {split: beton_identity(p) for split, p in betons.items()},
            "seed": seed, "settings": dict(settings)}


def differences(recorded: dict, now: dict) -> list:
    """Readable differences between two inputs records ('checkpoint model: 3fa1... there, 77bd... now')."""
    names = {"checkpoints": "checkpoint", "betons": "beton", "seed": "seed", "settings": "setting"}
    out = []
    for key, label in names.items():
        was, new = recorded.get(key), now.get(key)
        if isinstance(new, dict) and isinstance(was, dict):
            for name in sorted(set(was) | set(new)):
                if was.get(name) != new.get(name):
                    out.append(f"{label} {name}: {was.get(name, 'none')} there, {new.get(name, 'none')} now")
        elif was != new:
            out.append(f"{label}: {was} there, {new} now")
    return out


def reusable(out, recorded, now: dict) -> bool:
    """True when `out` exists and was made from the inputs `now`; False when it does not exist; a FastloadError
    naming what differs when it was made from other inputs (or records none)."""
    if not Path(out).exists():
        return False
    if not isinstance(recorded, dict):
        raise FastloadError(f"{out} exists but records no inputs (not written by this version of fastload): "
                            "remove it or give another --out")
    diff = differences(recorded, now)
    if diff:
        raise FastloadError(f"{out} holds a result of other inputs ({'; '.join(diff)}): remove it or give "
                            "another --out")
    return True


def read_json_result(out) -> dict:
    try:
        result = json.loads(Path(out).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise FastloadError(f"{out}: exists but is not a readable result ({e}): remove it or give another --out") \
            from None
    if not isinstance(result, dict):
        raise FastloadError(f"{out}: exists but is not a result of this analysis: remove it or give another --out")
    return result


def sidecar_path(out) -> Path:
    """Where the inputs of a result that is not JSON (coarse-fine's TSV) are recorded."""
    return Path(f"{out}.inputs.json")


def read_sidecar_inputs(out):
    try:
        return json.loads(sidecar_path(out).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def write_sidecar_inputs(out, inputs: dict) -> None:
    write_json(sidecar_path(out), inputs)


class OutputFileLock(OutputLock):
    """Exclusive use of one output file: `with OutputFileLock(out, "fastload induction"):`. A second holder gets a
    FastloadError naming the first (command, pid, host, since)."""

    def __init__(self, path, command: str = None):
        path = Path(path)
        super().__init__(path.parent, command or " ".join(["fastload"] + sys.argv[1:2]))
        self.file = path
        self.path = path.parent / f".{path.name}.lock"

    def busy_message(self, holder: str) -> str:
        return f"{self.file} is being written by {holder}; wait for it to finish or stop it (one writer per result file)"


def reuse_json(out, inputs: dict):
    """The JSON result in `out` when the inputs `inputs` made it (printing that it is reused); None when `out` does
    not exist; FastloadError naming what differs when other inputs made it."""
    if not Path(out).exists():
        return None
    result = read_json_result(out)
    reusable(out, result.get("inputs"), inputs)
    print(f"{out}: made from the same checkpoint(s), betons, seed and settings: reused, nothing computed")
    return result


def reuse_with_sidecar(out, inputs: dict) -> bool:
    """`reuse_json` for a result whose inputs are in its sidecar (sidecar_path): True when it is reused."""
    if not Path(out).exists():
        return False
    reusable(out, read_sidecar_inputs(out), inputs)
    print(f"{out}: made from the same checkpoint(s), betons, seed and settings: reused, nothing computed")
    return True


# what the analyses' --out help says of reuse (fastload/commands)
REUSE_HELP = ("; an OUT that exists is reused (nothing computed) when the same checkpoint(s), betons, seed and "
              "settings made it, and refused with one line naming what differs otherwise; a second run writing "
              "OUT at the same time is refused")
