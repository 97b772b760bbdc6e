"""The `fastload` command line: one sub-command per stage of the data flow.

Each sub-command's arguments live in `fastload/commands/<name>.py` (a `configure(parser)` and a `run(args)`);
heavy modules (torch, ffcv, mmdet) are imported inside `run`, so `fastload --help` stays fast.
"""
import argparse
import importlib
import sys

from .errors import FastloadError, UsageError

# (sub-command, module under fastload.commands, one-line help)
COMMANDS = [
    ("wordnet", "wordnet", "which WordNet is in use; look up a synset's parent chain"),
    ("labelsets", "labelsets", "list, show, export the paper's and BREEDS label sets; any cut of the tree; print the hierarchy"),
    ("synth", "synth", "write synthetic ImageNet / VOC / SUN397 / transfer-suite datasets in their standard layouts"),
    ("compile", "compile", "index an ImageNet-style folder and compile it into FFCV .beton files"),
    ("subset", "subset", "build pre-training manifests (label set x images per class x classes x budget)"),
    ("pretrain", "pretrain", "pre-train AlexNet on a manifest (torchrun for several GPUs), resumable"),
    ("transfer", "transfer", "fine-tune and evaluate a checkpoint with an MMDetection/MMEngine config"),
    ("imagenet-cls", "imagenet_cls", "ImageNet top-1/top-5 of a label-set network with a retrained 1000-way fc8"),
    ("subpop", "subpop", "BREEDS subpopulation shift: new fc8 on source subclasses, source vs target top-1"),
    ("induction", "induction", "nearest-neighbour accuracy on classes unseen in pre-training"),
    ("suite", "suite", "classification transfer suite: linear probe or fine-tuning on a `compile cls` dataset"),
    ("coarse-fine", "coarse_fine", "coarse-class minus fine-class accuracy per coarse class"),
    ("neighbours", "neighbours", "nearest-neighbour picture grids (paper Fig. 5)"),
    ("reproduce", "reproduce", "run an experiment plan end to end (local or Slurm), resumable"),
    ("report", "report", "write report.md with figures and tables next to the paper's numbers"),
    ("demo", "demo", "the whole study on built-in synthetic data, on CPU, in minutes"),
    ("bench", "bench", "benchmarks: manifest kernels, loader, training throughput"),
    ("doctor", "doctor", "what this machine can run (GPUs, CUDA, ffcv, WordNet, mmcv ops); the fix for what is missing"),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only=None):
    parser = _Parser(prog="fastload", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            module = importlib.import_module(f"fastload.commands.{module_name}")
            module.configure(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in {c[0] for c in COMMANDS} else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args._run(args) or 0
    except UsageError as e:
        print(f"fastload {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FastloadError as e:
        print(f"fastload {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head`
        return 0
    except OSError as e:  # a file the command could not read or write: its message names it
        print(f"fastload {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastload: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
