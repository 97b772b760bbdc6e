"""Pre-train AlexNet on one manifest: the same code on one CPU, one GPU, or many GPUs and nodes (torchrun/DDP).

Recipes are flat YAML files in train/ (`paper`, `fast`, `smoke`, or a path); every key is one of SETTINGS below
(unknown keys are an error) and every setting can be overridden on the command line (`--lr 0.02` or
`--set lr=0.02`). The schedule is counted in epochs of the manifest (fractional epochs inside an epoch, so the
learning rate moves every iteration); the paper recipe's 20 / 90 epochs are BVLC's 100k / 450k iterations of
256 images on the 1.28M-image ImageNet train set.

Expected top-1 on full ImageNet-1k (single center crop):
- paper: ~57% (BVLC AlexNet, 57.1% top-1 / 80.2% top-5, reported by the BVLC Caffe model zoo for
  bvlc_alexnet trained with this solver; Huh et al. 2016 use that model as their full-ImageNet baseline).
- fast: aims at the paper figure in a fraction of the GPU-hours (FFCV's ResNet recipes reach their 88-epoch
  accuracy within ~1-2 points at 32-40 epochs); it has not been measured end to end on ImageNet with this code.

Run folder (OUT): config.yaml (the resolved settings and inputs), metrics.jsonl, TensorBoard events,
last.pt (every epoch and every `checkpoint_minutes`), optional checkpoint_epochN.pt, summary.json.
A checkpoint holds only tensors and plain values (torch.load(weights_only=True) reads it); `--resume` restarts
from last.pt with the same optimizer, scaler, schedule and per-epoch data order; a checkpoint taken in the middle
of an epoch replays that epoch's order and skips the batches already trained on.
"""
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .errors import FastloadError, UsageError
from .files import write_json
from .resources import REPO_ROOT, TRAIN_RECIPES_DIR

# torch, fastload.distributed and fastload.models are imported inside the functions that use them: the settings
# table below builds `fastload pretrain`'s flags, and `fastload --help` must not wait for torch.
ARCHS = ("alexnet_caffe", "alexnet_tv")   # = fastload.models.alexnet.ARCHS (a test checks)
INITS = ("caffe", "kaiming", "default")   # = fastload.models.alexnet.INITS


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: object
    help: str
    choices: tuple = None


