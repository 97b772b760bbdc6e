"""fastload.pretrain: recipes, schedule, training loop, checkpoints/resume, torchrun, CLI end to end.

In-process tests replace the FFCV loader by a small stand-in (deterministic tensors, same per-epoch order rule),
so resuming can be compared to an uninterrupted run exactly; the subprocess tests use the real loader on a beton
compiled from PIL images (one colour per class, so the task is separable).
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastload import pretrain
from fastload.cli import main as cli_main
from fastload.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)]


# ------------------------------------------------------------------ recipes and schedule

def test_shipped_recipes_load_and_declare_every_key():
    for name in pretrain.RECIPES:
        raw = __import__("yaml").safe_load((REPO / "train" / f"{name}.yaml").read_text())
        assert set(raw) == set(pretrain.SETTINGS_BY_NAME), name  # flat and complete
        cfg = pretrain.load_recipe(name)
        pretrain.check_config(cfg, world_size=1)
    paper = pretrain.load_recipe("paper")
    assert (paper["batch_size"], paper["lr"], paper["momentum"], paper["weight_decay"]) == (256, 0.01, 0.9, 5e-4)
    # 450k and 100k iterations of 256 images over ImageNet-1k's 1,281,167 train images
    assert abs(paper["epochs"] - 450_000 * 256 / 1_281_167) < 0.2
    assert abs(paper["lr_step_epochs"] - 100_000 * 256 / 1_281_167) < 0.1


def test_arch_names_match_models():
    from fastload.models import alexnet
    assert pretrain.ARCHS == alexnet.ARCHS and pretrain.INITS == alexnet.INITS
    assert pretrain.MIN_RES == alexnet.MIN_INPUT


def test_paper_step_schedule():
    cfg = pretrain.load_recipe("paper")
    assert pretrain.get_lr(cfg, 0) == pytest.approx(0.01)
    assert pretrain.get_lr(cfg, 19.99) == pytest.approx(0.01)
    assert pretrain.get_lr(cfg, 20.0) == pytest.approx(0.001)
    assert pretrain.get_lr(cfg, 89.9) == pytest.approx(0.01 * 1e-4)
    assert {pretrain.get_resolution(cfg, e) for e in range(90)} == {227}


def test_fast_warmup_linear_decay_and_progressive_resizing():
    cfg = pretrain.apply_overrides(pretrain.load_recipe("fast"),
                                   [("epochs", "10"), ("warmup_epochs", "2"), ("lr", "1.0"),
                                    ("warmup_start_factor", "0"), ("min_res", "160"), ("max_res", "192"),
                                    ("start_ramp", "2"), ("end_ramp", "6"), ("res_step", "16")])
    assert [pretrain.get_lr(cfg, e) for e in (0, 1, 2, 6, 10)] == pytest.approx([0, 0.5, 1.0, 0.5, 0.0])
    assert [pretrain.get_resolution(cfg, e) for e in range(10)] == [160, 160, 160, 160, 176, 176, 192, 192, 192,
                                                                     192]


def test_unknown_recipe_key_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(UsageError, match="learning_rate"):
        pretrain.load_recipe(str(bad))
    rc = cli_main(["pretrain", "--recipe", str(bad), "--manifest", "m.npz", "--data", "d", "--out", "o",
                   "--print-config"])
    assert rc == 2 and "learning_rate" in capsys.readouterr().err
    assert cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o",
                     "--set", "lr=fast", "--print-config"]) == 2
    assert cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o",
                     "--set", "nope=1", "--print-config"]) == 2
    assert cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o",
                     "--amp", "fp8", "--print-config"]) == 2
    assert cli_main(["pretrain", "--recipe", "paper", "--manifest", "m", "--data", "d", "--out", "o",
                     "--crop", "center", "--print-config"]) == 2
    assert "crop='center'; allowed: rrc, caffe" in capsys.readouterr().err
    with pytest.raises(UsageError, match="crop 'caffe' is done by the CPU loader"):
        pretrain.check_config(pretrain.apply_overrides(pretrain.load_recipe("paper"), [("augment", "device")]), 1)
    capsys.readouterr()
    assert cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o",
                     "--batch-size", "64", "--set", "label_smoothing=0.2", "--print-config"]) == 0
    printed = __import__("yaml").safe_load(capsys.readouterr().out)
    assert printed["batch_size"] == 64 and printed["label_smoothing"] == 0.2 and printed["amp"] == "bf16"
    assert printed["crop"] == "rrc" and pretrain.load_recipe("paper")["crop"] == "caffe"


# ------------------------------------------------------------------ in-process training with a stand-in loader

class StandInLoader:
    """Rows -> separable images (channel means by class, noise seeded by row); FFCV's order rule per epoch."""

    def __init__(self, rows, lookup, batch_size, resolution, train, seed, crash_after=None):
        self.rows, self.lookup, self.bs, self.res = np.asarray(rows), np.asarray(lookup), batch_size, resolution
        self.train, self.seed, self.next_epoch, self.crash_after, self.yielded = train, seed, 0, crash_after, 0

    def __len__(self):
        return len(self.rows) // self.bs if self.train else math.ceil(len(self.rows) / self.bs)

    def __iter__(self):
        order = np.random.default_rng(self.seed + self.next_epoch).permutation(self.rows) if self.train \
            else self.rows
        self.next_epoch += 1
        for b in range(len(self)):
            if self.crash_after is not None and self.yielded == self.crash_after:
                raise RuntimeError("simulated crash")
            self.yielded += 1
            rows = order[b * self.bs:(b + 1) * self.bs]
            yield self.images(rows), torch.as_tensor(self.lookup[rows % len(self.lookup)], dtype=torch.int64)

    def images(self, rows):
        out = []
        for r in rows:
            g = torch.Generator().manual_seed(int(r))
            colour = torch.tensor(COLOURS[r % len(COLOURS)], dtype=torch.float32).view(3, 1, 1) / 255 - 0.5
            out.append(colour * 4 + 0.5 * torch.randn(3, self.res, self.res, generator=g))
        return torch.stack(out)


