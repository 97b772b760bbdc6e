"""fastload neighbours: nearest-neighbour picture grids, one row per model for each query (paper Fig. 5)."""
from .induction import LAYER_CHOICES, add_feature_arguments


def configure(p):
    p.add_argument("--checkpoints", nargs="+", required=True, help="fastload checkpoints, one grid row each per query")
    p.add_argument("--names", nargs="+", default=None,
                   help="row labels, one per checkpoint (default: each checkpoint's run folder name)")
    p.add_argument("--labelset", default="top_down@127",
                   help="coarse label set deciding the orange frames (default: top_down@127: the top-down step nearest 127/1000 of the classes, top_down_127 on ImageNet-1k)")
    add_feature_arguments(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--queries", type=int, default=4, help="number of random val queries, one class each (default: 4)")
    p.add_argument("--query-rows", type=int, nargs="+", default=None,
                   help="val index rows to use as queries instead of random ones")
    p.add_argument("--k", type=int, default=8, help="neighbours shown per row (default: 8)")
    p.add_argument("--layer", choices=LAYER_CHOICES, default="fc7", help="feature layer (default: fc7)")
    p.add_argument("--db-per-class", type=int, default=0,
                   help="at most this many train images per class in the database; 0 = all (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query and database sampling (default: 0)")
    p.add_argument("--cell", type=int, default=96, help="thumbnail size in pixels (default: 96)")
    p.add_argument("--image-root", default=None,
                   help="folder holding the original images (default: the root recorded in the index)")


def run(args):
    from ..analysis.pictures import run_neighbours
    from ..errors import UsageError
    for name in ("queries", "k", "cell", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    run_neighbours(args)
    return 0
