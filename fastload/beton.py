"""A compiled folder's files and the checks that its betons are whole: the reading side of `fastload compile`.

A compile folder OUT holds, per split: {split}.beton (FFCV: fields image, label), {split}.beton.json (its sidecar:
what the beton holds, the fingerprint of its index, its size and checksums), {split}_index.npz (row i = beton
row i); and once: classes.txt and compile.json. Each name has one function or constant here; everything that
reads a compile folder (the loaders, the trainer, manifests, analyses, benchmarks) finds its files through them
and imports nothing of fastload.compile, the writer.

A materialized beton (`fastload compile materialize`) follows the same rule with any stem: SUB.beton,
SUB.beton.json, SUB_index.npz.

Checks, none of which reads an image page unless asked: `check_beton` (the header is whole and matches the size
and tables checksum in the sidecar; run wherever a beton is opened), `verify_beton` / `verify_compile` (every
CHUNK_BYTES of the file against its checksum), `beton_fingerprint` (which index the rows follow).
"""
import json
from pathlib import Path

import numpy as np

from . import index as index_mod
from .errors import FastloadError
from .files import write_json

BETON_SUFFIX = ".beton"
SIDECAR_SUFFIX = ".json"  # appended to the beton's own name: train.beton -> train.beton.json
INDEX_SUFFIX = "_index.npz"
CLASSES_FILE = "classes.txt"
COMPILE_FILE = "compile.json"
CHUNK_BYTES = 1 << 26  # 64 MiB per checksum: ~1700 for a 110 GB beton


# ---------------------------------------------------------------------------------------------- file names

def beton_name(split: str) -> str:
    return f"{split}{BETON_SUFFIX}"


def index_name(split: str) -> str:
    return f"{split}{INDEX_SUFFIX}"


def sidecar_name(split: str) -> str:
    return beton_name(split) + SIDECAR_SUFFIX


def beton_path(folder, split: str) -> Path:
    return Path(folder) / beton_name(split)


def index_path(folder, split: str) -> Path:
    return Path(folder) / index_name(split)


def sidecar_path(beton) -> Path:
    """BETON.json beside the beton."""
    return Path(f"{beton}{SIDECAR_SUFFIX}")


def split_of(beton) -> str:
    """The stem a beton's index and sidecar are named after: 'train' for OUT/train.beton."""
    return Path(beton).name.removesuffix(BETON_SUFFIX)


def index_beside(beton) -> Path:
    """The index a beton's rows follow: STEM_index.npz in the beton's folder."""
    return Path(beton).with_name(index_name(split_of(beton)))


def split_file_names(split: str) -> set:
    """The names one split occupies in a compile folder: beton, sidecar, index."""
    return {beton_name(split), sidecar_name(split), index_name(split)}


def read_classes(folder) -> tuple:
    """The class names of a compile folder (classes.txt, label order)."""
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        raise FastloadError(f"{path} does not exist: {folder} is not a `fastload compile` folder")
    return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)


# ---------------------------------------------------------------------------------------------- the sidecar

def read_sidecar(beton) -> dict:
    """BETON.json (what the beton holds, its fingerprint and checksums); {} when the beton has none."""
    path = sidecar_path(beton)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FastloadError(f"{path}: the beton's sidecar is not valid JSON ({e}); recompile") from None


def write_sidecar(beton, description: dict, fingerprint: str) -> None:
    """BETON.json for a complete beton: `description` (what it holds, for a reader who has only the folder), the
    fingerprint of the index its rows follow, and the size and checksums check_beton and verify_beton compare."""
    write_json(sidecar_path(beton), {**description, "fingerprint": fingerprint, **describe_file(beton)})


def describe_file(path) -> dict:
    """The sidecar entries check_beton and verify_beton compare against (written when the beton is complete)."""
    regions = beton_regions(path)
    return {"bytes": regions["size"], "tables_sha256": tables_checksum(path, regions), "chunk_bytes": CHUNK_BYTES,
            "chunk_sha256": chunk_checksums(path)}


# ---------------------------------------------------------------------------------------------- checksums