def use_stand_in(monkeypatch, num_rows=16, lookup=(0, 1, 2, 3), crash_after=None, tiny_model=False):
    lookup = np.asarray(lookup, dtype=np.int32)
    labels = [WNIDS[i] for i in range(int(lookup.max()) + 1)]
    data = pretrain.TrainData("train.beton", "val.beton", np.arange(num_rows), np.arange(8), lookup, labels,
                              {"label_set": "test"})
    monkeypatch.setattr(pretrain, "load_train_data", lambda *a: data)
    made = []

    def make_loader(beton, rows, label_lookup, batch_size, resolution, train, device, distributed, num_workers,
                    seed, drop_last, crop):
        assert device == "cpu" and not distributed and drop_last == train and crop in ("rrc", "caffe")
        made.append(StandInLoader(rows, label_lookup, batch_size, resolution, train, seed,
                                  crash_after if train else None))
        made[-1].crop = crop
        return made[-1]

    monkeypatch.setattr(pretrain, "make_loader", make_loader)
    if tiny_model:
        from fastload.models import alexnet

        def build_tiny(arch, num_classes, init="default", dropout=0.5):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(8, num_classes))
        monkeypatch.setattr(alexnet, "build_model", build_tiny)
    return made


def inputs(out):
    return {"manifest": "m.npz", "beton": "train.beton", "val_beton": "val.beton", "val_index": "v.npz",
            "out": str(out)}


@pytest.mark.parametrize("recipe", ["paper", "fast"])
@pytest.mark.parametrize("arch", ["alexnet_caffe", "alexnet_tv"])
def test_both_models_and_recipes_train_a_step(monkeypatch, tmp_path, recipe, arch):
    made = use_stand_in(monkeypatch, num_rows=8)
    init = "caffe" if arch == "alexnet_caffe" and recipe == "paper" else "kaiming"
    over = [("arch", arch), ("init", init), ("epochs", "1"), ("batch_size", "8"), ("min_res", "64"),
            ("max_res", "64"), ("val_res", "64"), ("num_workers", "1"), ("log_every", "1")]
    summary = pretrain.main(recipe, over, inputs(tmp_path / "run"))
    assert summary["epochs"] == 1 and summary["num_labels"] == 4 and summary["val_images"] == 8
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["arch"] == arch and ckpt["epoch"] == 1 and ckpt["global_step"] == 1
    assert ckpt["recipe"]["label_smoothing"] == (0.1 if recipe == "fast" else 0.0)
    assert {loader.crop for loader in made} == {"caffe" if recipe == "paper" else "rrc"}  # recipe key reaches loader
    assert math.isfinite(json.loads((tmp_path / "run" / "summary.json").read_text())["history"][0]["loss"])


