"""Run the steps of a plan: `local` (one after another here) or `slurm` (one sbatch job per step).

Both end in `execute_step`, which runs the step's command as a subprocess, logs its output to
RESULTS/logs/<step>.log and appends its records to the results store. A Slurm job runs
`python -m fastload.launchers run-step RESULTS STEP_ID`, so the same code writes the same store.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import FastloadError, UsageError
from .files import write_json
from .plan import Step
from .resources import REPO_ROOT
from .store import ResultsStore, base_record, read_metrics, utc_now

LAUNCHERS = ("local", "slurm")
STEPS_FILE = "plan.json"


# ---------------------------------------------------------------- one step

def log_path(results_dir, step_id: str) -> Path:
    return Path(results_dir) / "logs" / (step_id.replace("/", "__") + ".log")


def launch_argv(step: Step) -> list:
    """The step's argv as this machine runs it: `fastload` is this Python's CLI; torchrun for multi-GPU pre-training."""
    argv = []
    for token in step.argv:
        if token == "{resume*}":
            # a killed pre-training run continues from its last checkpoint instead of starting over
            if step.resume_file and Path(step.resume_file).exists():
                argv.append("--resume")
            continue
        argv.append(token)
    if argv and argv[0] == "fastload":
        if step.kind == "pretrain" and step.gpus > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={step.gpus}", "-m", "fastload.cli", *argv[1:]]
        return [sys.executable, "-m", "fastload.cli", *argv[1:]]
    if argv and argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def stop_on_sigterm():
    """SIGTERM (kill, scancel) ends a run like Ctrl-C: the running step's process is killed with it instead of
    going on orphaned, and the step, recorded as started but not done, runs again on the next call."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


def child_env() -> dict:
    """The environment of a step: this checkout's fastload comes first on the path, so every step runs the code
    whose version the store records, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def set_aside_stale_outputs(step: Step, store: ResultsStore):
    """When the plan changed a step's command since an earlier attempt, that attempt's outputs (a checkpoint to
    resume, a finished summary) belong to other settings: move them to OUT.previous-<fingerprint> and record a
    'reset', after which attempts with the current command may resume each other's outputs."""
    records = [r for r in store.records() if r["step"] == step.id]
    resets = [i for i, r in enumerate(records) if r["status"] == "reset"]
    since = records[resets[-1] + 1:] if resets else records
    other = [r.get("fingerprint") for r in since if r.get("fingerprint") != step.fingerprint()]
    if not other:
        return
    out = Path(step.out)
    if out.exists() and step.kind != "synth":
        aside = out.with_name(f"{out.name}.previous-{other[-1]}")
        if aside.is_dir():
            shutil.rmtree(aside)
        elif aside.exists():
            aside.unlink()
        os.replace(out, aside)
    store.append(base_record(step, "reset", previous_fingerprint=other[-1]))


def execute_step(step: Step, store: ResultsStore, launcher: str = "local", job_id=None) -> dict:
    """Run one step to completion and record it; raises FastloadError (after recording) when it fails."""
    log = log_path(store.dir, step.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = launch_argv(step)
    extra = {"launcher": launcher, "job_id": job_id, "argv": argv, "log": str(log)}
    set_aside_stale_outputs(step, store)
    if step.kind == "synth" and Path(step.out).exists():
        shutil.rmtree(step.out)  # generated data of a killed attempt: synth wants an empty folder
    started = utc_now()
    store.append(base_record(step, "started", started=started, **extra))
    t0 = time.time()
    with open(log, "ab") as f:
        f.write(f"\n=== {started} {shlex.join(argv)}\n".encode())
        f.flush()
        try:
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env()).returncode
        except FileNotFoundError as e:
            rc, f_msg = 127, f"command not found: {e.filename}"
            f.write((f_msg + "\n").encode())
    wall = round(time.time() - t0, 3)
    try:
        if rc != 0:
            raise FastloadError(f"step {step.id} failed with exit status {rc}; log {log}:\n{_tail(log)}")
        missing = [p for p in step.outputs if not Path(p).exists()]
        if missing:
            raise FastloadError(f"step {step.id} exited 0 but did not write {', '.join(missing)}; log {log}")
        metrics = read_metrics(step.result)
    except FastloadError as e:
        store.append(base_record(step, "failed", started=started, finished=utc_now(), wall_s=wall,
                                 returncode=rc, error=str(e).splitlines()[0], **extra))
        raise
    return store.append(base_record(step, "done", started=started, finished=utc_now(), wall_s=wall,
                                    metrics=metrics, result_file=step.result, **extra))


