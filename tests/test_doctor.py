"""fastload doctor: one line per piece, exit 1 with the fix when something the README's commands need is missing
(each missing piece simulated by monkeypatching), exit 0 when nothing is."""
import sys
from types import SimpleNamespace

import pytest

from fastload import doctor
from fastload.cli import main as cli_main
from fastload.wordnet import load_wordnet

NAMES = ("python", "torch", "gpus", "torchvision", "ffcv", "numba", "wordnet", "breeds", "mmengine", "slurm")


def run_doctor(capsys):
    rc = cli_main(["doctor"])
    return rc, capsys.readouterr().out


def lines_of(out):
    return {line[8:22].strip(): line[:8].strip() for line in out.splitlines() if line and not line.startswith("fix")}


def test_every_piece_gets_a_line_and_the_exit_status_follows_them(capsys):
    rc, out = run_doctor(capsys)
    marks = lines_of(out)
    assert set(NAMES) <= set(marks), out
    assert set(marks.values()) <= {"ok", "MISSING", "--"}
    missing = [name for name, mark in marks.items() if mark == "MISSING"]
    assert rc == (1 if missing else 0), out
    for name in missing:
        assert f"fix {name}:" in out


def test_a_missing_module_gives_exit_1_and_the_fix(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # `import ffcv` now raises ModuleNotFoundError
    rc, out = run_doctor(capsys)
    assert rc == 1
    assert lines_of(out)["ffcv"] == "MISSING" and "needed for compile" in out
    assert "fix ffcv: run ./setup.sh" in out


@pytest.fixture
def fresh_wordnet():
    load_wordnet.cache_clear()
    yield
    load_wordnet.cache_clear()


def test_missing_wordnet_names_the_packages(capsys, monkeypatch, tmp_path, fresh_wordnet):
    monkeypatch.setenv("FASTLOAD_WORDNET_DIR", str(tmp_path))  # a folder without WordNet
    rc, out = run_doctor(capsys)
    assert rc == 1 and lines_of(out)["wordnet"] == "MISSING"
    assert "fix wordnet: apt-get install wordnet-base wordnet-sense-index" in out


def test_old_python_is_missing(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "MIN_PYTHON", (99, 0))
    rc, out = run_doctor(capsys)
    assert rc == 1 and "fix python: fastload needs Python >= 99.0" in out


def test_gpus_that_torch_cannot_see_are_a_failure_with_the_fix(monkeypatch):
    import torch
    monkeypatch.setattr(doctor, "visible_nvidia_gpus", lambda: ["GPU 0: NVIDIA H200 (UUID: GPU-0)"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check = doctor.check_gpus(torch, "13.0")
    assert check.ok is False and "torch sees none" in check.detail and "driver" in check.fix
    check = doctor.check_gpus(torch, None)
    assert check.ok is False and "CPU-only build" in check.detail and "CUDA build of torch" in check.fix
    monkeypatch.setattr(doctor, "visible_nvidia_gpus", lambda: [])
    assert doctor.check_gpus(torch, "13.0").ok is None  # a CPU machine: information, not a failure


def test_transfer_ops_without_a_cuda_kernel_on_a_gpu_machine_fail(monkeypatch):
    import torch
    fake = SimpleNamespace(op_devices=lambda: {"torchvision::nms": ["cpu"], "mmcv.nms": ["cpu", "cuda"]})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check = doctor.check_config_ops(fake)
    assert check.ok is False and "no CUDA kernel for torchvision::nms" in check.detail
    assert "torchvision" in check.fix
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert doctor.check_config_ops(fake).ok is True  # on CPU every op has its CPU kernel


def test_missing_transfer_stack_is_named(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mmdet", None)
    rc, out = run_doctor(capsys)
    assert rc == 1 and lines_of(out)["mmdet"] == "MISSING" and "needed for fastload transfer" in out


def test_the_breeds_line_says_where_the_hierarchy_is_and_its_absence_is_no_failure(monkeypatch, tmp_path,
                                                                                   synthetic_breeds_dir):
    monkeypatch.setenv("FASTLOAD_BREEDS_DIR", str(synthetic_breeds_dir))
    found = doctor.check_breeds()
    assert found.ok is True and str(synthetic_breeds_dir) in found.detail and "$FASTLOAD_BREEDS_DIR" in found.detail
    assert "45 classes" in found.detail
    monkeypatch.setenv("FASTLOAD_BREEDS_DIR", str(tmp_path))
    absent = doctor.check_breeds()
    assert absent.ok is None and str(tmp_path) in absent.detail and "class_hierarchy.txt" in absent.detail
    (tmp_path / "class_hierarchy.txt").write_text("only one field\n")
    for f in ("dataset_class_info.json", "node_names.txt"):
        (tmp_path / f).write_text((synthetic_breeds_dir / f).read_text())
    broken = doctor.check_breeds()
    assert broken.ok is None and "unreadable" in broken.detail and "parent child" in broken.detail
