"""GPU paths. Unmarked tests run on CPU too: the mmcv ops the shipped transfer configs reach, and their CUDA route
(fastload/mmdet/cuda_ops.py) against mmcv's own CPU kernel. Tests marked `cuda` skip without a GPU
(tests/conftest.py): the loader on CUDA, `fastload pretrain` on CUDA killed and resumed, torchrun with NCCL,
`fastload bench train` for both pipelines, and a few iterations of every shipped transfer config on CUDA.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastload.resources import TRANSFER_CONFIGS_DIR

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "gpu"))
from device_check import config_arch  # noqa: E402  (the one rule: config name -> the network it fine-tunes)
from conftest import run_cli  # noqa: E402

CONFIGS = sorted(TRANSFER_CONFIGS_DIR.glob("*.py"))
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)]
ARCHS = ("alexnet_caffe", "alexnet_tv", "resnet18", "resnet50")


# ---------------------------------------------------------------- tiny data

@pytest.fixture(scope="module")
def transfer_data(tmp_path_factory):
    """Synthetic VOCdevkit (detection + action) and SUN397, and an untrained checkpoint of each network the configs
    take: both AlexNets, and ResNet-18/50 with BlurPool, as train/resnet*.yaml pre-train them and the ResNet configs
    expect (fastload/mmdet/resnet.py refuses a checkpoint whose recipe's `blurpool` differs from the network's)."""
    pytest.importorskip("mmcv.ops")
    from fastload.models.build import build_model
    from fastload.synth.sun import write_sun
    from fastload.synth.voc import write_voc
    root = tmp_path_factory.mktemp("transfer")
    write_voc(root / "voc", trainval=4, test=3, action_train=4, action_val=3, seed=0)
    write_sun(root / "sun", classes=3, train_per_class=2, test_per_class=1, size="64x48", seed=0)
    checkpoints = {}
    for arch in ARCHS:
        blurpool = arch.startswith("resnet")
        torch.manual_seed(0)
        state = build_model(arch, num_classes=7, blurpool=blurpool).state_dict()
        checkpoints[arch] = root / f"{arch}.pt"
        torch.save(dict(model=state, arch=arch, num_classes=7, label_wnids=[f"n{i:08d}" for i in range(7)],
                        epoch=1, recipe={"arch": arch, "blurpool": blurpool}), checkpoints[arch])
    # the *-beton SUN configs read SUN397 compiled as the plans compile it (`fastload compile cls sun397`)
    run_cli("compile", "cls", "sun397", root / "sun", root / "sun_beton", "--num-workers", "1", check=True)
    return dict(voc=root / "voc" / "VOCdevkit", sun=root / "sun", sun_beton=root / "sun_beton",
                checkpoints=checkpoints)


def tiny_transfer_options(config: Path, data: dict, iters: int = 2) -> dict:
    """--cfg-options for `iters` iterations and one validation of `config` on the tiny synthetic data."""
    options = {"train_cfg.max_iters": iters, "train_cfg.val_interval": iters, "param_scheduler.0.end": iters,
               "param_scheduler.0.milestones": [max(iters - 1, 1)], "default_hooks.logger.interval": 1,
               "default_hooks.checkpoint.interval": iters}
    for loader in ("train_dataloader", "val_dataloader"):
        options.update({f"{loader}.num_workers": 0, f"{loader}.persistent_workers": False})
    if "sun397" in config.name:
        if config.stem.endswith("-beton"):  # the batch size is the dataset's (the DataLoader hands on batches)
            return {**options, "data_root": f"{data['sun_beton']}/", "model.num_classes": 3,
                    "train_dataloader.dataset.batch_size": 2, "val_dataloader.dataset.batch_size": 2,
                    "train_dataloader.dataset.num_workers": 1, "val_dataloader.dataset.num_workers": 1}
        return {**options, "data_root": f"{data['sun']}/", "model.num_classes": 3,
                "train_dataloader.batch_size": 2, "val_dataloader.batch_size": 2}
    options.update({"data_root": f"{data['voc']}/", "img_scale": (128, 96)})
    if config.name.startswith("faster-rcnn"):  # anchors that fit a 128x96 image; fewer RoIs through fc6
        options.update({"model.rpn_head.anchor_generator.scales": [2, 4], "model.test_cfg.rpn.max_per_img": 50,
                        "model.train_cfg.rcnn.sampler.num": 32})
    if config.name.startswith("rstarcnn"):  # few regions through fc6/fc7 or ResNet's layer4 (as test_resnet_action)
        options.update({"model.primary_per_image": 3, "model.num_secondary_train": 2, "model.max_secondary_test": 4})
    return options


def config_roi_ops(config: Path) -> set:
    """The torchvision RoI op (forward and backward) a PASCAL config's TorchvisionRoIExtractor runs: RoIAlign for the
    ResNet FPN detectors (mmdet's recipe), RoIPool for the AlexNet detectors and every R*CNN (the papers'); none
    for SUN."""
    if "sun397" in config.name:
        return set()
    op = "roi_align" if "_fpn_" in config.name else "roi_pool"
    return {f"torchvision::{op}", f"torchvision::_{op}_backward"}


def run_transfer(config, data, work_dir, iters=2):
    from fastload.transfer import transfer
    return transfer(config, data["checkpoints"][config_arch(config)], work_dir,
                    tiny_transfer_options(config, data, iters), seeds=[0])


# ---------------------------------------------------------------- the ops of the transfer configs (CPU)

def test_routed_nms_matches_mmcv_cpu_kernel():
    pytest.importorskip("mmcv.ops")
    import mmcv._ext as ext

    from fastload.mmdet.cuda_ops import torchvision_nms
    g = torch.Generator().manual_seed(0)
    for n, threshold in ((0, 0.5), (1, 0.5), (300, 0.3), (3000, 0.7)):
        xy = torch.rand(n, 2, generator=g) * 400
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 120], dim=1)
        scores = torch.rand(n, generator=g)
        for offset in (0, 1):
            expected = ext.nms(boxes, scores, iou_threshold=threshold, offset=offset)
            routed = torchvision_nms(boxes, scores, threshold, offset)
            assert torch.equal(routed, expected), (n, threshold, offset)
            if n > 100:
                assert 0 < len(routed) < n  # the threshold removed some boxes and kept others


def test_importing_fastload_mmdet_routes_cuda_tensors_only():
    pytest.importorskip("mmcv.ops")
    import fastload.mmdet  # noqa: F401
    from fastload.mmdet import cuda_ops
    mmcv_nms = cuda_ops.nms_module()
    assert isinstance(mmcv_nms.ext_module, cuda_ops.RoutedExt)
    cuda_ops.install()
    assert not isinstance(mmcv_nms.ext_module.ext, cuda_ops.RoutedExt)  # installing twice wraps once
    calls = []

    class FakeExt:
        softnms = "mmcv's softnms"

        def nms(self, *args, **kwargs):
            calls.append("mmcv")
            return torch.zeros(0, dtype=torch.long)
    routed = cuda_ops.RoutedExt(FakeExt())
    routed.nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5, offset=0)
    assert calls == ["mmcv"]  # CPU tensors keep mmcv's kernel
    assert routed.softnms == "mmcv's softnms"  # every other op is mmcv's own


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_reach_only_ops_with_a_cuda_path(config, transfer_data, tmp_path):
    """Train one iteration (forward and backward) and validate each config on CPU, recording every compiled op."""
    pytest.importorskip("mmcv.ops")
    from fastload.mmdet import cuda_ops
    with cuda_ops.record_ops() as seen:
        summary = run_transfer(config, transfer_data, tmp_path / "work", iters=1)
    assert 0.0 <= summary["mean"] <= 1.0
    print(f"{config.name}: mmcv {sorted(seen['mmcv'])}, torchvision {sorted(seen['torchvision'])}")
    for family in ("mmcv", "torchvision"):
        assert seen[family] <= set(cuda_ops.CONFIG_OPS[family]), (family, seen[family])
    for name in seen["mmcv"]:
        assert name in cuda_ops.ROUTES and cuda_ops.has_kernel(cuda_ops.ROUTES[name], "cuda")
    for op in seen["torchvision"]:
        assert cuda_ops.has_kernel(op, "cuda") and cuda_ops.has_kernel(op, "cpu"), op
    # on CPU mmcv's own nms kernel runs (RPN proposals and test-time NMS); torchvision's nms is its CUDA route
    assert seen["mmcv"] == ({"nms"} if config.name.startswith("faster-rcnn") else set()), seen["mmcv"]
    assert seen["torchvision"] == config_roi_ops(config), seen["torchvision"]


def config_roi_ops_of_all() -> set:
    ops = set().union(*map(config_roi_ops, CONFIGS))
    # both RoI layers are shipped (AlexNet / R*CNN RoIPool, ResNet FPN RoIAlign): a renamed config cannot empty this
    assert {"torchvision::roi_pool", "torchvision::roi_align"} <= ops, ops
    return ops


def test_config_ops_list_is_exactly_what_the_configs_reach():
    """CONFIG_OPS (what `fastload doctor` reports) holds nothing the configs do not reach, besides nms's route."""
    pytest.importorskip("mmcv.ops")
    from fastload.mmdet import cuda_ops
    assert set(cuda_ops.CONFIG_OPS["mmcv"]) == set(cuda_ops.ROUTES) == {"nms"}
    assert set(cuda_ops.CONFIG_OPS["torchvision"]) == {*cuda_ops.ROUTES.values(), *config_roi_ops_of_all()}
    devices = cuda_ops.op_devices()
    assert all("cpu" in d for d in devices.values())
    if torch.version.cuda:  # this machine's torchvision is a CUDA build: every op has its CUDA path
        assert all(any(x.startswith("cuda") for x in d) for d in devices.values()), devices


