"""ImageNet classification after pre-training on a label set (paper Fig. 1 and 2, "ImageNet CLS").

Every layer below fc8 keeps its pre-trained weights (frozen); a new, randomly initialised fc8 with one output per
dataset class (1000 for ImageNet) is trained on the whole base train .beton with the usual augmentation (random
resized crop + flip from the fastload loader), then top-1/top-5 are measured on the whole val .beton (centre crop).
Frozen layers run without gradients; the network stays in training mode while fc8 learns, so dropout after fc7
acts as it does when Caffe fine-tunes with frozen lower layers (learning rate 0 below fc8); batch-norm layers (a
ResNet's) stay in eval mode. For a ResNet "fc8" is its `fc`, fed by the pooled features (see models.networks.NETWORKS).

Optimiser: SGD with momentum 0.9 and weight decay 5e-4 on fc8 only, cosine learning-rate decay per iteration.
Run: `fastload imagenet-cls --checkpoint RUN/last.pt --beton-dir DATA [--epochs N]`, or `imagenet_cls(...)`.
"""
import math
import time
from pathlib import Path

import numpy as np

from ..errors import FastloadError, UsageError
from ..files import write_json


def replace_fc8(model, arch: str, num_classes: int, seed: int = 0):
    """Freeze every parameter, then put a fresh trainable Linear(features, num_classes) in the place of network
    `arch`'s classifier (its record's classifier slot: AlexNet's fc8, a ResNet's fc); returns it."""
    import torch
    from torch import nn

    from ..models.networks import network
    for p in model.parameters():
        p.requires_grad = False
    slot = network(arch).classifier
    old = model.get_submodule(slot)
    generator = torch.Generator().manual_seed(seed)
    fc8 = nn.Linear(old.in_features, num_classes)
    with torch.no_grad():  # BVLC's fc8 initialisation: N(0, 0.01), zero bias
        fc8.weight.copy_(torch.randn(fc8.weight.shape, generator=generator) * 0.01)
        fc8.bias.zero_()
    model.set_submodule(slot, fc8)
    return fc8


