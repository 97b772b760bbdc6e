"""fastload.recipe and fastload.pretrain: recipes, schedule, training loop, checkpoints/resume, torchrun, CLI end to end.

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

from fastload import pretrain, recipe
from fastload.cli import main as cli_main
from fastload.errors import FastloadError, UsageError
from fastload.files import OutputLock
from small_disk import fill, small_disk  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parent.parent
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)]


# ------------------------------------------------------------------ recipes and schedule

def test_shipped_recipes_load_and_declare_every_key():
    for name in recipe.RECIPES:
        raw = __import__("yaml").safe_load((REPO / "train" / f"{name}.yaml").read_text())
        assert set(raw) == set(recipe.SETTINGS_BY_NAME), name  # flat and complete
        cfg = recipe.load_recipe(name)
        recipe.check_config(cfg, world_size=1)
    paper = recipe.load_recipe("paper")
    assert (paper["batch_size"], paper["lr"], paper["momentum"], paper["weight_decay"]) == (256, 0.01, 0.9, 5e-4)
    # 450k and 100k iterations of 256 images over ImageNet-1k's 1,281,167 train images
    assert abs(paper["epochs"] - 450_000 * 256 / 1_281_167) < 0.2
    assert abs(paper["lr_step_epochs"] - 100_000 * 256 / 1_281_167) < 0.1


def test_recipe_schema_and_flags_load_without_torch():
    code = ("import sys, fastload.recipe, fastload.commands.pretrain, fastload.cli; "
            "fastload.cli.build_parser(only='pretrain'); "
            "print(sorted(m for m in ('torch', 'ffcv', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    from fastload.models.networks import NETWORKS
    assert recipe.SETTINGS_BY_NAME["arch"].choices == tuple(NETWORKS)


@pytest.mark.parametrize("flag, value, allowed", [
    ("--lr", "-0.1", "> 0"), ("--lr", "0", "> 0"), ("--momentum", "-1", ">= 0 and < 1"),
    ("--momentum", "1", ">= 0 and < 1"), ("--dropout", "1.5", ">= 0 and < 1"),
    ("--label-smoothing", "5", ">= 0 and < 1"), ("--lr-step-epochs", "0", "> 0"), ("--weight-decay", "-1", ">= 0"),
    ("--num-workers", "-1", ">= 1"), ("--epochs", "-1", ">= 0"), ("--batch-size", "0", ">= 1"),
    ("--lr", "nan", "> 0")])
def test_out_of_range_values_are_refused_naming_the_flag(flag, value, allowed, capsys):
    rc = cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o", flag, value,
                   "--print-config"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{flag}: {flag[2:].replace('-', '_')}=" in err and f"allowed: {allowed}" in err, err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(UsageError, match=flag[2:].replace("-", "_")):
        recipe.apply_overrides(recipe.load_recipe("fast"), [(flag[2:], value)])


def test_paper_step_schedule():
    cfg = recipe.load_recipe("paper")
    assert pretrain.get_lr(cfg, 0) == pytest.approx(0.01)
    assert pretrain.get_lr(cfg, 19.99) == pytest.approx(0.01)
    assert pretrain.get_lr(cfg, 20.0) == pytest.approx(0.001)
    assert pretrain.get_lr(cfg, 89.9) == pytest.approx(0.01 * 1e-4)
    assert {pretrain.get_resolution(cfg, e) for e in range(90)} == {227}


def test_fast_warmup_linear_decay_and_progressive_resizing():
    cfg = recipe.apply_overrides(recipe.load_recipe("fast"),
                                   [("epochs", "10"), ("warmup_epochs", "2"), ("lr", "1.0"),
                                    ("warmup_start_factor", "0"), ("min_res", "160"), ("max_res", "192"),
                                    ("start_ramp", "2"), ("end_ramp", "6"), ("res_step", "16")])
    assert [pretrain.get_lr(cfg, e) for e in (0, 1, 2, 6, 10)] == pytest.approx([0, 0.5, 1.0, 0.5, 0.0])
    assert [pretrain.get_resolution(cfg, e) for e in range(10)] == [160, 160, 160, 160, 176, 176, 192, 192, 192,
                                                                     192]


def test_a_python_tag_in_a_recipe_is_one_line_and_runs_nothing(tmp_path, capsys):
    bad = tmp_path / "tagged.yaml"
    marker = tmp_path / "ran"
    bad.write_text(f"lr: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UsageError, match=r"tagged.yaml is not valid YAML at line 1, column 5: .*python/object"):
        recipe.load_recipe(str(bad))
    rc = cli_main(["pretrain", "--recipe", str(bad), "--manifest", "m.npz", "--data", "d", "--out", "o",
                   "--print-config"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_unknown_recipe_key_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 0.2\n")
    with pytest.raises(UsageError, match="learning_rate"):
        recipe.load_recipe(str(bad))
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
        recipe.check_config(recipe.apply_overrides(recipe.load_recipe("paper"), [("augment", "device")]), 1)
    capsys.readouterr()
    assert cli_main(["pretrain", "--recipe", "fast", "--manifest", "m", "--data", "d", "--out", "o",
                     "--batch-size", "64", "--set", "label_smoothing=0.2", "--print-config"]) == 0
    printed = __import__("yaml").safe_load(capsys.readouterr().out)
    assert printed["batch_size"] == 64 and printed["label_smoothing"] == 0.2 and printed["amp"] == "bf16"
    assert printed["crop"] == "rrc" and recipe.load_recipe("paper")["crop"] == "caffe"


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
        if self.res == 0:  # raw_loader's stand-in: uint8 NHWC images of one stored size, for device crops
            return torch.stack([torch.randint(0, 256, (48, 48, 3), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(int(r))) for r in rows])
        out = []
        for r in rows:
            g = torch.Generator().manual_seed(int(r))
            colour = torch.tensor(COLOURS[r % len(COLOURS)], dtype=torch.float32).view(3, 1, 1) / 255 - 0.5
            out.append(colour * 4 + 0.5 * torch.randn(3, self.res, self.res, generator=g))
        return torch.stack(out)


def use_stand_in(monkeypatch, num_rows=16, lookup=(0, 1, 2, 3), crash_after=None, tiny_model=False):
    lookup = np.asarray(lookup, dtype=np.int32)
    labels = [f"n{i:08d}" for i in range(int(lookup.max()) + 1)]
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

    def raw_loader(beton, rows, label_lookup, batch_size, device, num_workers, distributed, seed):
        made.append(StandInLoader(rows, label_lookup, batch_size, 0, True, seed, crash_after))
        return made[-1]
    monkeypatch.setattr(pretrain, "raw_loader", raw_loader)
    if tiny_model:
        def build_tiny(arch, num_classes, init="default", dropout=0.5, blurpool=False):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(8, num_classes))
        monkeypatch.setattr(pretrain, "build_model", build_tiny)
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
    assert ckpt["inputs"] == dict(inputs(tmp_path / "run")) and "args" not in ckpt  # the run's own inputs
    assert ckpt["recipe"]["label_smoothing"] == (0.1 if recipe == "fast" else 0.0)
    assert {loader.crop for loader in made} == {"caffe" if recipe == "paper" else "rrc"}  # recipe key reaches loader
    assert math.isfinite(json.loads((tmp_path / "run" / "summary.json").read_text())["history"][0]["loss"])


def metrics_of(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("augment", ["cpu", "device"])
def test_resume_mid_epoch_matches_uninterrupted_run(monkeypatch, tmp_path, augment):
    over = [("epochs", "2"), ("batch_size", "4"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming"), ("lr", "0.05"), ("checkpoint_minutes", "1e-9"), ("eval_every", "1"),
            ("log_every", "1"), ("dropout", "0.5"), ("augment", augment)]
    use_stand_in(monkeypatch, num_rows=24, tiny_model=True)
    straight = pretrain.main("fast", over, inputs(tmp_path / "a"))
    use_stand_in(monkeypatch, num_rows=24, tiny_model=True, crash_after=9)  # 6 steps per epoch: dies in epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain.main("fast", over, inputs(tmp_path / "b"))
    ckpt = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 3, 9)
    assert "scheduler" not in ckpt and ckpt["epoch_progress"]["steps"] == 3
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # a step logged after the checkpoint, then killed
        f.write(json.dumps({"kind": "train_step", "step": 10, "epoch": 1, "loss": 9.9}) + "\n")
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
    for k in a["model"]:  # dropout masks are reseeded per step: bitwise the same weights
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert resumed["top1"] == straight["top1"]
    # each step logged once, with the uninterrupted run's losses; the resumed epoch's loss covers all 6 batches
    steps_a = [(x["step"], x["loss"]) for x in metrics_of(tmp_path / "a") if x["kind"] == "train_step"]
    steps_b = [(x["step"], x["loss"]) for x in metrics_of(tmp_path / "b") if x["kind"] == "train_step"]
    assert steps_b == steps_a and [s for s, _ in steps_a] == list(range(1, 13))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert resumed["images_trained"] == straight["images_trained"] == 48


def test_a_second_run_into_a_held_folder_is_refused(monkeypatch, tmp_path):
    use_stand_in(monkeypatch, num_rows=8, tiny_model=True)
    over = [("epochs", "1"), ("batch_size", "4"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming")]
    with OutputLock(tmp_path / "run", "fastload pretrain"):
        with pytest.raises(FastloadError, match=f"{tmp_path / 'run'} is in use by fastload pretrain"):
            pretrain.main("fast", over, inputs(tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()
    pretrain.main("fast", over, inputs(tmp_path / "run"))  # the lock died with its holder
    assert (tmp_path / "run" / "summary.json").exists()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FastloadError, match="exists and is not a folder"):
        pretrain.main("fast", over, inputs(tmp_path / "file"))


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "foreign"])
def test_a_damaged_last_pt_under_resume_is_one_line_naming_it(monkeypatch, tmp_path, capsys, damage):
    use_stand_in(monkeypatch, num_rows=8, tiny_model=True)
    over = [("epochs", "1"), ("batch_size", "4"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming")]
    pretrain.main("fast", over, inputs(tmp_path / "run"))
    last = tmp_path / "run" / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"truncate": data[:len(data) // 2], "empty": b"", "garbage": b"\x00garbage" * 100}.get(
        damage, b""))
    if damage == "foreign":
        torch.save({"model": {}, "arch": "alexnet_caffe", "num_classes": 4}, last)
    with pytest.raises(FastloadError, match="last.pt"):
        pretrain.main("fast", over, inputs(tmp_path / "run"), resume=True)
    capsys.readouterr()
    rc = cli_main(["pretrain", "--recipe", "fast", "--manifest", "m.npz", "--beton", "t", "--val-beton", "v",
                   "--val-index", "i", "--out", str(tmp_path / "run"), "--resume", "--epochs", "1",
                   "--batch-size", "4", "--min-res", "40", "--max-res", "40", "--val-res", "40", "--init", "kaiming"])
    err = capsys.readouterr().err
    assert rc == 1 and str(last) in err and len(err.strip().splitlines()) == 1, err


def test_zero_epochs_saves_and_evaluates_the_seeded_initial_weights(monkeypatch, tmp_path):
    use_stand_in(monkeypatch, num_rows=8)
    over = [("epochs", "0"), ("batch_size", "4"), ("min_res", "64"), ("max_res", "64"), ("val_res", "64"),
            ("init", "kaiming"), ("seed", "3")]
    summary = pretrain.main("smoke", over, inputs(tmp_path / "random"))
    from fastload.models.build import build_model
    from fastload.models.checkpoint import load_checkpoint_model
    model, meta = load_checkpoint_model(tmp_path / "random" / "last.pt")
    torch.manual_seed(3)
    expected = build_model("alexnet_caffe", 4, init="kaiming", dropout=0.0).state_dict()
    assert meta["epoch"] == 0 and meta["global_step"] == 0
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    assert summary["epochs"] == 0 and summary["history"] == [] and summary["val_images"] == 8
    assert 0.0 <= summary["top1"] <= 1.0 and "top5" not in summary
    assert [x["kind"] for x in metrics_of(tmp_path / "random")] == ["val"]
    assert json.loads((tmp_path / "random" / "summary.json").read_text())["top1"] == summary["top1"]


def test_top5_is_written_only_with_five_labels_or_more(monkeypatch, tmp_path):
    use_stand_in(monkeypatch, num_rows=12, lookup=(0, 1, 2, 3, 4, 5), tiny_model=True)
    over = [("epochs", "1"), ("batch_size", "4"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming")]
    summary = pretrain.main("fast", over, inputs(tmp_path / "run"))
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0 and "topk" not in summary


def test_separable_set_learns_well_above_chance(monkeypatch, tmp_path):
    use_stand_in(monkeypatch, num_rows=64, tiny_model=True)
    over = [("epochs", "4"), ("batch_size", "8"), ("min_res", "40"), ("max_res", "40"), ("val_res", "40"),
            ("init", "kaiming"), ("lr", "0.1"), ("warmup_epochs", "0")]
    summary = pretrain.main("fast", over, inputs(tmp_path / "run"))
    assert summary["top1"] >= 0.75 and "top5" not in summary  # chance: 0.25; 4 labels: no top-5
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
    from fastload.index import load_fingerprint, load_index
    from fastload.manifest import Manifest
    root = tmp_path_factory.mktemp("data")
    write_images(root / "images", train_per_class=16, val_per_class=6)
    compile_imagenet(root / "images", root / "c", CompileSettings(max_resolution=64, write_mode="raw",
                                                                   num_workers=1))
    index = load_index(root / "c" / "train_index.npz")
    wnids, fingerprint = np.asarray(index.class_wnids), load_fingerprint(root / "c" / "train_index.npz")
    Manifest(np.arange(len(index), dtype=np.int64), np.arange(4, dtype=np.int32), wnids, wnids,
             {"label_set": "full"}, wnids, fingerprint=fingerprint).save(root / "full.npz")
    lookup = np.array([0, 0, 1, -1], dtype=np.int32)  # classes 0 and 1 merged, class 3 left out
    rows = np.flatnonzero(lookup[index.class_id] >= 0).astype(np.int64)
    Manifest(rows, lookup, wnids[[0, 2]], np.array(["a+b", "c"]), {"label_set": "merged"}, wnids,
             fingerprint=fingerprint).save(root / "merged.npz")
    return root


def pretrain_command(compiled, manifest, out, *extra):
    return [sys.executable, "-m", "fastload.cli", "pretrain", "--recipe", "smoke", "--manifest",
            str(compiled / manifest), "--data", str(compiled / "c"), "--out", str(out), "--num-workers", "1",
            "--min-res", "48", "--max-res", "48", "--val-res", "48", *extra]


@pytest.mark.slow  # three real trainings through the CLI
def test_cli_killed_run_resumes_to_bitwise_the_weights_of_an_uninterrupted_run(compiled, tmp_path):
    """SIGKILL in the middle of epoch 2 (a checkpoint after every step), resume: the same steps logged once, the
    same losses, and bitwise the same final weights as a run that was never interrupted (one CPU thread for
    torch, so that no kernel's reduction order depends on the thread count)."""
    out, straight = tmp_path / "run", tmp_path / "straight"
    flags = ["--epochs", "3", "--batch-size", "16", "--lr", "0.04", "--log-every", "1", "--device", "cpu",
             "--checkpoint-minutes", "1e-9", "--dropout", "0.5"]
    cmd = pretrain_command(compiled, "full.npz", out, *flags)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    metrics, deadline = out / "metrics.jsonl", time.time() + 240

    def in_second_epoch():  # epoch 2 has trained a step
        if not (out / "last.pt").exists() or not metrics.exists():
            return False
        return any(json.loads(x)["kind"] == "train_step" and json.loads(x)["epoch"] == 1
                   for x in metrics.read_text().splitlines() if x.endswith("}"))
    while not in_second_epoch():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] >= 1

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stderr
    once = subprocess.run(pretrain_command(compiled, "full.npz", straight, *flags), cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)
    assert once.returncode == 0, once.stdout + once.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and [h["epoch"] for h in summary["history"]] == [0, 1, 2]
    assert summary["top1"] >= 0.75, summary["history"]  # separable 4 classes: chance is 0.25
    assert summary["val_images"] == 24
    assert {"recipe", "manifest_recipe", "wall_time_s", "images_per_s", "images_trained", "code_version"} <= set(summary)
    assert "top5" not in summary and summary["images_trained"] == 3 * 64  # 4 labels; 3 epochs of 4 x 16
    from fastload.models.checkpoint import load_checkpoint_model
    model, meta = load_checkpoint_model(out / "last.pt")
    assert meta["epoch"] == 3 and meta["label_wnids"] == WNIDS and meta["num_classes"] == 4
    assert (out / "config.yaml").exists() and any((out / "tensorboard").iterdir())
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], model.state_dict()[k]) for k in a)
    logged = [[(x["step"], x["loss"]) for x in metrics_of(o) if x["kind"] == "train_step"] for o in (out, straight)]
    assert logged[0] == logged[1] and [s for s, _ in logged[0]] == list(range(1, 13))
    assert [h["loss"] for h in summary["history"]] == [h["loss"] for h in
                                                       json.loads((straight / "summary.json").read_text())["history"]]


