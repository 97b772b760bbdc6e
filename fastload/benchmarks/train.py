"""fastload bench train: end-to-end training images/s against the train step on data already on the device.

The ceiling is the model's train step (the trainer's own `train_step`: SGD, autocast and channels_last as asked)
on one batch that already sits on the device; end to end is the same step fed by a loader over a beton, at the
same resolution and batch. The ratio says how much of the device the data path leaves unused.

Pipelines:
- `ffcv` (default): fastload.loader.make_loader, the trainer's loader: JPEG/raw decode with random-resized crop and
  flip on CPU threads (Numba), normalisation on the device.
- `raw-gpu`: the trainer's `augment: device` path (fastload.loader.raw_loader), for betons stored raw at one
  fixed size (the synthetic beton here): the CPU only copies bytes (FFCV SimpleRGBImageDecoder: no decode, no
  resize); random-resized crop + flip (one affine grid_sample per batch) and normalisation run on the device.

Without --beton, a synthetic beton of random-noise images (--images, --image-size) is compiled on the fly with
fastload.compile (raw, fixed size, so both pipelines apply). Example for one H200 at 160 pixels:
    fastload bench train --images 50000 --image-size 176 --resolution 160 --batch-size 512 --steps 200 \
        --pipeline both --num-workers 16 --amp bf16 --channels-last
"""
PIPELINES = ("ffcv", "raw-gpu", "both")
CROPS = ("rrc", "caffe")
AMP_CHOICES = ("none", "bf16", "fp16")


# ---------------------------------------------------------------- data

