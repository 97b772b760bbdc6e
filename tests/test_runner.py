"""The local launcher runs independent steps at once: GPUs shared by at most --jobs-per-gpu steps (fake GPUs on
CPU: only CUDA_VISIBLE_DEVICES matters), multi-GPU steps on GPUs of their own, --jobs on a CPU machine,
dependencies honoured; a killed runner takes every process of its steps with it (their watchers) and a restart redoes
nothing; one reproduce per --out; the dry run prices the paper plan.

Each fake step records when it ran (its own clock, in the step) and the CUDA_VISIBLE_DEVICES it saw, so the
assertions are about recorded intervals, never about wall-time thresholds.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from fastload.launchers import THREAD_VARIABLES, DevicePool, simulate
from fastload.plan import Step, read_steps

SLEEP_S = 1.0
FAKE = r'''
import json, os, sys, time
from pathlib import Path
step, out = sys.argv[1], Path(sys.argv[2])
def note(event):
    with open(os.environ["RUNNER_LOG"], "a") as f:
        f.write(json.dumps({"step": step, "event": event, "t": time.time(), "pid": os.getpid(),
                            "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "threads": os.environ.get("OMP_NUM_THREADS")}) + "\n")
note("start")
slow = [tag for tag in os.environ.get("RUNNER_SLOW", "").split(",") if tag and tag in step]
time.sleep(float(os.environ.get("RUNNER_SLEEP_" + step.split("/")[0], os.environ.get("RUNNER_SLEEP", "1")))
           if not slow else 60)
if step.startswith("compile"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile.json").write_text("{}")
elif step.startswith("manifest"):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"m")
elif step.startswith("pretrain"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "last.pt").write_text("w")
    (out / "summary.json").write_text(json.dumps({"top1": 0.5}))
else:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"mean": 0.5}))
note("end")
'''


def write_plan(tmp_path, runs: dict, seeds: int, eval_gpus: int = 1) -> Path:
    """runs: {run id: pretrain GPUs}; each run gets `seeds` one-step evaluations."""
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    run_lines = "\n".join(f"  - {{id: {rid}, manifest: {{labelset: full}}, gpus: {g}, evals: [score]}}"
                          for rid, g in runs.items())
    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent(f"""\
        name: runner-test
        data: {{imagenet: {{}}}}
        defaults: {{recipe: fake, gpus: 1, seeds: {list(range(seeds))}}}
        commands:
          compile: [python, {fake}, compile, "{{out}}"]
          manifest: [python, {fake}, "manifest/{{out}}", "{{out}}"]
          pretrain: [python, {fake}, "pretrain/{{out}}", "{{out}}"]
        evaluations:
          score: {{kind: shell, gpus: {eval_gpus}, command: [python, {fake}, "score/{{out}}", "{{out}}"]}}
        runs:
        """) + run_lines + "\n")
    (tmp_path / "imagenet").mkdir(exist_ok=True)
    return plan


def reproduce_argv(tmp_path, plan, *extra):
    return [sys.executable, "-m", "fastload.cli", "reproduce", "--plan", str(plan),
            "--data", f"imagenet={tmp_path / 'imagenet'}", "--out", str(tmp_path / "results"), *extra]


def runner_env(tmp_path, sleep=SLEEP_S, slow=(), **per_kind):
    """The fake steps sleep `sleep` seconds, or per_kind[kind] (e.g. score=30), or 60 s where their output
    folder holds one of `slow`."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and k not in THREAD_VARIABLES}
    return {**env, "RUNNER_LOG": str(tmp_path / "runner.jsonl"), "RUNNER_SLEEP": str(sleep),
            "RUNNER_SLOW": ",".join(slow), "PYTHONPATH": str(REPO),
            **{f"RUNNER_SLEEP_{k}": str(v) for k, v in per_kind.items()}}


