"""FFCV loaders over a compiled beton: one manifest's rows, relabelled at load time by a Numba operation.

Pipelines (written out per field in `image_pipeline` / `label_pipeline`):
- image, train: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) decoded straight from the stored bytes -> random
  horizontal flip -> normalise with the ImageNet mean/std into NCHW float32 (NormalizeToCHW, Numba) -> tensor.
- image, eval: center crop of 224/256 of the short side, resized to `resolution` -> NormalizeToCHW -> tensor.
- image, crop='caffe' (the paper's BVLC AlexNet data layer): the whole image resized to 256x256 ignoring its aspect
  ratio (WarpResizeRGBImageDecoder, as Caffe's ImageNet LMDB stores it), then a `resolution` (227) window
  (CropWindow, Numba): random position + random mirror for training, the centre for evaluation. At other
  resolutions the resize side scales with them (round(resolution * 256 / 227)), keeping Caffe's crop fraction.
- label: fine class id -> LookupLabel(label_lookup) (Numba) -> int64 tensor of label ids.
On CUDA the order is ffcv-imagenet's: ToTensor -> ToDevice -> ToTorchImage(channels_last) -> normalise on the
device (a small torch module, bf16). ffcv's own NormalizeImage is not used: on the GPU it needs cupy, and on the CPU,
placed after ToTorchImage, it hangs the Loader's constructor (ffcv 1.0.2).
"""
from dataclasses import replace
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from ffcv.fields.rgb_image import ResizedCropRGBImageDecoder
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from .errors import FastloadError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_RATIO = 224 / 256
ORDERS = ("random", "quasi_random", "sequential")
CROPS = ("rrc", "caffe")  # random-resized crop (FFCV/torchvision) or Caffe's fixed-size crop of a 256x256 resize
CAFFE_RESIZE, CAFFE_CROP = 256, 227


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


def whole_image(height, width, scale, ratio):
    """Crop generator of WarpResizeRGBImageDecoder: the whole stored image (scale and ratio unused)."""
    return 0, 0, height, width


class WarpResizeRGBImageDecoder(ResizedCropRGBImageDecoder):
    """Decode an RGBImageField and resize the whole image to `output_size` (height, width), ignoring its aspect
    ratio, as Caffe's `convert_imageset --resize_height 256 --resize_width 256` made the ImageNet LMDB. Resampling is
    FFCV's (OpenCV area interpolation for downscaling).

    Parameters
    ----------
    output_size : tuple of 2 ints
        (height, width) of every decoded image.
    """

    def __init__(self, output_size):
        super().__init__(tuple(output_size))
        self.scale, self.ratio = None, None  # read by ResizedCropRGBImageDecoder.generate_code

    @property
    def get_crop_generator(self):
        return whole_image


class CropWindow(Operation):
    """Cut a `size` x `size` window out of equally sized uint8 HxWx3 images, as Caffe's data layer does: at a
    uniformly random position (`random=True`) or at the centre (offset (H - size) // 2, Caffe's test phase), and
    mirrored left-right with probability 1/2 when `mirror=True`.

    Parameters
    ----------
    size : int
        side of the window in pixels (Caffe: 227).
    random : bool
        random position (training) or the centre (evaluation).
    mirror : bool
        mirror each window with probability 1/2.
    """

    def __init__(self, size: int, random: bool, mirror: bool):
        super().__init__()
        self.size, self.random, self.mirror = int(size), bool(random), bool(mirror)

    def generate_code(self) -> Callable:
        size, random, mirror = self.size, self.random, self.mirror
        my_range = Compiler.get_iterator()

        def crop(images, dst):
            n, height, width = images.shape[0], images.shape[1], images.shape[2]
            draws = np.random.rand(n, 3)  # drawn before the parallel loop: one stream for the batch
            for i in my_range(n):
                top, left = (height - size) // 2, (width - size) // 2
                if random:
                    top = min(int(draws[i, 0] * (height - size + 1)), height - size)
                    left = min(int(draws[i, 1] * (width - size + 1)), width - size)
                flip = mirror and draws[i, 2] < 0.5
                for y in range(size):
                    for x in range(size):
                        sx = left + size - 1 - x if flip else left + x
                        for c in range(3):
                            dst[i, y, x, c] = images[i, top + y, sx, c]
            return dst[:n]

        crop.is_parallel = True
        return crop

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        if len(previous_state.shape) != 3 or previous_state.shape[2] != 3 or previous_state.dtype != np.uint8:
            raise ValueError(f"CropWindow needs uint8 HxWx3 images, got {previous_state.shape} "
                             f"{previous_state.dtype}")
        height, width, _ = previous_state.shape
        if self.size < 1 or self.size > min(height, width):
            raise ValueError(f"CropWindow: a {self.size}-pixel window does not fit in {height}x{width} images")
        shape = (self.size, self.size, 3)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype(np.uint8)),
                AllocationQuery(shape, np.dtype(np.uint8)))


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


