"""FFCV loaders over a compiled beton: one manifest's rows, relabelled at load time by a Numba operation.

Pipelines (written out per field in `image_pipeline` / `label_pipeline`):
- image, train: random-resized crop (scale 0.08-1, ratio 3/4-4/3) decoded straight from the stored bytes, mirrored
  with probability 1/2 (SeededCropDecoder) -> normalise with the ImageNet mean/std into NCHW float32
  (NormalizeToCHW, Numba) -> tensor.
- image, eval: center crop of 224/256 of the short side, resized to `resolution` -> NormalizeToCHW -> tensor.
- image, crop='caffe' (the paper's BVLC AlexNet data layer, SeededCropDecoder): the whole image resized to 256x256
  ignoring its aspect ratio (as Caffe's ImageNet LMDB stores it), then a `resolution` (227) window: random position
  + random mirror for training, the centre for evaluation. At other resolutions the resize side scales with them
  (round(resolution * 256 / 227)), keeping Caffe's crop fraction.
- augment 'device' (`raw_loader` + `device_random_resized_crop`): the CPU only copies raw fixed-size bytes; the
  random-resized crop, flip and normalisation run on the device.
Random draws are reproducible: each image's crop is seeded by (seed, its batch's rows, its place in the batch), and
the batch order by (seed, epoch), so a resumed run sees the images and crops an uninterrupted run saw.
- label: fine class id -> LookupLabel(label_lookup) (Numba) -> int64 tensor of label ids.
On CUDA the order is ffcv-imagenet's: ToTensor -> ToDevice -> ToTorchImage(channels_last) -> normalise on the
device (a small torch module, bf16). ffcv's own NormalizeImage is not used: on the GPU it needs cupy, and on the CPU,
placed after ToTorchImage, it hangs the Loader's constructor (ffcv 1.0.2).
"""
import math
from dataclasses import replace
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import (IMAGE_MODES, CenterCropRGBImageDecoder, ResizedCropRGBImageDecoder,
                                   SimpleRGBImageDecoder, get_random_crop)
from ffcv.libffcv import imdecode, resize_crop
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.reader import Reader
from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

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


def batch_key(seed, rows) -> int:
    """A 32-bit key of the loader's seed and this batch's rows in order (FNV-1a). The data order is fixed by
    (seed, epoch), so a batch replayed after a resume gets the key, and the crops, it had; other batches and other
    epochs get other keys. Every value stays below 2**57: no int64 overflow, with JIT on or off."""
    h = (np.int64(seed) * np.int64(1000003) + np.int64(2166136261)) & np.int64(0xFFFFFFFF)
    for r in rows:
        h = ((h ^ (np.int64(r) & np.int64(0xFFFFFFFF))) * np.int64(16777619)) & np.int64(0xFFFFFFFF)
    return h


def sample_seed(key, position) -> int:
    """The numpy seed of the `position`-th image of a batch with `key` (each image seeds its own draws, so the
    result does not depend on which thread decodes it)."""
    return (key + np.int64(position + 1) * np.int64(2654435761)) & np.int64(0xFFFFFFFF)


def copy_window(src, dst, top, left, flip) -> None:
    """dst (s x s x 3) = the s x s window of src at (top, left), mirrored left-right when `flip`."""
    size = dst.shape[0]
    for y in range(size):
        for x in range(size):
            sx = left + size - 1 - x if flip else left + x
            for c in range(3):
                dst[y, x, c] = src[top + y, sx, c]


