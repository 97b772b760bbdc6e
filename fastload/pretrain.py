"""Pre-train AlexNet or a ResNet (fastload.models.networks) on one manifest: the same code on one CPU, one GPU, or many GPUs and nodes (torchrun/DDP).

The settings are declared in fastload.recipe (flat YAML recipes in train/: `paper`, `fast`, `smoke`, or a path;
every setting can be overridden on the command line). The schedule is counted in epochs of the manifest
(fractional epochs inside an epoch, so the learning rate moves every iteration); the paper recipe's 20 / 90 epochs
are BVLC's 100k / 450k iterations of 256 images on the 1.28M-image ImageNet train set.

Expected top-1 on full ImageNet-1k (single center crop):
- paper: ~57% (BVLC AlexNet, 57.1% top-1 / 80.2% top-5, reported by the BVLC Caffe model zoo for
  bvlc_alexnet trained with this solver; Huh et al. 2016 use that model as their full-ImageNet baseline).
- fast: aims at the paper figure in a fraction of the GPU-hours (FFCV's ResNet recipes reach their 88-epoch
  accuracy within ~1-2 points at 32-40 epochs); it has not been measured end to end on ImageNet with this code.
- resnet18_16/88, resnet50_16/88: FFCV's ImageNet recipes (libffcv/ffcv-imagenet); the figures FFCV publishes
  for them are in each recipe's header (not measured with this code).

Run folder (OUT, held by one process at a time: fastload.files.OutputLock): config.yaml (the resolved settings and
inputs), metrics.jsonl (each step logged once, also across resumes), TensorBoard events, last.pt (every epoch and
every `checkpoint_minutes`), optional checkpoint_epochN.pt, summary.json (top1, and top5 with >= 5 labels, as
fractions in [0, 1]). `epochs: 0` saves and evaluates the seeded initial weights (a random-init control).

A checkpoint holds only tensors and plain values (torch.load(weights_only=True) reads it); `--resume` restarts
from last.pt with the same optimizer, scaler, schedule, data order and random draws: each step reseeds torch with
(seed, epoch, batch, rank) (dropout, device-side crops) and the loader seeds each image's crop by its batch (see
fastload.loader), so a resumed run ends with the weights an uninterrupted run ends with. A checkpoint taken in the
middle of an epoch replays that epoch's order, skips the batches already trained on and keeps the epoch's running
loss, so the logged epoch loss covers the whole epoch.
"""
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from . import distributed as fdist
from .errors import FastloadError, UsageError
from .files import OutputLock, atomic_path, write_json, write_text
from .beton import beton_fingerprint, check_beton
from .index import load_fingerprint, load_index
from .loader import device_random_resized_crop, make_loader, raw_loader
from .manifest import check_source, load_manifest
from .models.build import build_model
from .models.checkpoint import load_checkpoint
from .recipe import RESUMABLE_CHANGES, apply_overrides, check_config, load_recipe
from .store import code_version

# keys --resume needs in last.pt besides the model's (a file without them is no pre-training checkpoint)
RESUME_KEYS = ("recipe", "label_wnids", "optimizer", "scaler", "epoch", "step_in_epoch", "global_step", "history",
               "elapsed_s", "images_trained", "train_time_s", "epoch_progress", "metrics_lines")


# ---------------------------------------------------------------- schedule

CHECKPOINT_OVERHEAD_BYTES = 1 << 13  # torch.save's zip records, settings, history and RNG states beside the tensors


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
    manifest_recipe: dict  # how the manifest was selected (fastload.manifest's record), not a training recipe


