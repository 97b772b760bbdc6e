"""fastload induction: nearest-neighbour accuracy on the classes a label set never trained as labels (Fig. 4)."""

CLASS_CHOICES = ("unseen", "all")
LAYER_CHOICES = ("conv5", "pool5", "fc6", "fc7")


def add_feature_arguments(p):
    """Settings shared by the analyses that run a network over a compiled folder."""
    p.add_argument("--beton-dir", required=True,
                   help="folder written by `fastload compile` (train.beton, val.beton and their *_index.npz)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    p.add_argument("--resolution", type=int, default=0,
                   help="eval crop size; 0 = the checkpoint recipe's val_res, else 227 (alexnet_caffe) / 224 (tv)")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--num-workers", type=int, default=2, help="loader worker threads (default: 2)")


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
    p.add_argument("--layer", choices=LAYER_CHOICES, default="fc7", help="feature layer (default: fc7)")
    p.add_argument("--db-per-class", type=int, default=0,
                   help="at most this many train images per class in the database; 0 = all (default: 0)")
    p.add_argument("--queries-per-class", type=int, default=0,
                   help="at most this many val images per class as queries; 0 = all (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-class image sampling (default: 0)")
    p.add_argument("--chunk-rows", type=int, default=65536,
                   help="database rows per similarity chunk of the neighbour search (default: 65536)")
    p.add_argument("--features-dir", default=None,
                   help="keep the features as .npy memmaps in this folder instead of in memory")
    p.add_argument("--out", default=None,
                   help="result JSON (default: induction_<labelset>.json next to --checkpoint)")


def run(args):
    from ..analysis.induction import run_induction
    from ..errors import UsageError
    for name in ("batch_size", "chunk_rows"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    run_induction(args)
    return 0