# Every recipe key, declared once. Units are in the help text.
SETTINGS = [
    Setting("arch", str, "alexnet_caffe", "network", ARCHS),
    Setting("init", str, "caffe", "weight init: BVLC Gaussians, He, or PyTorch defaults", INITS),
    Setting("dropout", float, 0.5, "dropout probability after fc6 and fc7"),
    Setting("epochs", int, 90, "training length in epochs of the manifest"),
    Setting("batch_size", int, 256, "global batch (images per step over all processes; split evenly)"),
    Setting("lr", float, 0.01, "peak learning rate for the global batch"),
    Setting("lr_schedule", str, "step", "'step': x lr_gamma every lr_step_epochs; 'linear': to 0 at the end",
            ("step", "linear")),
    Setting("lr_step_epochs", float, 20.0, "step schedule: epochs between decays"),
    Setting("lr_gamma", float, 0.1, "step schedule: decay factor"),
    Setting("warmup_epochs", float, 0.0, "linear warm-up from lr*warmup_start_factor to lr over this many epochs"),
    Setting("warmup_start_factor", float, 0.1, "first warm-up learning rate as a fraction of lr"),
    Setting("momentum", float, 0.9, "SGD momentum"),
    Setting("nesterov", bool, False, "Nesterov momentum"),
    Setting("weight_decay", float, 5e-4, "L2 weight decay on weights"),
    Setting("bias_decay", bool, False, "also decay biases (Caffe's AlexNet does not: decay_mult 0)"),
    Setting("bias_lr_mult", float, 2.0, "learning-rate multiplier for biases (Caffe's AlexNet: 2)"),
    Setting("label_smoothing", float, 0.0, "cross-entropy label smoothing"),
    Setting("min_res", int, 227, "train crop size at the start of progressive resizing (pixels)"),
    Setting("max_res", int, 227, "train crop size at the end of progressive resizing (pixels)"),
    Setting("start_ramp", float, 0.0, "epoch where the resolution starts growing from min_res"),
    Setting("end_ramp", float, 0.0, "epoch where it reaches max_res"),
    Setting("res_step", int, 32, "resolutions between min_res and max_res are rounded down to multiples of this"),
    Setting("val_res", int, 227, "validation center-crop size (pixels)"),
    Setting("augment", str, "cpu", "train crops: 'cpu' = the loader's random-resized crop + flip (any beton); "
            "'device' = a beton stored raw at one size is copied as bytes, cropped/flipped/normalised on the device",
            ("cpu", "device")),
    Setting("crop", str, "rrc", "augment 'cpu' crops: 'rrc' = random-resized crop (scale 0.08-1) + flip, val centre "
            "224/256; 'caffe' = BVLC's data layer: image resized to 256x256 (aspect ignored), random 227 window + "
            "mirror, val centre 227 (sides scale with the resolution)", ("rrc", "caffe")),
    Setting("amp", str, "none", "mixed precision on CUDA (the CPU always runs float32)", ("none", "bf16", "fp16")),
    Setting("channels_last", bool, False, "NHWC memory format for the model and its inputs"),
    Setting("compile", bool, False, "torch.compile the model"),
    Setting("num_workers", int, 8, "loader threads per process"),
    Setting("seed", int, 0, "seed of weights and data order (epoch e uses seed + e)"),
    Setting("eval_every", int, 1, "validate every N epochs (and always after the last)"),
    Setting("checkpoint_minutes", float, 30.0, "also checkpoint inside an epoch every N minutes (0: only per epoch)"),
    Setting("keep_every", int, 0, "keep OUT/checkpoint_epochN.pt every N epochs (0: only last.pt)"),
    Setting("log_every", int, 50, "steps between metrics.jsonl / TensorBoard train entries"),
    Setting("device", str, "auto", "'auto': CUDA when available, else CPU", ("auto", "cpu", "cuda")),
]
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
# settings that may change between a run and its --resume without changing what is trained
RESUMABLE_CHANGES = {"num_workers", "checkpoint_minutes", "log_every", "device", "compile", "keep_every"}
RECIPES = ("paper", "fast", "smoke")
# the smallest input each AlexNet accepts (= fastload.models.alexnet.MIN_INPUT): conv1 11/4 and the 3/2 max-pools
MIN_RES = {"alexnet_caffe": 35, "alexnet_tv": 63}


# ---------------------------------------------------------------- configuration

def parse_value(setting: Setting, value, source: str):
    """`value` (YAML scalar or command-line string) as the setting's type, checked against its choices."""
    try:
        if setting.type is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, bool):
                raise ValueError(value)
        elif setting.type is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        else:
            value = setting.type(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: {setting.name}={value!r} is not a {setting.type.__name__}") from None
    if setting.choices and value not in setting.choices:
        raise UsageError(f"{source}: {setting.name}={value!r}; allowed: {', '.join(setting.choices)}")
    return value


def recipe_path(recipe: str) -> Path:
    """A recipe name in train/ or a path to a YAML file."""
    if recipe in RECIPES or not recipe.endswith((".yaml", ".yml")):
        path = TRAIN_RECIPES_DIR / f"{recipe}.yaml"
        if not path.is_file():
            raise UsageError(f"unknown recipe '{recipe}': use one of {', '.join(RECIPES)} or a .yaml path")
        return path
    path = Path(recipe)
    if not path.is_file():
        raise UsageError(f"recipe file {path} does not exist")
    return path


def load_recipe(recipe: str) -> dict:
    """The recipe's settings, every key declared and typed; missing keys take their defaults."""
    path = recipe_path(recipe)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"recipe {path} must be a flat mapping of settings")
    unknown = sorted(set(raw) - set(SETTINGS_BY_NAME))
    if unknown:
        raise UsageError(f"recipe {path}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(SETTINGS_BY_NAME)}")
    cfg = {s.name: s.default for s in SETTINGS}
    cfg.update({k: parse_value(SETTINGS_BY_NAME[k], v, str(path)) for k, v in raw.items()})
    return cfg