def synthetic_beton(folder, images: int, size: int, classes: int) -> str:
    """Compile `images` random-noise squares of `size` pixels into folder/c/train.beton (`--square`, raw)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from ..beton import beton_path
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
    return str(beton_path(Path(folder) / "c", "train"))


def beton_labels(beton: str):
    """(rows, identity label lookup) covering every row and class id of the beton (checked first: a missing,
    truncated or non-beton file is a FastloadError naming it)."""
    import numpy as np
    from ffcv.reader import Reader

    from ..beton import check_beton
    check_beton(beton)
    reader = Reader(str(beton))
    labels = reader.metadata[f"f{reader.field_names.index('label')}"]
    return np.arange(reader.num_samples, dtype=np.int64), np.arange(int(labels.max()) + 1, dtype=np.int32)


# ---------------------------------------------------------------- measurement

STEP_LR = 0.01  # any fixed learning rate: the benchmark times steps, it does not train to an accuracy


def make_step(arch: str, amp: str, channels_last: bool, compile_model: bool, batch_size: int, num_classes: int,
              device):
    """The trainer's own `pretrain.train_step` as `step(images, labels)`, on a model, optimizer and scaler built
    as the 'fast' recipe builds them (with the given arch, amp, channels_last, compile and batch size)."""
    import functools

    import torch

    from .. import pretrain
    from ..distributed import DistInfo
    from ..recipe import apply_overrides, load_recipe
    cfg = apply_overrides(load_recipe("fast"), [
        ("arch", arch), ("amp", amp), ("channels_last", str(channels_last)),
        ("compile", str(compile_model)), ("batch_size", str(batch_size)), ("init", "kaiming")])
    model, bare = pretrain.create_model(cfg, num_classes, DistInfo(rank=0, world_size=1, local_rank=0, device=device))
    optimizer = pretrain.create_optimizer(cfg, bare)
    amp_dtype = pretrain.autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return functools.partial(pretrain.train_step, model, optimizer, scaler, lr=STEP_LR, amp_dtype=amp_dtype,
                             channels_last=channels_last, label_smoothing=cfg["label_smoothing"])


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


def bench_train(beton=None, images: int = 96, image_size: int = 72, classes: int = 4, arch: str = "alexnet_caffe",
                resolution: int = 64, batch_size: int = 16, steps: int = 4, warmup_steps: int = 2,
                pipeline: str = "ffcv", crop: str = "rrc", num_workers: int = 2, amp: str = "bf16",
                channels_last: bool = False, compile_model: bool = False, device: str = "auto",
                json_path=None) -> dict:
    """Train-step images/s on a batch already on the device (the ceiling) and fed by each asked `pipeline`
    ('ffcv', 'raw-gpu' or 'both') over `beton` (default: a synthetic one of `images` squares of `image_size`
    pixels in `classes` classes). Prints each figure, writes them to `json_path` when given, returns them."""
    import tempfile

    from ..distributed import pick_device
    from ..errors import UsageError
    from ..files import write_json
    from ..loader import make_loader, raw_loader
    for flag, value, choices in (("--pipeline", pipeline, PIPELINES), ("--crop", crop, CROPS),
                                 ("--amp", amp, AMP_CHOICES)):
        if value not in choices:
            raise UsageError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
    if min(steps, batch_size, resolution, images, num_workers) < 1 or warmup_steps < 0:
        raise UsageError("--steps, --batch-size, --resolution, --images and --num-workers must be >= 1, "
                         "--warmup-steps >= 0")
    dev = pick_device(0, device)
    with tempfile.TemporaryDirectory(prefix="fastload-bench-") as tmp:
        path = beton or synthetic_beton(tmp, images, image_size, classes)
        rows, lookup = beton_labels(path)
        if len(rows) < batch_size:
            raise UsageError(f"{path} has {len(rows)} rows, fewer than --batch-size {batch_size}")
        step = make_step(arch, amp, channels_last, compile_model, batch_size, len(lookup), dev)
        timing = (warmup_steps, steps, dev)
        results = {"device": str(dev), "arch": arch, "resolution": resolution, "batch_size": batch_size,
                   "amp": amp if dev.type == "cuda" else "none (CPU)", "channels_last": channels_last,
                   "beton": beton or "synthetic", "crop": crop,
                   "ceiling": time_steps(step, fixed_batches(batch_size, resolution, len(lookup), channels_last,
                                                            dev), *timing)}
        report("ceiling (data on device)", results["ceiling"], None)
        if pipeline in ("ffcv", "both"):
            loader = make_loader(path, rows, lookup, batch_size, resolution, True, device=str(dev),
                                 num_workers=num_workers, crop=crop)
            results["ffcv"] = time_steps(step, repeat_epochs(loader), *timing)
            report("end to end, ffcv loader", results["ffcv"], results["ceiling"])
        if pipeline in ("raw-gpu", "both"):
            loader = raw_loader(path, rows, lookup, batch_size, dev, num_workers)
            results["raw-gpu"] = time_steps(step, repeat_epochs(loader, device_crop(resolution, channels_last, dev)),
                                            *timing)
            report("end to end, raw + device augmentation", results["raw-gpu"], results["ceiling"])
    for key in ("ffcv", "raw-gpu"):
        if key in results:
            results[key]["ratio"] = results[key]["images_per_s"] / results["ceiling"]["images_per_s"]
    if json_path:
        write_json(json_path, results)
    return results


def input_dtype(device):
    """What the loaders hand over: bf16 on CUDA, float32 on the CPU."""
    import torch
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def fixed_batches(batch_size: int, resolution: int, num_classes: int, channels_last: bool, device):
    """One random batch already on the device, forever: the ceiling's input."""
    import torch
    images = torch.randn(batch_size, 3, resolution, resolution, device=device).to(input_dtype(device))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return same_batch(images, torch.randint(0, num_classes, (batch_size,), device=device))


def device_crop(resolution: int, channels_last: bool, device):
    """The trainer's `augment: device` crop, flip and normalisation of a raw uint8 batch."""
    from ..loader import device_random_resized_crop
    return lambda x: device_random_resized_crop(x, resolution, input_dtype(device), channels_last)


def report(name: str, r: dict, ceiling) -> None:
    ratio = f"  ratio {r['images_per_s'] / ceiling['images_per_s']:.1%} of the ceiling" if ceiling else ""
    print(f"{name:<40} {r['images_per_s']:>10,.0f} img/s  (data wait {r['data_wait']:.0%}){ratio}", flush=True)