def load_train_data(manifest_path, beton, val_beton, val_index) -> TrainData:
    """The manifest's train rows and label lookup, and the val rows whose class it keeps (same lookup). Both betons
    are checked whole (fastload.beton.check_beton) and against the indices their rows are read through: the
    manifest's (check_source) and the val index's (its fingerprint)."""
    for flag, path in (("--beton", beton), ("--val-beton", val_beton)):
        if not Path(path).is_file():
            raise FastloadError(f"{flag} {path} does not exist (it is written by `fastload compile`)")
        check_beton(path)
    manifest = load_manifest(manifest_path)
    check_source(manifest, beton)
    vindex = load_index(val_index)
    if load_fingerprint(val_index) != beton_fingerprint(val_beton):
        raise FastloadError(f"{val_index} is not the index of {val_beton} (another compile): use the val index "
                            "written beside it")
    if list(vindex.class_wnids) != list(manifest.class_wnids):
        raise FastloadError(f"{val_index} has {vindex.num_classes} classes that differ from the manifest "
                            f"{manifest_path}'s {len(manifest.class_wnids)}: use the val index of the same compile")
    val_rows = np.asarray(manifest.val_indices(vindex), dtype=np.int64)
    return TrainData(str(beton), str(val_beton), np.asarray(manifest.indices, dtype=np.int64), val_rows,
                     np.asarray(manifest.label_lookup, dtype=np.int32), [str(w) for w in manifest.label_wnids],
                     manifest.recipe)


def create_loader(data: TrainData, cfg: dict, dist, train: bool, res: int):
    """The train (random crop + flip, shuffled per epoch) or val (center crop) loader at `res` pixels, cropped as
    cfg['crop'] says. With augment 'device' the train loader hands over raw uint8 images and train_one_epoch crops
    them."""
    batch_size = cfg["batch_size"] // dist.world_size
    if train and cfg["augment"] == "device":
        return raw_loader(data.train_beton, data.train_rows, data.label_lookup, batch_size, dist.device,
                          cfg["num_workers"], distributed=dist.distributed, seed=cfg["seed"])
    return make_loader(data.train_beton if train else data.val_beton,
                       data.train_rows if train else data.val_rows,
                       data.label_lookup, batch_size=batch_size, resolution=res,
                       train=train, device=str(dist.device), distributed=dist.distributed,
                       num_workers=cfg["num_workers"], seed=cfg["seed"], drop_last=train, crop=cfg["crop"])


def set_loader_epoch(loader, epoch: int) -> None:
    """Make the loader draw epoch `epoch`'s order (seed + epoch), whatever it drew before: resumes see the
    same order as the uninterrupted run."""
    if not hasattr(loader, "next_epoch"):
        raise FastloadError(f"loader {type(loader).__name__} has no next_epoch: cannot fix the data order")
    loader.next_epoch = epoch


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """torch's seed for one train step: dropout masks and device-side crops are the same after a resume, and
    differ between steps and ranks."""
    return ((((seed * 1_000_003 + epoch) * 1_000_003 + batch) * 1_009 + rank) * 2_654_435_761) % 2**63


# ---------------------------------------------------------------- model and optimizer

def create_model(cfg: dict, num_classes: int, dist):
    """(model to train, bare model to save): on the device, channels_last/compiled/DDP-wrapped as configured."""
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["arch"], num_classes, init=cfg["init"], dropout=cfg["dropout"],
                        blurpool=cfg["blurpool"]).to(dist.device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    bare = model
    if dist.distributed:
        model = DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    if cfg["compile"]:
        model = torch.compile(model)
    return model, bare


def create_optimizer(cfg: dict, model):
    """SGD with Caffe's split: weights decay at lr x 1, biases at lr x bias_lr_mult (decayed if bias_decay).
    Networks with BatchNorm (the ResNets) get a third group, its scales and shifts at lr x 1, decayed only if
    norm_decay (FFCV's ResNet recipes: bn_wd 0); AlexNet has none and keeps its two groups."""
    norm = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
            for p in m.parameters(recurse=False)}
    named = [(n, p) for n, p in model.named_parameters() if id(p) not in norm]
    weights = [p for n, p in named if not n.endswith("bias")]
    biases = [p for n, p in named if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": cfg["weight_decay"], "lr_mult": 1.0},
              {"params": biases, "weight_decay": cfg["weight_decay"] if cfg["bias_decay"] else 0.0,
               "lr_mult": cfg["bias_lr_mult"]}]
    if norm:
        groups.append({"params": [p for p in model.parameters() if id(p) in norm],
                       "weight_decay": cfg["weight_decay"] if cfg["norm_decay"] else 0.0, "lr_mult": 1.0})
    return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]