def apply_overrides(cfg: dict, pairs) -> dict:
    """cfg updated with (name, value) pairs from `--set name=value` or the per-setting flags."""
    cfg = dict(cfg)
    for name, value in pairs:
        name = name.replace("-", "_")
        if name not in SETTINGS_BY_NAME:
            raise UsageError(f"--set {name}: unknown setting; allowed: {', '.join(SETTINGS_BY_NAME)}")
        cfg[name] = parse_value(SETTINGS_BY_NAME[name], value, "command line")
    return cfg


def check_config(cfg: dict, world_size: int) -> None:
    """Reject settings that cannot train, before any data is read."""
    for name in ("epochs", "batch_size", "res_step", "eval_every", "log_every"):
        if cfg[name] < 1:
            raise UsageError(f"{name} must be >= 1, got {cfg[name]}")
    for name in ("min_res", "max_res", "val_res"):
        if cfg[name] < MIN_RES[cfg["arch"]]:
            raise UsageError(f"{name} must be >= {MIN_RES[cfg['arch']]} for {cfg['arch']} (its pools need it), "
                             f"got {cfg[name]}")
    if cfg["batch_size"] % world_size:
        raise UsageError(f"batch_size {cfg['batch_size']} is not divisible by the {world_size} processes")
    if cfg["min_res"] > cfg["max_res"] or cfg["start_ramp"] > cfg["end_ramp"]:
        raise UsageError("need min_res <= max_res and start_ramp <= end_ramp")
    if cfg["crop"] == "caffe" and cfg["augment"] == "device":
        raise UsageError("crop 'caffe' is done by the CPU loader: use augment 'cpu' with it (augment 'device' draws "
                         "random-resized crops on the device)")
    if cfg["init"] == "caffe" and cfg["arch"] != "alexnet_caffe":
        raise UsageError("init 'caffe' is defined for arch 'alexnet_caffe' only; use 'kaiming' or 'default'")


# ---------------------------------------------------------------- schedule

def get_lr(cfg: dict, epoch: float) -> float:
    """Learning rate at fractional epoch `epoch`: optional linear warm-up, then step or linear decay."""
    lr, warm = cfg["lr"], cfg["warmup_epochs"]
    if epoch < warm:
        start = cfg["warmup_start_factor"]
        return lr * (start + (1.0 - start) * epoch / warm)
    if cfg["lr_schedule"] == "step":
        return lr * cfg["lr_gamma"] ** math.floor(epoch / cfg["lr_step_epochs"])
    return lr * max(0.0, (cfg["epochs"] - epoch) / max(cfg["epochs"] - warm, 1e-12))


