"""fastload pretrain: train AlexNet on one manifest with a recipe from train/ (resumable; torchrun for DDP).

    fastload pretrain --recipe fast --manifest M.npz --data COMPILED --out runs/NAME [--epochs 16] [--set lr=0.02]
    torchrun --nproc_per_node 8 -m fastload.cli pretrain --recipe fast ... --resume
"""


def configure(p):
    from ..recipe import SETTINGS  # the recipe schema, without torch: `fastload --help` stays fast
    p.add_argument("--recipe", default="fast",
                   help="paper, fast, smoke (train/NAME.yaml) or a path to a .yaml (default: fast)")
    p.add_argument("--manifest", required=True, help="pre-training manifest .npz (fastload subset)")
    p.add_argument("--data", help="a `fastload compile` output folder: fills --beton, --val-beton, --val-index")
    p.add_argument("--beton", help="train .beton (default: DATA/train.beton)")
    p.add_argument("--val-beton", help="val .beton (default: DATA/val.beton)")
    p.add_argument("--val-index", help="val index .npz (default: DATA/val_index.npz)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists (else start)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe setting (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    group = p.add_argument_group("recipe settings (override the recipe's value)")
    for s in SETTINGS:
        group.add_argument("--" + s.name.replace("_", "-"), dest="cfg_" + s.name, default=None,
                           metavar=s.type.__name__.upper(),
                           help=f"{s.help} ({s.allowed() + '; ' if s.allowed() else ''}default: the recipe's value)")


def resolve_inputs(args) -> dict:
    from pathlib import Path

    from ..beton import beton_path, index_path
    from ..errors import UsageError
    data = Path(args.data) if args.data else None
    # the compiled folder's own files, by the one naming rule (fastload.beton)
    defaults = {"beton": (beton_path, "train"), "val_beton": (beton_path, "val"), "val_index": (index_path, "val")}
    inputs = {"manifest": args.manifest, "out": args.out}
    for key, (path_in, split) in defaults.items():
        value = getattr(args, key)
        if value is None and data is None:
            raise UsageError(f"--{key.replace('_', '-')} is required (or give --data, a compiled folder)")
        inputs[key] = value if value is not None else str(path_in(data, split))
    return inputs


def collect_overrides(args) -> list:
    from ..errors import UsageError
    pairs = [(k[4:], v) for k, v in vars(args).items() if k.startswith("cfg_") and v is not None]
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    return pairs


def run(args):
    import yaml

    from ..recipe import apply_overrides, load_recipe
    overrides = collect_overrides(args)
    if args.print_config:
        print(yaml.safe_dump(apply_overrides(load_recipe(args.recipe), overrides), sort_keys=False), end="")
        return 0
    from .. import pretrain
    summary = pretrain.main(args.recipe, overrides, resolve_inputs(args), resume=args.resume)
    if summary is not None:  # rank 0
        print(f"{pretrain.describe(summary)}  {summary['epochs']} epochs  {summary['images_per_s']:,.0f} img/s  "
              f"-> {args.out}/summary.json")
    return 0
