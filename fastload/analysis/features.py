"""Network activations (the feature layer, e.g. fc7; predictions) over chosen rows of a compiled .beton, batched.

The images come through the fastload loader in evaluation mode (centre crop, no flip), with the identity label
lookup, so the loader's labels are the fine class ids of the rows: they are checked against the index, which also
proves the loader kept the requested row order. On CUDA the network runs under bfloat16 autocast (the loader
yields bf16 images there); on the CPU in float32. Features are stored as float16 (half the memory of float32;
fc7 activations are post-ReLU values far inside float16's range), optionally in a .npy memmap on disk.
"""
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FastloadError, UsageError
from ..files import reserve_space
from ..models.checkpoint import trained_settings
from ..models.networks import NETWORKS, network

FEATURE_DTYPE = np.float16
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class Extraction:
    """How the analyses run a network over a beton: images per forward pass, eval crop (0 = the checkpoint's
    own, see `default_resolution`), device and loader threads."""
    batch_size: int = DEFAULT_BATCH_SIZE
    resolution: int = 0
    device: torch.device = torch.device("cpu")
    num_workers: int = 2

    def loader_kwargs(self, meta: dict) -> dict:
        """Keyword arguments of `extract_from_beton` for a checkpoint with metadata `meta`."""
        return {"batch_size": self.batch_size, "resolution": self.resolution or default_resolution(meta),
                "device": self.device, "num_workers": self.num_workers}


def extraction(batch_size: int, resolution: int, device: str, num_workers: int) -> Extraction:
    """An Extraction with `device` ('auto', 'cpu', 'cuda', 'cuda:N') resolved by distributed.pick_device."""
    from ..distributed import pick_device
    return Extraction(batch_size, resolution, pick_device(0, device), num_workers)


def default_resolution(meta: dict) -> int:
    """The checkpoint's own validation crop (its recipe's val_res), else the one its architecture was designed
    for (its record's val_res: 227 for BVLC AlexNet, 224 for torchvision's networks)."""
    val_res = int(trained_settings(meta).get("val_res") or 0)
    if val_res > 0:
        return val_res
    return network(meta["arch"]).val_res


def identity_lookup(num_classes: int) -> np.ndarray:
    return np.arange(num_classes, dtype=np.int32)


def feature_layer(arch: str) -> str:
    """The analyses' default feature layer of `arch`, its record's (fastload.models.networks: AlexNet's fc7, as in
    the paper; for torchvision ResNets the penultimate, pooled features, graph node 'flatten', just before fc)."""
    if arch not in NETWORKS:
        raise FastloadError(f"no feature layer is known for arch {arch!r}: give --layer, or add the network to "
                            "fastload.models.networks.NETWORKS")
    return NETWORKS[arch].feature_layer


def layer_function(model, layer):
    """images -> activations of `layer` (None: the model's output). fastload's AlexNets by their layer names
    (conv1..conv5, pool5, fc6, fc7, fc8); any other torchvision model by graph node name (e.g. a ResNet's
    'flatten'), traced once here."""
    from torchvision.models import AlexNet
    from ..models.alexnet import AlexNetCaffe, extract_features
    if layer is None:
        return model
    if isinstance(model, (AlexNetCaffe, AlexNet)):
        return lambda images: extract_features(model, images, upto=layer)
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    nodes = get_graph_node_names(model)[1]
    if layer not in nodes:
        raise UsageError(f"layer {layer!r} is not a node of {type(model).__name__}; its last nodes are "
                         f"{', '.join(nodes[-4:])}")
    extractor = create_feature_extractor(model, {layer: "out"})
    return lambda images: extractor(images)["out"]


def allocate(n: int, dim: int, out_path=None, dtype=FEATURE_DTYPE) -> np.ndarray:
    """An [n, dim] array: in memory, or a .npy memmap at `out_path` (for databases larger than RAM)."""
    if out_path is None:
        return np.empty((n, dim), dtype=dtype)
    array = np.lib.format.open_memmap(out_path, mode="w+", dtype=dtype, shape=(n, dim))
    reserve_space(out_path, array.offset + array.nbytes)  # a full disk: one line now, not SIGBUS mid-way
    return array