def test_cli_refuses_a_second_concurrent_run_into_one_folder(compiled, tmp_path):
    out = tmp_path / "run"
    with OutputLock(out, "fastload pretrain"):
        done = subprocess.run(pretrain_command(compiled, "full.npz", out, "--epochs", "1", "--device", "cpu"),
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and f"is in use by fastload pretrain (pid {os.getpid()}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_cli_refuses_a_manifest_built_from_another_compile(compiled, tmp_path):
    from fastload.manifest import load_manifest
    m = load_manifest(compiled / "full.npz")
    m.fingerprint = "0" * 64  # as if built from another compile's index
    m.save(tmp_path / "other.npz")
    cmd = pretrain_command(compiled, "full.npz", tmp_path / "run", "--epochs", "1", "--device", "cpu")
    cmd[cmd.index("--manifest") + 1] = str(tmp_path / "other.npz")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "another compile" in done.stderr and "other.npz" in done.stderr, done.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow  # torchrun with two real processes
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


# ------------------------------------------------------------------ bench train

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



def test_a_full_disk_keeps_the_last_checkpoint_and_resumes(monkeypatch, small_disk, capsys):
    """The disk fills up while epoch 2's checkpoint is written: one line naming last.pt and the space needed, exit
    1, epoch 1's last.pt intact; once space is freed --resume finishes epoch 2 without redoing epoch 1."""
    use_stand_in(monkeypatch, num_rows=8, tiny_model=True)
    out = small_disk / "run"
    argv = ["pretrain", "--recipe", "fast", "--manifest", "m.npz", "--beton", "t", "--val-beton", "v",
            "--val-index", "i", "--out", str(out), "--batch-size", "4", "--min-res", "40", "--max-res", "40",
            "--val-res", "40", "--init", "kaiming", "--log-every", "1"]
    saves, filled = [], []
    original_save = pretrain.save_checkpoint

    def save_then_fill(path, state):  # the disk is full when epoch 2's checkpoint is written
        if saves:
            filled.append(fill(small_disk, len(saves[0]) // 2))
        original_save(path, state)
        saves.append(path.read_bytes())
    monkeypatch.setattr(pretrain, "save_checkpoint", save_then_fill)
    assert cli_main(argv + ["--epochs", "2"]) == 1
    saved, filler = saves[0], filled[0]
    monkeypatch.setattr(pretrain, "save_checkpoint", original_save)
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if "error" in line.lower() or "Trace" in line]
    assert len(errors) == 1 and errors[0].startswith(
        f"fastload pretrain: error: no space left on the device to write {out / 'last.pt'}: "), err
    assert "needed" in errors[0]
    assert (out / "last.pt").read_bytes() == saved and not list(out.glob(".tmp-*"))
    filler.unlink()
    assert cli_main(argv + ["--epochs", "2", "--resume"]) == 0
    assert "resuming" in capsys.readouterr().err and torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    steps = [x["step"] for x in metrics_of(out) if x["kind"] == "train_step"]
    assert steps == [1, 2, 3, 4]  # 2 epochs of 2 steps, none redone