def get_resolution(cfg: dict, epoch: int) -> int:
    """Train crop size of `epoch`: min_res until start_ramp, a linear ramp rounded down to res_step, then max_res."""
    if epoch >= cfg["end_ramp"]:
        return cfg["max_res"]
    if epoch <= cfg["start_ramp"]:
        return cfg["min_res"]
    frac = (epoch - cfg["start_ramp"]) / (cfg["end_ramp"] - cfg["start_ramp"])
    grown = (cfg["max_res"] - cfg["min_res"]) * frac
    return cfg["min_res"] + int(grown // cfg["res_step"]) * cfg["res_step"]


# ---------------------------------------------------------------- data

@dataclass
class TrainData:
    """What a run trains and validates on: rows of the train/val betons and the shared label lookup."""
    train_beton: str
    val_beton: str
    train_rows: np.ndarray
    val_rows: np.ndarray
    label_lookup: np.ndarray
    label_wnids: list
    manifest_recipe: dict


def load_train_data(manifest_path, beton, val_beton, val_index) -> TrainData:
    """The manifest's train rows and label lookup, and the val rows whose class it keeps (same lookup)."""
    from .index import load_index
    from .manifest import load_manifest
    for flag, path in (("--beton", beton), ("--val-beton", val_beton)):
        if not Path(path).is_file():
            raise FastloadError(f"{flag} {path} does not exist (it is written by `fastload compile`)")
    manifest = load_manifest(manifest_path)
    vindex = load_index(val_index)
    if list(vindex.class_wnids) != list(manifest.class_wnids):
        raise FastloadError(f"{val_index} has {vindex.num_classes} classes that differ from the manifest "
                            f"{manifest_path}'s {len(manifest.class_wnids)}: use the val index of the same compile")
    val_rows = np.asarray(manifest.val_indices(vindex), dtype=np.int64)
    recipe = manifest.recipe
    if isinstance(recipe, str):
        recipe = json.loads(recipe)
    return TrainData(str(beton), str(val_beton), np.asarray(manifest.indices, dtype=np.int64), val_rows,
                     np.asarray(manifest.label_lookup, dtype=np.int32), [str(w) for w in manifest.label_wnids],
                     recipe)


def make_loader(*args, **kwargs):
    """fastload.loader.make_loader (imported late: FFCV and Numba load slowly)."""
    from .loader import make_loader as make
    return make(*args, **kwargs)


def create_loader(data: TrainData, cfg: dict, dist, train: bool, res: int):
    """The train (random crop + flip, shuffled per epoch) or val (center crop) loader at `res` pixels, cropped as
    cfg['crop'] says. With augment 'device' the train loader hands over raw uint8 images and train_one_epoch crops
    them."""
    if train and cfg["augment"] == "device":
        return raw_loader(data.train_beton, data.train_rows, data.label_lookup, cfg["batch_size"] // dist.world_size,
                          dist.device, cfg["num_workers"], distributed=dist.distributed, seed=cfg["seed"])
    return make_loader(data.train_beton if train else data.val_beton,
                       data.train_rows if train else data.val_rows,
                       data.label_lookup, batch_size=cfg["batch_size"] // dist.world_size, resolution=res,
                       train=train, device=str(dist.device), distributed=dist.distributed,
                       num_workers=cfg["num_workers"], seed=cfg["seed"], drop_last=train, crop=cfg["crop"])


def set_loader_epoch(loader, epoch: int) -> None:
    """Make the loader draw epoch `epoch`'s order (seed + epoch), whatever it drew before: resumes see the
    same order as the uninterrupted run."""
    if not hasattr(loader, "next_epoch"):
        raise FastloadError(f"loader {type(loader).__name__} has no next_epoch: cannot fix the data order")
    loader.next_epoch = epoch


# ---------------------------------------------------------------- device-side augmentation (augment: device)

def raw_loader(beton: str, rows, lookup, batch_size: int, device, num_workers: int, distributed: bool = False,
               seed: int = 0):
    """FFCV loader that only copies fixed-size raw images (uint8 NHWC) and labels (looked up) to the device;
    random order (seed + epoch), last partial batch dropped. `device_random_resized_crop` does the rest."""
    import numpy as np
    import torch
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.reader import Reader
    from ffcv.transforms import ToDevice, ToTensor

    from .loader import LookupLabel
    reader = Reader(str(beton))
    meta = reader.metadata[f"f{reader.field_names.index('image')}"]
    sizes = set(zip(meta["width"].tolist(), meta["height"].tolist()))
    if len(sizes) != 1:
        raise FastloadError(f"augment 'device' needs a beton whose images all have one size; {beton} has "
                            f"{len(sizes)} sizes: compile it with `fastload compile imagenet ROOT OUT --square S`, or use "
                           "augment 'cpu'")
    device = torch.device(device)
    to_device = [ToDevice(device, non_blocking=True)] if device.type == "cuda" else []
    return Loader(str(beton), batch_size=batch_size, num_workers=num_workers, order=OrderOption.RANDOM,
                  indices=np.asarray(rows).astype(np.uint64), drop_last=True, distributed=distributed, seed=seed,
                  pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()] + to_device,
                             "label": [IntDecoder(), LookupLabel(lookup), ToTensor()] + to_device})