def collect_outputs(model, batches, n: int, layer: str = "fc7", device="cpu", out_path=None, desc="features",
                    dtype=FEATURE_DTYPE):
    """Run `model` over an iterable of (images, labels) batches covering `n` rows in order.

    Returns (outputs [n, dim] of `dtype`, labels int64 [n]). `layer`: see `layer_function`.
    """
    from tqdm import tqdm
    device = torch.device(device)
    model = model.to(device).eval()
    forward = layer_function(model, layer)
    feats, labels, filled = None, np.empty(n, dtype=np.int64), 0
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"), \
            tqdm(total=n, desc=desc, unit="img", leave=False) as bar:
        for images, batch_labels in batches:
            images = images.to(device, non_blocking=True)
            out = forward(images if device.type == "cuda" else images.float())
            out = out.flatten(1).float().cpu().numpy()
            if feats is None:
                feats = allocate(n, out.shape[1], out_path, dtype)
            if filled + len(out) > n:
                raise FastloadError(f"the loader yielded more than the {n} requested rows")
            feats[filled:filled + len(out)] = out
            labels[filled:filled + len(out)] = batch_labels.cpu().numpy().reshape(-1)
            filled += len(out)
            bar.update(len(out))
            bar.set_postfix(img_s=f"{filled / (time.perf_counter() - start):.0f}")
    if filled != n:
        raise FastloadError(f"the loader yielded {filled} rows, expected {n}")
    return feats, labels


def extract_from_beton(model, beton_path, index, rows, layer: str = "fc7", batch_size: int = DEFAULT_BATCH_SIZE,
                       resolution: int = 227, device="cpu", num_workers: int = 2, out_path=None, desc="features",
                       dtype=FEATURE_DTYPE, model_fingerprint: str = None):
    """Activations of `layer` for rows `rows` (sorted int64) of `beton_path`, whose index is `index`.

    Returns (outputs [len(rows), dim] of `dtype`, fine class ids int64 [len(rows)]). With `out_path` the outputs
    are a .npy memmap there, renamed into place once complete, with their inputs beside it (OUT.key.json: see
    `cache_key`); given `model_fingerprint` (provenance.file_fingerprint of the checkpoint), a later call with the
    same inputs reads that file instead of running the network, and one with other inputs computes it again.
    """
    from ..loader import make_loader
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise UsageError(f"no rows of {beton_path} to extract features from")
    if np.any(np.diff(rows) <= 0):
        raise UsageError("rows must be sorted and unique (the loader reads them in file order)")
    expected = index.class_id[rows]
    key = None
    if out_path is not None and model_fingerprint:
        key = cache_key(model_fingerprint, beton_path, rows, layer, resolution, device, dtype)
        cached = read_cached(out_path, key, len(rows))
        if cached is not None:
            return cached, expected.astype(np.int64)
    loader = make_loader(str(beton_path), rows, identity_lookup(index.num_classes), batch_size, resolution,
                         train=False, device=str(device), num_workers=num_workers, drop_last=False)
    if out_path is None:
        feats, labels = collect_outputs(model, loader, len(rows), layer, device, None, desc, dtype)
        check_labels(beton_path, rows, labels, expected)
        return feats, labels
    from ..files import atomic_path, write_json
    key_path(out_path).unlink(missing_ok=True)  # the file is about to change: no key may vouch for it meanwhile
    with atomic_path(out_path) as tmp:
        feats, labels = collect_outputs(model, loader, len(rows), layer, device, tmp, desc, dtype)
        check_labels(beton_path, rows, labels, expected)
        feats.flush()
    if key is not None:
        write_json(key_path(out_path), key)
    return feats, labels


def check_labels(beton_path, rows, labels, expected) -> None:
    if not np.array_equal(labels, expected):
        bad = int(np.flatnonzero(labels != expected)[0])
        raise FastloadError(f"{beton_path}: the loader's label for row {rows[bad]} is {labels[bad]}, the index says "
                            f"{expected[bad]}: the beton and its index do not match, or the order was changed")


