"""`fastload reproduce`: expand a plan into steps and run them with a launcher, resumably.

Everything a run produces lives in RESULTS: compiled/, manifests/, runs/, evals/, logs/, plan.json (the expanded
steps and the plan, for Slurm jobs and the report) and results.jsonl (the results store). Running the same command
again skips every step the store records as done, so a killed run is resumed by starting it again.
"""
from dataclasses import asdict
from pathlib import Path

from .errors import UsageError
from .launchers import LAUNCHERS, run_local, run_slurm, stop_on_sigterm, write_steps
from .plan import build_steps, load_plan, parse_data_roots, select_steps
from .store import ResultsStore


def synth_roots(plan, results_dir) -> dict:
    """Where `--synth` generates the plan's data: RESULTS/data/<key>."""
    return {key: Path(results_dir).resolve() / "data" / key for key in plan.data}


def prepare(plan_name, data, results_dir, synth=False, only=None):
    """The plan, every step, and the selected steps; writes RESULTS/plan.json."""
    plan = load_plan(plan_name)
    if synth and data:
        raise UsageError("--data and --synth exclude each other: either real data roots or generated ones")
    if not synth and not data:
        raise UsageError("--data is required (DIR holding imagenet/ voc/ sun/, or KEY=PATH ...); "
                         "or --synth to generate synthetic data")
    roots = synth_roots(plan, results_dir) if synth else parse_data_roots(data, plan)
    steps = build_steps(plan, roots, results_dir, synth=synth)
    write_steps(results_dir, steps, {"plan": asdict(plan), "data_roots": {k: str(v) for k, v in roots.items()}})
    return plan, steps, select_steps(steps, only)


def reproduce(plan_name, data, results_dir, launcher="local", only=None, synth=False, sbatch_args=(),
              wait=False, log=print) -> dict:
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {launcher!r}: allowed values are {', '.join(LAUNCHERS)}")
    plan, steps, selected = prepare(plan_name, data, results_dir, synth=synth, only=only)
    store = ResultsStore(results_dir)
    log(f"plan {plan.name} ({plan.path}): {len(selected)} of {len(steps)} steps; results in {store.path}")
    if launcher == "local":
        stop_on_sigterm()
        counts = run_local(selected, store, log=log)
    else:
        counts = run_slurm(selected, store, sbatch_args=sbatch_args, wait=wait, log=log)
    log("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts
