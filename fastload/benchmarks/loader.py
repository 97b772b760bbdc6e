"""fastload bench loader: the fastload FFCV loader against torchvision ImageFolder + PIL + DataLoader.

Both read the same synthetic JPEGs (about 400x350, ImageNet's typical size, quality 90) with the same training
transform (random-resized crop to --resolution, horizontal flip, ImageNet normalisation), batch size and number of
workers. fastload reads the beton that `compile` writes once (default settings: max side 256, half raw, half JPEG);
torchvision decodes the original files every epoch, as a plain ImageFolder pipeline does. Each loader runs one
warm-up epoch (process start-up, Numba compilation) and then --epochs timed epochs; images/s is over the timed ones.
"""
import os
import time
from typing import NamedTuple

from ..errors import UsageError

DEFAULT_IMAGES = 2000
DEFAULT_CLASSES = 10


class Synthetic(NamedTuple):
    """The synthetic JPEGs: how many, in how many class folders, their mean size, the seed."""
    images: int
    classes: int
    width: int
    height: int
    seed: int


def bench_loader(images: int = DEFAULT_IMAGES, classes: int = DEFAULT_CLASSES, width: int = 400, height: int = 350,
                 batch_size: int = 64, resolution: int = 224, num_workers: int = 2, epochs: int = 2, workdir=None,
                 seed: int = 0) -> dict:
    """Images/s of both loaders over `images` synthetic JPEGs of about `width` x `height` in `classes` folders.

    `workdir` keeps the JPEGs and the beton for the next run (default: a temporary folder, removed afterwards).
    Returns {"fastload": images/s, "torchvision": images/s, "ratio": fastload / torchvision}.
    """
    import tempfile
    from pathlib import Path
    if images < batch_size or classes < 1 or epochs < 1 or min(batch_size, num_workers) < 1:
        raise UsageError("need --images >= --batch-size >= 1, --classes >= 1, --epochs >= 1 and --num-workers >= 1")
    settings = Synthetic(images, classes, width, height, seed)
    if workdir:
        return run_in(Path(workdir), settings, batch_size, resolution, num_workers, epochs)
    with tempfile.TemporaryDirectory(prefix="fastload-bench-loader-") as work:
        return run_in(Path(work), settings, batch_size, resolution, num_workers, epochs)


def run_in(work, synthetic: Synthetic, batch_size: int, resolution: int, num_workers: int, epochs: int) -> dict:
    root, out = work / "jpegs", work / "compiled"
    made = make_jpegs(root, synthetic, num_workers)
    beton = compile_jpegs(root, out, made, num_workers)
    fast = time_epochs(fastload_loader(beton, batch_size, resolution, num_workers, synthetic.seed), epochs)
    slow = time_epochs(torchvision_loader(root, batch_size, resolution, num_workers), epochs)
    print(f"loader benchmark: {made} JPEGs of ~{synthetic.width}x{synthetic.height}, batch {batch_size}, "
          f"crop {resolution}, {num_workers} workers, {epochs} timed epoch(s) after 1 warm-up")
    print(f"  fastload (FFCV beton, Numba label lookup): {fast:8.1f} images/s")
    print(f"  torchvision ImageFolder + PIL + DataLoader: {slow:8.1f} images/s")
    print(f"  ratio: {fast / slow:.2f}x")
    return {"fastload": fast, "torchvision": slow, "ratio": fast / slow}


def make_jpegs(root, synthetic: Synthetic, num_workers: int) -> int:
    """ImageFolder tree root/train/<wnid>/*.JPEG of photo-like synthetic images; reused when already complete."""
    import multiprocessing
    from ..resources import imagenet_wnids
    wnids = imagenet_wnids()[:synthetic.classes]
    jobs = [(str(root / "train" / wnids[i % len(wnids)] / f"img_{i:06d}.JPEG"), synthetic.width, synthetic.height,
             synthetic.seed + i) for i in range(synthetic.images)]
    if all(os.path.exists(job[0]) for job in jobs) and count_files(root / "train") == len(jobs):
        return len(jobs)  # a kept --workdir from an earlier run
    for wnid in wnids:
        (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        pool.starmap(write_jpeg, jobs, chunksize=32)
    return len(jobs)


def count_files(folder) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def write_jpeg(path, width, height, seed):
    """Smooth colour fields plus noise: compresses like a photo (tens of KB at quality 90), unlike pure noise."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = int(width * rng.uniform(0.9, 1.1)), int(height * rng.uniform(0.9, 1.1))
    coarse = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def compile_jpegs(root, out, made: int, num_workers: int):
    """Compile the JPEGs with the default settings, unless a kept --workdir already holds that compile."""
    import json
    from ..beton import COMPILE_FILE, beton_path
    from ..compile import CompileSettings, compile_imagenet
    done = out / COMPILE_FILE
    if not done.exists() or json.loads(done.read_text())["splits"].get("train") != made:
        started = time.time()
        compile_imagenet(root, out, CompileSettings(num_workers=num_workers), splits=("train",))
        seconds = time.time() - started
        print(f"compiled {made} JPEGs in {seconds:.1f} s ({made / seconds:.0f} images/s, default settings)")
    return beton_path(out, "train")


def fastload_loader(beton, batch_size: int, resolution: int, num_workers: int, seed: int):
    import numpy as np
    from ..beton import index_beside
    from ..index import load_index
    from ..loader import make_loader
    index = load_index(index_beside(beton))
    return make_loader(beton, np.arange(len(index)), np.arange(index.num_classes), batch_size,
                       resolution, train=True, num_workers=num_workers, seed=seed)


def torchvision_loader(root, batch_size: int, resolution: int, num_workers: int):
    import torch
    from torchvision import datasets, transforms
    from ..loader import IMAGENET_MEAN, IMAGENET_STD
    transform = transforms.Compose([transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    dataset = datasets.ImageFolder(str(root / "train"), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=num_workers, persistent_workers=num_workers > 0)


def time_epochs(loader, epochs: int) -> float:
    """Images/s over `epochs` full passes after one untimed warm-up pass."""
    def one_epoch():
        count = 0
        for images, labels in loader:
            count += int(labels.shape[0])
        return count
    one_epoch()
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        seen += one_epoch()
    return seen / (time.perf_counter() - started)