# ---------------------------------------------------------------- CUDA: loader, pretrain, torchrun, bench

@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """4 separable classes of 48 px images compiled raw (256 train + 8 val per class) and a manifest of them all,
    made with the CLI (`fastload compile`, `fastload subset`)."""
    from PIL import Image

    from conftest import run_cli
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 256), ("val", 8)):
        for wnid, colour in zip(WNIDS, COLOURS):
            folder = root / "images" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (48, 48, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    run_cli("compile", "imagenet", root / "images", root / "c", "--max-resolution", 64, "--write-mode", "raw",
            "--num-workers", 2, check=True)
    run_cli("subset", "--index", root / "c" / "train_index.npz", "--labelset", "full", "--out", root / "full.npz",
            check=True)
    return root


def pretrain_command(compiled, out, *extra):
    return [sys.executable, "-m", "fastload.cli", "pretrain", "--recipe", "smoke", "--manifest",
            str(compiled / "full.npz"), "--data", str(compiled / "c"), "--out", str(out), "--num-workers", "2",
            "--min-res", "48", "--max-res", "48", "--val-res", "48", *extra]


@pytest.mark.cuda
def test_loader_on_cuda_gives_the_cpu_rows_in_bf16_channels_last(compiled):
    from fastload.loader import make_loader
    beton = str(compiled / "c" / "val.beton")
    rows, lookup = np.arange(32, dtype=np.int64), np.array([3, 2, 1, 0], dtype=np.int32)
    batches = {}
    for device in ("cpu", "cuda"):
        loader = make_loader(beton, rows, lookup, 8, 40, False, device=device, num_workers=2)
        batches[device] = [(images, labels) for images, labels in loader]
    assert len(batches["cpu"]) == len(batches["cuda"]) == 4
    for (cpu_images, cpu_labels), (images, labels) in zip(batches["cpu"], batches["cuda"]):
        assert images.is_cuda and labels.is_cuda
        assert images.dtype == torch.bfloat16 and images.shape == cpu_images.shape == (8, 3, 40, 40)
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(labels.cpu(), cpu_labels)
        # the same pixels: bf16 keeps 8 bits of mantissa, normalised values lie within about +-2.7
        assert torch.allclose(images.float().cpu(), cpu_images.float(), atol=0.03)


@pytest.mark.cuda
def test_pretrain_on_cuda_killed_in_epoch_two_resumes(compiled, tmp_path):
    out = tmp_path / "run"
    cmd = pretrain_command(compiled, out, "--epochs", "2", "--batch-size", "8", "--lr", "0.04", "--log-every", "1",
                           "--device", "cuda")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics, deadline = out / "metrics.jsonl", time.time() + 300

    def in_second_epoch():  # epoch 1's checkpoint is written and epoch 2 has begun
        if not (out / "last.pt").exists() or not metrics.exists():
            return False
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # the line being written
                continue
            if row.get("kind") == "train_step" and row.get("epoch") == 1:
                return True
        return False
    while not in_second_epoch():
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed in epoch 2:\n" + proc.stdout.read().decode())
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["epochs"] == 2
    assert [h["epoch"] for h in summary["history"]] == [0, 1]
    assert summary["top1"] >= 0.75, summary["history"]  # 4 separable classes; chance is 0.25


@pytest.mark.cuda
def test_torchrun_two_gpus_with_nccl(compiled, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices for 2 NCCL processes")
    out = tmp_path / "ddp"
    cmd = pretrain_command(compiled, out, "--epochs", "1", "--batch-size", "16", "--device", "cuda")
    cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fastload.cli"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["device"].startswith("cuda")
    assert summary["val_images"] == 32 and summary["train_images"] == 1024


@pytest.mark.cuda
def test_bench_train_on_cuda_both_pipelines(tmp_path):
    from fastload.cli import main as cli_main
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "train", "--images", "128", "--image-size", "72", "--resolution", "64", "--batch-size",
                   "32", "--steps", "3", "--warmup-steps", "2", "--pipeline", "both", "--num-workers", "2",
                   "--device", "cuda", "--channels-last", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["device"].startswith("cuda") and result["channels_last"] is True
    for key in ("ffcv", "raw-gpu"):
        assert result[key]["images"] == 96 and 0 < result[key]["ratio"]
    assert result["ceiling"]["images_per_s"] > 0


# ---------------------------------------------------------------- CUDA: every shipped transfer config

@pytest.mark.cuda
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_transfer_config_trains_on_cuda(config, transfer_data, tmp_path):
    pytest.importorskip("mmcv.ops")
    from fastload.mmdet import cuda_ops
    torch.cuda.reset_peak_memory_stats()
    with cuda_ops.record_ops() as seen:
        summary = run_transfer(config, transfer_data, tmp_path / "work", iters=3)
    assert 0.0 <= summary["mean"] <= 1.0
    result = json.loads((tmp_path / "work" / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == 3
    assert torch.cuda.max_memory_allocated() > 50e6  # the model and its batches lived on the GPU
    if config.name.startswith("faster-rcnn"):
        # NMS ran on CUDA tensors through torchvision: mmcv's CPU-only kernel was never called
        assert "torchvision::nms" in seen["torchvision"] and "nms" not in seen["mmcv"]


# ---------------------------------------------------------------- the prepared GPU run, in its CPU smoke mode

@pytest.mark.slow
def test_device_check_cpu_smoke(tmp_path):
    """tests/gpu/device_check.py --cpu-smoke: every phase of the GPU run with tiny sizes, one JSON on stdout."""
    configs = ["faster-rcnn_alexnet-caffe_70k_voc07.py", "resnet18_50k_sun397.py"]  # an AlexNet and a ResNet
    proc = subprocess.run([sys.executable, "tests/gpu/device_check.py", "--cpu-smoke", "--out", str(tmp_path),
                           "--configs", *configs], cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout holds the JSON alone
    assert result == json.loads((tmp_path / "device_check.json").read_text())
    assert result["environment"]["mode"] == "smoke" and result["environment"]["cpus"] >= 1
    tests = result["cuda_tests"]
    assert tests["failed"] == 0 and tests["passed"] == 0 and tests["skipped"] >= 4, tests  # no GPU here
    runs = result["bench"]["runs"]
    assert [(r["write_mode"], r["pipeline"]) for r in runs] == [
        ("jpg", "ffcv"), ("proportion", "ffcv"), ("raw", "ffcv"), ("square-raw", "raw-gpu")]
    for run in runs:
        assert "error" not in run, (run, proc.stderr[-3000:])
        assert run["ceiling_images_per_s"] > 0 and run["end_to_end_images_per_s"] > 0
        # the rates are rounded to 0.1 image/s, which is coarse at the few images/s of this tiny CPU run
        assert run["ratio"] == pytest.approx(run["end_to_end_images_per_s"] / run["ceiling_images_per_s"], rel=0.05)
    assert {"target", "meets_target"} <= set(runs[1]) and {"target", "meets_target"} <= set(runs[3])
    transfer_tests = result["cuda_transfer_tests"]["tests"]
    assert all(v == "skipped" or v.startswith("skipped:") for k, v in transfer_tests.items() if "transfer_config" in k)
    try:
        import mmcv.ops  # noqa: F401
    except ImportError:
        return
    assert transfer_tests["test_routed_nms_matches_mmcv_cpu_kernel"] == "passed", transfer_tests
    for config in configs:
        row = result["transfer"]["configs"][config]
        assert row["rc"] == 0 and row["iters_per_s"] > 0 and row["timed_iters"] == 1, (config, row)
