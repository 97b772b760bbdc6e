"""fastload induction: nearest-neighbour accuracy on the classes a label set never trained as labels (Fig. 4)."""
from ..analysis.provenance import REUSE_HELP
from .common import FEATURE_LAYER_HELP, add_feature_arguments, check_output_file, feature_settings, require_at_least

CLASS_CHOICES = ("unseen", "all")


def configure(p):
    p.add_argument("--checkpoint", required=True, help="fastload checkpoint trained on --labelset (RUN/last.pt)")
    p.add_argument("--labelset", required=True,
                   help="the label set the checkpoint was trained on: a built-in name or a .tsv file")
    p.add_argument("--baseline", default=None,
                   help="checkpoint scored on the same classes and images, normally the 1000-class network")
    add_feature_arguments(p)
    p.add_argument("--classes", choices=CLASS_CHOICES, default="unseen",
                   help="'unseen': classes that are not training labels of --labelset; 'all': every class "
                        "(default: unseen)")
    p.add_argument("--layer", default=None, help=FEATURE_LAYER_HELP)
    p.add_argument("--db-per-class", type=int, default=0,
                   help="at most this many train images per class in the database; 0 = all (default: 0)")
    p.add_argument("--queries-per-class", type=int, default=0,
                   help="at most this many val images per class as queries; 0 = all (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-class image sampling (default: 0)")
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="database rows per similarity chunk of the neighbour search (default: the search's own, "
                        "fastload.analysis.knn.DEFAULT_CHUNK_ROWS: 1 GiB of fc7 features)")
    p.add_argument("--features-dir", default=None,
                   help="keep the features as .npy memmaps in this folder instead of in memory, each with the "
                        "inputs that made it (NAME.npy.key.json): a later run with the same checkpoint, rows and "
                        "settings reads them back; other inputs compute them again")
    p.add_argument("--out", default=None,
                   help="result JSON (default: induction_<labelset>.json next to --checkpoint)" + REUSE_HELP)


def run(args):
    from ..analysis.induction import induction
    chunk = {} if args.chunk_rows is None else {"chunk_rows": args.chunk_rows}
    require_at_least(args, 1, *chunk)
    require_at_least(args, 0, "db_per_class", "queries_per_class")
    if args.out:
        check_output_file(args.out, "--out")
    induction(args.checkpoint, args.labelset, baseline=args.baseline, classes=args.classes, layer=args.layer,
              db_per_class=args.db_per_class, queries_per_class=args.queries_per_class, seed=args.seed,
              features_dir=args.features_dir, out=args.out, **chunk, **feature_settings(args))
    return 0
