"""The measured GPU run, one JSON on stdout: the CUDA tests, `fastload bench train` (ceiling and end to
end) per write mode and resolution, and transfer iterations per second for each shipped config.

Run by tests/gpu/run_device_check.sh on the GPU machine after it has built ffcv and mmcv there; `--cpu-smoke` runs
the same phases with tiny sizes on the CPU (tests/test_cuda.py::test_device_check_cpu_smoke). Progress goes to
stderr; DIR/device_check.json is rewritten after every phase, so a run stopped at its time limit still leaves what
it measured. Phases that the time budget (--budget-s, counted from --started) cannot fit are listed as skipped.

    python3 tests/gpu/device_check.py --out DIR [--cpu-smoke] [--budget-s 540] [--phases tests,bench,transfer]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
PHASES = ("tests", "bench", "transfer")
# images per class folder and classes of the bench's photo-like source set
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668"]
# the targets for the end-to-end / ceiling ratio at 160-192 px
TARGETS = {"square-raw": 0.9, "proportion": 0.7}
# (name, `fastload compile imagenet` flags, bench pipeline)
WRITE_MODES = [("jpg", ["--write-mode", "jpg"], "ffcv"), ("proportion", ["--write-mode", "proportion"], "ffcv"),
               ("raw", ["--write-mode", "raw"], "ffcv"), ("square-raw", ["--square", "SQUARE", "--write-mode", "raw"],
                                                         "raw-gpu")]
SIZES = {  # full run on the GPU machine / CPU smoke
    "full": dict(images=8192, width=500, height=375, square=192, resolutions=[160, 192, 224], batch=512, steps=40,
                 warmup=8, workers=16, device="cuda", transfer_iters=30, transfer_timed_from=10),
    "smoke": dict(images=32, width=64, height=48, square=40, resolutions=[36], batch=8, steps=1, warmup=1,
                  workers=1, device="cpu", transfer_iters=2, transfer_timed_from=1),
}


def log(message: str) -> None:
    print(f"[device_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fastload(*args, timeout, **kwargs):
    """`python -m fastload.cli ARGS` from the repo; CompletedProcess with text output."""
    return subprocess.run([sys.executable, "-m", "fastload.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------- environment

def environment(mode: str) -> dict:
    import torch
    import torchvision
    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mode": mode, "host": platform.node(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "cuda": torch.version.cuda, "gpus": []}
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        env["gpus"].append(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    env["git_commit"] = git.stdout.strip() or None
    return env


# ---------------------------------------------------------------- phase: the CUDA tests

def pytest_outcomes(select: list, junit: Path, timeout: float) -> dict:
    """Run the tests of tests/test_cuda.py that `select` (pytest -m/-k arguments) picks; each one's outcome."""
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider", *select,
           f"--junitxml={junit}"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"pytest ran past {timeout:.0f} s", "seconds": round(time.time() - t0, 1)}
    tests = {}
    for case in ET.parse(junit).getroot().iter("testcase") if junit.exists() else []:
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, detail = ("skipped" if kind == "skipped" else "failed"), (node.get("message") or "")[:300]
        tests[case.get("name")] = outcome if not detail else f"{outcome}: {detail}"
    counts = {k: sum(v.split(":")[0] == k for v in tests.values()) for k in ("passed", "failed", "skipped")}
    result = {**counts, "rc": proc.returncode, "seconds": round(time.time() - t0, 1), "tests": tests}
    if proc.returncode not in (0, 5):
        result["output_tail"] = tail(proc.stdout + proc.stderr, 30)
    return result


# ---------------------------------------------------------------- phase: bench train