def device_random_resized_crop(images, resolution: int, dtype, channels_last: bool, scale=(0.08, 1.0),
                               ratio=(3 / 4, 4 / 3)):
    """uint8 NHWC batch -> normalised NCHW crops (torchvision's RandomResizedCrop ranges, random flip), computed
    on the batch's device with one affine grid_sample (bilinear)."""
    import math

    import torch
    import torch.nn.functional as F

    from .loader import IMAGENET_MEAN, IMAGENET_STD
    n, dev = images.shape[0], images.device
    x = images.permute(0, 3, 1, 2).float()
    area = torch.empty(n, device=dev).uniform_(*scale)
    log_r = torch.empty(n, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)   # crop size as a fraction of the side
    h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
    cx = (torch.rand(n, device=dev) * 2 - 1) * (1 - w)       # centre in [-1, 1] keeping the crop inside
    cy = (torch.rand(n, device=dev) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, (n, 3, resolution, resolution), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1) * 255
    out = ((out - mean) / std).to(dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


# ---------------------------------------------------------------- model and optimizer

def create_model(cfg: dict, num_classes: int, dist):
    """(model to train, bare model to save): on the device, channels_last/compiled/DDP-wrapped as configured."""
    import torch

    from .models.alexnet import build_model
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["arch"], num_classes, init=cfg["init"], dropout=cfg["dropout"]).to(dist.device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    bare = model
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    if cfg["compile"]:
        model = torch.compile(model)
    return model, bare


def create_optimizer(cfg: dict, model):
    """SGD with Caffe's split: weights decay at lr x 1, biases at lr x bias_lr_mult (decayed if bias_decay)."""
    import torch
    weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": cfg["weight_decay"], "lr_mult": 1.0},
              {"params": biases, "weight_decay": cfg["weight_decay"] if cfg["bias_decay"] else 0.0,
               "lr_mult": cfg["bias_lr_mult"]}]
    return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]