def beton_regions(path) -> dict:
    """The regions of an FFCV beton read from its header, checked against the file size; FastloadError (naming the
    file) for anything that is not a whole beton: missing, empty, truncated, a zeroed or foreign header."""
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType, get_handlers, \
        get_metadata_type
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"beton {path} does not exist" if not path.exists() else f"{path} is not a beton file")
    size = path.stat().st_size
    if size < HeaderType.itemsize:
        raise FastloadError(f"{path} is not a beton: {size} bytes, shorter than an FFCV header (truncated?)")
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if header["version"] != CURRENT_VERSION or not 1 <= header["num_fields"] <= 64:
        raise FastloadError(f"{path} is not an FFCV beton (format version {header['version']}, "
                            f"{header['num_fields']} fields): a zeroed, foreign or damaged header")
    descriptors_end = HeaderType.itemsize + FieldDescType.itemsize * int(header["num_fields"])
    if descriptors_end > size:
        raise FastloadError(f"{path} is truncated: {size} bytes, its header needs {descriptors_end}")
    try:
        descriptors = np.fromfile(path, dtype=FieldDescType, count=int(header["num_fields"]),
                                  offset=HeaderType.itemsize)
        metadata_type = get_metadata_type(get_handlers(descriptors))
    except Exception as e:  # unknown field type ids: FFCV raises KeyError/TypeError/ValueError
        raise FastloadError(f"{path}: damaged field descriptors ({type(e).__name__}: {e})") from None
    metadata_end = descriptors_end + int(header["num_samples"]) * metadata_type.itemsize
    table = int(header["alloc_table_ptr"])
    if not metadata_end <= table <= size or (size - table) % ALLOC_TABLE_TYPE.itemsize:
        raise FastloadError(f"{path} is truncated or damaged: {size} bytes, but its header puts "
                            f"{header['num_samples']} rows' metadata up to byte {metadata_end} and the allocation "
                            f"table at byte {table}")
    return {"size": size, "rows": int(header["num_samples"]), "metadata_end": metadata_end, "table": table}


def tables_checksum(path, regions: dict) -> str:
    """sha256 of the header, field descriptors, row metadata and allocation table (everything but image pages)."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(regions["metadata_end"]))
        f.seek(regions["table"])
        digest.update(f.read())
    return digest.hexdigest()


def chunk_checksums(path):
    """sha256 of every CHUNK_BYTES of the file, in order."""
    import hashlib
    out = []
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            out.append(hashlib.sha256(block).hexdigest())
    return out


# ---------------------------------------------------------------------------------------------- checks

def check_beton(path) -> dict:
    """Check a beton before opening it: whole by its header (beton_regions) and, when it has a sidecar, of the size
    and header/tables checksum recorded at compile time. Reads no image pages. Returns the sidecar ({} if none)."""
    regions = beton_regions(path)
    sidecar = read_sidecar(path)
    if "bytes" not in sidecar:
        return sidecar
    if regions["size"] != sidecar["bytes"]:
        raise FastloadError(f"{path} is {regions['size']} bytes but was written as {sidecar['bytes']} "
                            f"(see {path}.json): truncated or damaged copy")
    if tables_checksum(path, regions) != sidecar["tables_sha256"]:
        raise FastloadError(f"{path}: header or row tables differ from the ones written (checksum in {path}.json): "
                            "damaged beton; run `fastload compile verify` and recompile or copy it again")
    return sidecar


def verify_beton(path) -> str:
    """check_beton plus every page checksum; returns a one-line summary, raises FastloadError at the first bad
    chunk (with its byte range)."""
    sidecar = check_beton(path)
    if "chunk_sha256" not in sidecar:
        raise FastloadError(f"{path} has no checksums (no {path}.json from `fastload compile`): cannot verify")
    for k, (got, want) in enumerate(zip(chunk_checksums(path), sidecar["chunk_sha256"])):
        if got != want:
            start = k * sidecar["chunk_bytes"]
            raise FastloadError(f"{path}: bytes {start}..{start + sidecar['chunk_bytes'] - 1} differ from the ones "
                                "written (checksum mismatch): damaged beton; recompile or copy it again")
    return f"{path}: {sidecar.get('rows', '?')} rows, {sidecar['bytes']} bytes, {len(sidecar['chunk_sha256'])} " \
           "checksums ok"


def beton_fingerprint(path) -> str:
    """The fingerprint of the index a beton's rows follow: from BETON.json, else from STEM_index.npz beside it."""
    sidecar = read_sidecar(path)
    if sidecar.get("fingerprint"):
        return sidecar["fingerprint"]
    index = index_beside(path)
    if index.is_file():
        return index_mod.load_fingerprint(index)
    raise FastloadError(f"{path}: no {sidecar_path(path).name} or {index.name} beside it tells which compile it "
                        "comes from; recompile it with `fastload compile`")


def verify_compile(out) -> list:
    """`fastload compile verify OUT`: every beton of a compile folder (or one beton) in full, and each index
    against its beton's fingerprint. Returns one line per beton; FastloadError at the first problem."""
    out = Path(out)
    betons = [out] if out.is_file() else sorted(out.glob(f"*{BETON_SUFFIX}")) if out.is_dir() else []
    if not betons:
        raise FastloadError(f"{out}: no .beton file to verify" if out.exists() else f"{out} does not exist")
    lines = []
    for beton in betons:
        lines.append(verify_beton(beton))
        index = index_beside(beton)
        if index.is_file():
            rows, digest = len(index_mod.load_index(index)), index_mod.load_fingerprint(index)
            sidecar = read_sidecar(beton)
            if digest != sidecar.get("fingerprint") or rows != beton_regions(beton)["rows"]:
                raise FastloadError(f"{index} ({rows} rows, fingerprint {digest[:12]}) does not belong to {beton} "
                                    f"({sidecar.get('fingerprint', '?')[:12]}): recompile")
    return lines
