"""Fine-tuning a checkpoint on a compiled classification dataset (Kornblith, Shlens, Le 2019, §3 and appendix),
as a plain PyTorch loop over the fast loader.

The network's last linear layer is replaced by a fresh one with the dataset's classes (VOC07: one sigmoid output
per class, binary cross-entropy); every layer trains. SGD with Nesterov momentum 0.9 and a cosine decay of the
learning rate to zero over the run, batch 256 and 19,531 steps (the paper's budget, 5M examples) unless told;
train images get the loader's random-resized crop and flip, evaluation its centre crop.

Hyper-parameters: the paper searches learning rate and weight decay on the val split (or a held-out part of
train) and retrains; `search=False` (the default) skips that and uses one declared point (DEFAULT_LR for batch
256, scaled linearly with the batch, and DEFAULT_WD); `search=True` runs the grid LR_GRID x WD_GRID on the
held-out data, then the final run with the best pair on all of train. Each seed is one full run (head
initialisation, data order, crops); the summary gives mean and std over seeds.
"""
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..files import write_json
from .probe import DEFAULT_HOLDOUT, HOLDOUT_FRACTION, Compiled, holdout, read_compiled, score, seed_statistics

PAPER_STEPS = 19531
PAPER_BATCH = 256
MOMENTUM = 0.9
DEFAULT_LR = 0.01         # for batch 256; a point inside the paper's grid
DEFAULT_WD = 1e-4
LR_GRID = tuple(float(v) for v in np.logspace(-3, 0, 7))      # 0.001 .. 1
WD_GRID = tuple(float(v) for v in np.logspace(-6, -3, 4))     # 1e-6 .. 1e-3


