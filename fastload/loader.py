"""FFCV loaders over a compiled beton: one manifest's rows, relabelled at load time by a Numba operation.

Pipelines (written out per field in `image_pipeline` / `label_pipeline`):
- image, train: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) decoded straight from the stored bytes -> random
  horizontal flip -> normalise with the ImageNet mean/std into NCHW float32 (NormalizeToCHW, Numba) -> tensor.
- image, eval: center crop of 224/256 of the short side, resized to `resolution` -> NormalizeToCHW -> tensor.
- label: fine class id -> LookupLabel(label_lookup) (Numba) -> int64 tensor of label ids.
On CUDA the order is ffcv-imagenet's: ToTensor -> ToDevice -> ToTorchImage(channels_last) -> normalise on the
device (a small torch module, bf16). ffcv's own NormalizeImage is not used: on the GPU it needs cupy, and on the CPU,
placed after ToTorchImage, it hangs the Loader's constructor (ffcv 1.0.2).
"""
from dataclasses import replace
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from .errors import FastloadError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_RATIO = 224 / 256
ORDERS = ("random", "quasi_random", "sequential")


class LookupLabel(Operation):
    """Map each fine class id to its label id through `table` (int[num_classes]; -1 = excluded class).

    Parameters
    ----------
    table : np.ndarray
        label id of every fine class id, e.g. a manifest's `label_lookup`.
    """

    def __init__(self, table):
        super().__init__()
        self.table = np.asarray(table, dtype=np.int64)

    def generate_code(self) -> Callable:
        table = self.table
        my_range = Compiler.get_iterator()

        def lookup(labels, dst):
            for i in my_range(labels.shape[0]):
                dst[i] = table[labels[i, 0]]
            return dst[:labels.shape[0]]

        lookup.is_parallel = True
        return lookup

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        if previous_state.shape != (1,):
            raise ValueError(f"LookupLabel reads one integer per sample, got shape {previous_state.shape}")
        if self.metadata is not None and len(self.metadata) and int(self.metadata.max()) >= len(self.table):
            raise ValueError(f"the beton holds class id {int(self.metadata.max())} but the label lookup covers "
                             f"only {len(self.table)} classes")
        return (replace(previous_state, jit_mode=True, shape=(), dtype=np.dtype(np.int64)),
                AllocationQuery((), np.dtype(np.int64)))


class NormalizeToCHW(Operation):
    """uint8 HWC images -> float32 CHW, (pixel - mean) / std, in one parallel Numba pass on the CPU (the transpose
    and normalisation that ToTorchImage plus a torch op would do in two passes on the main thread).

    Parameters
    ----------
    mean, std : sequence of 3 floats
        per-channel mean and standard deviation in pixel units (0..255).
    """

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def generate_code(self) -> Callable:
        scale = (1 / self.std).astype(np.float32)
        shift = (-self.mean / self.std).astype(np.float32)
        my_range = Compiler.get_iterator()

        def normalize(images, dst):
            n, height, width = images.shape[0], images.shape[1], images.shape[2]
            for i in my_range(n):
                for c in range(3):
                    for y in range(height):
                        for x in range(width):
                            dst[i, c, y, x] = images[i, y, x, c] * scale[c] + shift[c]
            return dst[:n]

        normalize.is_parallel = True
        return normalize

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        height, width, channels = previous_state.shape
        if channels != 3 or previous_state.dtype != np.uint8:
            raise ValueError(f"NormalizeToCHW needs uint8 HxWx3 images, got {previous_state.shape} "
                             f"{previous_state.dtype}")
        shape = (3, height, width)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype(np.float32)),
                AllocationQuery(shape, np.dtype(np.float32)))