def write_photos(root: Path, count: int, width: int, height: int) -> None:
    """Smooth photo-like JPEGs (they compress like photos, unlike noise) in ImageNet's train/<wnid>/ layout."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    for i in range(count):
        folder = root / "train" / WNIDS[i % len(WNIDS)]
        folder.mkdir(parents=True, exist_ok=True)
        fx, fy, phase = rng.uniform(8, 40), rng.uniform(8, 40), rng.uniform(0, 6.3)
        wave = np.sin(x / fx + phase) * np.cos(y / fy)
        base = rng.uniform(40, 215, 3)
        pixels = base + 40 * wave[..., None] + rng.normal(0, 6, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.JPEG", quality=90)


def compile_betons(tmp: Path, sizes: dict, timeout: float) -> dict:
    """One train beton per write mode from the same photos; {mode: beton path}, plus compile seconds."""
    write_photos(tmp / "photos", sizes["images"], sizes["width"], sizes["height"])
    betons, seconds = {}, {}
    for name, flags, _ in WRITE_MODES:
        flags = [str(sizes["square"]) if f == "SQUARE" else f for f in flags]
        t0 = time.time()
        in_process_cli("compile", "imagenet", tmp / "photos", tmp / name, "--splits", "train", *flags,
                       "--num-workers", sizes["workers"])
        betons[name], seconds[name] = tmp / name / "train.beton", round(time.time() - t0, 1)
    return {"betons": betons, "compile_seconds": seconds}


def in_process_cli(*args) -> None:
    """`fastload ARGS` in this process (no start-up cost per run), its printout sent to stderr: stdout carries
    only the final JSON."""
    import contextlib

    from fastload.cli import main as cli_main
    with contextlib.redirect_stdout(sys.stderr):
        rc = cli_main([str(a) for a in args])
    if rc != 0:
        raise RuntimeError(f"fastload {' '.join(map(str, args[:2]))} exited {rc}")


def bench_one(beton: Path, pipeline: str, resolution: int, sizes: dict, json_path: Path) -> dict:
    """`fastload bench train` (in this process); its JSON, reduced to the figures."""
    in_process_cli("bench", "train", "--beton", beton, "--resolution", resolution, "--batch-size", sizes["batch"],
                   "--steps", sizes["steps"], "--warmup-steps", sizes["warmup"], "--pipeline", pipeline,
                   "--num-workers", sizes["workers"], "--device", sizes["device"], "--amp", "bf16",
                   "--channels-last", "--json", json_path)
    out = json.loads(json_path.read_text())
    e2e = out[pipeline]
    return {"ceiling_images_per_s": round(out["ceiling"]["images_per_s"], 1),
            "end_to_end_images_per_s": round(e2e["images_per_s"], 1), "ratio": round(e2e["ratio"], 3),
            "data_wait": round(e2e["data_wait"], 3), "device": out["device"]}


def bench_phase(sizes: dict, deadline: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="device-check-bench-") as tmp:
        tmp = Path(tmp)
        made = compile_betons(tmp, sizes, timeout=max(deadline - time.time(), 10))
        result = {"settings": {k: sizes[k] for k in ("images", "width", "height", "square", "batch", "steps",
                                                      "warmup", "workers")},
                  "compile_seconds": made["compile_seconds"], "runs": []}
        for name, _, pipeline in WRITE_MODES:
            for resolution in sizes["resolutions"]:
                if time.time() > deadline:
                    result.setdefault("skipped", []).append(f"{name}@{resolution}: time budget")
                    continue
                run = {"write_mode": name, "pipeline": pipeline, "resolution": resolution}
                try:
                    run.update(bench_one(made["betons"][name], pipeline, resolution, sizes, tmp / "bench.json"))
                except Exception as e:  # noqa: BLE001  (one failed run must not lose the others)
                    run["error"] = str(e)[:300]
                if name in TARGETS and resolution <= 192 and "ratio" in run:
                    run["target"], run["meets_target"] = TARGETS[name], run["ratio"] >= TARGETS[name]
                result["runs"].append(run)
                log(f"bench {name} {resolution}px: {run}")
    return result


# ---------------------------------------------------------------- phase: transfer iterations per second

def transfer_inputs(tmp: Path, smoke: bool) -> dict:
    """Synthetic VOC and SUN397, and an untrained checkpoint of each network (speed does not depend on weights):
    both AlexNets, and ResNet-18/50 with BlurPool, as train/resnet*.yaml pre-train them and the ResNet configs
    expect (fastload/mmdet/resnet.py refuses a checkpoint whose recipe's `blurpool` differs from the network's)."""
    import torch

    from fastload.models.build import build_model
    from fastload.synth.sun import write_sun
    from fastload.synth.voc import write_voc
    n = 4 if smoke else 24
    write_voc(tmp / "voc", trainval=n, test=3, action_train=n, action_val=3, seed=0)
    write_sun(tmp / "sun", classes=3, train_per_class=n, test_per_class=1, seed=0)
    checkpoints = {}
    for arch in ("alexnet_caffe", "alexnet_tv", "resnet18", "resnet50"):
        blurpool = arch.startswith("resnet")
        checkpoints[arch] = tmp / f"{arch}.pt"
        torch.save(dict(model=build_model(arch, num_classes=7, blurpool=blurpool).state_dict(), arch=arch,
                        num_classes=7, label_wnids=[f"n{i:08d}" for i in range(7)], epoch=1,
                        recipe={"arch": arch, "blurpool": blurpool}), checkpoints[arch])
    # the *-beton SUN configs read SUN397 compiled as the plans compile it
    proc = fastload("compile", "cls", "sun397", tmp / "sun", tmp / "sun_beton", timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"compile cls sun397 failed: {tail(proc.stderr)}")
    return {"voc": tmp / "voc" / "VOCdevkit", "sun": tmp / "sun", "sun_beton": tmp / "sun_beton",
            "checkpoints": checkpoints}


def config_arch(config: Path) -> str:
    """The network a shipped config fine-tunes, from its name (as tests/test_cuda.py: *_r18*/resnet18_*,
    *_r50*/resnet50_*, *alexnet-tv*, else the caffe AlexNet)."""
    name = config.name
    if "_r18" in name or name.startswith("resnet18"):
        return "resnet18"
    if "_r50" in name or name.startswith("resnet50"):
        return "resnet50"
    return "alexnet_tv" if "alexnet-tv" in name else "alexnet_caffe"


def transfer_options(config: Path, data: dict, iters: int, smoke: bool) -> list:
    """--cfg-options: `iters` iterations logged one by one, one validation; the configs' own image sizes on the
    GPU (the paper's 600 px short side), tiny ones in the smoke run."""
    options = [f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}", f"param_scheduler.0.end={iters}",
               f"param_scheduler.0.milestones=[{max(iters - 1, 1)}]", "default_hooks.logger.interval=1",
               f"default_hooks.checkpoint.interval={iters}"]
    if "sun397" in config.name:
        if config.stem.endswith("-beton"):  # batches are the dataset's; the smoke run has 12 training images
            return options + [f"data_root={data['sun_beton']}/", "model.num_classes=3"] + (
                ["train_dataloader.dataset.batch_size=4", "val_dataloader.dataset.batch_size=4"] if smoke else [])
        return options + [f"data_root={data['sun']}/", "model.num_classes=3"]
    options.append(f"data_root={data['voc']}/")
    if smoke:  # tiny images: anchors of 32 and 64 px (the real 128-512 ones leave none inside), fewer RoIs
        options.append("img_scale=(128,96)")
        if config.name.startswith("faster-rcnn"):
            # allowed_border -1: py-faster-rcnn's rule (anchors crossing the image border are ignored) can leave
            # no anchor at all on the few tiny smoke images; the timing does not depend on it
            options += ["model.rpn_head.anchor_generator.scales=[2,4]", "model.test_cfg.rpn.max_per_img=50",
                        "model.train_cfg.rcnn.sampler.num=32", "model.train_cfg.rpn.allowed_border=-1"]
    return options


