"""The results store: durable appends, torn lines skipped, concurrent writers, 'done' semantics."""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from fastload.errors import FastloadError
from fastload.plan import Step
from fastload.files import DiskFullError
from fastload.store import ResultsStore, base_record, read_metrics
from small_disk import fill, small_disk  # noqa: F401 (a fixture)


def step(i=0, argv=("echo", "x")):
    return Step(id=f"pretrain/run{i}", kind="pretrain", argv=list(argv), run=f"run{i}", recipe="paper", seed=i)


def test_append_and_read_back(tmp_path):
    store = ResultsStore(tmp_path)
    rec = store.append(base_record(step(), "done", metrics={"top1": 51.5}, wall_s=1.5))
    assert rec["code_version"] and rec["time"] and rec["host"]
    back = store.records()
    assert back == [json.loads(json.dumps(rec))]
    assert back[0]["metrics"] == {"top1": 51.5} and back[0]["recipe"] == "paper" and back[0]["seed"] == 0
    with pytest.raises(FastloadError, match="status 'finished' is not one of"):
        store.append({"step": "x", "status": "finished"})


def test_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(base_record(step(0), "done", metrics={}))
    with open(store.path, "ab") as f:   # a writer killed in the middle of its line
        f.write(b'{"step": "pretrain/run1", "status": "do')
    assert [r["step"] for r in store.records()] == ["pretrain/run0"] and store.torn_lines == 1
    store.append(base_record(step(2), "done", metrics={}))
    assert [r["step"] for r in store.records()] == ["pretrain/run0", "pretrain/run2"]
    assert store.path.read_bytes().count(b"\n") == 3


def _writer(path, worker, n):
    store = ResultsStore(path)
    for i in range(n):
        store.append({"step": f"w{worker}/{i}", "status": "done", "payload": "x" * 3000})


def test_concurrent_writers_lose_nothing(tmp_path):
    procs = [mp.get_context("fork").Process(target=_writer, args=(tmp_path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records = ResultsStore(tmp_path).records()
    assert len(records) == 160 and len({r["step"] for r in records}) == 160


def test_sigkill_during_appends_keeps_every_finished_record(tmp_path):
    code = ("import sys; from fastload.store import ResultsStore; s = ResultsStore(sys.argv[1])\n"
            "for i in range(100000): s.append({'step': f's{i}', 'status': 'done', 'payload': 'y' * 20000})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    while not (tmp_path / "results.jsonl").exists() or (tmp_path / "results.jsonl").stat().st_size < 400_000:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    records = ResultsStore(tmp_path).records()
    assert len(records) >= 19
    assert [r["step"] for r in records] == [f"s{i}" for i in range(len(records))]  # in order, no gap


def test_done_semantics(tmp_path):
    store = ResultsStore(tmp_path)
    s = step()
    store.append(base_record(s, "started"))
    assert not store.is_done(s)
    store.append(base_record(s, "done", metrics={"top1": 1}))
    store.append(base_record(s, "started"))   # a later re-run that died does not undo the result
    assert store.is_done(s)
    changed = step(argv=("echo", "y"))         # the plan changed the command: it runs again
    assert not store.is_done(changed)


def test_read_metrics(tmp_path):
    with pytest.raises(FastloadError, match="wrote no result file .*missing.json"):
        read_metrics(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FastloadError, match="bad.json is not valid JSON"):
        read_metrics(tmp_path / "bad.json")
    (tmp_path / "t.tsv").write_text("name\tgap\tn\ndog\t0.25\t3\n")
    assert read_metrics(tmp_path / "t.tsv") == {"rows": [{"name": "dog", "gap": 0.25, "n": 3}]}
    assert read_metrics(None) == {}


def test_a_full_disk_leaves_no_torn_record_and_the_next_append_works(small_disk):
    store = ResultsStore(small_disk / "results")
    first = store.append(base_record(step(0), "done", metrics={"top1": 1.0}))
    before = store.path.read_bytes()
    filler = fill(small_disk, 0)
    big = base_record(step(1), "done", metrics={f"m{i}": float(i) for i in range(2000)})  # needs a new page
    with pytest.raises(DiskFullError, match=f"to write {store.path}: .*needed"):
        store.append(big)
    assert store.path.read_bytes() == before and store.records() == [json.loads(json.dumps(first))]
    filler.unlink()
    store.append(big)
    assert [r["step"] for r in store.records()] == ["pretrain/run0", "pretrain/run1"] and store.torn_lines == 0