def key_path(out_path):
    from pathlib import Path
    return Path(f"{out_path}.key.json")


def cache_key(model_fingerprint: str, beton_path, rows, layer, resolution: int, device, dtype) -> dict:
    """What a features file depends on: the checkpoint, the beton, the rows, the layer, the crop, the device type
    (bfloat16 autocast on CUDA) and the stored dtype."""
    import hashlib
    from .provenance import beton_identity
    return {"checkpoint": model_fingerprint, "beton": beton_identity(beton_path),
            "rows": hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16],
            "layer": layer, "resolution": int(resolution), "device": torch.device(device).type,
            "dtype": np.dtype(dtype).str}


def read_cached(out_path, key: dict, n: int):
    """The features at `out_path` when its key file says `key` made them (a memmap, read-only); else None, with
    one line naming what differs when another key made them."""
    import json
    from pathlib import Path
    try:
        recorded = json.loads(key_path(out_path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if recorded != key:
        diff = ", ".join(f"{k} {recorded.get(k)} there, {key[k]} now" for k in key if recorded.get(k) != key[k])
        print(f"{out_path}: features of other inputs ({diff}): computing them again")
        return None
    if not Path(out_path).is_file():
        return None
    feats = np.load(out_path, mmap_mode="r")
    if feats.shape[0] != n:
        return None
    print(f"{out_path}: features of the same checkpoint, rows and settings: reused")
    return feats


def predict_from_beton(model, beton_path, index, rows, **kwargs) -> np.ndarray:
    """Top-1 output (int64 argmax of the model's output) of `model` for each row of `rows`."""
    logits, _ = extract_from_beton(model, beton_path, index, rows, layer=None, desc="predict", dtype=np.float32,
                                   **kwargs)
    return logits.argmax(axis=1)


# ---- what the analyses read: a compiled folder, a label set over its classes, a checkpoint ----------------------

def beton_dir_files(beton_dir, splits=("train", "val")) -> dict:
    """{split: (beton path, index path)} of a folder written by `fastload compile`; errors name a missing file."""
    from ..beton import beton_path, index_path
    out = {}
    for split in splits:
        beton, index = beton_path(beton_dir, split), index_path(beton_dir, split)
        for path in (beton, index):
            if not path.is_file():
                raise FastloadError(f"{path} does not exist: --beton-dir must be a folder written by "
                                    f"`fastload compile` (with {beton.name} and {index.name})")
        out[split] = (beton, index)
    return out


def load_compiled(beton_dir, splits=("train", "val")) -> tuple:
    """({split: beton path}, {split: Index}) of a folder written by `fastload compile`. Each beton is checked
    (beton.check_beton: size, header, tables) and must follow its index (the fingerprint in the beton's
    sidecar): a FastloadError names the file otherwise."""
    from ..beton import check_beton
    from ..index import load_fingerprint, load_index
    files = beton_dir_files(beton_dir, splits)
    for beton, index_path in files.values():
        recorded = check_beton(beton).get("fingerprint")
        if recorded and recorded != load_fingerprint(index_path):
            raise FastloadError(f"{beton} was not compiled with {index_path} (index fingerprints differ): "
                                "recompile, or put the beton beside its own index")
    return {s: files[s][0] for s in files}, {s: load_index(files[s][1]) for s in files}


def load_model(checkpoint):
    """(model, meta) of a fastload checkpoint, with a clear error naming the file."""
    from ..models.checkpoint import load_checkpoint_model
    return load_checkpoint_model(checkpoint)


def sample_rows(class_id: np.ndarray, keep_class: np.ndarray, per_class: int = 0, seed: int = 0) -> np.ndarray:
    """Sorted rows whose class is kept; with `per_class` > 0, at most that many per class, drawn with `seed`."""
    rows = np.flatnonzero(keep_class[class_id])
    if per_class <= 0:
        return rows
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(rows[class_id[rows] == c])[:per_class] for c in np.unique(class_id[rows])]
    return np.sort(np.concatenate(chosen)) if chosen else rows
