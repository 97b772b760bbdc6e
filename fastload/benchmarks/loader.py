"""fastload bench loader: the fastload FFCV loader against torchvision ImageFolder + PIL + DataLoader.

Both read the same synthetic JPEGs (about 400x350, ImageNet's typical size, quality 90) with the same training
transform (random-resized crop to --resolution, horizontal flip, ImageNet normalisation), batch size and number of
workers. fastload reads the beton that `compile` writes once (default settings: max side 256, half raw, half JPEG);
torchvision decodes the original files every epoch, as a plain ImageFolder pipeline does. Each loader runs one
warm-up epoch (process start-up, Numba compilation) and then --epochs timed epochs; images/s is over the timed ones.
"""
import os
import time

DEFAULT_IMAGES = 2000
DEFAULT_CLASSES = 10


def configure(p):
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"JPEGs to make (default: {DEFAULT_IMAGES})")
    p.add_argument("--classes", type=int, default=DEFAULT_CLASSES, help=f"class folders (default: {DEFAULT_CLASSES})")
    p.add_argument("--width", type=int, default=400, help="mean image width in pixels (default: 400)")
    p.add_argument("--height", type=int, default=350, help="mean image height in pixels (default: 350)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--resolution", type=int, default=224, help="crop side fed to the model (default: 224)")
    p.add_argument("--num-workers", type=int, default=2, help="loader workers / threads for both (default: 2)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch (default: 2)")
    p.add_argument("--workdir", default=None, help="folder for the JPEGs and the beton, kept and reused "
                                                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images (default: 0)")


def run(args):
    import tempfile
    from pathlib import Path
    from ..errors import UsageError
    if args.images < args.batch_size or args.classes < 1 or args.epochs < 1:
        raise UsageError("need --images >= --batch-size, --classes >= 1 and --epochs >= 1")
    if args.workdir:
        return run_in(Path(args.workdir), args)
    with tempfile.TemporaryDirectory(prefix="fastload-bench-loader-") as work:
        return run_in(Path(work), args)


def run_in(work, args):
    root, out = work / "jpegs", work / "compiled"
    made = make_jpegs(root, args)
    beton = compile_jpegs(root, out, args, made)
    fast = time_epochs(fastload_loader(beton, args), args.epochs)
    slow = time_epochs(torchvision_loader(root, args), args.epochs)
    print(f"loader benchmark: {made} JPEGs of ~{args.width}x{args.height}, batch {args.batch_size}, "
          f"crop {args.resolution}, {args.num_workers} workers, {args.epochs} timed epoch(s) after 1 warm-up")
    print(f"  fastload (FFCV beton, Numba label lookup): {fast:8.1f} images/s")
    print(f"  torchvision ImageFolder + PIL + DataLoader: {slow:8.1f} images/s")
    print(f"  ratio: {fast / slow:.2f}x")
    return 0


def make_jpegs(root, args) -> int:
    """ImageFolder tree root/train/<wnid>/*.JPEG of photo-like synthetic images; reused when already complete."""
    import multiprocessing
    from ..resources import imagenet_wnids
    wnids = imagenet_wnids()[:args.classes]
    jobs = [(str(root / "train" / wnids[i % len(wnids)] / f"img_{i:06d}.JPEG"), args.width, args.height,
             args.seed + i) for i in range(args.images)]
    if all(os.path.exists(job[0]) for job in jobs) and count_files(root / "train") == len(jobs):
        return len(jobs)  # a kept --workdir from an earlier run
    for wnid in wnids:
        (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool(args.num_workers) as pool:
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


def compile_jpegs(root, out, args, made: int):
    """Compile the JPEGs with the default settings, unless a kept --workdir already holds that compile."""
    import json
    from ..compile import CompileSettings, compile_imagenet
    done = out / "compile.json"
    if not done.exists() or json.loads(done.read_text())["splits"].get("train") != made:
        started = time.time()
        compile_imagenet(root, out, CompileSettings(num_workers=args.num_workers), splits=("train",))
        seconds = time.time() - started
        print(f"compiled {made} JPEGs in {seconds:.1f} s ({made / seconds:.0f} images/s, default settings)")
    return out / "train.beton"


def fastload_loader(beton, args):
    import numpy as np
    from ..index import load_index
    from ..loader import make_loader
    index = load_index(beton.with_name("train_index.npz"))
    return make_loader(beton, np.arange(len(index)), np.arange(index.num_classes), args.batch_size,
                       args.resolution, train=True, num_workers=args.num_workers, seed=args.seed)


def torchvision_loader(root, args):
    import torch
    from torchvision import datasets, transforms
    from ..loader import IMAGENET_MEAN, IMAGENET_STD
    transform = transforms.Compose([transforms.RandomResizedCrop(args.resolution), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    dataset = datasets.ImageFolder(str(root / "train"), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                       num_workers=args.num_workers, persistent_workers=args.num_workers > 0)


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
