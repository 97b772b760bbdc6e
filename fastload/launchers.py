"""Run the steps of a plan: `local` (concurrently on this machine's GPUs and CPU slots) or `slurm` (one sbatch job
per step).

Local is a plain scheduling loop (`run_local`): every step whose inputs are done starts as soon as the devices it
needs are free (`DevicePool`), as a process of its own pinned to its GPUs through CUDA_VISIBLE_DEVICES. A Slurm
job runs `python -m fastload.launchers run-step RESULTS STEP_ID`. Both end in `start_step` / `finish_step`, which
log a step's output to RESULTS/logs/<step>.log and append its records to the results store (one flock'ed line per
record: concurrent steps never tear it).

No step outlives its runner. Each step runs under a watcher (fastload/stepwatch.py) that holds the read end of a
pipe from the runner: when the runner dies, even by SIGKILL, the watcher kills every process of the step, its
children and their children included (torchrun's workers, dataloader workers), and a stop (Ctrl-C, SIGTERM) ends
in SIGKILL after STOP_GRACE_S whatever happens to the runner meanwhile. Every process of a step carries its
attempt's token (FASTLOAD_STEP_TOKEN, recorded in its 'started' record): a restarted runner kills any process of an
earlier attempt still alive (one whose watcher was killed too) before it starts anything, and records as done a
step whose exit status 0 the watcher wrote (RESULTS/logs/<step>.exit.json) after the runner had died.
"""
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import FastloadError, UsageError
from .plan import KINDS, STEPS_FILE, Step, read_steps
from .resources import REPO_ROOT
from .store import ResultsStore, base_record, read_metrics, utc_now

LAUNCHERS = ("local", "slurm")
POLL_S = 0.2          # how often the local loop looks for finished steps
HEARTBEAT_S = 300     # a line listing the running steps at least this often, for logs of long steps
STOP_GRACE_S = 10     # after SIGTERM, how long a stopped step may take to exit before SIGKILL
WATCHER = Path(__file__).with_name("stepwatch.py")
TOKEN_VARIABLE = "FASTLOAD_STEP_TOKEN"  # in the environment of every process of a step: which attempt it belongs to


# ---------------------------------------------------------------- one step

def log_path(results_dir, step_id: str) -> Path:
    return Path(results_dir) / "logs" / (step_id.replace("/", "__") + ".log")


def exit_path(results_dir, step_id: str) -> Path:
    """Where a step's watcher writes the exit status of its last attempt."""
    return log_path(results_dir, step_id).with_suffix(".exit.json")


def step_class(step_id: str) -> str:
    """Steps that cost about the same: the first part of the id (compile, pretrain, pascal_det, ...)."""
    return step_id.split("/", 1)[0]


def launch_argv(step: Step) -> list:
    """The step's argv as this machine runs it: `fastload` is this Python's CLI; torchrun for a multi-GPU step of a
    distributed kind (pre-training)."""
    argv = []
    for token in step.argv:
        if token == "{resume*}":
            # a killed pre-training run continues from its last checkpoint instead of starting over
            if step.resume_file and Path(step.resume_file).exists():
                argv.append("--resume")
            continue
        argv.append(token)
    if argv and argv[0] == "fastload":
        if KINDS[step.kind].distributed and step.gpus > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={step.gpus}", "-m", "fastload.cli", *argv[1:]]
        return [sys.executable, "-m", "fastload.cli", *argv[1:]]
    if argv and argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def stop_on_sigterm():
    """SIGTERM (kill, scancel) ends a run like Ctrl-C: the running steps are stopped with it instead of going on
    orphaned, and each, recorded as started but not done, runs again on the next call."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


# the thread pools a step's libraries size from the environment (torch/OpenMP, MKL, numba)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def child_env(gpu_ids=None, threads=None) -> dict:
    """The environment of a step: this checkout's fastload comes first on the path, so every step runs the code
    whose version the store records, installed or not; `gpu_ids` (a list, [] for none) become CUDA_VISIBLE_DEVICES;
    `threads` caps the step's thread pools (THREAD_VARIABLES) unless the caller's environment already sets them."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if threads is not None:
        for name in THREAD_VARIABLES:
            env.setdefault(name, str(int(threads)))
    return env


