"""fastload subpop: BREEDS subpopulation shift; a new fc8 trained on a BREEDS set's source subclasses (labelled by
superclass), source and target top-1 reported side by side (fastload/analysis/subpop.py, docs/taxonomies.md)."""
from .common import add_feature_arguments, check_new_fc8_args, feature_settings


def configure(p):
    from ..breeds import BREEDS_SETS
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint pre-trained on any label set")
    p.add_argument("--breeds", default="living17", choices=list(BREEDS_SETS),
                   help="the BREEDS set whose source/target subclasses are used (default: living17)")
    add_feature_arguments(p, batch_help="images per iteration")
    p.add_argument("--epochs", type=int, default=10, help="passes over the source train images (default: 10)")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations; 0 = no limit")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate of fc8 (default: 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, 0 <= m < 1 (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay, >= 0 (default: 5e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of fc8's initialisation and the data order")
    p.add_argument("--out", default=None, help="result JSON (default: subpop_<breeds>.json next to --checkpoint)")


def run(args):
    from ..analysis.subpop import subpop
    check_new_fc8_args(args)
    subpop(args.checkpoint, breeds=args.breeds, epochs=args.epochs, max_iters=args.max_iters, lr=args.lr,
           momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed, out=args.out,
           **feature_settings(args))
    return 0