def iterations_per_second(work_dir: Path, timed_from: int) -> dict:
    """From MMEngine's own per-iteration timing (vis_data/scalars.json 'time': seconds per train iteration)."""
    times = []
    for scalars in work_dir.glob("seed_0/*/vis_data/scalars.json"):
        for line in scalars.read_text().splitlines():
            row = json.loads(line)
            if "time" in row and "iter" in row and row["iter"] > timed_from:
                times.append(row["time"])
    if not times:
        return {"error": "no timed iterations in vis_data/scalars.json"}
    return {"iters_per_s": round(len(times) / sum(times), 3), "timed_iters": len(times),
            "s_per_iter": round(sum(times) / len(times), 4)}


def transfer_phase(sizes: dict, configs: list, deadline: float, smoke: bool) -> dict:
    result = {"iters": sizes["transfer_iters"], "timed_after_iter": sizes["transfer_timed_from"], "configs": {}}
    with tempfile.TemporaryDirectory(prefix="device-check-transfer-") as tmp:
        data = transfer_inputs(Path(tmp), smoke)
        for config in configs:
            if time.time() > deadline:
                result["configs"][config.name] = {"skipped": "time budget"}
                continue
            arch = config_arch(config)
            work, t0 = Path(tmp) / config.stem, time.time()
            proc = fastload("transfer", config, "--checkpoint", data["checkpoints"][arch], "--work-dir", work,
                            "--cfg-options", *transfer_options(config, data, sizes["transfer_iters"], smoke),
                            timeout=max(deadline - time.time(), 30))
            row = {"rc": proc.returncode, "wall_s": round(time.time() - t0, 1)}
            row.update(iterations_per_second(work, sizes["transfer_timed_from"]) if proc.returncode == 0
                       else {"error": tail(proc.stderr)})
            result["configs"][config.name] = row
            log(f"transfer {config.name}: {row}")
    return result


