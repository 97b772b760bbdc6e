"""fastload reproduce: run an experiment plan end to end (local or Slurm), resumable."""


def configure(p):
    p.add_argument("--plan", default="paper", help="'paper', 'demo' or a plan YAML file (default: paper)")
    p.add_argument("--data", nargs="+", metavar="ROOT",
                   help="a folder holding imagenet/ voc/ sun/, or KEY=PATH for each data key of the plan")
    p.add_argument("--synth", action="store_true",
                   help="generate the plan's data with `fastload synth` into OUT/data instead of --data")
    p.add_argument("--out", required=True, help="results folder (store, runs, logs, report); reuse it to resume")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="local: steps one after another here; slurm: one sbatch job per step (default: local)")
    p.add_argument("--only", nargs="+", metavar="STEP",
                   help="only these steps (ids like pretrain/full, a kind like pretrain/, or a run id) "
                        "and the steps they need")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="extra sbatch argument, repeatable (e.g. --sbatch-arg=--partition=gpu)")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every submitted job has finished")


def run(args):
    from ..reproduce import reproduce
    reproduce(args.plan, args.data, args.out, launcher=args.launcher, only=args.only, synth=args.synth,
              sbatch_args=args.sbatch_arg, wait=args.wait, log=lambda m: print(m, flush=True))
    return 0