def autocast_dtype(cfg: dict, device):
    """The autocast dtype, or None for float32 (always on the CPU)."""
    if device.type != "cuda" or cfg["amp"] == "none":
        return None
    return torch.bfloat16 if cfg["amp"] == "bf16" else torch.float16


def prepare_images(images, amp_dtype, channels_last: bool):
    """The loader's batch in the model's layout; float32 when autocast is off (the loader gives bf16 on CUDA)."""
    if amp_dtype is None and images.dtype != torch.float32:
        images = images.float()
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def train_step(model, optimizer, scaler, images, labels, lr: float, amp_dtype=None, channels_last: bool = False,
               label_smoothing: float = 0.0):
    """One SGD step at learning rate `lr` (times each group's lr_mult) under autocast `amp_dtype` (None: float32);
    returns the (detached) loss."""
    set_lr(optimizer, lr)
    images = prepare_images(images, amp_dtype, channels_last)
    with torch.autocast(images.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temporary file: a kill never leaves half a checkpoint, a full disk is one DiskFullError
    naming the file and about its size (its tensors' bytes)."""
    with atomic_path(path, expected_bytes=tensor_bytes(state) + CHECKPOINT_OVERHEAD_BYTES) as tmp:
        torch.save(state, tmp)


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a nested dict/list/tuple (a checkpoint's size but for its pickled small values)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def checkpoint_state(run, epoch: int, step_in_epoch: int) -> dict:
    """Everything --resume needs, as tensors and plain values only (weights_only loading)."""
    return {"model": run.bare.state_dict(), "arch": run.cfg["arch"], "num_classes": len(run.data.label_wnids),
            "label_wnids": list(run.data.label_wnids), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "global_step": run.global_step, "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(), "recipe": dict(run.cfg), "inputs": dict(run.inputs),
            "manifest_recipe": run.data.manifest_recipe, "history": list(run.history),
            "elapsed_s": run.elapsed(), "images_trained": run.images_trained, "train_time_s": run.train_time_s,
            "epoch_progress": run.progress.state() if step_in_epoch else EpochProgress().state(),
            "metrics_lines": run.log.lines}


def restore_checkpoint(run, path: Path) -> dict:
    """Load last.pt into the run; its settings must match the current ones except RESUMABLE_CHANGES. A file that
    is truncated or not a pre-training checkpoint is a FastloadError naming it. Returns the checkpoint."""
    ckpt = load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise FastloadError(f"--resume: {path} is not a fastload pretrain checkpoint (no {', '.join(missing)})")
    trained_cfg = ckpt["recipe"]  # the checkpoint key "recipe" holds the resolved settings, not the recipe's name
    changed = sorted(k for k in run.cfg if k not in RESUMABLE_CHANGES and trained_cfg.get(k) != run.cfg[k])
    if changed:
        diffs = ", ".join(f"{k}: {trained_cfg.get(k)!r} -> {run.cfg[k]!r}" for k in changed)
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
    run.images_trained, run.train_time_s = ckpt["images_trained"], ckpt["train_time_s"]
    run.progress = EpochProgress.from_state(ckpt["epoch_progress"], run.dist.device)
    return ckpt


# ---------------------------------------------------------------- logging

class MetricsLog:
    """metrics.jsonl and TensorBoard events in the run folder, written by rank 0 only.

    `lines` counts the lines of metrics.jsonl; a checkpoint stores it, and a resumed run first cuts the file back
    to that many lines (and TensorBoard back to the checkpoint's step), so no step is logged twice."""

    def __init__(self, out: Path, enabled: bool, keep_lines: int = 0, resume_step: int = None):
        self.enabled, self.path, self.writer, self.lines = enabled, out / "metrics.jsonl", None, 0
        if not enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = self.path.read_text().splitlines(keepends=True)[:keep_lines]
            write_text(self.path, "".join(kept))
            self.lines = len(kept)
        purge = None if resume_step is None else resume_step + 1  # drop events logged after the checkpoint
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge)

    def write(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **values}) + "\n")
        self.lines += 1
        for key, value in values.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"{kind}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------- training