def autocast_dtype(cfg: dict, device):
    """The autocast dtype, or None for float32 (always on the CPU)."""
    import torch
    if device.type != "cuda" or cfg["amp"] == "none":
        return None
    return torch.bfloat16 if cfg["amp"] == "bf16" else torch.float16


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file in the same folder, then rename: a kill never leaves half a checkpoint."""
    import torch
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def checkpoint_state(run, epoch: int, step_in_epoch: int) -> dict:
    """Everything --resume needs, as tensors and plain values only (weights_only loading)."""
    return {"model": run.bare.state_dict(), "arch": run.cfg["arch"], "num_classes": len(run.data.label_wnids),
            "label_wnids": list(run.data.label_wnids), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "global_step": run.global_step, "optimizer": run.optimizer.state_dict(),
            "scheduler": {"global_step": run.global_step, "type": run.cfg["lr_schedule"]},
            "scaler": run.scaler.state_dict(), "recipe": dict(run.cfg), "args": dict(run.inputs),
            "manifest_recipe": run.data.manifest_recipe, "history": list(run.history),
            "elapsed_s": run.elapsed(), "train_images_s": run.train_images_s, "train_time_s": run.train_time_s}


def restore_checkpoint(run, path: Path) -> None:
    """Load last.pt into the run; its settings must match the current ones except RESUMABLE_CHANGES."""
    import torch
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    changed = sorted(k for k in run.cfg if k not in RESUMABLE_CHANGES and ckpt["recipe"].get(k) != run.cfg[k])
    if changed:
        diffs = ", ".join(f"{k}: {ckpt['recipe'].get(k)!r} -> {run.cfg[k]!r}" for k in changed)
        raise UsageError(f"--resume: {path} was trained with other settings ({diffs}); use the same recipe")
    if list(ckpt["label_wnids"]) != list(run.data.label_wnids):
        raise UsageError(f"--resume: {path} was trained on another label set than this manifest")
    run.bare.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.epoch, run.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
    run.global_step = ckpt["global_step"]
    run.history = list(ckpt["history"])
    run.elapsed_before = ckpt["elapsed_s"]
    run.train_images_s, run.train_time_s = ckpt["train_images_s"], ckpt["train_time_s"]


# ---------------------------------------------------------------- logging

class MetricsLog:
    """metrics.jsonl and TensorBoard events in the run folder, written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **values}) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"{kind}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def git_commit() -> str:
    """The repository's HEAD commit, or 'unknown' outside a git checkout (or before the first commit)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


# ---------------------------------------------------------------- training

class Run:
    """The state of one training run that train_one_epoch / evaluate / checkpoints share."""

    def __init__(self, cfg, inputs, data, dist, out):
        import torch
        self.cfg, self.inputs, self.data, self.dist, self.out = cfg, inputs, data, dist, out
        self.model, self.bare = create_model(cfg, len(data.label_wnids), dist)
        self.optimizer = create_optimizer(cfg, self.bare)
        self.amp_dtype = autocast_dtype(cfg, dist.device)
        self.input_dtype = torch.bfloat16 if self.amp_dtype == torch.bfloat16 else torch.float32
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history = []            # one dict per finished epoch: train loss, val top1/top5
        self.elapsed_before = 0.0    # wall seconds spent before the last resume
        self.started = time.time()
        self.train_images_s, self.train_time_s = 0.0, 0.0
        self.last_save = time.time()
        self.log = MetricsLog(out, dist.rank == 0)
        self.loaders = {}

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def loader(self, train: bool, res: int):
        """Loaders are built once per (split, resolution): progressive resizing builds a handful."""
        key = (train, res)
        if key not in self.loaders:
            self.loaders[key] = create_loader(self.data, self.cfg, self.dist, train, res)
        return self.loaders[key]

    def save(self, epoch: int, step_in_epoch: int) -> None:
        """Rank 0 writes last.pt (every rank holds the same weights after each DDP step)."""
        if self.dist.rank == 0:
            save_checkpoint(self.out / "last.pt", checkpoint_state(self, epoch, step_in_epoch))
        self.last_save = time.time()

    def maybe_save_in_epoch(self, epoch: int, step_in_epoch: int) -> None:
        minutes = self.cfg["checkpoint_minutes"]
        if minutes > 0 and time.time() - self.last_save >= 60 * minutes:
            self.save(epoch, step_in_epoch)


def prepare_images(run, images):
    """The loader's batch in the model's layout; float32 when autocast is off (the loader gives bf16 on CUDA)."""
    import torch
    if run.amp_dtype is None and images.dtype != torch.float32:
        images = images.float()
    if run.cfg["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def train_step(run, images, labels, lr: float):
    """One SGD step; returns the (detached) loss."""
    import torch
    import torch.nn.functional as F
    set_lr(run.optimizer, lr)
    images = prepare_images(run, images)
    with torch.autocast(run.dist.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        loss = F.cross_entropy(run.model(images), labels, label_smoothing=run.cfg["label_smoothing"])
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss.detach()


def train_one_epoch(run, epoch: int) -> dict:
    """One epoch (or its rest, after a mid-epoch resume): per-iteration lr, tqdm bar, data-wait share."""
    import torch
    from tqdm import tqdm

    from . import distributed as fdist
    res = get_resolution(run.cfg, epoch)
    loader = run.loader(True, res if run.cfg["augment"] == "cpu" else 0)  # device crops: one loader for all sizes
    set_loader_epoch(loader, epoch)
    steps, skip = len(loader), run.step_in_epoch
    run.model.train()
    bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{run.cfg['epochs']} {res}px",
               disable=run.dist.rank != 0, dynamic_ncols=True, file=sys.stderr)
    loss_sum = torch.zeros((), device=run.dist.device)
    images_seen, wait, t_epoch = 0, 0.0, time.perf_counter()
    t_ready = t_epoch
    for i, (images, labels) in enumerate(loader):
        if i < skip:  # mid-epoch resume: these batches were trained on before the interruption
            t_ready = time.perf_counter()
            continue
        wait += time.perf_counter() - t_ready
        if run.cfg["augment"] == "device":
            images = device_random_resized_crop(images, res, run.input_dtype, run.cfg["channels_last"])
        loss = train_step(run, images, labels, get_lr(run.cfg, epoch + i / steps))
        loss_sum += loss.float()
        images_seen += labels.shape[0]
        run.global_step += 1
        run.step_in_epoch = i + 1
        if (i + 1) % run.cfg["log_every"] == 0:
            log_train_step(run, epoch, loss, images_seen, wait, t_epoch, res)
        rate = images_seen * run.dist.world_size / max(time.perf_counter() - t_epoch, 1e-9)
        bar.set_postfix_str(f"{rate:,.0f} img/s, data wait {wait / max(time.perf_counter() - t_epoch, 1e-9):.0%}",
                            refresh=False)
        bar.update(1)
        run.maybe_save_in_epoch(epoch, i + 1)
        t_ready = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - t_epoch
    loss_total, count = fdist.all_reduce_sum([loss_sum.item(), steps - skip], run.dist.device)
    global_images = images_seen * run.dist.world_size
    run.train_images_s += global_images
    run.train_time_s += seconds
    return {"epoch": epoch, "loss": loss_total / max(count, 1), "res": res, "images": global_images,
            "seconds": seconds, "images_per_s": global_images / max(seconds, 1e-9),
            "data_wait": wait / max(seconds, 1e-9), "lr": get_lr(run.cfg, epoch + 1 - 1e-9)}


def log_train_step(run, epoch, loss, images_seen, wait, t_epoch, res) -> None:
    seconds = max(time.perf_counter() - t_epoch, 1e-9)
    run.log.write("train_step", run.global_step, epoch=epoch, loss=loss.item(), res=res,
                  lr=run.optimizer.param_groups[0]["lr"],
                  images_per_s=images_seen * run.dist.world_size / seconds, data_wait=wait / seconds)


def evaluate(run) -> dict:
    """Top-1 and top-k (k = min(5, labels)) over the manifest's val rows, summed over all processes."""
    import torch
    import torch.nn.functional as F

    from . import distributed as fdist
    run.model.eval()
    k = min(5, len(run.data.label_wnids))
    counts = torch.zeros(4, dtype=torch.float64, device=run.dist.device)  # top-1 hits, top-k hits, images, loss
    with torch.no_grad():
        for images, labels in run.loader(False, run.cfg["val_res"]):
            images = prepare_images(run, images)
            with torch.autocast(run.dist.device.type, dtype=run.amp_dtype or torch.float32,
                                enabled=run.amp_dtype is not None):
                logits = run.model(images).float()
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            counts[0] += hits[:, 0].sum()
            counts[1] += hits.any(dim=1).sum()
            counts[2] += labels.shape[0]
            counts[3] += F.cross_entropy(logits, labels, reduction="sum").double()
    c1, c5, n, loss = fdist.all_reduce_sum(counts.tolist(), run.dist.device)
    if n == 0:
        raise FastloadError("the validation set is empty: no val image belongs to a class the manifest keeps")
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "topk": k, "val_loss": loss / n, "val_images": int(n)}


