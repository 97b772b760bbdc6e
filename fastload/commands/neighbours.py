"""fastload neighbours: nearest-neighbour picture grids, one row per model for each query (paper Fig. 5)."""
from .common import FEATURE_LAYER_HELP, add_feature_arguments, check_output_file, feature_settings, require_at_least


def configure(p):
    p.add_argument("--checkpoints", nargs="+", required=True, help="fastload checkpoints, one grid row each per query")
    p.add_argument("--names", nargs="+", default=None,
                   help="row labels, one per checkpoint (default: each checkpoint's run folder name)")
    p.add_argument("--labelset", default="top_down@127",
                   help="coarse label set deciding the orange frames (default: top_down@127: the top-down step "
                        "nearest 127/1000 of the classes, top_down_127 on ImageNet-1k)")
    add_feature_arguments(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--queries", type=int, default=4, help="number of random val queries, one class each (default: 4)")
    p.add_argument("--query-rows", type=int, nargs="+", default=None,
                   help="val index rows to use as queries instead of random ones")
    p.add_argument("--k", type=int, default=8, help="neighbours shown per row (default: 8)")
    p.add_argument("--layer", default=None, help=FEATURE_LAYER_HELP)
    p.add_argument("--db-per-class", type=int, default=0,
                   help="at most this many train images per class in the database; 0 = all (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query and database sampling (default: 0)")
    p.add_argument("--cell", type=int, default=96, help="thumbnail size in pixels (default: 96)")
    p.add_argument("--image-root", default=None,
                   help="folder holding the original images (default: the root recorded in the index)")


def run(args):
    from ..analysis.pictures import neighbours
    require_at_least(args, 1, "queries", "k", "cell")
    require_at_least(args, 0, "db_per_class")
    check_output_file(args.out, "--out")
    neighbours(args.checkpoints, out=args.out, names=args.names, labelset=args.labelset, queries=args.queries,
               query_rows=args.query_rows, k=args.k, layer=args.layer, db_per_class=args.db_per_class,
               seed=args.seed, cell=args.cell, image_root=args.image_root, **feature_settings(args))
    return 0