def cpu_threads_per_job(jobs: int):
    """Threads for each of `jobs` CPU steps running at once: the cores shared out (at least 1), so that --jobs 2 on
    2 cores runs two 1-thread steps instead of two 2-thread steps fighting for the cores; None for one job (each
    library's own default)."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


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
    if out.exists() and not KINDS[step.kind].fresh_out:   # a fresh_out step's out is deleted at its start
        aside = out.with_name(f"{out.name}.previous-{other[-1]}")
        if aside.is_dir():
            shutil.rmtree(aside)
        elif aside.exists():
            aside.unlink()
        os.replace(out, aside)
    store.append(base_record(step, "reset", previous_fingerprint=other[-1]))


@dataclass
class Running:
    """A started step: its watcher process, the runner's end of the watcher's pipe, its open log and what the
    store's records of it share."""
    step: Step
    proc: object
    log_file: object
    started: str
    t0: float
    extra: dict
    gpu_ids: list = None
    pipe: int = None        # closing it makes the watcher kill the step at once

    def release(self):
        """Close the log and the pipe (a watcher whose step still runs then kills it)."""
        self.log_file.close()
        if self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None


class NotStarted:
    """Stands in for the process of a command that could not be started (exit status 127, like a shell)."""
    pid = None

    def poll(self):
        return 127

    def wait(self, timeout=None):
        return 127


