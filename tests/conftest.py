import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip, with the reason, on a machine where torch sees no CUDA device (CPU and CI)."""
    cuda_tests = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_tests:
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in cuda_tests:
        item.add_marker(skip)


def run_cli(*args, env=None, check=False, timeout=600, cwd=None):
    """Run `python -m fastload.cli ARGS` in a subprocess; returns CompletedProcess with text output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "fastload.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"fastload {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def synthetic_breeds_dir(tmp_path_factory):
    """A folder holding the small BREEDS-format hierarchy of tests/breeds_fixture.py (written once a session)."""
    from breeds_fixture import write_hierarchy
    return write_hierarchy(tmp_path_factory.mktemp("breeds"))


@pytest.fixture
def synthetic_breeds(synthetic_breeds_dir, monkeypatch):
    """FASTLOAD_BREEDS_DIR points at the synthetic hierarchy, in this process and the CLI subprocesses it starts."""
    monkeypatch.setenv("FASTLOAD_BREEDS_DIR", str(synthetic_breeds_dir))
    return synthetic_breeds_dir


@pytest.fixture
def real_breeds(monkeypatch):
    """The published BREEDS hierarchy files, from $FASTLOAD_BREEDS_DIR or datasets/breeds/; skips without them."""
    from fastload.breeds import BREEDS_ENV, breeds_dir, missing_breeds_files
    folder = breeds_dir()
    missing = missing_breeds_files(folder)
    if missing:
        pytest.skip(f"needs the published BREEDS hierarchy files ({', '.join(missing)} not in {folder}): set "
                    f"{BREEDS_ENV} or copy them into datasets/breeds/ (datasets/breeds/README.md)")
    monkeypatch.setenv(BREEDS_ENV, str(folder))
    return folder
