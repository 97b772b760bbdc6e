"""ImageNet classification after pre-training on a label set (paper Fig. 1 and 2, "ImageNet CLS").

Every layer below fc8 keeps its pre-trained weights (frozen); a new, randomly initialised fc8 with one output per
dataset class (1000 for ImageNet) is trained on the whole base train .beton with the usual augmentation (random
resized crop + flip from the fastload loader), then top-1/top-5 are measured on the whole val .beton (centre crop).
Frozen layers run without gradients; the network stays in training mode while fc8 learns, so dropout after fc7
acts as it does when Caffe fine-tunes with frozen lower layers (learning rate 0 below fc8).

Optimiser: SGD with momentum 0.9 and weight decay 5e-4 on fc8 only, cosine learning-rate decay per iteration.
Run: `fastload imagenet-cls --checkpoint RUN/last.pt --beton-dir DATA [--epochs N]`.
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
from ..files import write_json


def configure(p):
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint pre-trained on any label set")
    p.add_argument("--beton-dir", required=True, help="folder written by `fastload compile` (the base, all classes)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the train set (default: 10)")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations; 0 = no limit")
    p.add_argument("--batch-size", type=int, default=256, help="images per iteration (default: 256)")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate of fc8 (default: 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    p.add_argument("--resolution", type=int, default=0,
                   help="crop size; 0 = the checkpoint recipe's val_res, else 227 / 224")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--num-workers", type=int, default=2, help="loader worker threads (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of fc8's initialisation and the data order")
    p.add_argument("--out", default=None, help="result JSON (default: imagenet_cls.json next to --checkpoint)")


def fc8_slot(model):
    """(parent module, attribute name) of the last linear layer of either fastload AlexNet."""
    if hasattr(model, "fc8"):
        return model, "fc8"
    if hasattr(model, "classifier"):
        return model.classifier, str(len(model.classifier) - 1)
    raise FastloadError(f"{type(model).__name__} has neither fc8 nor classifier: not a fastload AlexNet")


def replace_fc8(model, num_classes: int, seed: int = 0):
    """Freeze every parameter, then put a fresh trainable Linear(4096, num_classes) in fc8's place; returns it."""
    import torch
    from torch import nn
    for p in model.parameters():
        p.requires_grad = False
    parent, name = fc8_slot(model)
    old = getattr(parent, name)
    generator = torch.Generator().manual_seed(seed)
    fc8 = nn.Linear(old.in_features, num_classes)
    with torch.no_grad():  # BVLC's fc8 initialisation: N(0, 0.01), zero bias
        fc8.weight.copy_(torch.randn(fc8.weight.shape, generator=generator) * 0.01)
        fc8.bias.zero_()
    setattr(parent, name, fc8)
    return fc8


def train_fc8(model, fc8, batches, total_iters: int, args, device) -> list:
    """SGD on fc8 over `batches` (an iterable of (images, labels), re-iterated per epoch). Returns per-epoch losses."""
    import torch
    import torch.nn.functional as F
    from ..models.alexnet import extract_features
    from tqdm import tqdm
    opt = torch.optim.SGD(fc8.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    def cosine(i):
        return 0.5 * (1 + math.cos(math.pi * min(i, total_iters) / total_iters))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    model.to(device).train()
    it, losses = 0, []
    for epoch in range(args.epochs):
        total, seen, start = 0.0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"fc8 epoch {epoch}", leave=False)
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device).reshape(-1)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                with torch.no_grad():
                    feats = extract_features(model, images if device.type == "cuda" else images.float(), "fc7")
                loss = F.cross_entropy(fc8(feats).float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen, it = total + loss.item() * len(labels), seen + len(labels), it + 1
            bar.set_postfix(loss=f"{total / seen:.3f}", img_s=f"{seen / (time.perf_counter() - start):.0f}")
            if it >= total_iters:
                break
        losses.append(total / max(seen, 1))
        print(f"epoch {epoch}: fc8 loss {losses[-1]:.4f}", flush=True)
        if it >= total_iters:
            break
    return losses


def evaluate_topk(model, batches, device, ks=(1, 5)) -> dict:
    """Top-k accuracy of `model` over (images, labels) batches."""
    import torch
    model.to(device).eval()
    hits, n = {k: 0 for k in ks}, 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device).reshape(-1)
            logits = model(images if device.type == "cuda" else images.float()).float()
            top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
            for k in ks:
                hits[k] += (top[:, :k] == labels[:, None]).any(dim=1).sum().item()
            n += len(labels)
    if n == 0:
        raise FastloadError("the val loader yielded no images")
    return {f"top{k}": hits[k] / n for k in ks} | {"val_images": n}


def run_imagenet_cls(args) -> dict:
    import torch
    from ..index import load_index
    from ..loader import make_loader
    from .features import beton_dir_files, default_resolution, identity_lookup, load_model
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    files = beton_dir_files(args.beton_dir)
    indexes = {s: load_index(files[s][1]) for s in files}
    num_classes = indexes["train"].num_classes
    model, meta = load_model(args.checkpoint)
    fc8 = replace_fc8(model, num_classes, args.seed)
    resolution = args.resolution or default_resolution(meta)
    lookup = identity_lookup(num_classes)
    loaders = {s: make_loader(str(files[s][0]), np.arange(len(indexes[s]), dtype=np.int64), lookup, args.batch_size,
                              resolution, train=(s == "train"), device=str(device), num_workers=args.num_workers,
                              seed=args.seed) for s in files}
    total_iters = args.epochs * len(loaders["train"])
    if args.max_iters > 0:
        total_iters = min(total_iters, args.max_iters)
    start = time.perf_counter()
    losses = train_fc8(model, fc8, loaders["train"], total_iters, args, device)
    result = {"checkpoint": str(args.checkpoint), "pretrain_labels": int(meta["num_classes"]),
              "num_classes": num_classes, "iterations": total_iters, "train_losses": losses,
              **evaluate_topk(model, loaders["val"], device), "seconds": time.perf_counter() - start}
    out = Path(args.out or Path(args.checkpoint).parent / "imagenet_cls.json")
    write_json(out, result, indent=1)
    print(f"ImageNet CLS with a new fc8 on {args.checkpoint}: top1 {result['top1']:.4f} top5 {result['top5']:.4f} "
          f"({result['val_images']} val images); wrote {out}")
    return result


def run(args) -> int:
    """The `run(args)` of a fastload sub-command (see fastload/cli.py)."""
    run_imagenet_cls(args)
    return 0


def main(argv=None) -> int:
    """`python -m fastload.analysis.imagenet_cls ARGS` is `fastload imagenet-cls ARGS`."""
    from ..cli import main as cli_main
    return cli_main(["imagenet-cls", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
