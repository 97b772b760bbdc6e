"""fastload transfer: fine-tune and evaluate a checkpoint with an MMDetection/MMEngine config (several seeds), or
score a trained transfer model again (--eval-only)."""
import re

LAUNCHERS = ("none", "pytorch", "slurm")
# a --cfg-options key: dotted names and list indices, as mmengine's merge_from_dict reads them
CFG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*")


def data_root_help() -> str:
    from ..transfer import DATA_ROOT_CONTENTS

    return "; ".join(f"{task}: {holds}" for task, holds in DATA_ROOT_CONTENTS.values())


def configure(p):
    p.add_argument("config", help="an MMEngine config, e.g. transfer/faster-rcnn_alexnet-caffe_70k_voc07.py "
                                  "(settings and sources of the shipped ones: docs/protocol.md)")
    p.add_argument("--checkpoint",
                   help="fastload pre-training checkpoint (runs/NAME/last.pt); sets the config's top-level "
                        "`checkpoint`, which fills every `checkpoint` of the model (required unless --eval-only)")
    p.add_argument("--work-dir", required=True,
                   help="output folder: WORK_DIR/seed_<s>/ per seed and WORK_DIR/summary.json; held by one process "
                        "at a time (required)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, mmengine syntax (e.g. data_root=/data/VOCdevkit/ "
                        "train_cfg.max_iters=1000 img_scale=(500,300)); every `type` must name a registered class; "
                        "default: none. data_root by dataset: " + data_root_help())
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="one run per seed. A seed whose WORK_DIR/seed_<s>/result.json was made from the same inputs "
                        "(checkpoint content: size and sha256 of the whole file; seed; data_root; the resolved "
                        "config) is reused; one made from other inputs is refused, naming what differs: delete that "
                        "seed_<s>/ or use another --work-dir (default: 0)")
    p.add_argument("--eval-only", metavar="MODEL",
                   help="score a trained transfer model (a checkpoint a run wrote, e.g. WORK_DIR/seed_0/iter_140000.pth"
                        ") on the config's test set again, loaded strictly; writes WORK_DIR/eval/result.json "
                        "(default: train)")
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
        if not CFG_KEY.fullmatch(key):
            raise UsageError(f"--cfg-options key {key!r} is not a dotted config key (names and list indices, "
                             "e.g. train_cfg.max_iters or param_scheduler.0.milestones)")
        options[key] = DictAction._parse_iterable(value)
    return options


def run(args):
    from ..errors import UsageError
    from ..transfer import evaluate, transfer

    options = parse_cfg_options(args.cfg_options)
    if args.eval_only is not None:
        if args.seeds != [0]:
            raise UsageError("--eval-only scores one trained model: --seeds does not apply")
        if args.checkpoint is not None:
            raise UsageError("--eval-only takes every weight from MODEL: --checkpoint does not apply")
        evaluate(args.config, args.eval_only, args.work_dir, options, launcher=args.launcher)
        return 0
    if args.checkpoint is None:
        raise UsageError("--checkpoint is required (a fastload pre-training checkpoint, runs/NAME/last.pt), "
                         "unless --eval-only MODEL")
    transfer(args.config, args.checkpoint, args.work_dir, options, seeds=args.seeds, launcher=args.launcher)
    return 0