def _tail(path, lines=15) -> str:
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def summarize_metrics(metrics: dict, limit=3) -> str:
    """A few scalar metrics for the progress line."""
    items = [(k, v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    preferred = [kv for kv in items if kv[0] in ("top1", "top5", "mean", "std", "mAP", "accuracy")]
    return "  ".join(f"{k}={v:.4g}" for k, v in (preferred or items)[:limit])


# ---------------------------------------------------------------- local

def run_local(steps: list, store: ResultsStore, log=print) -> dict:
    """Each step in order; completed ones are skipped. Returns {'ran': n, 'skipped': n}."""
    done = store.done()
    counts = {"ran": 0, "skipped": 0}
    width = max(len(s.id) for s in steps)
    for i, step in enumerate(steps, 1):
        head = f"[{i:>{len(str(len(steps)))}}/{len(steps)}] {step.id:<{width}}"
        if store.is_done(step, done):
            counts["skipped"] += 1
            log(f"{head}  skip (done {done[step.id].get('finished', '')})")
            continue
        log(f"{head}  running ...")
        rec = execute_step(step, store, launcher="local")
        counts["ran"] += 1
        log(f"{head}  done in {rec['wall_s']:.1f}s  {summarize_metrics(rec.get('metrics'))}")
    return counts


# ---------------------------------------------------------------- slurm

def _slurm_command(name: str) -> str:
    from shutil import which
    path = which(name)
    if path is None:
        raise FastloadError(f"--launcher slurm: '{name}' is not on PATH (install Slurm's client tools, "
                            f"or run tests/slurm_cluster.sh for a single-node cluster)")
    return path


def live_jobs() -> set:
    """Ids of this user's jobs that Slurm still has queued or running."""
    out = subprocess.run([_slurm_command("squeue"), "-h", "-o", "%i %T", "-u", _user()], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise FastloadError(f"squeue failed: {out.stderr.strip()}")
    return {line.split()[0] for line in out.stdout.splitlines()
            if line.split() and line.split()[1] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")}


def _user() -> str:
    import getpass
    return getpass.getuser()


def sbatch_command(step: Step, results_dir, dep_jobs: list, sbatch_args: list) -> list:
    worker = ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", "fastload.launchers", "run-step",
              str(Path(results_dir).resolve()), step.id]
    cmd = [_slurm_command("sbatch"), "--parsable", f"--job-name=fastload:{step.id}",
           f"--output={log_path(results_dir, step.id)}.slurm-%j", "--kill-on-invalid-dep=yes"]
    if dep_jobs:
        cmd.append("--dependency=afterok:" + ":".join(dep_jobs))
    if step.gpus > 0:
        cmd.append(f"--gres=gpu:{step.gpus}")
    return cmd + list(sbatch_args) + ["--wrap", shlex.join(worker)]


def run_slurm(steps: list, store: ResultsStore, sbatch_args=(), wait=False, poll_s=2.0, log=print) -> dict:
    """Submit every incomplete step as a job that starts after its dependencies succeed (afterok)."""
    done, latest, live = store.done(), store.latest(), live_jobs()
    job_of, counts = {}, {"submitted": 0, "skipped": 0, "queued": 0}
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.id}"
        if store.is_done(step, done):
            counts["skipped"] += 1
            log(f"{head}  skip (done)")
            continue
        rec = latest.get(step.id)
        if rec and rec["status"] in ("submitted", "started") and str(rec.get("job_id")) in live:
            job_of[step.id] = str(rec["job_id"])  # still queued from an earlier call: do not submit twice
            counts["queued"] += 1
            log(f"{head}  already queued as job {rec['job_id']}")
            continue
        dep_jobs = [job_of[d] for d in step.deps if d in job_of]
        log_path(store.dir, step.id).parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(sbatch_command(step, store.dir, dep_jobs, sbatch_args), capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            raise FastloadError(f"sbatch for step {step.id} failed: {out.stderr.strip()}")
        job_of[step.id] = out.stdout.strip().split(";")[0]
        store.append(base_record(step, "submitted", launcher="slurm", job_id=job_of[step.id],
                                 depends_on=dep_jobs))
        counts["submitted"] += 1
        log(f"{head}  submitted job {job_of[step.id]}" + (f" after {','.join(dep_jobs)}" if dep_jobs else ""))
    if wait and job_of:
        wait_for_jobs(set(job_of.values()), poll_s, log)
        failed = [s.id for s in steps if not store.is_done(s)]
        if failed:
            raise FastloadError(f"{len(failed)} step(s) did not complete under Slurm: {', '.join(failed)}; "
                                f"see {store.dir / 'logs'}")
    return counts


def wait_for_jobs(jobs: set, poll_s: float, log=print):
    remaining = set(jobs)
    while remaining:
        remaining &= live_jobs()
        if remaining:
            time.sleep(poll_s)
    log(f"all {len(jobs)} Slurm job(s) finished")


# ---------------------------------------------------------------- the worker a Slurm job runs

def write_steps(results_dir, steps: list, meta: dict):
    """RESULTS/plan.json: the expanded steps (what jobs run) and the plan (what the report reads)."""
    write_json(Path(results_dir) / STEPS_FILE, {**meta, "steps": [s.to_dict() for s in steps]}, indent=1, default=str)


def read_steps(results_dir) -> list:
    path = Path(results_dir) / STEPS_FILE
    if not path.is_file():
        raise FastloadError(f"{path} is missing: run `fastload reproduce` with --out {results_dir} first")
    return [Step(**s) for s in json.loads(path.read_text())["steps"]]


def run_step_main(argv=None) -> int:
    """`python -m fastload.launchers run-step RESULTS STEP_ID` (what each Slurm job runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "run-step":
        raise UsageError("usage: python -m fastload.launchers run-step RESULTS STEP_ID")
    results, step_id = argv[1], argv[2]
    steps = {s.id: s for s in read_steps(results)}
    if step_id not in steps:
        raise UsageError(f"step {step_id!r} is not in {Path(results) / STEPS_FILE}")
    stop_on_sigterm()
    store = ResultsStore(results)
    if store.is_done(steps[step_id]):
        print(f"{step_id}: already done")
        return 0
    rec = execute_step(steps[step_id], store, launcher="slurm", job_id=os.environ.get("SLURM_JOB_ID"))
    print(f"{step_id}: done in {rec['wall_s']:.1f}s {summarize_metrics(rec.get('metrics'))}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(run_step_main())
    except FastloadError as e:
        print(f"fastload run-step: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, UsageError) else 1)
