"""fastload bench train: end-to-end training images/s against the train step on data already on the device.

The ceiling is the model's train step (the trainer's own `train_step`: SGD, autocast and channels_last as asked)
on one batch that already sits on the device; end to end is the same step fed by a loader over a beton, at the
same resolution and batch. The ratio says how much of the device the data path leaves unused.

Pipelines:
- `ffcv` (default): fastload.loader.make_loader, the trainer's loader: JPEG/raw decode with random-resized crop and
  flip on CPU threads (Numba), normalisation on the device.
- `raw-gpu`: the trainer's `augment: device` path (fastload.pretrain.raw_loader), for betons stored raw at one
  fixed size (the synthetic beton here): the CPU only copies bytes (FFCV SimpleRGBImageDecoder: no decode, no
  resize); random-resized crop + flip (one affine grid_sample per batch) and normalisation run on the device.

Without --beton, a synthetic beton of random-noise images (--images, --image-size) is compiled on the fly with
fastload.compile (raw, fixed size, so both pipelines apply). Example for one H200 at 160 pixels:
    fastload bench train --images 50000 --image-size 176 --resolution 160 --batch-size 512 --steps 200 \
        --pipeline both --num-workers 16 --amp bf16 --channels-last
"""
import argparse

PIPELINES = ("ffcv", "raw-gpu", "both")


def configure(p):
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--beton", help="train beton to read (default: compile a synthetic one in a temporary folder)")
    p.add_argument("--images", type=int, default=96, help="synthetic beton: number of images")
    p.add_argument("--image-size", type=int, default=72, help="synthetic beton: stored side in pixels (square)")
    p.add_argument("--classes", type=int, default=4, help="synthetic beton: classes")
    p.add_argument("--arch", default="alexnet_caffe", help="alexnet_caffe or alexnet_tv")
    p.add_argument("--resolution", type=int, default=64, help="train crop side in pixels")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (JIT, cudnn autotune)")
    p.add_argument("--pipeline", default="ffcv", choices=PIPELINES, help="data path(s) to measure")
    p.add_argument("--crop", default="rrc", choices=("rrc", "caffe"),
                   help="ffcv pipeline: random-resized crop, or Caffe's random window of a square resize")
    p.add_argument("--num-workers", type=int, default=2, help="loader threads")
    p.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"), help="autocast dtype on CUDA")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs")
    p.add_argument("--json", help="also write the results to this JSON file")


# ---------------------------------------------------------------- data

def synthetic_beton(folder, images: int, size: int, classes: int) -> str:
    """Compile `images` random-noise squares of `size` pixels into folder/c/train.beton (`--square`, raw)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from ..compile import CompileSettings, compile_imagenet
    from ..resources import imagenet_wnids
    root, rng = Path(folder) / "images", np.random.default_rng(0)
    wnids = imagenet_wnids()[:classes]
    for i in range(images):
        d = root / "train" / wnids[i % classes]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    compile_imagenet(root, Path(folder) / "c", CompileSettings(write_mode="raw", square=size),
                     splits=("train",))
    return str(Path(folder) / "c" / "train.beton")


def beton_labels(beton: str):
    """(rows, identity label lookup) covering every row and class id of the beton."""
    import numpy as np
    from ffcv.reader import Reader
    reader = Reader(beton)
    labels = reader.metadata[f"f{reader.field_names.index('label')}"]
    return np.arange(reader.num_samples, dtype=np.int64), np.arange(int(labels.max()) + 1, dtype=np.int32)


# ---------------------------------------------------------------- measurement

class Step:
    """The trainer's train step (fastload.pretrain.train_step) on a bare model, without a run folder."""

    def __init__(self, args, num_classes, device):
        import torch

        from .. import pretrain
        cfg = pretrain.apply_overrides(pretrain.load_recipe("fast"), [
            ("arch", args.arch), ("amp", args.amp), ("channels_last", str(args.channels_last)),
            ("compile", str(args.compile)), ("batch_size", str(args.batch_size)), ("init", "kaiming")])
        self.cfg, self.dist = cfg, _Dist(device)
        self.model, self.bare = pretrain.create_model(cfg, num_classes, self.dist)
        self.optimizer = pretrain.create_optimizer(cfg, self.bare)
        self.amp_dtype = pretrain.autocast_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self._step = pretrain.train_step

    def __call__(self, images, labels):
        return self._step(self, images, labels, 0.01)