def test_resume_mid_epoch_matches_uninterrupted_run(monkeypatch, tmp_path):
    over = [("epochs", "2"), ("batch_size", "4"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming"), ("lr", "0.05"), ("checkpoint_minutes", "1e-9"), ("eval_every", "1")]
    use_stand_in(monkeypatch, num_rows=24, tiny_model=True)
    straight = pretrain.main("fast", over, inputs(tmp_path / "a"))
    use_stand_in(monkeypatch, num_rows=24, tiny_model=True, crash_after=9)  # 6 steps per epoch: dies in epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain.main("fast", over, inputs(tmp_path / "b"))
    ckpt = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 3, 9)
    with pytest.raises(UsageError, match="--resume"):  # never overwrite a run silently
        pretrain.main("fast", over, inputs(tmp_path / "b"))
    with pytest.raises(UsageError, match="lr"):  # resuming with other settings is refused
        pretrain.main("fast", over + [("lr", "0.1")], inputs(tmp_path / "b"), resume=True)
    use_stand_in(monkeypatch, num_rows=24, tiny_model=True)
    resumed = pretrain.main("fast", over, inputs(tmp_path / "b"), resume=True)
    assert resumed["epochs"] == straight["epochs"] == 2
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
    assert resumed["top1"] == pytest.approx(straight["top1"])


def test_separable_set_learns_well_above_chance(monkeypatch, tmp_path):
    use_stand_in(monkeypatch, num_rows=64, tiny_model=True)
    over = [("epochs", "4"), ("batch_size", "8"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming"), ("lr", "0.1"), ("warmup_epochs", "0")]
    summary = pretrain.main("fast", over, inputs(tmp_path / "run"))
    assert summary["top1"] >= 75.0  # chance: 25%
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} >= {"train_epoch", "val"}
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run" / "tensorboard").iterdir())


# ------------------------------------------------------------------ end to end with the real loader

def write_images(root: Path, train_per_class: int, val_per_class: int, size: int = 48):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for wnid, colour in zip(WNIDS, COLOURS):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{wnid}_{i}.JPEG", quality=90)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A compiled 4-class dataset and two manifests: every class its own label, and 2 labels over 3 classes."""
    from fastload.compile import CompileSettings, compile_imagenet
    from fastload.index import load_index
    from fastload.manifest import Manifest
    root = tmp_path_factory.mktemp("data")
    write_images(root / "images", train_per_class=16, val_per_class=6)
    compile_imagenet(root / "images", root / "c", CompileSettings(max_resolution=64, write_mode="raw",
                                                                   num_workers=1))
    index = load_index(root / "c" / "train_index.npz")
    wnids = np.asarray(index.class_wnids)
    Manifest(np.arange(len(index), dtype=np.int64), np.arange(4, dtype=np.int32), wnids, wnids,
             {"label_set": "full"}, wnids).save(root / "full.npz")
    lookup = np.array([0, 0, 1, -1], dtype=np.int32)  # classes 0 and 1 merged, class 3 left out
    rows = np.flatnonzero(lookup[index.class_id] >= 0).astype(np.int64)
    Manifest(rows, lookup, wnids[[0, 2]], np.array(["a+b", "c"]), {"label_set": "merged"}, wnids).save(
        root / "merged.npz")
    return root


def pretrain_command(compiled, manifest, out, *extra):
    return [sys.executable, "-m", "fastload.cli", "pretrain", "--recipe", "smoke", "--manifest",
            str(compiled / manifest), "--data", str(compiled / "c"), "--out", str(out), "--num-workers", "1",
            "--min-res", "48", "--max-res", "48", "--val-res", "48", *extra]


def test_cli_killed_run_resumes_to_the_same_epoch_count(compiled, tmp_path):
    out = tmp_path / "run"
    cmd = pretrain_command(compiled, "full.npz", out, "--epochs", "3", "--batch-size", "16", "--lr", "0.04",
                           "--log-every", "1", "--device", "cpu")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics, deadline = out / "metrics.jsonl", time.time() + 240

    def in_second_epoch():  # epoch 1's checkpoint is written and epoch 2 has begun
        if not (out / "last.pt").exists() or not metrics.exists():
            return False
        return any(json.loads(x)["kind"] == "train_step" and json.loads(x)["epoch"] == 1
                   for x in metrics.read_text().splitlines())
    while not in_second_epoch():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and [h["epoch"] for h in summary["history"]] == [0, 1, 2]
    assert summary["top1"] >= 75.0, summary["history"]  # separable 4 classes: chance is 25%
    assert summary["val_images"] == 24
    assert {"recipe", "manifest_recipe", "wall_time_s", "images_per_s", "top5", "git_commit"} <= set(summary)
    from fastload.models import load_checkpoint_model
    model, meta = load_checkpoint_model(out / "last.pt")
    assert meta["epoch"] == 3 and meta["label_wnids"] == WNIDS and meta["num_classes"] == 4
    assert (out / "config.yaml").exists() and any((out / "tensorboard").iterdir())


def test_torchrun_two_cpu_processes_with_relabelled_val(compiled, tmp_path):
    out = tmp_path / "ddp"
    # also the device-side augmentation path: the test beton holds raw 48x48 images
    cmd = pretrain_command(compiled, "merged.npz", out, "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                           "--augment", "device")
    cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "fastload.cli"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["num_labels"] == 2 and summary["epochs"] == 1
    # 3 kept classes x 6 val images, split over 2 ranks (no padding needed for 18 rows)
    assert summary["val_images"] == 18
    assert summary["train_images"] == 48 and summary["config"]["augment"] == "device"


# ------------------------------------------------------------------ bench train: device-side augmentation

def test_device_random_resized_crop_against_reference():
    from fastload.pretrain import device_random_resized_crop
    from fastload.loader import IMAGENET_MEAN, IMAGENET_STD
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    # scale 1 and ratio 1: the whole image, possibly mirrored, normalised like the loader
    out = device_random_resized_crop(images, 32, torch.float32, False, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    ref = (images.permute(0, 3, 1, 2).float() - mean) / std
    for i in range(6):
        assert (torch.allclose(out[i], ref[i], atol=1e-4) or torch.allclose(out[i], ref[i].flip(-1), atol=1e-4))
    crops = device_random_resized_crop(images, 20, torch.bfloat16, True)
    assert crops.shape == (6, 3, 20, 20) and crops.dtype == torch.bfloat16
    assert crops.is_contiguous(memory_format=torch.channels_last)
    lo, hi = ((0 - mean) / std).min(), ((255 - mean) / std).max()
    assert lo - 0.05 <= crops.float().min() and crops.float().max() <= hi + 0.05


def test_bench_train_runs_on_cpu_with_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "train", "--images", "24", "--image-size", "40", "--resolution", "36", "--batch-size",
                   "8", "--steps", "1", "--warmup-steps", "1", "--pipeline", "both", "--num-workers", "1",
                   "--device", "cpu", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ceiling" in printed and "ratio" in printed
    result = json.loads(out.read_text())
    for key in ("ffcv", "raw-gpu"):
        assert result[key]["images"] == 8 and result[key]["ratio"] > 0
    assert result["ceiling"]["images_per_s"] > 0 and result["resolution"] == 36


# ------------------------------------------------------------------ distributed launch environment

def test_launch_environment_from_torchrun_or_slurm():
    from fastload.distributed import read_launch_env
    assert read_launch_env({}) == (0, 1, 0)
    assert read_launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)
    assert read_launch_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}) == (5, 16, 1)
    assert read_launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0)  # one task: no group
    # torchrun's variables win inside an salloc/srun shell
    assert read_launch_env({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (1, 2, 0)