def replace_head(model, num_classes: int, seed: int):
    """`model` with its last nn.Linear replaced by a new one of `num_classes` outputs (seeded init)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise UsageError(f"{type(model).__name__} has no linear layer to replace with the dataset's classifier")
    name, last = linears[-1]
    torch.manual_seed(seed)
    head = torch.nn.Linear(last.in_features, num_classes)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], head)
    return model


def labels_of(compiled: Compiled, split: str) -> np.ndarray:
    from ..index import load_index
    return load_index(compiled.index(split)).class_id.astype(np.int64)


def loss_function(multilabel: bool, num_classes: int):
    if multilabel:
        shifts = torch.arange(num_classes)

        def bce(logits, labels):
            target = ((labels[:, None] >> shifts.to(labels.device)) & 1).to(logits.dtype)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return bce
    return torch.nn.functional.cross_entropy


def cosine_lr(base_lr: float, step: int, steps: int) -> float:
    return 0.5 * base_lr * (1 + math.cos(math.pi * step / steps))


def train_steps(model, compiled: Compiled, rows, steps: int, batch_size: int, lr: float, wd: float, seed: int,
                resolution: int, device, num_workers: int, log=None) -> dict:
    """Train `model` for `steps` SGD steps on rows `rows` of the train beton; returns loss figures."""
    from ..loader import make_loader
    labels = labels_of(compiled, "train")
    lookup = np.arange(int(labels.max()) + 1, dtype=np.int64)
    batch_size = min(batch_size, len(rows))
    loader = make_loader(str(compiled.beton("train")), np.sort(rows), lookup, batch_size, resolution, train=True,
                         device=str(device), num_workers=num_workers, seed=seed)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)   # no decay on biases and batch-norm scales
    opt = torch.optim.SGD([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=MOMENTUM, nesterov=True)
    loss_fn = loss_function(compiled.multilabel, len(compiled.classes))
    model.to(device).train()
    step, losses, start = 0, [], time.perf_counter()
    while step < steps:
        for images, targets in loader:
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, step, steps)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(images if device.type == "cuda" else images.float())
            loss = loss_fn(logits.float(), targets.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if log and (step % max(1, steps // 10) == 0 or step == steps):
                log(f"step {step}/{steps} loss {np.mean(losses[-20:]):.4f} "
                    f"({step * batch_size / (time.perf_counter() - start):.0f} img/s)")
            if step >= steps:
                break
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])), "steps": steps,
            "seconds": round(time.perf_counter() - start, 2)}


class Evaluator:
    """The dataset's metric on rows `rows` of `split` (centre crop, sequential order), one loader for every model
    it scores (the loader's pipeline is compiled once)."""

    def __init__(self, compiled: Compiled, split: str, rows, resolution: int, device, num_workers: int,
                 batch_size: int = 256):
        from ..loader import make_loader
        self.compiled, self.split, self.rows, self.device = compiled, split, np.sort(rows), device
        lookup = np.arange(int(labels_of(compiled, split).max()) + 1, dtype=np.int64)
        self.loader = make_loader(str(compiled.beton(split)), self.rows, lookup, batch_size, resolution,
                                  train=False, device=str(device), num_workers=num_workers, drop_last=False)

    def __call__(self, model) -> float:
        from .features import collect_outputs
        scores, seen = collect_outputs(model, self.loader, len(self.rows), None, self.device,
                                       desc=f"eval {self.split}", dtype=np.float32)
        return score(self.compiled.metric, scores, seen)


def finetune_once(checkpoint, compiled, fit_rows, evaluator: Evaluator, steps, batch_size, lr, wd, seed,
                  resolution, device, num_workers, log=None) -> dict:
    from .features import load_model
    model, _ = load_model(checkpoint)
    model = replace_head(model, len(compiled.classes), seed)
    figures = train_steps(model, compiled, fit_rows, steps, batch_size, lr, wd, seed, resolution, device,
                          num_workers, log)
    return {"value": evaluator(model), "lr": lr, "wd": wd, **figures}


def search_split(compiled: Compiled, seed: int) -> tuple:
    """(fit rows of train, eval split, eval rows) for the hyper-parameter search."""
    train = labels_of(compiled, "train")
    if "val" in compiled.splits:
        return np.arange(len(train)), "val", np.arange(len(labels_of(compiled, "val")))
    keep, held = holdout(train, HOLDOUT_FRACTION.get(compiled.layout, DEFAULT_HOLDOUT), seed, compiled.multilabel)
    return keep, "train", held


def finetune_seed(checkpoint, compiled, seed, steps, batch_size, lr, wd, search, resolution, device, num_workers,
                  test: Evaluator, log=None) -> dict:
    """One seed: optionally the lr x wd search on held-out data, then the final run on all of train, test scored."""
    grid = {}
    if search:
        fit, split, rows = search_split(compiled, seed)
        held_out = Evaluator(compiled, split, rows, resolution, device, num_workers)
        for g_lr in LR_GRID:
            for g_wd in WD_GRID:
                grid[(g_lr, g_wd)] = finetune_once(checkpoint, compiled, fit, held_out, steps, batch_size, g_lr,
                                                   g_wd, seed, resolution, device, num_workers)["value"]
        lr, wd = max(grid, key=grid.get)
    train_rows = np.arange(len(labels_of(compiled, "train")))
    run = finetune_once(checkpoint, compiled, train_rows, test, steps, batch_size, lr, wd, seed, resolution, device,
                        num_workers, log)
    run["seed"] = seed
    if search:
        run["search"] = [{"lr": k[0], "wd": k[1], "val_value": v} for k, v in grid.items()]
    return run


def run_finetune(checkpoint, beton_dir, out, seeds=(0, 1, 2), steps: int = PAPER_STEPS,
                 batch_size: int = PAPER_BATCH, lr: float = None, wd: float = DEFAULT_WD, search: bool = False,
                 resolution: int = 0, device="cpu", num_workers: int = 2, log=print) -> dict:
    """Fine-tune `checkpoint` on a compiled dataset once per seed; writes OUT/summary.json."""
    from .features import default_resolution, load_model
    if steps < 1 or batch_size < 1 or not seeds:
        raise UsageError(f"steps {steps}, batch size {batch_size}, seeds {list(seeds)}: need >= 1 of each")
    compiled = read_compiled(beton_dir)
    device = torch.device(device)
    lr = DEFAULT_LR * batch_size / PAPER_BATCH if lr is None else lr
    resolution = resolution or default_resolution(load_model(checkpoint)[1])
    started = time.perf_counter()
    test = Evaluator(compiled, "test", np.arange(len(labels_of(compiled, "test"))), resolution, device, num_workers)
    runs = [finetune_seed(checkpoint, compiled, s, steps, batch_size, lr, wd, search, resolution, device,
                          num_workers, test, log) for s in seeds]
    summary = {"kind": "finetune", "dataset": compiled.layout, "metric": compiled.metric, **seed_statistics(runs),
               "runs": runs, "checkpoint": str(checkpoint), "beton_dir": str(compiled.folder),
               "settings": {"steps": steps, "batch_size": batch_size, "lr": lr, "wd": wd, "search": search,
                            "momentum": MOMENTUM, "nesterov": True, "schedule": "cosine", "resolution": resolution},
               "device": str(device), "seconds": round(time.perf_counter() - started, 2)}
    write_json(Path(out) / "summary.json", summary)
    return summary
