"""Transfer suite protocols: the metrics on hand-computed cases, the L-BFGS probe and its l2 choice, the
held-out split, the classifier swap of fine-tuning; end to end (slow): synthetic Flowers-102 and CIFAR-10 trees
compiled with `fastload compile cls`, then `fastload suite probe` and `fastload suite finetune` on CPU."""
import json

import numpy as np
import pytest
import torch

from fastload.analysis.finetune import cosine_lr, replace_head
from fastload.analysis.probe import (average_precision_11, bits, choose_l2, fit_logistic, holdout, map11,
                                     mean_class_accuracy, top1)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_average_precision_11_by_hand():
    # ranks: P = 1, 1/2, 2/3, 1/2 at R = .5, .5, 1, 1 -> 6 recall points with best P 1, 5 with best P 2/3
    ap = average_precision_11(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    assert ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_map11_skips_classes_without_positives_and_reads_bitmasks():
    labels = np.array([0b01, 0b01, 0b00, 0b01])            # class 1 never present
    scores = np.stack([np.array([0.9, 0.8, 0.1, 0.7]), np.random.default_rng(0).random(4)], 1)
    assert map11(scores, labels) == pytest.approx(1.0)
    assert bits(np.array([5]), 3).tolist() == [[1.0, 0.0, 1.0]]


def test_mean_class_accuracy_weights_classes_equally():
    labels = np.array([0, 0, 0, 1])
    scores = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=float)   # always class 0
    assert top1(scores, labels) == 0.75
    assert mean_class_accuracy(scores, labels) == 0.5


def test_holdout_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), 10)
    keep, held = holdout(labels, 0.2, seed=0, multilabel=False)
    assert np.bincount(labels[held]).tolist() == [2, 2, 2, 2]
    assert not set(keep) & set(held) and len(keep) + len(held) == 40
    assert np.array_equal(held, holdout(labels, 0.2, 0, False)[1])
    assert not np.array_equal(held, holdout(labels, 0.2, 1, False)[1])


def blobs(n, seed, classes=3, dim=8):
    """Separable Gaussian blobs, class 0 the majority (60 %)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 3, (classes, dim))
    y = rng.choice(classes, n, p=[0.6] + [0.4 / (classes - 1)] * (classes - 1))
    return (centres[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y


def test_logistic_regression_separates_blobs_and_l2_shrinks_weights():
    x, y = blobs(300, 0)
    tx, ty = blobs(200, 1)
    weak = fit_logistic(x, y, 3, 1e-4, False, torch.device("cpu"))
    strong = fit_logistic(x, y, 3, 10.0, False, torch.device("cpu"))
    assert top1(weak.scores(tx), ty) > 0.95
    assert strong.weight.norm() < 0.2 * weak.weight.norm()


def test_l2_is_chosen_on_validation():
    x, y = blobs(200, 0)
    vx, vy = blobs(100, 2)
    grid = (1e-4, 1e5)            # 1e5 squashes every weight: only the bias is left, so the majority class wins
    best, curve = choose_l2((x, y), (vx, vy), 3, "top1", False, grid, torch.device("cpu"))
    assert best == 1e-4 and curve[1e-4] > curve[1e5]


def test_multilabel_probe_fits_one_sigmoid_per_class():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, 6)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) | ((x[:, 1] > 0).astype(np.int64) << 1)
    model = fit_logistic(x, labels, 2, 1e-3, True, torch.device("cpu"))
    assert map11(model.scores(x), labels) > 0.95


@pytest.mark.parametrize("arch", ["resnet18", "alexnet_caffe"])
def test_replace_head_swaps_the_last_linear_layer(arch):
    from fastload.models.build import build_model
    model = replace_head(build_model(arch, num_classes=5), 7, seed=0)
    size = 64 if arch == "alexnet_caffe" else 32
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)


def test_cosine_schedule_ends_at_zero():
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1) and cosine_lr(0.1, 10, 10) == pytest.approx(0.0)


# ---- end to end ---------------------------------------------------------------------------------------------------

def save_checkpoint(path, seed=0):
    from fastload.models.build import build_model
    torch.manual_seed(seed)
    model = build_model("resnet18", num_classes=5)
    torch.save(dict(model=model.state_dict(), arch="resnet18", num_classes=5, epoch=1,
                    label_wnids=[f"n{i:08d}" for i in range(5)], recipe={"arch": "resnet18", "val_res": 32}), path)
    return path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Synthetic Flowers-102 and CIFAR-10 trees, written and compiled through the CLI."""
    from conftest import run_cli
    base = tmp_path_factory.mktemp("suite_e2e")
    out = {}
    for name in ("flowers102", "cifar10"):
        run_cli("synth", "suite", name, base / name, "--classes", "3", "--train-per-class", "5",
                "--test-per-class", "3", check=True)
        run_cli("compile", "cls", name, base / name, base / f"{name}_c", "--side", "32", "--num-workers", "1",
                check=True)
        out[name] = base / f"{name}_c"
    return out


@pytest.mark.slow
def test_probe_end_to_end_with_feature_cache(compiled, tmp_path, cli):
    ckpt = save_checkpoint(tmp_path / "a.pt")
    for name, metric in (("flowers102", "mean_class_acc"), ("cifar10", "top1")):
        out = tmp_path / f"probe_{name}"
        args = ("suite", "probe", "--checkpoint", ckpt, "--beton-dir", compiled[name], "--out", out,
                "--l2-grid", "5", "--device", "cpu", "--num-workers", "1")
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        s = json.loads((out / "summary.json").read_text())
        assert s["metric"] == metric and s["n"] == 3 and [r["seed"] for r in s["runs"]] == [0, 1, 2]
        assert 0 <= s["mean"] <= 1 and not any(v["cached"] for v in s["features"]["splits"].values())
        assert s["features"]["splits"]["train"]["rows"] == 15 and s["features"]["layer"] == "flatten"
    again = json.loads(cli(*args) and (out / "summary.json").read_text())
    assert all(v["cached"] for v in again["features"]["splits"].values())
    save_checkpoint(ckpt, seed=1)                       # another network: the cache no longer matches
    proc = cli(*args)
    assert proc.returncode == 0
    third = json.loads((out / "summary.json").read_text())
    assert not any(v["cached"] for v in third["features"]["splits"].values())


@pytest.mark.slow
def test_finetune_end_to_end(compiled, tmp_path, cli):
    ckpt = save_checkpoint(tmp_path / "a.pt")
    out = tmp_path / "ft"
    proc = cli("suite", "finetune", "--checkpoint", ckpt, "--beton-dir", compiled["flowers102"], "--out", out,
               "--steps", "4", "--batch-size", "6", "--device", "cpu", "--num-workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "finetune" and s["n"] == 3 and s["metric"] == "mean_class_acc"
    assert s["settings"]["nesterov"] and s["settings"]["lr"] == pytest.approx(0.01 * 6 / 256)
    assert all(np.isfinite(r["last_loss"]) and r["steps"] == 4 for r in s["runs"])
    # seeds differ in head init and data order
    assert len({r["first_loss"] for r in s["runs"]}) == 3


def test_suite_refuses_a_folder_that_is_not_compiled(tmp_path, cli):
    ckpt = save_checkpoint(tmp_path / "a.pt")
    proc = cli("suite", "probe", "--checkpoint", ckpt, "--beton-dir", tmp_path, "--out", tmp_path / "o",
               "--device", "cpu")
    assert proc.returncode == 1 and "compile.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