class EpochProgress:
    """Running sums of the epoch being trained; kept in mid-epoch checkpoints so that a resumed epoch's logged
    loss and images/s cover the whole epoch."""

    def __init__(self, device="cpu"):
        self.loss_sum = torch.zeros((), device=device)  # on the device: no sync per step
        self.steps, self.images, self.seconds, self.wait = 0, 0, 0.0, 0.0

    def state(self) -> dict:
        return {"loss_sum": float(self.loss_sum.item()), "steps": self.steps, "images": self.images,
                "seconds": self.seconds, "wait": self.wait}

    @classmethod
    def from_state(cls, state: dict, device):
        progress = cls(device)
        progress.loss_sum += state["loss_sum"]
        progress.steps, progress.images = state["steps"], state["images"]
        progress.seconds, progress.wait = state["seconds"], state["wait"]
        return progress


class TrainingState:
    """The state of one training run that train_one_epoch / evaluate / checkpoints share (the `run` argument of
    the functions here)."""

    def __init__(self, cfg, inputs, data, dist, out):
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
        self.images_trained, self.train_time_s = 0, 0.0  # over all processes and epochs
        self.progress = EpochProgress(dist.device)
        self.last_save = time.time()
        self.log = None              # a MetricsLog, opened once the checkpoint (if any) is read
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


def train_one_epoch(run, epoch: int) -> dict:
    """One epoch (or its rest, after a mid-epoch resume): per-iteration lr, tqdm bar, data-wait share."""
    cfg, res = run.cfg, get_resolution(run.cfg, epoch)
    loader = run.loader(True, res if cfg["augment"] == "cpu" else 0)  # device crops: one loader for all sizes
    set_loader_epoch(loader, epoch)
    steps, skip, p = len(loader), run.step_in_epoch, run.progress
    run.model.train()
    bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{cfg['epochs']} {res}px",
               disable=run.dist.rank != 0, dynamic_ncols=True, file=sys.stderr)
    t_ready = t_last = time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        if i < skip:  # mid-epoch resume: these batches were trained on before the interruption
            t_ready = t_last = time.perf_counter()
            continue
        p.wait += time.perf_counter() - t_ready
        torch.manual_seed(step_seed(cfg["seed"], epoch, i, run.dist.rank))
        if cfg["augment"] == "device":
            images = device_random_resized_crop(images, res, run.input_dtype, cfg["channels_last"])
        loss = train_step(run.model, run.optimizer, run.scaler, images, labels, get_lr(cfg, epoch + i / steps),
                          run.amp_dtype, cfg["channels_last"], cfg["label_smoothing"])
        p.loss_sum += loss.float()
        p.steps, p.images = p.steps + 1, p.images + labels.shape[0] * run.dist.world_size
        p.seconds += time.perf_counter() - t_last
        t_last = time.perf_counter()
        run.global_step += 1
        run.step_in_epoch = i + 1
        if (i + 1) % cfg["log_every"] == 0:
            log_train_step(run, epoch, loss, res)
        bar.set_postfix_str(f"{p.images / max(p.seconds, 1e-9):,.0f} img/s, "
                            f"data wait {p.wait / max(p.seconds, 1e-9):.0%}", refresh=False)
        bar.update(1)
        run.maybe_save_in_epoch(epoch, i + 1)
        t_ready = time.perf_counter()
    bar.close()
    loss_total, count = fdist.all_reduce_sum([p.loss_sum.item(), p.steps], run.dist.device)
    run.images_trained += p.images
    run.train_time_s += p.seconds
    stats = {"epoch": epoch, "loss": loss_total / max(count, 1), "res": res, "images": p.images,
             "seconds": p.seconds, "images_per_s": p.images / max(p.seconds, 1e-9),
             "data_wait": p.wait / max(p.seconds, 1e-9), "lr": get_lr(cfg, epoch + 1 - 1e-9)}
    run.progress = EpochProgress(run.dist.device)
    return stats


