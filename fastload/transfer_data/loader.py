"""FFCV loaders over the betons of `fastload compile cls` (fixed-size images, raw or JPEG), for plain PyTorch code
and for MMEngine (fastload.mmdet.beton_data wraps `cls_loader`).

Pipelines, one list per field:
- image, train: WindowDecoder(random=True): a uniformly placed crop_size x crop_size window of the stored image
  (a byte copy for raw rows, a decode first for JPEG rows), mirrored left-right with probability 1/2 -> ToTensor.
  The file configs' ClsRandomCrop + RandomFlip(prob=0.5) on the warped image draw from the same distribution.
- image, test: WindowDecoder(random=False): the centre window, offset (side - crop_size) // 2 (ClsCenterCrop's).
- label: IntDecoder -> ToTensor (class id; a bitmask of classes for a multi-label layout).
Batches are (uint8 N x crop x crop x 3 RGB images, int64 N labels) on the CPU. Draws are seeded per image by
(seed, the batch's rows, its place in the batch) and the order by (seed, epoch), as fastload.loader's, so a run is
reproducible and a resumed one replays what it saw.
"""
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import IMAGE_MODES, SimpleRGBImageDecoder
from ffcv.libffcv import imdecode
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State
from ffcv.transforms import ToTensor

from ..beton import BETON_SUFFIX, beton_path, check_beton, split_of
from ..errors import FastloadError, UsageError
from ..loader import batch_key, copy_window, sample_seed

ORDER_SEED_STRIDE = 1_000_003  # seeds s and s + 1 must not share orders (FFCV's order seed is seed + epoch)


class WindowDecoder(SimpleRGBImageDecoder):
    """Decode a fixed-size RGBImageField and cut a `size` x `size` window: uniformly placed and mirrored with
    probability 1/2 (`random=True`), or the centre one unmirrored (`random=False`).

    Parameters
    ----------
    size : int
        side of the window in pixels; at most the stored side.
    seed : int
        the loader's seed (each image's draws are seeded by it, its batch's rows and its place in the batch).
    random : bool
        random window + mirror (training) or the centre window (testing).
    """

    def __init__(self, size: int, seed: int = 0, random: bool = True):
        super().__init__()
        self.size, self.seed, self.random = int(size), int(seed), bool(random)

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        state, stored = super().declare_state_and_memory(previous_state)  # refuses mixed image sizes
        height, width = stored.shape[:2]
        if self.size < 1 or self.size > min(height, width):
            raise ValueError(f"WindowDecoder: a {self.size}-pixel window does not fit the stored "
                             f"{width}x{height} images")
        shape = (self.size, self.size, 3)
        return replace(state, shape=shape), (AllocationQuery(shape, np.dtype(np.uint8)), stored)

    def generate_code(self) -> Callable:
        jpg, mem_read, my_range = IMAGE_MODES["jpg"], self.memory_read, Compiler.get_iterator()
        imdecode_c, window_c = Compiler.compile(imdecode), Compiler.compile(copy_window)
        key_c, seed_c = Compiler.compile(batch_key), Compiler.compile(sample_seed)
        seed, random, size = self.seed, self.random, self.size

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, decoded = my_storage
            key = key_c(seed, batch_indices)
            for dst_ix in my_range(len(batch_indices)):
                field = metadata[batch_indices[dst_ix]]
                height, width = np.uint32(field["height"]), np.uint32(field["width"])
                data = mem_read(field["data_ptr"], storage_state)
                if field["mode"] == jpg:
                    imdecode_c(data, decoded[dst_ix], height, width, height, width, 0, 0, 1, 1, False, False)
                    image = decoded[dst_ix]
                else:
                    image = data.reshape(height, width, 3)
                top, left, flip = (height - size) // 2, (width - size) // 2, False
                if random:
                    np.random.seed(seed_c(key, dst_ix))
                    top = min(int(np.random.uniform(0, height - size + 1)), height - size)
                    left = min(int(np.random.uniform(0, width - size + 1)), width - size)
                    flip = np.random.uniform(0, 1) < 0.5
                window_c(image, destination[dst_ix], top, left, flip)
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode


def split_beton(folder, split: str) -> Path:
    """FOLDER/{split}.beton of a `fastload compile cls` folder, checked (header, size, tables checksum)."""
    path = beton_path(folder, split)
    if not path.is_file():
        have = sorted(split_of(p) for p in Path(folder).glob(f"*{BETON_SUFFIX}")) if Path(folder).is_dir() else []
        raise FastloadError(f"{path} does not exist ({'splits there: ' + ', '.join(have) if have else 'no betons'}"
                            "; write it with `fastload compile cls LAYOUT ROOT OUT`)")
    check_beton(path)
    return path


def usable_threads(requested: int) -> int:
    """FFCV's decoding threads: at most the cores Numba may use (more is an error in Numba), with a warning."""
    import warnings

    import numba
    if requested > numba.config.NUMBA_NUM_THREADS:
        warnings.warn(f"num_workers {requested}: this machine gives Numba {numba.config.NUMBA_NUM_THREADS} threads; "
                      f"the beton loader uses {numba.config.NUMBA_NUM_THREADS}")
        return numba.config.NUMBA_NUM_THREADS
    return requested


def cls_loader(folder, split: str, batch_size: int, crop_size: int, train: bool, seed: int = 0,
               num_workers: int = 2, drop_last=None) -> Loader:
    """An FFCV Loader over FOLDER/{split}.beton yielding (uint8 NHWC RGB crops, int64 labels).

    train=True: random window + mirror, random order (by seed and epoch), last partial batch dropped; train=False:
    centre window, rows in beton (listing) order, every row kept. Iterating the Loader again starts the next epoch.
    """
    if batch_size < 1 or num_workers < 1:
        raise UsageError(f"batch_size {batch_size} / num_workers {num_workers}: both must be >= 1")
    path = split_beton(folder, split)
    num_workers = usable_threads(num_workers)
    order = OrderOption.RANDOM if train else OrderOption.SEQUENTIAL
    return Loader(str(path), batch_size=batch_size, num_workers=num_workers, order=order,
                  seed=(int(seed) * ORDER_SEED_STRIDE) % (2 ** 31), drop_last=train if drop_last is None else drop_last,
                  pipelines={"image": [WindowDecoder(crop_size, seed, random=train), ToTensor()],
                             "label": [IntDecoder(), ToTensor()]})
