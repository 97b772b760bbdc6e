"""fastload imagenet-cls: freeze a label-set network below fc8, train a new fc8 on every class (paper Fig. 1, 2)."""
from ..analysis.provenance import REUSE_HELP
from .common import add_feature_arguments, check_new_fc8_args, feature_settings


def configure(p):
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint pre-trained on any label set")
    add_feature_arguments(p, batch_help="images per iteration")
    p.add_argument("--epochs", type=int, default=10, help="passes over the train set (default: 10)")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations; 0 = no limit")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate of fc8 (default: 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, 0 <= m < 1 (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay, >= 0 (default: 5e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of fc8's initialisation and the data order")
    p.add_argument("--out", default=None,
                   help="result JSON (default: imagenet_cls.json next to --checkpoint)" + REUSE_HELP)


def run(args):
    from ..analysis.imagenet_cls import imagenet_cls
    check_new_fc8_args(args)
    imagenet_cls(args.checkpoint, epochs=args.epochs, max_iters=args.max_iters, lr=args.lr, momentum=args.momentum,
                 weight_decay=args.weight_decay, seed=args.seed, out=args.out, **feature_settings(args))
    return 0
