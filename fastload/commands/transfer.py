"""fastload transfer: fine-tune and evaluate a checkpoint with an MMDetection/MMEngine config (several seeds)."""

LAUNCHERS = ("none", "pytorch", "slurm")


def data_root_help() -> str:
    from ..transfer import DATA_ROOT_CONTENTS

    return "; ".join(f"{task}: {holds}" for task, holds in DATA_ROOT_CONTENTS.values())


def configure(p):
    p.add_argument("config", help="an MMEngine config, e.g. transfer/faster-rcnn_alexnet-caffe_70k_voc07.py "
                                  "(settings and sources of the shipped ones: docs/protocol.md)")
    p.add_argument("--checkpoint", required=True,
                   help="fastload pre-training checkpoint (runs/NAME/last.pt); fills every `checkpoint` of the model "
                        "(required)")
    p.add_argument("--work-dir", required=True,
                   help="output folder: WORK_DIR/seed_<s>/ per seed and WORK_DIR/summary.json (required)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, mmengine syntax (e.g. data_root=/data/VOCdevkit/ "
                        "train_cfg.max_iters=1000 img_scale=(500,300)); default: none. data_root by dataset: "
                        + data_root_help())
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="one run per seed; seeds that already have WORK_DIR/seed_<s>/result.json are skipped "
                        "(default: 0)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="none",
                   help="'pytorch' under torchrun for several GPUs, 'slurm' under srun (default: none)")


def parse_cfg_options(items) -> dict:
    """KEY=VALUE strings -> dict, values parsed as mmengine's --cfg-options does (numbers, tuples, lists, str)."""
    from mmengine.config import DictAction

    from ..errors import UsageError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--cfg-options item {item!r} is not KEY=VALUE")
        options[key] = DictAction._parse_iterable(value)
    return options


def run(args):
    from ..transfer import transfer

    transfer(args.config, args.checkpoint, args.work_dir, parse_cfg_options(args.cfg_options),
             seeds=args.seeds, launcher=args.launcher)
    return 0