def log_train_step(run, epoch, loss, res) -> None:
    p = run.progress
    run.log.write("train_step", run.global_step, epoch=epoch, loss=loss.item(), res=res,
                  lr=run.optimizer.param_groups[0]["lr"], images_per_s=p.images / max(p.seconds, 1e-9),
                  data_wait=p.wait / max(p.seconds, 1e-9))


def val_logits(run, images):
    """The network's val logits in float32; with val_flip the mean of the image's and its mirror's (FFCV's lr_tta
    sums them: same ranking, but the loss here stays that of a mean prediction)."""
    with torch.autocast(run.dist.device.type, dtype=run.amp_dtype or torch.float32,
                        enabled=run.amp_dtype is not None):
        logits = run.model(images).float()
        if run.cfg["val_flip"]:
            logits = (logits + run.model(torch.flip(images, dims=[3])).float()) / 2
    return logits


def evaluate(run) -> dict:
    """Top-1 (and top-5 when the run has >= 5 labels) as fractions of the manifest's val rows, and the mean val
    loss, summed over all processes."""
    run.model.eval()
    k = min(5, len(run.data.label_wnids))
    counts = torch.zeros(4, dtype=torch.float64, device=run.dist.device)  # top-1 hits, top-k hits, images, loss
    with torch.no_grad():
        for images, labels in run.loader(False, run.cfg["val_res"]):
            logits = val_logits(run, prepare_images(images, run.amp_dtype, run.cfg["channels_last"]))
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            counts[0] += hits[:, 0].sum()
            counts[1] += hits.any(dim=1).sum()
            counts[2] += labels.shape[0]
            counts[3] += F.cross_entropy(logits, labels, reduction="sum").double()
    c1, c5, n, loss = fdist.all_reduce_sum(counts.tolist(), run.dist.device)
    if n == 0:
        raise FastloadError("the validation set is empty: no val image belongs to a class the manifest keeps")
    result = {"top1": c1 / n, "val_loss": loss / n, "val_images": int(n)}
    if k == 5:  # with fewer labels a "top-5" would be a certain hit
        result["top5"] = c5 / n
    return result


def fit(run) -> dict:
    """Train from run.epoch to the last epoch, validating and checkpointing; returns the last validation.
    With epochs 0 the seeded initial weights are validated and saved (the random-init control)."""
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
                print(f"epoch {epoch + 1}: loss {stats['loss']:.4f}, {describe(last_val)}, "
                      f"{stats['images_per_s']:,.0f} img/s, data wait {stats['data_wait']:.0%}", file=sys.stderr)
        run.history.append(entry)
        run.epoch, run.step_in_epoch = epoch + 1, 0
        run.save(epoch + 1, 0)
        if run.dist.rank == 0 and cfg["keep_every"] and (epoch + 1) % cfg["keep_every"] == 0:
            save_checkpoint(run.out / f"checkpoint_epoch{epoch + 1}.pt", checkpoint_state(run, epoch + 1, 0))
    if last_val is None:  # epochs 0, or resumed after the last epoch had finished: validate for the summary
        last_val = evaluate(run)
        if run.log.lines == 0:  # the control's validation (a finished run's was logged before)
            run.log.write("val", run.global_step, epoch=run.epoch - 1, **last_val)
    if cfg["epochs"] == 0:
        run.save(0, 0)
    return last_val


def describe(val: dict) -> str:
    """'top-1 0.4375, top-5 0.8125' (fractions; top-5 only with >= 5 labels)."""
    return ", ".join(f"{name} {val[key]:.4f}" for key, name in (("top1", "top-1"), ("top5", "top-5")) if key in val)