def caffe_resize_side(resolution: int) -> int:
    """Side of the square resize whose `resolution` crop has Caffe's proportions: 256 for 227."""
    return int(round(resolution * CAFFE_RESIZE / CAFFE_CROP))


def crop_ops(resolution: int, train: bool, crop: str) -> list:
    """Decoder and crop operations: uint8 `resolution` x `resolution` x 3 images."""
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.transforms import RandomHorizontalFlip
    size = (resolution, resolution)
    if crop == "caffe":
        side = caffe_resize_side(resolution)
        return [WarpResizeRGBImageDecoder((side, side)), CropWindow(resolution, random=train, mirror=train)]
    if train:
        return [RandomResizedCropRGBImageDecoder(size), RandomHorizontalFlip()]
    return [CenterCropRGBImageDecoder(size, ratio=EVAL_CROP_RATIO)]


def image_pipeline(resolution: int, train: bool, device: torch.device, crop: str = "rrc") -> list:
    from ffcv.transforms import ToDevice, ToTensor, ToTorchImage
    ops = crop_ops(resolution, train, crop)
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
                distributed: bool = False, num_workers: int = 2, seed: int = 0, drop_last=None, order=None,
                crop: str = "rrc"):
    """An ffcv Loader yielding (images, labels) for rows `indices` of `beton_path`.

    images: float32 NCHW on the CPU, bf16 channels_last on CUDA, normalised with the ImageNet mean/std;
    labels: int64 label ids, label_lookup[fine class id]. Train: random-resized crop + flip, random order, last
    partial batch dropped; eval: center crop, sequential order, all rows kept. crop='caffe': the image resized to
    256x256 (aspect ignored), then a random 227 window + mirror (train) or the centre one (eval); both sides scale
    with `resolution` (see caffe_resize_side). distributed=True splits the rows
    over torch.distributed ranks as torch's DistributedSampler does (padding with repeats to equal shares).
    """
    from ffcv.loader import Loader
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device}: choose cpu or cuda[:N]")
    if batch_size < 1 or resolution < 8:
        raise UsageError(f"batch_size {batch_size} / resolution {resolution}: need batch_size >= 1, resolution >= 8")
    if crop not in CROPS:
        raise UsageError(f"crop {crop!r}: choose one of {', '.join(CROPS)}")
    if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise FastloadError("distributed=True needs torch.distributed initialised first (run under torchrun)")
    label_lookup = np.asarray(label_lookup, dtype=np.int64)
    rows = check_rows(beton_path, indices, label_lookup)
    return Loader(str(beton_path), batch_size=batch_size, num_workers=num_workers,
                  order=traversal_order(order, train, distributed), distributed=distributed, seed=seed,
                  indices=rows, drop_last=train if drop_last is None else drop_last,
                  pipelines={"image": image_pipeline(resolution, train, device, crop),
                             "label": label_pipeline(label_lookup, device)})
