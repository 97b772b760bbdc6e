"""fastload checkpoints: the reader every stage uses, and the facts a checkpoint records about its run.

A checkpoint (written by fastload.pretrain) is a dict of tensors and plain values: 'model' (the state dict),
'arch', 'num_classes', 'label_wnids', 'recipe' (every recipe setting, BlurPool included), 'inputs' (the run's
command-line inputs), and the trainer's resume state. What a checkpoint records is read from it here, never
restated by a config.
"""
from pathlib import Path

import torch

from ..errors import FastloadError
from ..transfer import RANDOM_INIT
from .build import build_model
from .networks import Network, network

# the keys besides the weights that only --resume needs
TRAINER_STATE_KEYS = ("model", "optimizer", "scaler")


def load_checkpoint(path) -> dict:
    """A fastload checkpoint as a dict, read with torch.load(weights_only=True) (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated, foreign or pickled-code file: say which one, in one line
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FastloadError(f"cannot read checkpoint {path} (truncated or not a fastload checkpoint?): "
                            f"{reason}") from e
    if not isinstance(ckpt, dict):
        raise FastloadError(f"{path} is not a fastload checkpoint: it holds a {type(ckpt).__name__}")
    missing = [k for k in ("model", "arch", "num_classes") if k not in ckpt]
    if missing:
        raise FastloadError(f"{path} is not a fastload checkpoint: missing {', '.join(missing)}")
    return with_inputs_key(ckpt)


def with_inputs_key(ckpt: dict) -> dict:
    """The checkpoint with the run's command-line inputs under 'inputs': checkpoints written before that key was
    named so hold them under 'args', read here so that they keep working everywhere."""
    if "inputs" not in ckpt and "args" in ckpt:
        ckpt["inputs"] = ckpt.pop("args")
    return ckpt


def checkpoint_meta(ckpt: dict) -> dict:
    """Every key of the checkpoint except the weights and the optimizer/scaler state."""
    return {k: v for k, v in ckpt.items() if k not in TRAINER_STATE_KEYS}


def checkpoint_network(ckpt: dict, path) -> Network:
    """The record of the network the checkpoint holds; one fastload does not know is a FastloadError naming it."""
    try:
        return network(ckpt["arch"])
    except FastloadError as e:
        raise FastloadError(f"checkpoint {path}: {e}") from None


def trained_settings(meta: dict) -> dict:
    """The recipe settings the run trained with (the checkpoint's 'recipe': every setting of fastload.recipe,
    resolved); {} for a checkpoint without them."""
    return meta["recipe"] if isinstance(meta.get("recipe"), dict) else {}


def checkpoint_blurpool(meta: dict) -> bool:
    """Whether the run that wrote the checkpoint trained with BlurPool (its recipe's `blurpool`; absent: no)."""
    return bool(trained_settings(meta).get("blurpool"))


def blurpool_to_build(blurpool, checkpoint) -> bool:
    """The BlurPool setting to build a network with: `blurpool` where a config sets it (True/False; the weights'
    loader then checks it against the checkpoint), else (None) as the checkpoint records it. The blur is not in the
    state dict and must exist before the optimizer collects the parameters, so it is read when the network is built;
    no checkpoint yet (None, filled in later) or 'random' builds without it."""
    if blurpool is not None:
        return bool(blurpool)
    if checkpoint in (None, RANDOM_INIT):
        return False
    return checkpoint_blurpool(load_checkpoint(checkpoint))


def load_checkpoint_model(path):
    """(model, meta): the checkpoint's network with its weights, in eval mode on the CPU, and every other key
    (arch, num_classes, label_wnids, epoch, recipe, ...) except optimizer/scaler state."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["arch"], ckpt["num_classes"], blurpool=checkpoint_blurpool(ckpt))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, checkpoint_meta(ckpt)
