"""Writing result files so that a crash never leaves half of one: write a temporary file beside it, then rename."""
import json
import os
from pathlib import Path


def write_text(path, text: str) -> Path:
    """Write `text` to `path` atomically (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path, obj, indent: int = 2, default=None) -> Path:
    """Write `obj` as JSON (one trailing newline) to `path` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")