# ---------------------------------------------------------------- driver

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for device_check.json and the JUnit files")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: the same phases and JSON")
    p.add_argument("--budget-s", type=float, default=540, help="seconds for everything, from --started")
    p.add_argument("--started", type=float, default=None, help="epoch seconds the budget counts from (default: now)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--configs", nargs="*", default=None, help="transfer config file names (default: all shipped)")
    p.add_argument("--build-json", help="build timings written by run_device_check.sh, merged into the result")
    return p.parse_args(argv)


def shipped_configs(names) -> list:
    from fastload.resources import TRANSFER_CONFIGS_DIR
    # one config of each model first (caffe AlexNet), so that a run the time budget cuts short still has each kind
    configs = sorted(TRANSFER_CONFIGS_DIR.glob("*.py"),
                     key=lambda c: (config_arch(c) != "alexnet_caffe", "1img" in c.name, c.name))
    if names:
        configs = [c for c in configs if c.name in names]
        if len(configs) != len(names):
            sys.exit(f"device_check: --configs {names}: not all are in {TRANSFER_CONFIGS_DIR}")
    return configs


def save(result: dict, out: Path) -> None:
    tmp = out / ".device_check.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, out / "device_check.json")


def run_phase(name: str, result: dict, out: Path, work) -> None:
    t0 = time.time()
    log(f"phase {name}")
    try:
        result[name] = work()
    except Exception as e:  # noqa: BLE001  (report the failure in the JSON, go on with the next phase)
        result[name] = {"error": f"{type(e).__name__}: {e}"[:600]}
    result.setdefault("phase_seconds", {})[name] = round(time.time() - t0, 1)
    save(result, out)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = args.started or time.time()
    deadline = started + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "smoke" if args.cpu_smoke else "full"
    sizes, phases = SIZES[mode], args.phases.split(",")
    result = {"environment": environment(mode)}
    if args.build_json and Path(args.build_json).is_file():
        result["build"] = json.loads(Path(args.build_json).read_text())
    configs = shipped_configs(args.configs)
    # the CUDA tests that need no mmcv first (mmcv may still be building), the transfer ones after the bench;
    # the time budget cuts the bench short to leave ~150 s for the transfer phases
    if "tests" in phases:
        run_phase("cuda_tests", result, out, lambda: pytest_outcomes(
            ["-m", "cuda", "-k", "not transfer_config"], out / "cuda_tests.xml", max(deadline - time.time(), 30)))
    wait_for_mmcv(result, deadline)  # a compile on every core would distort the benchmarks
    if "bench" in phases:
        run_phase("bench", result, out, lambda: bench_phase(sizes, deadline - 150))
    if "tests" in phases:
        run_phase("cuda_transfer_tests", result, out, lambda: pytest_outcomes(
            ["-k", "transfer_config or routed or importing or config_ops"], out / "cuda_transfer_tests.xml",
            max(deadline - time.time() - 60, 30)))
    if "transfer" in phases:
        run_phase("transfer", result, out, lambda: transfer_phase(sizes, configs, deadline, args.cpu_smoke))
    result["total_seconds"] = round(time.time() - started, 1)
    save(result, out)
    print(json.dumps(result, default=str))
    return 0


def wait_for_mmcv(result: dict, deadline: float) -> None:
    """run_device_check.sh builds mmcv in the background and touches $MMCV_DONE when the build ends."""
    done = os.environ.get("MMCV_DONE")
    if not done:
        return
    t0 = time.time()
    while not Path(done).exists() and time.time() < deadline:
        time.sleep(2)
    result.setdefault("build", {})["waited_for_mmcv_s"] = round(time.time() - t0, 1)
    if Path(done).exists():
        result["build"]["mmcv"] = Path(done).read_text().strip()


if __name__ == "__main__":
    sys.exit(main())
