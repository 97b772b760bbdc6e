"""fastload reproduce: run an experiment plan end to end (local or Slurm), resumable; --dry-run prices it."""


def configure(p):
    p.add_argument("--plan", default="paper", help="'paper', 'demo' or a plan YAML file (default: paper)")
    p.add_argument("--arch", default=None, metavar="NET",
                   help="run the plan with this network instead of its AlexNet: resnet50 or resnet18 "
                        "(its record in fastload.models.networks: FFCV's 16-epoch recipe and the ResNet transfer "
                        "configs); the plan is then named PLAN_NET. One --out holds one network's study (default: "
                        "the plan as written)")
    p.add_argument("--data", nargs="+", metavar="ROOT",
                   help="a folder holding imagenet/ voc/ sun/, or KEY=PATH for each data key of the plan")
    p.add_argument("--synth", action="store_true",
                   help="generate the plan's data with `fastload synth` into OUT/data instead of --data")
    p.add_argument("--out", help="results folder (store, runs, logs, report); reuse it to resume. Required, "
                                 "except with --dry-run (where its store's measured times price the steps)")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="local: steps here, as many at once as --gpus/--jobs allow; slurm: one sbatch job per "
                        "step (default: local)")
    p.add_argument("--gpus", metavar="IDS|N",
                   help="local: the GPUs to use: ids as CUDA_VISIBLE_DEVICES takes them (0,1,2,3; '3,' for one "
                        "id; fake ids work on a CPU machine), a count N (the first N visible), or 'none' "
                        "(default: every visible GPU)")
    p.add_argument("--jobs-per-gpu", type=int, default=1, metavar="K",
                   help="local: one-GPU steps that may share a GPU (default: 1); a step of several GPUs has "
                        "them to itself")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local: steps without a GPU at once; with no GPU, every step (default: 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="run nothing: print the steps by kind, the GPU-hours and the makespan on --gpus, from "
                        "measured rates where there are some, else documented estimates")
    p.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="--dry-run: CPU cores the steps share, for the data-path bound (default: this machine's)")
    p.add_argument("--bench-json", action="append", default=[], metavar="FILE",
                   help="--dry-run: a `fastload bench train --json` result, the measured pre-training rate "
                        "(repeatable; the fastest end-to-end pipeline counts)")
    p.add_argument("--only", nargs="+", metavar="STEP",
                   help="only these steps (ids like pretrain/full, a kind like pretrain/, or a run id) "
                        "and the steps they need")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="extra sbatch argument, repeatable (e.g. --sbatch-arg=--partition=gpu)")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every submitted job has finished")


def run(args):
    from ..launchers import parse_gpus
    from ..reproduce import dry_run, reproduce
    from ..errors import UsageError
    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.launcher == "slurm" and args.gpus is not None and not args.dry_run:
        raise UsageError("--gpus is for --launcher local: under Slurm each job gets its GPUs from --gres (the "
                         "plan's gpus)")
    gpus = parse_gpus(args.gpus, planning=args.dry_run) if args.launcher == "local" or args.dry_run else []
    if args.dry_run:
        dry_run(args.plan, args.data, args.out, gpus=gpus, jobs=args.jobs, jobs_per_gpu=args.jobs_per_gpu,
                synth=args.synth, only=args.only, bench_json=args.bench_json, arch=args.arch,
                cpus=args.cpus, log=log)
        return 0
    reproduce(args.plan, args.data, args.out, launcher=args.launcher, only=args.only, synth=args.synth,
              sbatch_args=args.sbatch_arg, wait=args.wait, gpus=gpus, jobs=args.jobs,
              jobs_per_gpu=args.jobs_per_gpu, arch=args.arch, log=log)
    return 0
