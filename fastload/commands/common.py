"""Flags and checks shared by several sub-commands (not a sub-command itself).

The feature flags are those of every analysis that runs a network over a folder written by `fastload compile`
(imagenet-cls, induction, coarse-fine, neighbours); `feature_settings` hands them to the analysis functions as
keyword arguments, checked once here.
"""
from pathlib import Path

from ..errors import FastloadError, UsageError

FEATURE_LAYER_HELP = ("feature layer: AlexNet's conv5, pool5, fc6, fc7, or a graph node of another torchvision network "
                      "(default: the architecture's own, fastload.models.networks.NETWORKS: fc7 for AlexNet, "
                      "the pooled 'flatten' for a ResNet)")
DEFAULT_BATCH_SIZE = 256
DEFAULT_NUM_WORKERS = 2
MIN_RESOLUTION = 8  # the loader's smallest crop


def add_feature_arguments(p, batch_help: str = "images per forward pass"):
    """--beton-dir, --batch-size, --resolution, --device, --num-workers."""
    p.add_argument("--beton-dir", required=True,
                   help="folder written by `fastload compile` (train.beton, val.beton and their *_index.npz)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"{batch_help} (default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--resolution", type=int, default=0,
                   help="eval crop size; 0 = the checkpoint recipe's val_res, else 227 (alexnet_caffe) / 224 (tv)")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N' "
                                                    "(default: auto)")
    p.add_argument("--num-workers", type=int, default=DEFAULT_NUM_WORKERS,
                   help=f"loader worker threads, >= 1 (default: {DEFAULT_NUM_WORKERS})")


def feature_settings(args) -> dict:
    """The feature flags of `args` as keyword arguments of the analysis functions; a bad value is a UsageError."""
    require_at_least(args, 1, "batch_size", "num_workers")
    if args.resolution != 0 and args.resolution < MIN_RESOLUTION:
        raise UsageError(f"--resolution must be 0 (the checkpoint's own) or >= {MIN_RESOLUTION}, "
                         f"got {args.resolution}")
    return {"beton_dir": args.beton_dir, "batch_size": args.batch_size, "resolution": args.resolution,
            "device": args.device, "num_workers": args.num_workers}


def require_at_least(args, least: int, *names) -> None:
    """UsageError naming the flag when one of the integer flags `names` (attribute names) is below `least`."""
    for name in names:
        value = getattr(args, name)
        if value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")


def check_new_fc8_args(args) -> None:
    """The flags of a new last layer trained on frozen features (imagenet-cls, subpop): UsageError naming the flag."""
    require_at_least(args, 1, "epochs")
    require_at_least(args, 0, "max_iters")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if not 0 <= args.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum}")
    if not args.weight_decay >= 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.out:
        check_output_file(args.out, "--out")


def check_output_file(path, flag: str) -> None:
    """An output file can be written at `path`: it is not a folder and no folder above it is a file."""
    path = Path(path)
    if path.is_dir():
        raise FastloadError(f"{flag} {path}: is a folder; give a file name")
    check_parents(path, flag)


def check_output_folder(path, flag: str) -> None:
    """An output folder can be made at `path`: it is not a file and no folder above it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FastloadError(f"{flag} {path}: exists and is not a folder")
    check_parents(path, flag)


def check_parents(path: Path, flag: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FastloadError(f"{flag} {path}: {parent} is a file, not a folder")
            return
