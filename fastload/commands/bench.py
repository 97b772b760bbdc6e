"""fastload bench: manifest kernels, loader and training throughput, each against its baseline.

Each benchmark lives in `fastload/benchmarks/<name>.py` with a `configure(parser)` and a `run(args)`.
"""
import importlib

BENCHMARKS = [
    ("manifest", "Numba manifest kernels vs a NumPy/Python reference on a 1.28M-row index"),
    ("loader", "fastload FFCV loader vs torchvision ImageFolder + PIL + DataLoader"),
    ("train", "end-to-end training images/s vs the train step on data already on the device"),
]


def configure(p):
    sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    for name, help_text in BENCHMARKS:
        bp = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(f"fastload.benchmarks.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fastload.benchmarks.{name}":
                raise
            continue
        module.configure(bp)
        bp.set_defaults(_bench_run=module.run)


def run(args):
    from ..errors import UsageError
    if not hasattr(args, "_bench_run"):
        raise UsageError(f"benchmark '{args.bench_command}' is not available in this build")
    return args._bench_run(args)