def run_plan(tmp_path, plan, *extra, sleep=SLEEP_S):
    out = subprocess.run(reproduce_argv(tmp_path, plan, *extra), env=runner_env(tmp_path, sleep), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def events(tmp_path) -> list:
    path = tmp_path / "runner.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def intervals(tmp_path) -> dict:
    """Step id (the id given to the fake: its kind and output folder) -> {start, end, cvd, pid} of its last run."""
    out = {}
    for e in events(tmp_path):
        if e["event"] == "start":
            out[e["step"]] = {"start": e["t"], "end": None, "cvd": e["cvd"], "pid": e["pid"],
                              "threads": e["threads"]}
        else:
            out[e["step"]]["end"] = e["t"]
    return out


def fake_id(step: Step) -> str:
    """The name the fake step records: its command's first argument."""
    return step.argv[2]


def max_overlap(spans: list) -> int:
    """The most intervals [start, end) open at one moment."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # an end sorts before a start
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


def store_records(tmp_path) -> list:
    path = tmp_path / "results" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def store_done(tmp_path) -> list:
    """Ids of the steps the store records as done, in order."""
    return [r["step"] for r in store_records(tmp_path) if r["status"] == "done"]


def check_dependencies(tmp_path):
    steps = read_steps(tmp_path / "results")
    spans = intervals(tmp_path)
    by_id = {s.id: s for s in steps}
    for step in steps:
        for dep in step.deps:
            assert spans[fake_id(step)]["start"] >= spans[fake_id(by_id[dep])]["end"], (step.id, dep)
    return steps, spans


def test_gpus_shared_by_at_most_k_steps_and_concurrency_reached(tmp_path):
    plan = write_plan(tmp_path, {"r": 1}, seeds=6)
    out = run_plan(tmp_path, plan, "--gpus", "0,1", "--jobs-per-gpu", "2", sleep=2)
    steps, spans = check_dependencies(tmp_path)
    assert len(steps) == 9 and all(s["end"] for s in spans.values())
    for step in steps:
        cvd = spans[fake_id(step)]["cvd"]
        assert cvd in (("0", "1") if step.gpus else ("",)), (step.id, cvd)  # CPU steps see no GPU
    for gpu in "01":
        on_it = [(s["start"], s["end"]) for s in spans.values() if s["cvd"] == gpu]
        assert max_overlap(on_it) <= 2, gpu
    scores = [(spans[fake_id(s)]["start"], spans[fake_id(s)]["end"]) for s in steps if s.id.startswith("score/")]
    assert max_overlap(scores) == 4  # 6 evaluations on 2 GPUs x 2: four at once, never five
    # about the ideal time, not the serial time: two waves of evaluations rather than six (busy time / span is
    # 3 when ideal, 1 when serial; process starts between the waves cost a little)
    span = max(e for _, e in scores) - min(s for s, _ in scores)
    assert sum(e - s for s, e in scores) / span > 2
    assert "started on GPU" in out.stdout and "ETA" in out.stdout
    # the store stayed whole under concurrent appends: every line a record, each step started and done once
    records = [json.loads(line) for line in (tmp_path / "results" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["step"], r["status"]) for r in records) == \
        sorted((s.id, status) for s in steps for status in ("started", "done"))


def test_multi_gpu_step_has_its_gpus_to_itself(tmp_path):
    plan = write_plan(tmp_path, {"wide": 2, "narrow": 1}, seeds=2)
    run_plan(tmp_path, plan, "--gpus", "0,1,2", "--jobs-per-gpu", "2")
    _, spans = check_dependencies(tmp_path)
    wide = next(s for k, s in spans.items() if k.startswith("pretrain/") and "wide" in k)
    wide_gpus = set(wide["cvd"].split(","))
    assert len(wide_gpus) == 2 and wide_gpus <= {"0", "1", "2"}
    for name, s in spans.items():
        if s is not wide and s["start"] < wide["end"] and wide["start"] < s["end"]:
            assert not wide_gpus & set((s["cvd"] or "").split(",")), (name, s["cvd"], wide["cvd"])
    for gpu in "012":
        assert max_overlap([(s["start"], s["end"]) for s in spans.values()
                            if gpu in (s["cvd"] or "").split(",")]) <= 2


def test_cpu_only_jobs(tmp_path):
    """No --gpus on a machine without CUDA: no GPU; --jobs 3 runs every step on 3 slots, each with its share of
    the cores as its thread count (OMP_NUM_THREADS: torch, numba and MKL size their pools from it)."""
    plan = write_plan(tmp_path, {"a": 1, "b": 1}, seeds=3)
    run_plan(tmp_path, plan, "--jobs", "3", sleep=2)
    _, spans = check_dependencies(tmp_path)
    every = [(s["start"], s["end"]) for s in spans.values()]
    assert max_overlap(every) == 3
    assert all(s["cvd"] is None for s in spans.values())
    assert {s["threads"] for s in spans.values()} == {str(max(1, os.cpu_count() // 3))}


def test_one_job_leaves_the_threads_alone(tmp_path):
    """One job at a time: each library's own default thread count."""
    plan = write_plan(tmp_path, {"a": 1}, seeds=1)
    run_plan(tmp_path, plan, sleep=0.1)
    assert {s["threads"] for s in intervals(tmp_path).values()} == {None}


def test_a_callers_thread_setting_is_kept(tmp_path):
    plan = write_plan(tmp_path, {"a": 1}, seeds=1)
    out = subprocess.run(reproduce_argv(tmp_path, plan, "--jobs", "2"), cwd=REPO, capture_output=True, text=True,
                         env={**runner_env(tmp_path, 0.1), "OMP_NUM_THREADS": "7"}, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {s["threads"] for s in intervals(tmp_path).values()} == {"7"}


def test_sigkill_of_the_runner_kills_its_steps_and_a_restart_redoes_nothing(tmp_path):
    plan = write_plan(tmp_path, {"r": 1}, seeds=6)
    slow = ("seed3", "seed4", "seed5")  # these would run for a minute: the kill lands while they run
    env = runner_env(tmp_path, sleep=0.3, slow=slow)
    proc = subprocess.Popen(reproduce_argv(tmp_path, plan, "--gpus", "0,1", "--jobs-per-gpu", "2"), env=env,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # the slow steps run and the fast ones are recorded: nothing is finishing now
        started = {e["step"] for e in events(tmp_path) if e["event"] == "start"}
        if all(any(tag in name for name in started) for tag in slow) and len(store_done(tmp_path)) == 6:
            break
        time.sleep(0.05)
    proc.kill()  # the runner alone, SIGKILL: its steps must die with it (their watchers kill them)
    proc.wait()
    before = intervals(tmp_path)
    killed = [s["pid"] for s in before.values() if s["end"] is None]
    assert len(killed) == 3, "the kill must land while the slow steps run"
    assert sum(name.startswith("score/") for name in before if before[name]["end"]) == 3  # seeds 0-2 done
    deadline = time.time() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in killed) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in killed if Path(f"/proc/{pid}").exists()], "steps outlived a SIGKILLed runner"
    finished = {k for k, s in before.items() if s["end"] is not None}

    again = subprocess.run(reproduce_argv(tmp_path, plan, "--gpus", "0,1", "--jobs-per-gpu", "2"),
                           env=runner_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    starts = {}
    for e in events(tmp_path):
        if e["event"] == "start":
            starts[e["step"]] = starts.get(e["step"], 0) + 1
    for name in finished:
        assert starts[name] == 1, f"{name} was done before the kill and ran again"
    done = [json.loads(line) for line in (tmp_path / "results" / "results.jsonl").read_text().splitlines()]
    done = [r["step"] for r in done if r["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 9


def test_second_reproduce_on_one_out_is_refused_and_sigterm_stops_every_step(tmp_path):
    plan = write_plan(tmp_path, {"r": 1}, seeds=4)
    env = runner_env(tmp_path, sleep=0.1, score=60)
    first = subprocess.Popen(reproduce_argv(tmp_path, plan, "--jobs", "4"), env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while sum(e["step"].startswith("score/") for e in events(tmp_path)) < 4 and time.time() < deadline:
            time.sleep(0.05)
        n = len(events(tmp_path))
        second = subprocess.run(reproduce_argv(tmp_path, plan), env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by fastload reproduce" in lines[0] and f"pid {first.pid}" in lines[0]
        assert len(events(tmp_path)) == n  # the second one started nothing
        first.terminate()
        assert first.wait(timeout=30) == 130
    finally:
        if first.poll() is None:
            first.kill()
    pids = [s["pid"] for s in intervals(tmp_path).values()]
    time.sleep(0.3)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()
                and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()]


def fake_steps(spec: dict) -> list:
    """{id: (gpus, [deps])} -> Steps (for the scheduler's own rules)."""
    return [Step(id=sid, kind="shell", argv=[], deps=deps, gpus=gpus) for sid, (gpus, deps) in spec.items()]


def test_simulated_makespan_follows_the_pool_rules():
    four = fake_steps({f"e{i}": (1, []) for i in range(4)})
    secs = {s.id: 1.0 for s in four}
    assert simulate(four, secs, DevicePool(["0", "1"], jobs_per_gpu=1)) == 2.0
    assert simulate(four, secs, DevicePool(["0", "1"], jobs_per_gpu=2)) == 1.0
    assert simulate(four, secs, DevicePool([], jobs=1)) == 4.0
    chain = fake_steps({"pre": (2, []), "a": (1, ["pre"]), "b": (1, ["pre"])})
    # the 2-GPU step shares with nothing, even at K=2: 3 s, then both evaluations at once
    assert simulate(chain, {"pre": 3.0, "a": 1.0, "b": 1.0}, DevicePool(["0", "1"], jobs_per_gpu=2)) == 4.0


def dry_table(stdout: str) -> dict:
    """step class -> its row's fields, from the dry run's table."""
    rows, lines = {}, stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("steps ")) + 1
    last = next(i for i, line in enumerate(lines) if line.startswith("GPU-hours:"))
    for line in lines[first:last]:
        parts = line.split()
        rows[parts[0]] = {"count": int(parts[2]), "gpu_hours": float(parts[5].replace(",", "")),
                          "source": " ".join(parts[6:])}
    return rows


def test_dry_run_prices_the_paper_plan(tmp_path):
    out = run_cli("reproduce", "--plan", "paper", "--dry-run", "--gpus", "8", check=True)
    rows = dry_table(out.stdout)
    assert rows["pretrain"]["count"] == 22 and rows["pascal_det"]["count"] == 54
    assert sum(r["count"] for r in rows.values()) == 235 and "235 steps" in out.stdout
    assert all(r["source"].startswith("estimated [") for r in rows.values())
    assert "makespan on 8 GPU(s)" in out.stdout and "GPU-hours:" in out.stdout
    assert "41,600 img/s at 224 px" in out.stdout and not (tmp_path / "RESULTS").exists()
    # a measured rate replaces the estimate: half the images/s, twice the pre-training GPU-hours
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"device": "cuda", "resolution": 224, "ceiling": {"images_per_s": 90000},
                                 "ffcv": {"images_per_s": 20800}}))
    measured = run_cli("reproduce", "--plan", "paper", "--dry-run", "--gpus", "8", "--bench-json", bench,
                       check=True)
    pre = dry_table(measured.stdout)["pretrain"]
    assert pre["source"].startswith("measured [") and "ffcv end to end, 20,800 img/s" in measured.stdout
    assert pre["gpu_hours"] == pytest.approx(2 * rows["pretrain"]["gpu_hours"], rel=0.02)


def test_dry_run_uses_the_store_of_out(tmp_path):
    plan = write_plan(tmp_path, {"r": 1}, seeds=2)
    args = ["reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}", "--out",
            tmp_path / "results", "--dry-run", "--gpus", "2"]
    before = dry_table(run_cli(*args, check=True).stdout)
    assert before["score"]["source"].startswith("no")  # a user's command has no estimate until it ran once
    run_plan(tmp_path, plan, "--gpus", "0,1")
    after = run_cli(*args, check=True).stdout
    for name in ("compile", "manifest", "score"):
        assert dry_table(after)[name]["source"].startswith("measured ["), after
    assert "measured: median of" in after


def test_bad_device_arguments(tmp_path):
    plan = write_plan(tmp_path, {"wide": 4}, seeds=1)
    base = ["reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}", "--out", tmp_path / "r"]
    out = run_cli(*base, "--gpus", "0,1")
    assert out.returncode == 2 and "needs 4 GPUs; --gpus gives 2" in out.stderr
    out = run_cli(*base, "--gpus", "two")
    assert out.returncode == 2 and "--gpus two" in out.stderr
    out = run_cli(*base, "--jobs", "0")
    assert out.returncode == 2 and "--jobs" in out.stderr
    out = run_cli("reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}")
    assert out.returncode == 2 and "--out is required" in out.stderr


def test_every_shipped_transfer_config_has_a_cost_estimate():
    """--dry-run prices a transfer by its config's protocol (reproduce.CONFIG_PROTOCOLS): a new config without an
    entry would be left unpriced."""
    from fastload.reproduce import CONFIG_PROTOCOLS, ESTIMATES, TRANSFER_ESTIMATES
    from fastload.resources import TRANSFER_CONFIGS_DIR
    shipped = {p.name for p in TRANSFER_CONFIGS_DIR.glob("*.py")}
    assert shipped == set(CONFIG_PROTOCOLS)
    assert set(CONFIG_PROTOCOLS.values()) == set(TRANSFER_ESTIMATES)
    assert all(ESTIMATES[c]["seconds"] > 0 for c in shipped)


# ---- every process of a step dies with the runner ----------------------------------------------------------------

HOLD = r'''# a step that ignores SIGTERM and leaves processes behind: two sleeps in its group, one in a session of
# its own (as torchrun starts its workers); each records its pid
trap '' TERM
out="$1"
echo "$$ $out main" >> "$HOLD_PIDS"
if [ "${HOLD_S:-0}" != 0 ]; then
    sleep "$HOLD_S" & echo "$! $out child" >> "$HOLD_PIDS"
    (sleep "$HOLD_S" & echo "$! $out grandchild" >> "$HOLD_PIDS"; wait) &
    setsid sleep "$HOLD_S" & echo "$! $out session" >> "$HOLD_PIDS"
    wait
fi
mkdir -p "$out" && echo '{"mean": 0.5}' > "$out/summary.json"
'''


def write_hold_plan(tmp_path, seeds: int) -> Path:
    """A plan whose evaluations run HOLD (fake compile, manifest and pre-training before them)."""
    plan = write_plan(tmp_path, {"r": 1}, seeds=seeds)
    hold = tmp_path / "hold.sh"
    hold.write_text(HOLD)
    plan.write_text(plan.read_text().replace(
        f'command: [python, {tmp_path / "fake.py"}, "score/{{out}}", "{{out}}"]', f'command: [sh, {hold}, "{{out}}"]'))
    assert str(hold) in plan.read_text()
    return plan


def hold_env(tmp_path, hold_s):
    return {**runner_env(tmp_path, sleep=0.1), "HOLD_PIDS": str(tmp_path / "hold_pids"), "HOLD_S": str(hold_s)}


def hold_pids(tmp_path) -> list:
    """(pid, step output folder, role) of every HOLD process started so far."""
    path = tmp_path / "hold_pids"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(p), out, role) for p, out, role in (line.split() for line in lines)]


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def wait_until(condition, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_dead(pids, timeout=30) -> list:
    """The pids still alive after waiting up to `timeout` s for all of them to end."""
    deadline = time.time() + timeout
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def start_holding_runner(tmp_path, plan, seeds, *extra):
    # A shell that starts pytest in the background (`pytest &` in a script) makes it ignore SIGINT, and the
    # runner would inherit that; a terminal's Ctrl-C reaches a runner whose SIGINT is at its default.
    proc = subprocess.Popen(reproduce_argv(tmp_path, plan, *extra), env=hold_env(tmp_path, 300), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # every evaluation holds its main process and 3 others
    wait_until(lambda: len(hold_pids(tmp_path)) == 4 * seeds, what="the held processes")
    return proc


def test_sigkill_of_the_runner_kills_grandchildren_too(tmp_path):
    """Steps that ignore SIGTERM and leave children, grandchildren and a process in another session: a SIGKILLed
    runner leaves none of them, and its restart starts the steps again with no earlier holder on their GPUs."""
    plan = write_hold_plan(tmp_path, seeds=4)
    proc = start_holding_runner(tmp_path, plan, 4, "--gpus", "0,1", "--jobs-per-gpu", "2")
    proc.kill()
    proc.wait()
    pids = [p for p, _, _ in hold_pids(tmp_path)]
    assert not wait_dead(pids), [h for h in hold_pids(tmp_path) if alive(h[0])]
    again = subprocess.run(reproduce_argv(tmp_path, plan, "--gpus", "0,1", "--jobs-per-gpu", "2"),
                           env=hold_env(tmp_path, 0), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "an earlier run left running" not in again.stdout  # the watchers had killed everything
    assert sorted(store_done(tmp_path)) == sorted(s.id for s in read_steps(tmp_path / "results"))


def test_restart_kills_what_a_killed_watcher_left(tmp_path):
    """The runner and the watchers SIGKILLed at once (kill -9 of every fastload process): the steps' leftovers
    live on, until the restart kills them (one line) before it starts anything."""
    plan = write_hold_plan(tmp_path, seeds=2)
    proc = start_holding_runner(tmp_path, plan, 2, "--jobs", "2")
    watchers = [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent(e) == proc.pid]
    assert len(watchers) == 2
    for pid in [proc.pid, *watchers]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    left = [p for p, _, role in hold_pids(tmp_path) if role != "main" and alive(p)]
    assert len(left) == 6  # what only the watchers would have killed: 3 per step
    again = subprocess.run(reproduce_argv(tmp_path, plan, "--jobs", "2"), env=hold_env(tmp_path, 0), cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    line = next(line for line in again.stdout.splitlines() if "an earlier run left running" in line)
    assert line.startswith("killed ") and all(str(p) in line for p in left)
    assert not wait_dead(left, timeout=5)
    assert sorted(store_done(tmp_path)) == sorted(s.id for s in read_steps(tmp_path / "results"))


def _parent(pid) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_ends_in_sigkill_and_a_second_one_does_not_cancel_it(tmp_path, presses):
    """Ctrl-C asks the steps to stop (SIGTERM, which these ignore): every process of them is killed after the
    grace period; a second Ctrl-C during the grace period ends the runner at once, and the steps die with it."""
    plan = write_hold_plan(tmp_path, seeds=1)
    proc = start_holding_runner(tmp_path, plan, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # inside the grace period: the steps ignored SIGTERM
    assert all(alive(p) for p, _, _ in hold_pids(tmp_path))
    if presses == 2:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert not wait_dead([p for p, _, _ in hold_pids(tmp_path)])


def test_a_step_that_finished_as_the_runner_died_is_not_run_again(tmp_path):
    """The runner frozen, a step exits 0, then the runner is killed before it could record it: the restart records
    the step as done from its watcher's exit status instead of running it again."""
    plan = write_plan(tmp_path, {"r": 1}, seeds=1)
    proc = subprocess.Popen(reproduce_argv(tmp_path, plan), env=runner_env(tmp_path, sleep=2), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: any(e["step"].startswith("score/") for e in events(tmp_path)), what="the evaluation")
    proc.send_signal(signal.SIGSTOP)
    try:
        exit_file = tmp_path / "results" / "logs" / "score__r__seed0.exit.json"
        wait_until(exit_file.exists, what=str(exit_file))
    finally:
        proc.kill()
        proc.wait()
    assert json.loads(exit_file.read_text())["returncode"] == 0
    assert "score/r/seed0" not in store_done(tmp_path)
    again = run_plan(tmp_path, plan)
    assert "score/r/seed0: finished (exit status 0) after the earlier runner died" in again.stdout
    assert sum(e["event"] == "start" and e["step"].startswith("score/") for e in events(tmp_path)) == 1
    done = [r for r in store_records(tmp_path) if r["status"] == "done"]
    assert sorted(r["step"] for r in done) == ["compile/imagenet", "manifest/r", "pretrain/r", "score/r/seed0"]
    assert next(r for r in done if r["step"] == "score/r/seed0")["recovered"] is True


# ---- a study killed mid-transfer and mid-pre-training ------------------------------------------------------------

STUDY = r'''
import json, os, sys, time
from pathlib import Path
role, out = sys.argv[1], Path(sys.argv[2])
def note(event, **extra):
    with open(os.environ["RUNNER_LOG"], "a") as f:
        f.write(json.dumps({"step": f"{role}/{out}", "event": event, "t": time.time(), "pid": os.getpid(),
                            **extra}) + "\n")
def seconds():
    return 60 if any(tag and tag in str(out) for tag in os.environ.get("RUNNER_SLOW", "").split(",")) else 0.3
if role == "pretrain":
    # a rank of torchrun (its workers run in sessions of their own); rank 0 writes a checkpoint at once, which a
    # restart resumes from
    rank = int(os.environ["RANK"])
    note("start", rank=rank, resume="--resume" in sys.argv)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "last.pt").write_text("partial")
    time.sleep(seconds())
    if rank == 0:
        (out / "summary.json").write_text(json.dumps({"top1": 0.5}))
        (out / "last.pt").write_text("w")
    note("end", rank=rank)
else:
    # a transfer: a DataLoader with one worker process over a tiny synthetic data set
    import torch
    from torch.utils.data import DataLoader, Dataset
    class Tiny(Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            if i == 0:
                note("worker")
            time.sleep(seconds() / 4)
            return torch.zeros(2)
    note("start")
    for _ in DataLoader(Tiny(), num_workers=1, batch_size=1):
        pass
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"mean": 0.5}))
    note("end")
'''


def write_study_plan(tmp_path) -> Path:
    """Two runs, each pre-trained by torchrun with 2 processes, then 3 transfer seeds with dataloader workers."""
    plan = write_plan(tmp_path, {"a": 1, "b": 1}, seeds=3)
    study = tmp_path / "study.py"
    study.write_text(STUDY)
    text = plan.read_text().replace(
        f'pretrain: [python, {tmp_path / "fake.py"}, "pretrain/{{out}}", "{{out}}"]',
        f'pretrain: [python, -m, torch.distributed.run, --standalone, --nproc_per_node=2, {study}, pretrain, '
        f'"{{out}}", "{{resume*}}"]').replace(
        f'command: [python, {tmp_path / "fake.py"}, "score/{{out}}", "{{out}}"]',
        f'command: [python, {study}, transfer, "{{out}}"]')
    assert str(study) in text and "torch.distributed.run" in text
    plan.write_text(text)
    return plan


@pytest.mark.slow
def test_a_study_killed_mid_transfer_and_mid_pretraining(tmp_path):
    """SIGKILL of the runner while transfers (with a dataloader worker each) and a torchrun pre-training run: no
    process of any step survives (torchrun's agent and workers, the dataloader workers); the rerun redoes no
    finished step, resumes the pre-training from its checkpoint, and the store has every step done once."""
    from fastload.launchers import step_processes
    plan = write_study_plan(tmp_path)
    env = {**runner_env(tmp_path), "RUNNER_SLOW": "runs/b,seed1,seed2"}
    proc = subprocess.Popen(reproduce_argv(tmp_path, plan, "--jobs", "4"), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def under_way():
        ev = events(tmp_path)
        ranks_b = {e["rank"] for e in ev if e["step"].startswith("pretrain/") and "runs/b" in e["step"]}
        workers = {e["step"] for e in ev if e["event"] == "worker" and "/a/seed" in e["step"]}
        return ranks_b == {0, 1} and sum("seed1" in w or "seed2" in w for w in workers) == 2 \
            and "score/a/seed0" in store_done(tmp_path)
    try:
        wait_until(under_way, timeout=240, what="pre-training b and the transfers of a")
    finally:
        proc.kill()
        proc.wait()
    before = store_records(tmp_path)
    finished = set(store_done(tmp_path))
    assert "pretrain/b" not in finished and "score/a/seed1" not in finished
    tokens = {r["token"] for r in before if r["status"] == "started"}
    pids = {e["pid"] for e in events(tmp_path)}
    deadline = time.time() + 30
    while (step_processes(tokens) or any(alive(p) for p in pids)) and time.time() < deadline:
        time.sleep(0.1)
    assert not step_processes(tokens), "processes of the steps outlived the runner"
    assert not [p for p in pids if alive(p)]

    again = subprocess.run(reproduce_argv(tmp_path, plan, "--jobs", "4"), env=runner_env(tmp_path), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    starts = {}
    for e in events(tmp_path):
        if e["event"] == "start":
            starts.setdefault(e["step"], []).append(e)
    steps = read_steps(tmp_path / "results")
    by_out = {s.id: s.out for s in steps}
    for sid in finished:  # not redone
        if sid.startswith(("score/", "pretrain/")):
            role = "transfer" if sid.startswith("score/") else "pretrain"
            assert len(starts[f"{role}/{by_out[sid]}"]) == (2 if role == "pretrain" else 1), sid
    resumed = starts[f"pretrain/{by_out['pretrain/b']}"]
    assert [e["resume"] for e in resumed] == [False, False, True, True]  # 2 ranks, killed, then resumed
    done = store_done(tmp_path)
    assert sorted(done) == sorted(s.id for s in steps)  # every step done exactly once
    assert [r for r in store_records(tmp_path)[:len(before)]] == before  # nothing written before the kill is lost
