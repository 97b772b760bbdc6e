"""fastload suite: the classification transfer suite (Kornblith et al. 2019) on a compiled dataset.

  fastload suite probe    --checkpoint CKPT --beton-dir COMPILED --out OUT [--seeds 0 1 2]
  fastload suite finetune --checkpoint CKPT --beton-dir COMPILED --out OUT [--seeds 0 1 2] [--steps N] [--search]

COMPILED is a folder written by `fastload compile cls LAYOUT ROOT COMPILED`; OUT/summary.json gets the metric's
mean and std over the seeds and every seed's run (see docs/suite.md and docs/protocol.md).
"""
from .common import check_output_folder, require_at_least


def add_common(p):
    from ..analysis.features import DEFAULT_BATCH_SIZE
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint (any pre-training run)")
    p.add_argument("--beton-dir", required=True, help="folder written by `fastload compile cls LAYOUT ROOT OUT`")
    p.add_argument("--out", required=True, help="output folder (summary.json; the probe's feature cache)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, >= 1 of them (default: 0 1 2)")
    p.add_argument("--resolution", type=int, default=0,
                   help="crop size; 0 = the checkpoint recipe's val_res, else 227 (alexnet_caffe) / 224 (default: 0)")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N' "
                                                    "(default: auto)")
    p.add_argument("--num-workers", type=int, default=2, help="loader worker threads, >= 1 (default: 2)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per batch (default: probe {DEFAULT_BATCH_SIZE} per forward pass, finetune 256)")


def configure(p):
    sub = p.add_subparsers(dest="suite_command", metavar="PROTOCOL", required=True)
    probe = sub.add_parser("probe", help="L2 logistic regression (L-BFGS) on cached penultimate features",
                           description="Linear probe: features of centre crops extracted once (cached in "
                                       "OUT/features, fingerprinted), l2 chosen on val or a held-out part of train, "
                                       "refit on train+val, test scored with the dataset's metric.")
    add_common(probe)
    probe.add_argument("--l2-grid", type=int, default=45,
                       help="number of l2 values, log-spaced over [1e-6, 1e5] (default: 45, the paper's)")
    probe.add_argument("--layer", default=None, help="feature layer (default: the network's penultimate)")
    probe.add_argument("--feature-dir", default=None, help="feature cache folder (default: OUT/features)")
    ft = sub.add_parser("finetune", help="fine-tune every layer: SGD, Nesterov momentum 0.9, cosine decay",
                        description="Fine-tuning: a new classifier, all layers trained with SGD + Nesterov momentum "
                                    "0.9 and cosine decay; the paper's lr x wd search with --search.")
    add_common(ft)
    ft.add_argument("--steps", type=int, default=19531, help="SGD steps (default: 19531, the paper's)")
    ft.add_argument("--lr", type=float, default=None,
                    help="learning rate (default: 0.01 x batch/256, the declared point of the paper's grid)")
    ft.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay, >= 0 (default: 1e-4)")
    ft.add_argument("--search", action="store_true",
                    help="search lr x weight decay on val (or held-out train) first, as the paper does")


def run(args):
    import numpy as np
    from ..distributed import pick_device
    from ..errors import UsageError
    require_at_least(args, 1, "num_workers")
    if args.batch_size is not None:
        require_at_least(args, 1, "batch_size")
    if args.resolution and args.resolution < 32:
        raise UsageError(f"--resolution must be 0 or >= 32, got {args.resolution}")
    check_output_folder(args.out, "--out")
    device = pick_device(0, args.device)
    if args.suite_command == "probe":
        from ..analysis.features import DEFAULT_BATCH_SIZE, Extraction
        from ..analysis.probe import run_probe
        require_at_least(args, 1, "l2_grid")
        grid = tuple(float(v) for v in np.logspace(-6, 5, args.l2_grid))
        extraction = Extraction(args.batch_size or DEFAULT_BATCH_SIZE, args.resolution, device, args.num_workers)
        s = run_probe(args.checkpoint, args.beton_dir, args.out, args.seeds, grid, args.layer, extraction,
                      args.feature_dir)
    else:
        from ..analysis.finetune import PAPER_BATCH, run_finetune
        require_at_least(args, 1, "steps")
        if args.lr is not None and not args.lr > 0:
            raise UsageError(f"--lr must be > 0, got {args.lr}")
        if not args.weight_decay >= 0:
            raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
        s = run_finetune(args.checkpoint, args.beton_dir, args.out, args.seeds, args.steps,
                         args.batch_size or PAPER_BATCH, args.lr, args.weight_decay, args.search, args.resolution,
                         device, args.num_workers)
    print(f"{s['kind']} {s['dataset']}: {s['metric']} {100 * s['mean']:.2f} ± {100 * s['std']:.2f} % over "
          f"{s['n']} seeds in {s['seconds']} s -> {args.out}/summary.json")
    return 0