class Normalize(torch.nn.Module):
    """(uint8 NCHW - mean) / std in `dtype`, on the tensor's device; keeps channels_last when the input has it."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.dtype = dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255))

    def forward(self, images):
        mean, inv_std = self.mean.to(images.device), self.inv_std.to(images.device)
        return ((images.float() - mean) * inv_std).to(self.dtype)


def image_pipeline(resolution: int, train: bool, device: torch.device) -> list:
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.transforms import RandomHorizontalFlip, ToDevice, ToTensor, ToTorchImage
    size = (resolution, resolution)
    if train:
        ops = [RandomResizedCropRGBImageDecoder(size), RandomHorizontalFlip()]
    else:
        ops = [CenterCropRGBImageDecoder(size, ratio=EVAL_CROP_RATIO)]
    if device.type == "cuda":
        return ops + [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(channels_last=True),
                      Normalize(torch.bfloat16)]
    mean, std = np.array(IMAGENET_MEAN) * 255, np.array(IMAGENET_STD) * 255
    return ops + [NormalizeToCHW(mean, std), ToTensor()]


def label_pipeline(label_lookup, device: torch.device) -> list:
    from ffcv.fields.basics import IntDecoder
    from ffcv.transforms import ToDevice, ToTensor
    ops = [IntDecoder(), LookupLabel(label_lookup), ToTensor()]
    return ops + [ToDevice(device, non_blocking=True)] if device.type == "cuda" else ops


def check_rows(beton_path, indices, label_lookup) -> np.ndarray:
    """The requested rows as uint64, after checking they exist and none maps to an excluded (-1) label."""
    from ffcv.reader import Reader
    reader = Reader(str(beton_path))
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        raise FastloadError(f"no rows requested from {beton_path}")
    if indices.min() < 0 or indices.max() >= reader.num_samples:
        raise FastloadError(f"row {indices.max() if indices.max() >= reader.num_samples else indices.min()} is "
                            f"outside {beton_path} (rows 0..{reader.num_samples - 1})")
    class_ids = reader.metadata[f"f{reader.field_names.index('label')}"][indices]
    if class_ids.max() >= len(label_lookup):
        raise FastloadError(f"{beton_path} holds class id {class_ids.max()}, but the label lookup has only "
                            f"{len(label_lookup)} entries: is the manifest for this dataset?")
    excluded = np.flatnonzero(np.asarray(label_lookup)[class_ids] < 0)
    if len(excluded):
        raise FastloadError(f"row {indices[excluded[0]]} of {beton_path} has class {class_ids[excluded[0]]}, which "
                            "the label lookup excludes (-1): select rows of included classes only")
    return indices.astype(np.uint64)


def traversal_order(order: Optional[str], train: bool, distributed: bool):
    from ffcv.loader import OrderOption
    order = order or ("random" if train else "sequential")
    if order not in ORDERS:
        raise UsageError(f"order {order!r}: choose one of {', '.join(ORDERS)}")
    if order == "quasi_random" and distributed:
        raise UsageError("order 'quasi_random' does not work with distributed=True in ffcv: use 'random'")
    return {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
            "sequential": OrderOption.SEQUENTIAL}[order]


def make_loader(beton_path, indices, label_lookup, batch_size: int, resolution: int, train: bool, device="cpu",
                distributed: bool = False, num_workers: int = 2, seed: int = 0, drop_last=None, order=None):
    """An ffcv Loader yielding (images, labels) for rows `indices` of `beton_path`.

    images: float32 NCHW on the CPU, bf16 channels_last on CUDA, normalised with the ImageNet mean/std;
    labels: int64 label ids, label_lookup[fine class id]. Train: random-resized crop + flip, random order, last
    partial batch dropped; eval: center crop, sequential order, all rows kept. distributed=True splits the rows
    over torch.distributed ranks as torch's DistributedSampler does (padding with repeats to equal shares).
    """
    from ffcv.loader import Loader
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device}: choose cpu or cuda[:N]")
    if batch_size < 1 or resolution < 8:
        raise UsageError(f"batch_size {batch_size} / resolution {resolution}: need batch_size >= 1, resolution >= 8")
    if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise FastloadError("distributed=True needs torch.distributed initialised first (run under torchrun)")
    label_lookup = np.asarray(label_lookup, dtype=np.int64)
    rows = check_rows(beton_path, indices, label_lookup)
    return Loader(str(beton_path), batch_size=batch_size, num_workers=num_workers,
                  order=traversal_order(order, train, distributed), distributed=distributed, seed=seed,
                  indices=rows, drop_last=train if drop_last is None else drop_last,
                  pipelines={"image": image_pipeline(resolution, train, device),
                             "label": label_pipeline(label_lookup, device)})
