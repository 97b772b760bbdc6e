"""What this machine can run: one line per piece the README's commands need, with the fix for a missing one.

Each check returns a Check: `ok` True (present), False (missing or broken: `fastload doctor` exits 1 and prints
`fix`) or None (information only: no GPU, no Slurm; every command still runs on CPU / with the local launcher).
A check imports what it looks at, so a broken install fails here with the same error the command would give.
"""
import importlib
import importlib.metadata
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

MIN_PYTHON = (3, 10)
SETUP_FIX = "run ./setup.sh from the fastload folder (it installs what is missing)"


@dataclass
class Check:
    name: str
    ok: object  # True, False or None (information)
    detail: str
    fix: str = ""


def module_version(name: str) -> str:
    """Import `name` and return its distribution's version (ffcv's own __version__ is stale); import errors
    propagate."""
    module = importlib.import_module(name)
    try:
        return importlib.metadata.version(name.split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "installed"))


def check_module(name: str, needed_for: str, fix: str = SETUP_FIX) -> Check:
    try:
        return Check(name, True, module_version(name))
    except Exception as e:  # noqa: BLE001  (a broken extension raises OSError, RuntimeError, ...)
        return Check(name, False, f"cannot import ({type(e).__name__}: {e}); needed for {needed_for}", fix)


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        return Check("python", False, f"{version} at {sys.executable}",
                     f"fastload needs Python >= {needed}: rm -rf .venv && FASTLOAD_PYTHON=python3.11 ./setup.sh")
    return Check("python", True, f"{version} at {sys.executable}")


def visible_nvidia_gpus() -> list:
    """GPU lines of `nvidia-smi -L` (empty without the tool or a driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.splitlines() if line.startswith("GPU ")]


def check_torch() -> list:
    """torch and its CUDA build, then the GPUs torch sees (or why it sees none)."""
    torch_check = check_module("torch", "every command")
    if not torch_check.ok:
        return [torch_check]
    import torch
    cuda_build = torch.version.cuda
    torch_check.detail += f", CUDA build {cuda_build}" if cuda_build else ", CPU-only build"
    return [torch_check, check_gpus(torch, cuda_build)]


def check_gpus(torch, cuda_build) -> Check:
    smi = visible_nvidia_gpus()
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        names = "; ".join(f"{i}: {g.name} {g.total_memory / 2**30:.0f} GiB sm_{g.major}{g.minor}"
                          for i, g in enumerate(gpus))
        return Check("gpus", True, f"{len(gpus)} CUDA device(s): {names}")
    if not smi:
        return Check("gpus", None, "no CUDA device: pre-training, transfer and analyses run on CPU")
    if cuda_build is None:
        why = f"torch {torch.__version__} is a CPU-only build"
        fix = "install a CUDA build of torch (./setup.sh installs torch==2.14.1 with CUDA 13.0 from PyPI)"
    else:
        why = f"torch's CUDA {cuda_build} runtime cannot use the driver (too old for CUDA {cuda_build}?)"
        fix = f"update the NVIDIA driver to one for CUDA >= {cuda_build} (nvidia-smi shows the driver's CUDA)"
    return Check("gpus", False, f"nvidia-smi lists {len(smi)} GPU(s) but torch sees none: {why}", fix)


def check_wordnet() -> Check:
    nltk_check = check_module("nltk", "the label sets (WordNet)")
    if not nltk_check.ok:
        return nltk_check
    from .errors import FastloadError
    from .wordnet import SYSTEM_PACKAGES_HINT, load_wordnet
    try:
        reader, source = load_wordnet()
        return Check("wordnet", True, f"nltk {nltk_check.detail}, WordNet {reader.get_version()}: {source}")
    except FastloadError as e:
        return Check("wordnet", False, f"nltk {nltk_check.detail}; {e}", SYSTEM_PACKAGES_HINT)


def check_breeds() -> Check:
    """The optional BREEDS hierarchy files: where they were found, or that the BREEDS label sets are off."""
    import os

    from .breeds import BREEDS_ENV, BreedsHierarchy, breeds_dir, missing_breeds_files
    from .errors import FastloadError
    folder = breeds_dir()
    via = f" (${BREEDS_ENV})" if os.environ.get(BREEDS_ENV, "").strip() else ""
    missing = missing_breeds_files(folder)
    if missing:
        return Check("breeds", None, f"hierarchy not found in {folder}{via} (no {', '.join(missing)}): optional, only "
                                     "the BREEDS label sets need it; datasets/breeds/README.md says where to get it")
    try:
        hierarchy = BreedsHierarchy(folder)
    except FastloadError as e:
        return Check("breeds", None, f"hierarchy in {folder}{via} unreadable, the BREEDS label sets fail: {e}")
    return Check("breeds", True, f"hierarchy in {folder}{via}: {len(hierarchy.leaves)} classes, "
                                 f"{len(hierarchy.level)} nodes")


def check_transfer_stack() -> list:
    """mmengine, mmcv (with its compiled ops), mmdet, and on which devices the shipped configs' ops run."""
    checks = [check_module("mmengine", "fastload transfer"), check_module("mmcv.ops", "fastload transfer"),
              check_module("mmdet", "fastload transfer")]
    if not all(c.ok for c in checks):
        return checks
    from .mmdet import cuda_ops
    checks[1].name, checks[1].detail = "mmcv", module_version("mmcv") + (
        ", CUDA kernels" if cuda_ops.mmcv_cuda_kernels() else ", CPU kernels only (CUDA: routed to torchvision)")
    checks.append(check_config_ops(cuda_ops))
    return checks


def check_config_ops(cuda_ops) -> Check:
    import torch
    devices = cuda_ops.op_devices()
    listing = ", ".join(f"{op} [{' '.join(d)}]" for op, d in devices.items())
    no_cuda = [op for op, d in devices.items() if not any(x.startswith("cuda") for x in d)]
    if torch.cuda.is_available() and no_cuda:
        return Check("transfer ops", False, f"no CUDA kernel for {', '.join(no_cuda)}; {listing}",
                     "install the CUDA build of torchvision that matches torch (./setup.sh: torchvision==0.29.1)")
    return Check("transfer ops", True, listing)


def check_slurm() -> Check:
    found = [tool for tool in ("sbatch", "squeue", "scancel") if shutil.which(tool)]
    if len(found) == 3:
        return Check("slurm", True, f"sbatch at {shutil.which('sbatch')} (fastload reproduce --launcher slurm)")
    return Check("slurm", None, "not installed: fastload reproduce runs steps locally (--launcher local); "
                                "tests/slurm_cluster.sh starts a one-node cluster to try Slurm")


def run_checks() -> list:
    checks = [check_python(), *check_torch(), check_module("torchvision", "RoI pooling and NMS in transfer"),
              check_module("ffcv", "compile, pre-training and the analyses' loaders"),
              check_module("numba", "the manifest kernels and the loader"), check_wordnet(), check_breeds(),
              *check_transfer_stack(), check_slurm()]
    return checks


def render(checks) -> str:
    marks = {True: "ok", False: "MISSING", None: "--"}
    lines = [f"{marks[c.ok]:<8}{c.name:<14}{c.detail}" for c in checks]
    missing = [c for c in checks if c.ok is False]
    if missing:
        lines.append("")
        lines += [f"fix {c.name}: {c.fix}" for c in missing]
    return "\n".join(lines)