class _Dist:
    def __init__(self, device):
        self.device, self.rank, self.world_size, self.distributed = device, 0, 1, False


def synchronize(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, batches, warmup: int, steps: int, device) -> dict:
    """images/s over `steps` steps after `warmup`; `batches` yields (images, labels); data wait share too."""
    import time
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    synchronize(device)
    wait, n, t0 = 0.0, 0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        images, labels = next(it)
        wait += time.perf_counter() - t
        step(images, labels)
        n += labels.shape[0]
    synchronize(device)
    seconds = time.perf_counter() - t0
    return {"images_per_s": n / seconds, "seconds": seconds, "data_wait": wait / seconds, "images": n}


def repeat_epochs(loader, transform=None):
    """Batches from the loader forever (a new epoch when one ends), optionally transformed."""
    epoch = 0
    while True:
        loader.next_epoch = epoch
        for images, labels in loader:
            yield (transform(images), labels) if transform else (images, labels)
        epoch += 1


def same_batch(images, labels):
    while True:
        yield images, labels


def run(args):
    import json
    import tempfile

    import torch

    from ..distributed import pick_device
    from ..errors import UsageError
    from ..loader import make_loader
    from ..pretrain import device_random_resized_crop, raw_loader
    if min(args.steps, args.batch_size, args.resolution, args.images) < 1 or args.warmup_steps < 0:
        raise UsageError("--steps, --batch-size, --resolution and --images must be >= 1, --warmup-steps >= 0")
    device = pick_device(0, args.device)
    with tempfile.TemporaryDirectory(prefix="fastload-bench-") as tmp:
        beton = args.beton or synthetic_beton(tmp, args.images, args.image_size, args.classes)
        rows, lookup = beton_labels(beton)
        if len(rows) < args.batch_size:
            raise UsageError(f"{beton} has {len(rows)} rows, fewer than --batch-size {args.batch_size}")
        step = Step(args, len(lookup), device)
        in_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # what the loader hands over
        fixed = torch.randn(args.batch_size, 3, args.resolution, args.resolution, device=device).to(in_dtype)
        if args.channels_last:
            fixed = fixed.contiguous(memory_format=torch.channels_last)
        fixed_labels = torch.randint(0, len(lookup), (args.batch_size,), device=device)
        results = {"device": str(device), "arch": args.arch, "resolution": args.resolution,
                   "batch_size": args.batch_size, "amp": args.amp if device.type == "cuda" else "none (CPU)",
                   "channels_last": args.channels_last, "beton": args.beton or "synthetic", "crop": args.crop,
                   "ceiling": time_steps(step, same_batch(fixed, fixed_labels), args.warmup_steps, args.steps, device)}
        report("ceiling (data on device)", results["ceiling"], None)
        if args.pipeline in ("ffcv", "both"):
            loader = make_loader(beton, rows, lookup, args.batch_size, args.resolution, True, device=str(device),
                                 num_workers=args.num_workers, crop=args.crop)
            results["ffcv"] = time_steps(step, repeat_epochs(loader), args.warmup_steps, args.steps, device)
            report("end to end, ffcv loader", results["ffcv"], results["ceiling"])
        if args.pipeline in ("raw-gpu", "both"):
            loader = raw_loader(beton, rows, lookup, args.batch_size, device, args.num_workers)
            crop = lambda x: device_random_resized_crop(x, args.resolution, in_dtype, args.channels_last)  # noqa
            results["raw-gpu"] = time_steps(step, repeat_epochs(loader, crop), args.warmup_steps, args.steps, device)
            report("end to end, raw + device augmentation", results["raw-gpu"], results["ceiling"])
    for key in ("ffcv", "raw-gpu"):
        if key in results:
            results[key]["ratio"] = results[key]["images_per_s"] / results["ceiling"]["images_per_s"]
    if args.json:
        from pathlib import Path
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(name: str, r: dict, ceiling) -> None:
    ratio = f"  ratio {r['images_per_s'] / ceiling['images_per_s']:.1%} of the ceiling" if ceiling else ""
    print(f"{name:<40} {r['images_per_s']:>10,.0f} img/s  (data wait {r['data_wait']:.0%}){ratio}", flush=True)
