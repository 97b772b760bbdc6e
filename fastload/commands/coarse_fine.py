"""fastload coarse-fine: per coarse class, coarse accuracy minus mean fine accuracy of a 1000-class model (Fig. 6)."""
from ..analysis.provenance import REUSE_HELP
from .common import add_feature_arguments, check_output_file, feature_settings, require_at_least


def configure(p):
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint trained on the fine classes ('full')")
    p.add_argument("--labelset", default="top_down@127",
                   help="coarse label set grouping the fine classes (default: top_down@127: the top-down step "
                        "nearest 127/1000 of the classes, top_down_127 on ImageNet-1k)")
    p.add_argument("--min-subclasses", type=int, default=5,
                   help="only coarse classes with at least this many fine classes in the dataset (default: 5)")
    add_feature_arguments(p)
    p.add_argument("--show", type=int, default=10, help="how many top and bottom classes to print (default: 10)")
    p.add_argument("--out", default=None,
                   help="full table as TSV (default: coarse_fine_<labelset>.tsv next to --checkpoint; its inputs "
                        "in OUT.inputs.json)" + REUSE_HELP)


def run(args):
    from ..analysis.coarse_fine import coarse_fine
    require_at_least(args, 1, "min_subclasses")
    require_at_least(args, 0, "show")
    if args.out:
        check_output_file(args.out, "--out")
    coarse_fine(args.checkpoint, labelset=args.labelset, min_subclasses=args.min_subclasses, show=args.show,
                out=args.out, **feature_settings(args))
    return 0