def fit(run) -> dict:
    """Train from run.epoch to the last epoch, validating and checkpointing; returns the last validation."""
    cfg, last_val = run.cfg, None
    for epoch in range(run.epoch, cfg["epochs"]):
        stats = train_one_epoch(run, epoch)
        run.log.write("train_epoch", run.global_step, **stats)
        entry = {"epoch": epoch, "loss": stats["loss"]}
        if (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]:
            last_val = evaluate(run)
            run.log.write("val", run.global_step, epoch=epoch, **last_val)
            entry.update(last_val)
            if run.dist.rank == 0:
                print(f"epoch {epoch + 1}: loss {stats['loss']:.4f}, top-1 {last_val['top1']:.2f}%, "
                      f"top-{last_val['topk']} {last_val['top5']:.2f}%, {stats['images_per_s']:,.0f} img/s, "
                      f"data wait {stats['data_wait']:.0%}", file=sys.stderr)
        run.history.append(entry)
        run.epoch, run.step_in_epoch = epoch + 1, 0
        run.save(epoch + 1, 0)
        if run.dist.rank == 0 and cfg["keep_every"] and (epoch + 1) % cfg["keep_every"] == 0:
            save_checkpoint(run.out / f"checkpoint_epoch{epoch + 1}.pt", checkpoint_state(run, epoch + 1, 0))
    if last_val is None:  # resumed after the last epoch had finished: validate again for the summary
        last_val = evaluate(run)
    return last_val