def start_watched(argv: list, env: dict, log_file, exit_file: Path):
    """Popen of `argv` under a watcher (fastload/stepwatch.py); returns (process, the runner's end of its pipe).
    The watcher leads a session of its own: Ctrl-C in the terminal, or a kill of the runner's process group,
    reaches only the runner, and the watcher is there to clean up after it."""
    read_end, write_end = os.pipe()  # both close-on-exec; the watcher alone gets read_end (pass_fds)
    try:
        proc = subprocess.Popen([sys.executable, "-S", str(WATCHER), str(read_end), str(exit_file),
                                 str(STOP_GRACE_S), "--", *argv], stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, pass_fds=(read_end,), start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return proc, write_end


def start_step(step: Step, store: ResultsStore, gpu_ids=None, launcher: str = "local", job_id=None,
               threads=None) -> Running:
    """Record the step as started and launch its command under a watcher (without waiting); `gpu_ids` pins it to
    those GPUs, `threads` caps its thread pools (child_env)."""
    log = log_path(store.dir, step.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = launch_argv(step)
    token = uuid.uuid4().hex
    extra = {"launcher": launcher, "job_id": job_id, "argv": argv, "log": str(log), "gpu_ids": gpu_ids,
             "token": token}
    set_aside_stale_outputs(step, store)
    if KINDS[step.kind].fresh_out and Path(step.out).exists():
        shutil.rmtree(step.out)  # what a killed attempt wrote: the command wants an empty folder
    exit_file = exit_path(store.dir, step.id)
    exit_file.unlink(missing_ok=True)
    started = utc_now()
    store.append(base_record(step, "started", started=started, **extra))
    f = open(log, "ab")
    f.write(f"\n=== {started} {shlex.join(argv)}\n".encode())
    f.flush()
    env = {**child_env(gpu_ids, threads), TOKEN_VARIABLE: token}
    try:
        proc, pipe = start_watched(argv, env, f, exit_file)
    except FileNotFoundError as e:
        f.write(f"command not found: {e.filename}\n".encode())
        proc, pipe = NotStarted(), None
    return Running(step, proc, f, started, time.time(), extra, gpu_ids, pipe)


def finish_step(run: Running, rc: int, store: ResultsStore) -> dict:
    """Record how a step ended; returns its 'done' record, raises FastloadError (after recording) when it failed."""
    run.release()
    return record_end(run.step, rc, store, run.started, round(time.time() - run.t0, 3), run.extra)


def record_end(step: Step, rc: int, store: ResultsStore, started: str, wall: float, extra: dict) -> dict:
    """Append the 'done' record of a step that exited with `rc`, or its 'failed' record (then FastloadError)."""
    log = extra["log"]
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


def execute_step(step: Step, store: ResultsStore, launcher: str = "local", job_id=None, gpu_ids=None) -> dict:
    """Run one step to completion and record it; raises FastloadError (after recording) when it fails."""
    run = start_step(step, store, gpu_ids, launcher=launcher, job_id=job_id)
    try:
        rc = run.proc.wait()
    except BaseException:
        stop_steps([run])
        raise
    return finish_step(run, rc, store)


def stop_steps(runs: list):
    """Stop running steps: SIGTERM to each watcher, which passes it to its step's process group and kills every
    process of the step STOP_GRACE_S later; waits for the watchers. However this wait ends (a second Ctrl-C
    included), the pipes are closed last, and a watcher whose step is still there kills it at once."""
    try:
        live = [r for r in runs if r.proc.pid is not None and r.proc.poll() is None]
        for r in live:
            try:
                os.kill(r.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + STOP_GRACE_S + 5
        while any(r.proc.poll() is None for r in live) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        for r in runs:
            r.release()


# ---------------------------------------------------------------- what an earlier runner left

def step_processes(tokens: set) -> dict:
    """pid -> token, of the live processes (this user's) whose environment holds one of `tokens`."""
    found = {}
    if not tokens or not Path("/proc").is_dir():
        return found
    prefix = f"{TOKEN_VARIABLE}=".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix) and item[len(prefix):].decode(errors="replace") in tokens:
                found[int(entry)] = item[len(prefix):].decode()
    return found


def kill_leftovers(store: ResultsStore, log=print) -> int:
    """SIGKILL every live process of a step an earlier local runner of this folder started (one its watcher did
    not get to kill: the watcher was killed too). The caller holds the folder's OutputLock, so no live runner
    owns them. Returns how many there were."""
    step_of = {r["token"]: r["step"] for r in store.records()
               if r["status"] == "started" and r.get("launcher") == "local" and r.get("token")}
    found = step_processes(set(step_of))
    if not found:
        return 0
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    steps = sorted({step_of[t] for t in found.values()})
    log(f"killed {len(found)} process(es) an earlier run left running (pids {', '.join(map(str, sorted(found)))}) "
        f"of step(s) {', '.join(steps)}")
    deadline = time.time() + 10
    while step_processes(set(found.values())) and time.time() < deadline:
        time.sleep(0.05)
    return len(found)


def recover_finished(steps: list, store: ResultsStore) -> list:
    """Record as done each step whose last attempt exited 0 after its runner died (the watcher wrote its exit
    status, the runner could not record it). Returns their ids."""
    latest, recovered = store.latest(), []
    for step in steps:
        rec = latest.get(step.id)
        if not rec or rec["status"] != "started" or rec.get("fingerprint") != step.fingerprint():
            continue
        try:
            status = json.loads(exit_path(store.dir, step.id).read_text())
        except (OSError, ValueError):
            continue
        if status.get("token") != rec.get("token") or status.get("returncode") != 0:
            continue
        extra = {k: rec.get(k) for k in ("launcher", "job_id", "argv", "log", "gpu_ids", "token")}
        try:
            record_end(step, 0, store, rec.get("started"), status.get("wall_s"), {**extra, "recovered": True})
        except FastloadError:
            continue  # recorded as failed: it runs again
        recovered.append(step.id)
    return recovered


def _tail(path, lines=15) -> str:
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def summarize_metrics(metrics: dict, limit=3) -> str:
    """A few scalar metrics for the progress line."""
    items = [(k, v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    preferred = [kv for kv in items if kv[0] in ("top1", "top5", "mean", "std", "mAP", "accuracy")]
    return "  ".join(f"{k}={v:.4g}" for k, v in (preferred or items)[:limit])


# ---------------------------------------------------------------- devices

def visible_gpus() -> list:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES names them: its entries when it is set, else torch's count."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def parse_gpus(value, planning: bool = False) -> list:
    """--gpus: None = every visible GPU; 'none' = no GPU; '0,2' (or '3,' for one id) = those ids, set as
    CUDA_VISIBLE_DEVICES without checking CUDA (fake GPUs on a CPU machine work); N = the first N visible GPUs
    (ids 0..N-1 where none is visible), as PyTorch Lightning reads `devices`. `planning` (a dry run): N GPUs
    whatever this machine has."""
    if value is None:
        return visible_gpus()
    text = str(value).strip()
    if text.lower() in ("none", ""):
        return []
    if "," in text:
        ids = [g.strip() for g in text.split(",") if g.strip()]
        if len(set(ids)) != len(ids):
            raise UsageError(f"--gpus {value}: a GPU is listed twice")
        return ids
    if not text.isdigit():
        raise UsageError(f"--gpus {value}: give GPU ids (0,1,2,3), a count (8) or 'none'")
    if planning:
        return [str(i) for i in range(int(text))]
    count, visible = int(text), visible_gpus()
    if count <= len(visible):
        return visible[:count]
    if visible:
        raise UsageError(f"--gpus {count}: only {len(visible)} GPU(s) are visible ({','.join(visible)})")
    return [str(i) for i in range(count)]


class DevicePool:
    """Which GPUs and CPU slots are free. A step with gpus 0 takes one of `jobs` CPU slots (every step does when
    there is no GPU); with gpus 1 one of the `jobs_per_gpu` slots of the least busy GPU; with gpus k > 1 k whole
    GPUs (a job that asks for several GPUs is a large one: it shares them with nothing)."""

    def __init__(self, gpus=(), jobs_per_gpu: int = 1, jobs: int = 1):
        if jobs_per_gpu < 1 or jobs < 1:
            raise UsageError(f"--jobs-per-gpu and --jobs must be >= 1, got {jobs_per_gpu} and {jobs}")
        self.gpus, self.jobs_per_gpu, self.jobs = [str(g) for g in gpus], jobs_per_gpu, jobs
        self.gpu_use = {g: 0 for g in self.gpus}
        self.cpu_use = 0

    def empty_copy(self) -> "DevicePool":
        return DevicePool(self.gpus, self.jobs_per_gpu, self.jobs)

    def need(self, step) -> int:
        return step.gpus if self.gpus else 0

    def check(self, steps):
        for step in steps:
            if self.need(step) > len(self.gpus):
                raise UsageError(f"step {step.id} needs {step.gpus} GPUs; --gpus gives {len(self.gpus)} "
                                 f"({','.join(self.gpus)})")

    def take(self, step):
        """The GPU ids given to `step` ([] for a CPU slot), or None while what it needs is busy."""
        need = self.need(step)
        if need == 0:
            if self.cpu_use >= self.jobs:
                return None
            self.cpu_use += 1
            return []
        if need == 1:
            gpu = min(self.gpus, key=lambda g: self.gpu_use[g])  # least busy; the lowest id among equals
            if self.gpu_use[gpu] >= self.jobs_per_gpu:
                return None
            self.gpu_use[gpu] += 1
            return [gpu]
        free = [g for g in self.gpus if self.gpu_use[g] == 0][:need]
        if len(free) < need:
            return None
        for g in free:
            self.gpu_use[g] = self.jobs_per_gpu
        return free

    def give_back(self, taken: list):
        if not taken:
            self.cpu_use -= 1
        elif len(taken) == 1:
            self.gpu_use[taken[0]] -= 1
        else:
            for g in taken:
                self.gpu_use[g] = 0


# ---------------------------------------------------------------- scheduling (shared by the run and its estimates)

def priorities(steps: list, seconds: dict = None) -> dict:
    """step id -> the longest chain of work from it to the end of the plan (each step its seconds, or 1): steps
    that unlock the most work (pre-training before the evaluations that wait for it) start first."""
    seconds = seconds or {}
    dependents = {}
    for s in steps:
        for d in s.deps:
            dependents.setdefault(d, []).append(s.id)
    out = {}

    def chain(sid):
        if sid not in out:
            out[sid] = (seconds.get(sid) or 1.0) + max((chain(c) for c in dependents.get(sid, ())), default=0.0)
        return out[sid]
    for s in steps:
        chain(s.id)
    return out


def pick(ready: list, pool: DevicePool, priority: dict) -> list:
    """[(step, gpu ids)] to start now, highest priority first. A multi-GPU step that has to wait keeps lower ones
    off the GPUs, so a stream of one-GPU steps can never starve it."""
    chosen, gpus_reserved = [], False
    for step in sorted(ready, key=lambda s: -priority[s.id]):
        if gpus_reserved and pool.need(step) > 0:
            continue
        taken = pool.take(step)
        if taken is not None:
            chosen.append((step, taken))
        elif pool.need(step) > 1:
            gpus_reserved = True
    return chosen


def simulate(steps: list, seconds: dict, pool: DevicePool, running=(), priority=None) -> float:
    """Seconds until `steps` are done when each takes seconds[id], scheduled by the same rules as `run_local`;
    `running`: (step, seconds left) pairs already holding devices. Deps outside `steps` count as done."""
    pool = pool.empty_copy()
    priority = priority or priorities(steps, seconds)
    ids, finished, now = {s.id for s in steps} | {s.id for s, _ in running}, set(), 0.0
    active = [(left, step, pool.take(step)) for step, left in running]
    todo = list(steps)
    while todo or active:
        ready = [s for s in todo if all(d in finished or d not in ids for d in s.deps)]
        for step, taken in pick(ready, pool, priority):
            todo.remove(step)
            active.append((now + seconds[step.id], step, taken))
        if not active:
            raise FastloadError(f"steps {', '.join(s.id for s in todo[:5])} can never start (a dependency cycle?)")
        active.sort(key=lambda a: a[0])
        now, step, taken = active.pop(0)
        pool.give_back(taken)
        finished.add(step.id)
    return now


def measured_seconds(store: ResultsStore) -> dict:
    """step class -> the median wall time of its completed steps in the store (what this machine took)."""
    walls = {}
    for r in store.records():
        if r["status"] == "done" and r.get("wall_s") is not None:
            walls.setdefault(step_class(r["step"]), []).append(float(r["wall_s"]))
    return {k: statistics.median(v) for k, v in walls.items()}


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------- local

class Progress:
    """Plain lines that stay readable in a log: one when a step is skipped, starts, ends or fails, and every
    HEARTBEAT_S one with the running steps; the ETA simulates what is left with the wall times this machine took
    for steps of the same class (this run's and the store's), and says how many steps have none yet."""

    def __init__(self, steps: list, pool: DevicePool, timed: dict, log=print):
        self.total, self.pool, self.log = len(steps), pool, log
        self.store_seconds, self.run_seconds = dict(timed), {}   # class -> median wall; class -> [walls]
        self.width = max(len(s.id) for s in steps)
        self.count = 0
        self.last_line = time.time()

    def line(self, step_id: str, text: str, count=True):
        if count:
            self.count += 1
        n = len(str(self.total))
        self.log(f"[{self.count:>{n}}/{self.total}] {step_id:<{self.width}}  {text}")
        self.last_line = time.time()

    def learn(self, step_id: str, wall: float):
        self.run_seconds.setdefault(step_class(step_id), []).append(wall)

    def seconds(self, step_id: str):
        """What a step of this class took: in this run, else in the store; None when never timed."""
        own = self.run_seconds.get(step_class(step_id))
        return statistics.median(own) if own else self.store_seconds.get(step_class(step_id))

    def eta(self, todo: list, running: dict) -> str:
        guess = {s.id: self.seconds(s.id) for s in todo}
        untimed = sum(v is None for v in guess.values())
        guess = {k: v or 0.0 for k, v in guess.items()}
        now = time.time()
        busy = [(r.step, max((self.seconds(r.step.id) or 0.0) - (now - r.t0), 0.0)) for r in running.values()]
        eta = simulate(todo, guess, self.pool, running=busy)
        if untimed:  # what is left of the timed work; the untimed steps come on top
            return f"ETA > {format_duration(eta)} ({untimed} step(s) not timed yet)"
        return f"ETA {format_duration(eta)}"

    def status(self, todo: list, running: dict) -> str:
        return f"{len(running)} running, {len(todo)} waiting, {self.eta(todo, running)}"

    def heartbeat(self, todo: list, running: dict):
        if running and time.time() - self.last_line >= HEARTBEAT_S:
            now = time.time()
            names = ", ".join(f"{r.step.id} ({format_duration(now - r.t0)})" for r in running.values())
            self.log(f"... running: {names}; {len(todo)} waiting, {self.eta(todo, running)}")
            self.last_line = now


def run_local(steps: list, store: ResultsStore, gpus=(), jobs: int = 1, jobs_per_gpu: int = 1, log=print) -> dict:
    """Run every step not yet done, each as soon as its inputs are done and its devices are free (DevicePool).
    A failed step stops only the steps that need it; the others go on, and the run then raises FastloadError.
    Returns {'ran': n, 'skipped': n}."""
    pool = DevicePool(gpus, jobs_per_gpu, jobs)
    pool.check(steps)
    progress = Progress(steps, pool, measured_seconds(store), log)
    run = LocalRun(steps, store, pool, progress)
    try:
        while run.todo or run.running:
            run.start_ready()
            if not run.running:
                break
            time.sleep(POLL_S)
            run.collect_finished()
            progress.heartbeat(run.todo, run.running)
    except BaseException:  # Ctrl-C, SIGTERM (see stop_on_sigterm) or a bug: no step outlives the runner
        stop_steps(list(run.running.values()))
        raise
    run.raise_failures()
    return run.counts


class LocalRun:
    """The state of the local loop: steps waiting, running, done (`ok`), failed or needing a failed one (`lost`)."""

    def __init__(self, steps, store, pool, progress):
        self.store, self.pool, self.progress = store, pool, progress
        kill_leftovers(store, progress.log)  # before any step starts: no GPU has two holders
        for sid in recover_finished(steps, store):
            progress.log(f"{sid}: finished (exit status 0) after the earlier runner died; recorded as done")
        done = store.done()
        self.selected = {s.id for s in steps}
        self.todo = [s for s in steps if not store.is_done(s, done)]
        for step in steps:
            if step not in self.todo:
                progress.line(step.id, f"skip (done {done[step.id].get('finished', '')})")
        self.ok = self.selected - {s.id for s in self.todo}
        self.lost, self.failures, self.running = set(), [], {}
        self.priority = priorities(self.todo)
        self.counts = {"ran": 0, "skipped": len(steps) - len(self.todo)}

    def start_ready(self):
        for step in list(self.todo):  # what needs a failed step cannot run
            if any(d in self.lost for d in step.deps):
                self.todo.remove(step)
                self.lost.add(step.id)
        ready = [s for s in self.todo if all(d in self.ok for d in s.deps if d in self.selected)]
        for step, taken in pick(ready, self.pool, self.priority):
            self.todo.remove(step)
            threads = None if taken else cpu_threads_per_job(self.pool.jobs)  # a CPU slot: its share of cores
            self.running[step.id] = start_step(step, self.store, taken if self.pool.gpus else None,
                                               threads=threads)
            self.progress.line(step.id, "started" + (f" on GPU {','.join(taken)}" if taken else ""), count=False)

    def collect_finished(self):
        for sid, run in list(self.running.items()):
            rc = run.proc.poll()
            if rc is None:
                continue
            del self.running[sid]
            self.pool.give_back(run.gpu_ids or [])
            try:
                rec = finish_step(run, rc, self.store)
            except FastloadError as e:
                self.failures.append((sid, str(e)))
                self.lost.add(sid)
                self.progress.line(sid, f"FAILED after {format_duration(time.time() - run.t0)} (exit status {rc}); "
                                        f"log {run.extra['log']}")
                continue
            self.ok.add(sid)
            self.counts["ran"] += 1
            self.progress.learn(sid, rec["wall_s"])
            self.progress.line(sid, f"done in {rec['wall_s']:.1f}s  {summarize_metrics(rec.get('metrics'))}  "
                                    f"| {self.progress.status(self.todo, self.running)}")

    def raise_failures(self):
        if not self.failures:
            return
        unrun = len(self.lost) - len(self.failures)
        raise FastloadError(f"{self.failures[0][1]}\n{len(self.failures)} step(s) failed: "
                            f"{', '.join(sid for sid, _ in self.failures)}"
                            + (f"; {unrun} step(s) that need them did not run" if unrun else ""))


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
