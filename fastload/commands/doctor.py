"""fastload doctor: what this machine can run (Python, torch/CUDA and the GPUs, ffcv, numba, WordNet, the
MMDetection stack and the devices its ops run on, Slurm); exit status 1 with the fix for anything missing."""


def configure(p):
    p.description = __doc__.split("\n\n")[0].replace("\n", " ")


def run(args):
    from ..doctor import render, run_checks
    checks = run_checks()
    print(render(checks))
    return 1 if any(c.ok is False for c in checks) else 0