def mirror_in_place(image) -> None:
    """Mirror an H x W x 3 image left-right in place."""
    width = image.shape[1]
    for y in range(image.shape[0]):
        for x in range(width // 2):
            for c in range(3):
                image[y, x, c], image[y, width - 1 - x, c] = image[y, width - 1 - x, c], image[y, x, c]


class SeededCropDecoder(ResizedCropRGBImageDecoder):
    """Decode an RGBImageField and cut a random crop, with draws seeded per image by (seed, batch rows, position)
    (see `batch_key`): a resumed run sees the crops an uninterrupted one saw. FFCV's own random decoders draw from
    Numba's per-thread generators, which nothing seeds.

    crop='rrc': torchvision's random-resized crop (FFCV's `get_random_crop`, scale and ratio ranges) resized to
    `output_size`, then mirrored with probability 1/2. crop='caffe': Caffe's data layer: the whole image resized to
    `side` x `side` ignoring its aspect ratio (as Caffe's ImageNet LMDB stores it), then a `size` window at a
    uniformly random position, mirrored with probability 1/2 (`random=True`), or the centre window unmirrored
    (offset (side - size) // 2, Caffe's test phase; `random=False`).

    Parameters
    ----------
    crop : 'rrc' or 'caffe'
    size : int
        side of the output crop in pixels.
    seed : int
        the loader's seed.
    side : int
        crop='caffe': side of the square resize (caffe_resize_side(size)).
    random : bool
        crop='caffe': random window + mirror (training) or the centre one (evaluation).
    """

    def __init__(self, crop: str, size: int, seed: int, side: int = 0, random: bool = True,
                 scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        super().__init__((int(size), int(size)))
        if crop == "caffe" and int(side) < int(size):
            raise ValueError(f"SeededCropDecoder: a {size}-pixel window does not fit in a {side}-pixel resize")
        self.crop, self.size, self.seed, self.side, self.random = crop, int(size), int(seed), int(side), bool(random)
        self.scale, self.ratio = np.array(scale), np.array(ratio)

    @property
    def get_crop_generator(self):
        return get_random_crop

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        state, (output, temp) = super().declare_state_and_memory(previous_state)
        side = max(self.side, 1)  # the Caffe resize; a 1x1 placeholder for rrc
        return state, (output, temp, AllocationQuery((side, side, 3), np.dtype(np.uint8)))

    def generate_code(self) -> Callable:
        jpg, mem_read, my_range = IMAGE_MODES["jpg"], self.memory_read, Compiler.get_iterator()
        imdecode_c, resize_crop_c = Compiler.compile(imdecode), Compiler.compile(resize_crop)
        get_crop_c = Compiler.compile(get_random_crop)
        key_c, seed_c = Compiler.compile(batch_key), Compiler.compile(sample_seed)
        window_c, mirror_c = Compiler.compile(copy_window), Compiler.compile(mirror_in_place)
        seed, caffe, random, size, side = self.seed, self.crop == "caffe", self.random, self.size, self.side
        scale, ratio = self.scale, self.ratio

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage, warped = my_storage
            key = key_c(seed, batch_indices)
            for dst_ix in my_range(len(batch_indices)):
                field = metadata[batch_indices[dst_ix]]
                height, width = np.uint32(field["height"]), np.uint32(field["width"])
                data = mem_read(field["data_ptr"], storage_state)
                if field["mode"] == jpg:
                    buffer = temp_storage[dst_ix]
                    imdecode_c(data, buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                    image = buffer.reshape(-1)[:3 * height * width].reshape(height, width, 3)
                else:
                    image = data.reshape(height, width, 3)
                np.random.seed(seed_c(key, dst_ix))
                if caffe:
                    resize_crop_c(image, 0, height, 0, width, warped[dst_ix])
                    top, left, flip = (side - size) // 2, (side - size) // 2, False
                    if random:
                        top = min(int(np.random.uniform(0, side - size + 1)), side - size)
                        left = min(int(np.random.uniform(0, side - size + 1)), side - size)
                        flip = np.random.uniform(0, 1) < 0.5
                    window_c(warped[dst_ix], destination[dst_ix], top, left, flip)
                else:
                    i, j, h, w = get_crop_c(height, width, scale, ratio)
                    resize_crop_c(image, i, i + h, j, j + w, destination[dst_ix])
                    if np.random.uniform(0, 1) < 0.5:
                        mirror_c(destination[dst_ix])
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode


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


def crop_ops(resolution: int, train: bool, crop: str, seed: int = 0) -> list:
    """Decoder and crop operations: uint8 `resolution` x `resolution` x 3 images."""
    if crop == "caffe":
        return [SeededCropDecoder("caffe", resolution, seed, side=caffe_resize_side(resolution), random=train)]
    if train:
        return [SeededCropDecoder("rrc", resolution, seed)]
    return [CenterCropRGBImageDecoder((resolution, resolution), ratio=EVAL_CROP_RATIO)]


def image_pipeline(resolution: int, train: bool, device: torch.device, crop: str = "rrc", seed: int = 0) -> list:
    ops = crop_ops(resolution, train, crop, seed)
    if device.type == "cuda":
        return ops + [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(channels_last=True),
                      Normalize(torch.bfloat16)]
    mean, std = np.array(IMAGENET_MEAN) * 255, np.array(IMAGENET_STD) * 255
    return ops + [NormalizeToCHW(mean, std), ToTensor()]


def label_pipeline(label_lookup, device: torch.device) -> list:
    ops = [IntDecoder(), LookupLabel(label_lookup), ToTensor()]
    return ops + [ToDevice(device, non_blocking=True)] if device.type == "cuda" else ops


def check_rows(beton_path, indices, label_lookup) -> np.ndarray:
    """The requested rows as uint64, after checking the beton is whole (beton.check_beton: header, size and table
    checksums, as the command line does) and that the rows exist and none maps to an excluded (-1) label."""
    from .beton import check_beton
    check_beton(beton_path)
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
                  pipelines={"image": image_pipeline(resolution, train, device, crop, seed),
                             "label": label_pipeline(label_lookup, device)})


# ---------------------------------------------------------------- device-side augmentation (augment: device)

def raw_loader(beton_path, indices, label_lookup, batch_size: int, device="cpu", num_workers: int = 2,
               distributed: bool = False, seed: int = 0):
    """An ffcv Loader that only copies fixed-size raw images (uint8 NHWC) and labels (label_lookup[class id]) to
    `device`; random order (seed + epoch), last partial batch dropped. `device_random_resized_crop` does the rest.
    The beton's images must all have one size (`fastload compile imagenet ROOT OUT --square S`)."""
    device = torch.device(device)
    label_lookup = np.asarray(label_lookup, dtype=np.int64)
    rows = check_rows(beton_path, indices, label_lookup)
    reader = Reader(str(beton_path))
    meta = reader.metadata[f"f{reader.field_names.index('image')}"]
    sizes = set(zip(meta["width"][rows.astype(np.int64)].tolist(), meta["height"][rows.astype(np.int64)].tolist()))
    if len(sizes) != 1:
        raise FastloadError(f"augment 'device' needs a beton whose images all have one size; {beton_path} has "
                            f"{len(sizes)} sizes: compile it with `fastload compile imagenet ROOT OUT --square S`, "
                            "or use augment 'cpu'")
    to_device = [ToDevice(device, non_blocking=True)] if device.type == "cuda" else []
    return Loader(str(beton_path), batch_size=batch_size, num_workers=num_workers, order=OrderOption.RANDOM,
                  indices=rows, drop_last=True, distributed=distributed, seed=seed,
                  pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()] + to_device,
                             "label": [IntDecoder(), LookupLabel(label_lookup), ToTensor()] + to_device})


def device_random_resized_crop(images, resolution: int, dtype, channels_last: bool, generator=None,
                               scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """uint8 NHWC batch -> normalised NCHW crops (torchvision's RandomResizedCrop ranges, random flip), computed
    on the batch's device with one affine grid_sample (bilinear). `generator` (a torch.Generator on the batch's
    device) makes the draws reproducible; None uses torch's global generator."""
    n, dev = images.shape[0], images.device
    draws = torch.rand(5, n, device=dev, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * draws[0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draws[1]
    w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)   # crop size as a fraction of the side
    h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
    cx = (draws[2] * 2 - 1) * (1 - w)                         # centre in [-1, 1] keeping the crop inside
    cy = (draws[3] * 2 - 1) * (1 - h)
    flip = torch.where(draws[4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, (n, 3, resolution, resolution), align_corners=False)
    out = F.grid_sample(images.permute(0, 3, 1, 2).float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    out = Normalize(dtype).to(dev)(out)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out
