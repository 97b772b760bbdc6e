"""`--launcher slurm` against a real single-node Slurm cluster started by tests/slurm_cluster.sh (Debian's slurm-wlm
and munge): a two-step plan whose second step depends on the first, submitted with sbatch and waited for."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from test_reproduce import read_store, write_fake_plan

CLUSTER_SCRIPT = REPO / "tests" / "slurm_cluster.sh"


@pytest.fixture(scope="module")
def slurm_cluster():
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and apt-get is unavailable to install slurm-wlm and munge")
    out = subprocess.run(["bash", str(CLUSTER_SCRIPT)], capture_output=True, text=True, timeout=900)
    if out.returncode == 3:
        pytest.skip(f"cannot install Slurm here: {out.stderr.strip()}")
    assert out.returncode == 0, f"tests/slurm_cluster.sh failed:\n{out.stdout}\n{out.stderr}"


@pytest.mark.slow  # a real single-node Slurm cluster
def test_two_steps_with_a_dependency_run_as_slurm_jobs(slurm_cluster, tmp_path):
    plan = write_fake_plan(tmp_path)
    results = tmp_path / "results"
    args = ["reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}", "--out", results,
            "--launcher", "slurm", "--only", "manifest/big", "--wait"]
    out = run_cli(*args, env={"FAKE_COUNTER": str(tmp_path / "counter.txt")}, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    records = read_store(results)
    submitted = {r["step"]: r for r in records if r["status"] == "submitted"}
    done = {r["step"]: r for r in records if r["status"] == "done"}
    assert sorted(done) == ["compile/imagenet", "manifest/big"]
    compile_job = submitted["compile/imagenet"]["job_id"]
    assert submitted["manifest/big"]["depends_on"] == [compile_job]
    for step, rec in done.items():  # the jobs themselves wrote the store, on the cluster
        assert rec["launcher"] == "slurm" and rec["job_id"] == submitted[step]["job_id"]
    assert done["manifest/big"]["started"] >= done["compile/imagenet"]["finished"]
    assert json.loads(Path(done["compile/imagenet"]["result_file"]).read_text()) == \
        done["compile/imagenet"]["metrics"]
    # Slurm saw the dependency
    info = subprocess.run(["scontrol", "show", "job", submitted["manifest/big"]["job_id"]], capture_output=True,
                          text=True).stdout
    assert "JobState=COMPLETED" in info, info
    # submitting again does nothing: both steps are complete
    again = run_cli(*args, env={"FAKE_COUNTER": str(tmp_path / "counter.txt")}, timeout=120)
    assert again.returncode == 0 and "2 skipped" in again.stdout, again.stdout + again.stderr
    assert len((tmp_path / "counter.txt").read_text().splitlines()) == 2


@pytest.mark.slow  # a real single-node Slurm cluster
def test_failed_dependency_cancels_the_dependent_job(slurm_cluster, tmp_path):
    plan = write_fake_plan(tmp_path)
    plan.write_text(plan.read_text().replace("compile: [python,", "compile: [python, /no/such/script.py,"))
    results = tmp_path / "results"
    out = run_cli("reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}", "--out", results,
                  "--launcher", "slurm", "--only", "manifest/big", "--wait",
                  env={"FAKE_COUNTER": str(tmp_path / "counter.txt")}, timeout=300)
    assert out.returncode == 1 and "did not complete under Slurm: compile/imagenet, manifest/big" in out.stderr
    statuses = [(r["step"], r["status"]) for r in read_store(results)]
    assert ("compile/imagenet", "failed") in statuses
    assert not any(s == "manifest/big" and st in ("started", "done") for s, st in statuses)
