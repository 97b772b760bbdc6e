"""A tiny ResNet-18 study on CPU through the real `fastload` command line: synthetic ImageNet ->
compile -> manifest -> `fastload pretrain --recipe smoke_resnet18` at 32 px -> SUN-CLS fine-tuning with
transfer/resnet18_50k_sun397.py for a few iterations -> induction on the checkpoint. Each step's output is checked
for real values: finite metrics in [0, 1] and the network each one ran on (resnet18, its pooled features)."""
import json
import math

import pytest
import torch

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow   # about a minute of real fastload processes on 2 CPU cores

SUN_CONFIG = REPO / "transfer" / "resnet18_50k_sun397.py"
CPU = ["--device", "cpu", "--num-workers", "1"]


def fraction(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The pre-trained ResNet-18 run and the folders the later steps read."""
    base = tmp_path_factory.mktemp("resnet_chain")
    imagenet, compiled, run = base / "imagenet", base / "compiled", base / "runs" / "full"
    run_cli("synth", "imagenet", imagenet, "--classes", "10", "--train-per-class", "8", "--val-per-class", "4",
            "--size", "48", "--seed", "0", check=True)
    run_cli("compile", "imagenet", imagenet, compiled, "--max-resolution", "48", check=True)
    run_cli("subset", "--index", compiled / "train_index.npz", "--labelset", "full", "--out", base / "full.npz",
            check=True)
    run_cli("pretrain", "--recipe", "smoke_resnet18", "--manifest", base / "full.npz", "--data", compiled,
            "--out", run, *CPU, timeout=600, check=True)
    return {"base": base, "compiled": compiled, "run": run}


def test_pretrain_writes_a_resnet18_checkpoint_with_real_metrics(chain):
    summary = json.loads((chain["run"] / "summary.json").read_text())
    assert summary["recipe"] == "smoke_resnet18" and summary["config"]["arch"] == "resnet18"
    assert summary["epochs"] == 2 and summary["train_images"] == 80 and summary["num_labels"] == 10
    assert fraction(summary["top1"]) and fraction(summary["top5"]) and math.isfinite(summary["val_loss"])
    ckpt = torch.load(chain["run"] / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["arch"] == "resnet18" and ckpt["num_classes"] == 10 and ckpt["recipe"]["min_res"] == 32
    assert ckpt["model"]["fc.weight"].shape == (10, 512)   # torchvision's resnet18 keys
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_induction_reads_the_resnet_s_pooled_features(chain):
    out = chain["base"] / "induction.json"
    run_cli("induction", "--checkpoint", chain["run"] / "last.pt", "--labelset", "full", "--classes", "all",
            "--beton-dir", chain["compiled"], "--out", out, "--batch-size", "40", *CPU, check=True)
    result = json.loads(out.read_text())["model"]
    assert result["arch"] == "resnet18" and result["layer"] == "flatten"   # its record's layer, not AlexNet's fc7
    assert result["queries"] == 40 and result["database"] == 80
    assert fraction(result["top1"]) and fraction(result["top5"]) and result["top1"] <= result["top5"]


def test_sun_fine_tuning_from_the_resnet_checkpoint(chain):
    pytest.importorskip("mmdet")
    assert SUN_CONFIG.is_file(), f"{SUN_CONFIG} is missing"
    sun, work = chain["base"] / "sun", chain["base"] / "sun_cls"
    run_cli("synth", "sun", sun, "--classes", "3", "--train-per-class", "4", "--test-per-class", "2",
            "--size", "64x48", "--seed", "0", check=True)
    iters = 3
    out = run_cli("transfer", SUN_CONFIG, "--checkpoint", chain["run"] / "last.pt", "--work-dir", work,
                  "--seeds", "0", "--cfg-options", f"data_root={sun}/", f"train_cfg.max_iters={iters}",
                  f"train_cfg.val_interval={iters}", f"param_scheduler.0.end={iters}",
                  "train_dataloader.batch_size=4", "val_dataloader.batch_size=4", "train_dataloader.num_workers=0",
                  "train_dataloader.persistent_workers=False", "val_dataloader.num_workers=0",
                  "val_dataloader.persistent_workers=False", f"default_hooks.checkpoint.interval={iters}",
                  "default_hooks.logger.interval=1",
                  "model.blurpool=False",   # smoke_resnet18 pre-trains without BlurPool (the config checks it)
                  timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["metric"] == "sun397/mean_class_acc" and summary["n"] == 1
    assert fraction(summary["mean"]) and [r["seed"] for r in summary["runs"]] == [0]
    result = json.loads((work / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == iters and fraction(result["metrics"]["sun397/accuracy"])
