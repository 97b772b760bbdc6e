"""fastload demo: the whole study on built-in synthetic data, on CPU, in minutes (or the real plan with --data)."""
import os


def configure(p):
    p.add_argument("--out", default="demo_out", help="results folder; rerun with the same one to resume "
                                                     "(default: demo_out)")
    p.add_argument("--data", nargs="+", metavar="ROOT", default=None,
                   help="real data (a folder holding imagenet/ voc/ sun/, or KEY=PATH ...): runs the paper's plan "
                        "instead of the synthetic demo (default: none, generate synthetic data)")
    p.add_argument("--plan", default=None,
                   help="plan to run (default: 'demo' without --data, 'paper' with --data)")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="local: steps run here; slurm: sbatch jobs, waited for (default: local)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="CPU steps at once, the cores shared out among them (default: min(2, CPUs): on 2 cores two "
                        "1-thread steps finish sooner than one 2-thread step after another)")


def run(args):
    from ..demo import run_demo
    run_demo(args.out, data=args.data, plan=args.plan, launcher=args.launcher, jobs=args.jobs,
             log=lambda m: print(m, flush=True))
    return 0