def summarize(run, val: dict, recipe_name: str) -> dict:
    return {"recipe": recipe_name, "config": dict(run.cfg), "manifest_recipe": run.data.manifest_recipe,
            "inputs": dict(run.inputs), "epochs": run.epoch, "wall_time_s": run.elapsed(),
            "train_time_s": run.train_time_s, "images_per_s": run.train_images_s / max(run.train_time_s, 1e-9),
            "top1": val["top1"], "top5": val["top5"], "topk": val["topk"], "val_images": val["val_images"],
            "train_images": int(len(run.data.train_rows)), "num_labels": len(run.data.label_wnids),
            "world_size": run.dist.world_size, "device": str(run.dist.device), "git_commit": git_commit(),
            "history": run.history}


def prepare_out(out: Path, resume: bool, rank: int) -> bool:
    """Create the run folder; True when a checkpoint is there to resume from. A finished or started run is never
    overwritten without --resume."""
    from . import distributed as fdist
    last = out / "last.pt"
    if last.exists() and not resume:
        raise UsageError(f"{out} already holds a run (last.pt): pass --resume to continue it or choose another --out")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    fdist.barrier()
    return resume and last.exists()


def main(recipe: str, overrides, inputs: dict, resume: bool = False) -> dict:
    """Train one run. `inputs`: manifest, beton, val_beton, val_index, out (paths). Returns the summary on rank 0
    (None on the other ranks)."""
    from . import distributed as fdist
    cfg = apply_overrides(load_recipe(recipe), overrides)
    dist = fdist.init_distributed(cfg["device"])
    try:
        check_config(cfg, dist.world_size)
        out = Path(inputs["out"])
        found = prepare_out(out, resume, dist.rank)
        data = load_train_data(inputs["manifest"], inputs["beton"], inputs["val_beton"], inputs["val_index"])
        run = Run(cfg, {k: str(v) for k, v in inputs.items()}, data, dist, out)
        if found:
            restore_checkpoint(run, out / "last.pt")
            if dist.rank == 0:
                print(f"resuming {out} at epoch {run.epoch + 1}, step {run.step_in_epoch}", file=sys.stderr)
        elif resume and dist.rank == 0:
            print(f"--resume: no checkpoint in {out} yet, starting from scratch", file=sys.stderr)
        if dist.rank == 0:
            (out / "config.yaml").write_text(yaml.safe_dump({"recipe": recipe, **cfg, "inputs": run.inputs,
                                                            "world_size": dist.world_size,
                                                            "device": str(dist.device)}, sort_keys=False))
            print(f"pre-training {cfg['arch']} on {len(data.train_rows)} images, {len(data.label_wnids)} labels, "
                  f"{len(data.val_rows)} val images; {dist.world_size} process(es) on {dist.device}, "
                  f"{'float32' if run.amp_dtype is None else run.amp_dtype}", file=sys.stderr)
        val = fit(run)
        summary = summarize(run, val, recipe)
        if dist.rank == 0:
            write_json(out / "summary.json", summary)
        run.log.close()
        fdist.barrier()
        return summary if dist.rank == 0 else None
    finally:
        fdist.cleanup_distributed()