def training_summary(run, val: dict, recipe_name: str) -> dict:
    """summary.json: top1 (and top5 with >= 5 labels) as fractions, the settings, inputs and throughput."""
    return {"recipe": recipe_name, "config": dict(run.cfg), "manifest_recipe": run.data.manifest_recipe,
            "inputs": dict(run.inputs), "epochs": run.epoch, "wall_time_s": run.elapsed(),
            "train_time_s": run.train_time_s, "images_trained": run.images_trained,
            "images_per_s": run.images_trained / max(run.train_time_s, 1e-9),
            **{k: val[k] for k in ("top1", "top5") if k in val}, "val_loss": val["val_loss"],
            "val_images": val["val_images"], "train_images": int(len(run.data.train_rows)),
            "num_labels": len(run.data.label_wnids), "world_size": run.dist.world_size,
            "device": str(run.dist.device), "code_version": code_version(), "history": run.history}


def prepare_out(out: Path, resume: bool) -> bool:
    """True when a checkpoint is there to resume from. A finished or started run is never overwritten without
    --resume. Called by every rank once rank 0 holds the folder's lock."""
    last = out / "last.pt"
    if last.exists() and not resume:
        raise UsageError(f"{out} already holds a run (last.pt): pass --resume to continue it or choose another --out")
    return resume and last.exists()


def start_run(cfg, inputs: dict, dist, out: Path, resume: bool):
    """The run's TrainingState with its data, restored from OUT/last.pt when --resume finds one, and its metrics
    log opened."""
    found = prepare_out(out, resume)
    data = load_train_data(inputs["manifest"], inputs["beton"], inputs["val_beton"], inputs["val_index"])
    run = TrainingState(cfg, {k: str(v) for k, v in inputs.items()}, data, dist, out)
    ckpt = restore_checkpoint(run, out / "last.pt") if found else None
    run.log = MetricsLog(out, dist.rank == 0, keep_lines=ckpt["metrics_lines"] if ckpt else 0,
                         resume_step=ckpt["global_step"] if ckpt else None)
    if dist.rank == 0:
        if found:
            print(f"resuming {out} at epoch {run.epoch + 1}, step {run.step_in_epoch}", file=sys.stderr)
        elif resume:
            print(f"--resume: no checkpoint in {out} yet, starting from scratch", file=sys.stderr)
    return run


def main(recipe_name: str, overrides, inputs: dict, resume: bool = False) -> dict:
    """Train one run with the recipe `recipe_name` (train/NAME.yaml or a .yaml path) and its settings overridden by
    `overrides`. `inputs`: manifest, beton, val_beton, val_index, out (paths). Returns the summary on rank 0
    (None on the other ranks). Rank 0 holds OUT's lock for the whole run: a second run into OUT is refused."""
    cfg = apply_overrides(load_recipe(recipe_name), overrides)
    dist = fdist.init_distributed(cfg["device"])
    try:
        check_config(cfg, dist.world_size)
        out = Path(inputs["out"])
        with OutputLock(out, "fastload pretrain") if dist.rank == 0 else nullcontext():
            fdist.barrier()  # the other ranks start once rank 0 holds the folder
            return train(cfg, recipe_name, inputs, dist, out, resume)
    finally:
        fdist.cleanup_distributed()


def train(cfg, recipe_name: str, inputs: dict, dist, out: Path, resume: bool):
    run = start_run(cfg, inputs, dist, out, resume)
    if dist.rank == 0:
        write_text(out / "config.yaml", yaml.safe_dump({"recipe": recipe_name, **cfg, "inputs": run.inputs,
                                                        "world_size": dist.world_size,
                                                        "device": str(dist.device)}, sort_keys=False))
        print(f"pre-training {cfg['arch']} on {len(run.data.train_rows)} images, {len(run.data.label_wnids)} "
              f"labels, {len(run.data.val_rows)} val images; {dist.world_size} process(es) on {dist.device}, "
              f"{'float32' if run.amp_dtype is None else run.amp_dtype}", file=sys.stderr)
    val = fit(run)
    summary = training_summary(run, val, recipe_name)
    if dist.rank == 0:
        write_json(out / "summary.json", summary)
    run.log.close()
    fdist.barrier()
    return summary if dist.rank == 0 else None