def train_fc8(model, fc8, batches, total_iters: int, *, epochs: int, lr: float, momentum: float,
              weight_decay: float, device, layer: str = "fc7") -> list:
    """SGD on fc8 over `batches` (an iterable of (images, labels), re-iterated per epoch), at most `epochs`
    passes and `total_iters` iterations, cosine decay from `lr`; fc8 reads the frozen `layer` (the one below it:
    fc7 for AlexNet, 'flatten' for a ResNet). Returns per-epoch losses."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .features import layer_function
    opt = torch.optim.SGD(fc8.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    def cosine(i):
        return 0.5 * (1 + math.cos(math.pi * min(i, total_iters) / total_iters))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    model.to(device).train()
    features = layer_function(model, layer)  # before the next lines: tracing a graph resets the modules' modes
    for module in model.modules():  # frozen means frozen: batch norm keeps its running statistics (ResNets)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    it, losses = 0, []
    for epoch in range(epochs):
        total, seen, start = 0.0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"fc8 epoch {epoch}", leave=False)
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device).reshape(-1)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                with torch.no_grad():
                    feats = features(images if device.type == "cuda" else images.float())
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
    """Top-k accuracy (fractions) of `model` over (images, labels) batches, for each k of `ks` up to the number
    of outputs: with fewer than 5 outputs there is no top5 key (top-5 of 3 classes would be a certain hit)."""
    import torch
    model.to(device).eval()
    hits, n = None, 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device).reshape(-1)
            logits = model(images if device.type == "cuda" else images.float()).float()
            if hits is None:  # the k's that the number of outputs allows
                hits = {k: 0 for k in ks if k <= logits.shape[1]}
            top = logits.topk(max(hits), dim=1).indices
            for k in hits:
                hits[k] += (top[:, :k] == labels[:, None]).any(dim=1).sum().item()
            n += len(labels)
    if n == 0:
        raise FastloadError("the val loader yielded no images")
    return {f"top{k}": hits[k] / n for k in hits} | {"val_images": n}


def imagenet_cls(checkpoint, beton_dir, *, epochs: int = 10, max_iters: int = 0, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0, out=None,
                 batch_size: int = 256, resolution: int = 0, device: str = "auto", num_workers: int = 2) -> dict:
    """Train a new fc8 of `checkpoint` on the train beton of `beton_dir` (at most `max_iters` iterations when
    > 0), measure top-1/top-5 on its val beton; writes the result JSON to `out` (default: imagenet_cls.json next
    to the checkpoint) and returns it. An `out` made from the same inputs is returned as it is; one made from
    other inputs is refused (provenance)."""
    from .provenance import OutputFileLock
    out = Path(out or Path(checkpoint).parent / "imagenet_cls.json")
    with OutputFileLock(out, "fastload imagenet-cls"):
        return _imagenet_cls(checkpoint, beton_dir, out, epochs=epochs, max_iters=max_iters, lr=lr,
                             momentum=momentum, weight_decay=weight_decay, seed=seed, batch_size=batch_size,
                             resolution=resolution, device=device, num_workers=num_workers)


def _imagenet_cls(checkpoint, beton_dir, out: Path, *, epochs, max_iters, lr, momentum, weight_decay, seed,
                  batch_size, resolution, device, num_workers) -> dict:
    from .features import extraction, load_compiled, load_model
    from .provenance import inputs_of, reuse_json
    ex = extraction(batch_size, resolution, device, num_workers)
    betons, indexes = load_compiled(beton_dir)
    if len(indexes["train"]) < batch_size:
        raise UsageError(f"--batch-size {batch_size} is more than the {len(indexes['train'])} train images of "
                         f"{betons['train']}: lower --batch-size")
    model, meta = load_model(checkpoint)
    kw = ex.loader_kwargs(meta)
    inputs = inputs_of({"model": checkpoint}, betons, seed,
                       {"epochs": epochs, "max_iters": max_iters, "lr": lr, "momentum": momentum,
                        "weight_decay": weight_decay, "batch_size": batch_size, "resolution": kw["resolution"],
                        "device": ex.device.type})
    result = reuse_json(out, inputs)
    computed = result is None
    if computed:
        result = train_and_evaluate(model, meta, betons, indexes, ex, kw, seed=seed, epochs=epochs,
                                    max_iters=max_iters, lr=lr, momentum=momentum, weight_decay=weight_decay)
        result = {"checkpoint": str(checkpoint), **result, "inputs": inputs}
        write_json(out, result, indent=1)
    top5 = f" top5 {result['top5']:.4f}" if "top5" in result else ""
    print(f"ImageNet CLS with a new fc8 on {checkpoint}: top1 {result['top1']:.4f}{top5} "
          f"({result['val_images']} val images); {'wrote' if computed else 'kept'} {out}")
    return result


def train_and_evaluate(model, meta, betons, indexes, ex, kw, *, seed, epochs, max_iters, lr, momentum,
                       weight_decay) -> dict:
    """Replace fc8, train it on the train beton, measure it on the val beton; the result without its inputs."""
    from ..loader import make_loader
    from .features import feature_layer, identity_lookup
    num_classes = indexes["train"].num_classes
    fc8 = replace_fc8(model, meta["arch"], num_classes, seed)
    loaders = {s: make_loader(str(betons[s]), np.arange(len(indexes[s]), dtype=np.int64),
                              identity_lookup(num_classes), kw["batch_size"], kw["resolution"], train=(s == "train"),
                              device=str(ex.device), num_workers=ex.num_workers, seed=seed) for s in betons}
    total_iters = epochs * len(loaders["train"])
    if max_iters > 0:
        total_iters = min(total_iters, max_iters)
    start = time.perf_counter()
    losses = train_fc8(model, fc8, loaders["train"], total_iters, epochs=epochs, lr=lr, momentum=momentum,
                       weight_decay=weight_decay, device=ex.device, layer=feature_layer(meta["arch"]))
    return {"pretrain_labels": int(meta["num_classes"]), "num_classes": num_classes, "iterations": total_iters,
            "train_losses": losses, **evaluate_topk(model, loaders["val"], ex.device),
            "seconds": time.perf_counter() - start}
