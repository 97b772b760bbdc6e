"""fastload.analysis: coarse/fine gaps on a hand-made confusion case, induction accuracy of a network trained on
coarse synthetic classes, picture frames, fc8 retraining, and the induction / coarse-fine / neighbours commands
end to end on a tiny compiled synthetic ImageNet."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from fastload.analysis.coarse_fine import coarse_fine_table
from fastload.analysis.features import collect_outputs, sample_rows
from fastload.analysis.imagenet_cls import evaluate_topk, replace_fc8, train_fc8
from fastload.analysis.induction import evaluation_classes, nn_accuracy
from fastload.analysis.pictures import draw_grid, frame_kinds


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run faster on one thread than on two contended ones (CI machines are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- coarse versus fine ------------------------------------------------------------------------------------

def test_coarse_fine_table_on_a_hand_made_confusion_case():
    # classes 0,1,2 -> coarse 0; 3,4 -> coarse 1; 5 -> no coarse label
    class_to_coarse = [0, 0, 0, 1, 1, -1]
    targets = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5]
    preds = [0, 0, 1, 3, 2, 2, 2, 5, 3, 4, 4, 4, 0, -1]
    rows = coarse_fine_table(targets, preds, class_to_coarse, min_subclasses=2)
    # coarse 0: fine accs 2/4, 0/2, 1/2 -> mean 1/3; coarse hits 3/4, 2/2, 1/2 -> mean 3/4
    # coarse 1: fine accs 1/2, 2/3 -> 7/12; coarse hits 2/2, 2/3 -> 5/6
    assert [r["coarse"] for r in rows] == [0, 1]  # sorted by gap, largest first
    assert rows[0]["fine_acc"] == pytest.approx(1 / 3) and rows[0]["coarse_acc"] == pytest.approx(3 / 4)
    assert rows[0]["gap"] == pytest.approx(3 / 4 - 1 / 3) and rows[0]["images"] == 8
    assert rows[1]["fine_acc"] == pytest.approx(7 / 12) and rows[1]["gap"] == pytest.approx(5 / 6 - 7 / 12)
    assert [r["coarse"] for r in coarse_fine_table(targets, preds, class_to_coarse, min_subclasses=3)] == [0]


# ---- induction ---------------------------------------------------------------------------------------------

def striped_images(fine_classes, per_class, rng, size=16):
    """Coarse class (fine // 4) sets the colour, the fine class the stripe orientation and frequency."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for f in fine_classes:
        coarse, sub = divmod(f, 4)
        colour = np.array([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.8, 0.8, 0.2]])[coarse]
        for _ in range(per_class):
            angle = sub * np.pi / 4 + rng.normal(0, 0.1)
            wave = np.sin(2 * np.pi * (2 + sub) * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3))
            images.append(colour[:, None, None] * (0.6 + 0.4 * wave) + rng.normal(0, 0.15, (3, size, size)))
            labels.append(f)
    return torch.tensor(np.array(images), dtype=torch.float32), np.array(labels)


class TinyNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def test_coarse_trained_network_induces_held_out_fine_classes():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # 4 coarse groups x 4 fine classes; the network learns coarse labels from fine classes 0 and 1 of each group
    seen = [g * 4 + s for g in range(4) for s in (0, 1)]
    held_out = [g * 4 + s for g in range(4) for s in (2, 3)]
    x, fine = striped_images(seen, 30, rng)
    coarse = torch.tensor(fine // 4)
    net = TinyNet(4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, len(x), (32,))
        loss = nn.functional.cross_entropy(net(x[idx]), coarse[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(x).argmax(1) == coarse).float().mean() > 0.9

    # the label set: seen classes keep their coarse label, held-out fine classes are excluded from training
    wnids = [f"n{c:08d}" for c in range(16)]
    labels = [f"n9{c // 4:07d}" if c in seen else None for c in range(16)]
    mask = evaluation_classes(wnids, labels)
    assert mask.tolist() == [True] * 16  # no class is its own label: all are unseen as fine classes
    mask[seen] = False  # evaluate on the classes never seen at all
    db_x, db_fine = striped_images(held_out, 20, rng)
    q_x, q_fine = striped_images(held_out, 10, rng)
    with torch.no_grad():
        db, q = net.body(db_x).numpy(), net.body(q_x).numpy()
    result = nn_accuracy(db, db_fine, q, q_fine, device="cpu")
    assert result["classes"] == 8 and result["chance_top1"] == pytest.approx(1 / 8)
    assert result["top1"] > 4 * result["chance_top1"] and result["top5"] >= result["top1"]
    # control: the same features with the queries' classes shuffled score near chance
    shuffled = nn_accuracy(db, db_fine, q, rng.permutation(q_fine), device="cpu")
    assert shuffled["top1"] < 2.5 * result["chance_top1"]


def test_evaluation_classes_for_split_and_coarse_sets():
    wnids = ["n1", "n2", "n3", "n4"]
    assert evaluation_classes(wnids, ["n1", "n2", None, None]).tolist() == [False, False, True, True]
    assert evaluation_classes(wnids, ["n9", "n9", "n3", "n8"]).tolist() == [True, True, False, True]
    assert evaluation_classes(wnids, ["n1", "n2", "n3", "n4"], "all").all()


def test_sample_rows_caps_each_class():
    class_id = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    rows = sample_rows(class_id, np.array([True, False, True]), per_class=2, seed=1)
    assert np.all(np.diff(rows) > 0) and np.bincount(class_id[rows], minlength=3).tolist() == [2, 0, 2]
    assert sample_rows(class_id, np.array([True, True, False])).tolist() == [0, 1, 2, 3, 4]


def test_collect_outputs_matches_a_direct_forward():
    from fastload.models.build import build_model
    torch.manual_seed(0)
    model = build_model("alexnet_caffe", 5).eval()
    images = torch.randn(7, 3, 67, 67)
    batches = [(images[:4], torch.tensor([0, 1, 2, 3])), (images[4:], torch.tensor([4, 0, 1]))]
    feats, labels = collect_outputs(model, batches, 7, layer="fc7")
    with torch.no_grad():
        expected = model.features(images, "fc7").numpy()
    assert feats.shape == (7, 4096) and feats.dtype == np.float16
    np.testing.assert_allclose(feats.astype(np.float32), expected, rtol=2e-3, atol=1e-3)
    assert labels.tolist() == [0, 1, 2, 3, 4, 0, 1]


# ---- pictures ----------------------------------------------------------------------------------------------

def test_frame_kinds_and_grid(tmp_path):
    class_to_coarse = np.array([0, 0, 1, -1])
    assert frame_kinds(0, [0, 1, 2, 3], class_to_coarse) == ["fine", "coarse", "other", "other"]
    assert frame_kinds(3, [3, 2], class_to_coarse) == ["fine", "other"]
    from PIL import Image
    thumb = Image.new("RGB", (20, 20), (10, 20, 30))
    size = draw_grid([("model a", thumb, [(thumb, "fine"), (thumb, "other")])] * 2,
                     tmp_path / "grid.png", cell=20, border=3)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[:2] == (size[1], size[0])
    assert (grid == (0, 170, 0)).all(axis=2).any() and (grid == (210, 0, 0)).all(axis=2).any()


# ---- ImageNet CLS: fc8 retraining ----------------------------------------------------------------------------

def test_fc8_retraining_changes_only_fc8_and_learns():
    from fastload.models.build import build_model
    torch.manual_seed(0)
    model = build_model("alexnet_caffe", 10, dropout=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc8")}
    fc8 = replace_fc8(model, "alexnet_caffe", 3, seed=0)
    assert model.fc8 is fc8 and fc8.out_features == 3
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc8.weight", "fc8.bias"]
    images = torch.randn(12, 3, 67, 67)
    labels = torch.arange(12) % 3
    batches = [(images[i:i + 4], labels[i:i + 4]) for i in range(0, 12, 4)]
    untrained = evaluate_topk(model, batches, torch.device("cpu"), ks=(1, 2))
    losses = train_fc8(model, fc8, batches, total_iters=9, epochs=3, lr=0.05, momentum=0.9, weight_decay=0.0,
                       device=torch.device("cpu"))
    assert len(losses) == 3 and losses[-1] < losses[0]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    result = evaluate_topk(model, batches, torch.device("cpu"), ks=(1, 2))
    with torch.no_grad():
        top1 = (model(images).argmax(1) == labels).float().mean().item()
    assert result["top1"] == pytest.approx(top1) and result["val_images"] == 12
    assert result["top1"] >= untrained["top1"] and result["top2"] >= result["top1"]
    assert "top5" not in result  # 3 outputs: no top-5


# ---- the commands on a tiny compiled synthetic ImageNet --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """6 synthetic classes compiled to betons, and two random-weight checkpoints (a 'full' and a coarse one)."""
    from fastload.compile import CompileSettings, compile_imagenet
    from fastload.labelsets import resolve_label_set
    from fastload.models.build import build_model
    from fastload.synth.imagenet import write_imagenet
    base = tmp_path_factory.mktemp("tiny")
    write_imagenet(base / "raw", 6, 5, 2, "48", 0, 1)
    compile_imagenet(base / "raw", base / "data", CompileSettings(max_resolution=64, num_workers=1))
    from fastload.index import load_index
    wnids = [str(w) for w in load_index(base / "data" / "train_index.npz").class_wnids]
    top = resolve_label_set("top_down@127", wnids)  # the top-down step over these 6 classes nearest 127/1000
    coarse = sorted({top.class_to_label[top.class_wnids.index(w)] for w in wnids})
    assert len(coarse) < len(wnids)
    ckpts = {}
    for name, labels in (("full", wnids), ("coarse", coarse)):
        torch.manual_seed(0)
        model = build_model("alexnet_caffe", len(labels))
        ckpts[name] = base / name / "last.pt"
        ckpts[name].parent.mkdir()
        torch.save({"model": model.state_dict(), "arch": "alexnet_caffe", "num_classes": len(labels),
                    "label_wnids": labels, "epoch": 0}, ckpts[name])
    return base, ckpts


def test_induction_command(tiny_data, capsys):
    from fastload.cli import main
    base, ckpts = tiny_data
    out = base / "induction.json"
    rc = main(["induction", "--checkpoint", str(ckpts["coarse"]), "--labelset", "top_down@127", "--baseline",
               str(ckpts["full"]), "--beton-dir", str(base / "data"), "--resolution", "64", "--batch-size", "8",
               "--num-workers", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    # every synthetic class is a fine class under a coarser top-down label: all 6 are unseen
    assert result["model"]["classes"] == 6 and result["model"]["queries"] == 12
    assert result["model"]["database"] == 30 and 0 <= result["baseline"]["top1"] <= result["baseline"]["top5"] <= 1
    assert "top1" in capsys.readouterr().out


def test_coarse_fine_command(tiny_data, capsys):
    from fastload.cli import main
    base, ckpts = tiny_data
    out = base / "cf.tsv"
    rc = main(["coarse-fine", "--checkpoint", str(ckpts["full"]), "--min-subclasses", "1", "--beton-dir",
               str(base / "data"), "--resolution", "64", "--num-workers", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["coarse_wnid", "name", "subclasses", "images", "coarse_acc", "fine_acc", "gap"]
    rows = [line.split("\t") for line in lines[1:]]
    assert sum(int(r[2]) for r in rows) == 6 and all(float(r[6]) >= 0 for r in rows)
    # a coarse checkpoint cannot be scored on fine classes
    assert main(["coarse-fine", "--checkpoint", str(ckpts["coarse"]), "--beton-dir", str(base / "data")]) == 1
    assert "trained on the dataset's fine classes" in capsys.readouterr().err


def test_neighbours_command(tiny_data):
    from PIL import Image
    from fastload.cli import main
    base, ckpts = tiny_data
    out = base / "grid.png"
    rc = main(["neighbours", "--checkpoints", str(ckpts["full"]), str(ckpts["coarse"]), "--beton-dir",
               str(base / "data"), "--queries", "2", "--k", "3", "--resolution", "64", "--num-workers", "1",
               "--device", "cpu", "--cell", "32", "--out", str(out)])
    assert rc == 0
    width, height = Image.open(out).size
    assert height > 4 * 32 and width > 4 * 32  # 2 queries x 2 models rows, query + 3 neighbours each


def test_imagenet_cls_on_betons(tiny_data):
    from fastload.cli import main
    base, ckpts = tiny_data
    out = base / "cls.json"
    assert main(["imagenet-cls", "--checkpoint", str(ckpts["coarse"]), "--beton-dir", str(base / "data"),
                 "--epochs", "1", "--max-iters", "2", "--batch-size", "8", "--resolution", "64", "--num-workers", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_classes"] == 6 and result["iterations"] == 2 and result["val_images"] == 12
    assert 0 <= result["top1"] <= result["top5"] <= 1


# ---- the feature layer per architecture (ResNets: the pooled features) ----------------------------------------

def test_feature_layer_per_arch_from_one_table():
    from fastload.analysis.features import feature_layer
    from fastload.errors import FastloadError
    from fastload.models.networks import NETWORKS, archs_of
    assert all(feature_layer(arch) == "fc7" for arch in archs_of("alexnet"))  # every AlexNet: fc7, as the paper
    # every arch pretrain can build has a default feature layer, its record's
    assert all(feature_layer(arch) == net.feature_layer for arch, net in NETWORKS.items())
    assert feature_layer("resnet18") == feature_layer("resnet50") == "flatten" == NETWORKS["resnet50"].feature_layer
    with pytest.raises(FastloadError, match="no feature layer is known for arch 'vgg16'"):
        feature_layer("vgg16")


def test_resnet_pooled_features_and_a_new_fc_on_frozen_layers():
    import torchvision
    from fastload.errors import UsageError
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    images = torch.randn(6, 3, 32, 32)
    feats, labels = collect_outputs(model, [(images, torch.arange(6) % 3)], 6, layer="flatten")
    with torch.no_grad():
        body = nn.Sequential(*list(model.children())[:-1])  # everything before fc: conv layers and avgpool
        expected = body(images).flatten(1).numpy()
    assert feats.shape == (6, 512) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(feats.astype(np.float32), expected, rtol=2e-3, atol=1e-3)
    with pytest.raises(UsageError, match="not a node of ResNet"):
        collect_outputs(model, [(images, labels)], 6, layer="fc7")

    fc = replace_fc8(model, "resnet18", 3, seed=0)
    assert model.fc is fc and [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    batches = [(images[:3], torch.tensor([0, 1, 2])), (images[3:], torch.tensor([0, 1, 2]))]
    losses = train_fc8(model, fc, batches, total_iters=20, epochs=10, lr=0.1, momentum=0.9, weight_decay=0.0,
                       device=torch.device("cpu"), layer="flatten")
    assert losses[-1] < losses[0]
    assert all(torch.equal(stats[k], model.state_dict()[k]) for k in stats)  # batch norm statistics stay frozen


# ---- results reused only when the same inputs made them; one writer per result -----------------------------------

def cls_args(base, checkpoint, out, *extra):
    return ["imagenet-cls", "--checkpoint", str(checkpoint), "--beton-dir", str(base / "data"), "--epochs", "1",
            "--max-iters", "2", "--batch-size", "8", "--resolution", "64", "--num-workers", "1", "--device", "cpu",
            "--out", str(out), *extra]


def refusal(capsys) -> str:
    """The one line a refused command printed on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_imagenet_cls_reuses_a_result_only_of_the_same_inputs(tiny_data, tmp_path, capsys):
    import shutil
    from fastload.cli import main
    base, ckpts = tiny_data
    ckpt = tmp_path / "last.pt"
    shutil.copy(ckpts["coarse"], ckpt)
    out = tmp_path / "cls.json"
    assert main(cls_args(base, ckpt, out)) == 0
    first = out.read_text()
    assert set(json.loads(first)["inputs"]) == {"checkpoints", "betons", "seed", "settings"}
    capsys.readouterr()
    assert main(cls_args(base, ckpt, out)) == 0  # the same inputs: reused, nothing trained
    printed = capsys.readouterr().out
    assert "reused, nothing computed" in printed and "fc8 loss" not in printed and out.read_text() == first
    # another checkpoint, the same checkpoint file trained again, another seed, another setting: refused
    assert main(cls_args(base, ckpts["full"], out)) == 1
    assert "holds a result of other inputs (checkpoint model: " in refusal(capsys)
    shutil.copy(ckpts["full"], ckpt)
    assert main(cls_args(base, ckpt, out)) == 1
    line = refusal(capsys)
    assert "checkpoint model: " in line and "seed" not in line and "remove it or give another --out" in line
    shutil.copy(ckpts["coarse"], ckpt)
    assert main(cls_args(base, ckpt, out, "--seed", "1")) == 1
    assert "seed: 0 there, 1 now" in refusal(capsys)
    assert main(cls_args(base, ckpt, out, "--lr", "0.02")) == 1
    assert "setting lr: 0.01 there, 0.02 now" in refusal(capsys)
    assert out.read_text() == first  # a refusal leaves the result as it was


def induction_args(base, ckpts, out, features, *extra):
    return ["induction", "--checkpoint", str(ckpts["coarse"]), "--labelset", "top_down@127", "--baseline",
            str(ckpts["full"]), "--beton-dir", str(base / "data"), "--resolution", "64", "--batch-size", "8",
            "--num-workers", "1", "--device", "cpu", "--features-dir", str(features), "--out", str(out), *extra]


def test_induction_result_and_feature_files_are_reused_only_for_the_same_inputs(tiny_data, tmp_path, capsys):
    from fastload.cli import main
    base, ckpts = tiny_data
    features, out = tmp_path / "features", tmp_path / "induction.json"
    assert main(induction_args(base, ckpts, out, features)) == 0
    first = json.loads(out.read_text())
    assert sorted(p.name for p in features.iterdir()) == sorted(
        f"{n}_{s}_fc7.npy{k}" for n in ("model", "baseline") for s in ("train", "val") for k in ("", ".key.json"))
    capsys.readouterr()
    assert main(induction_args(base, ckpts, out, features)) == 0
    assert "reused, nothing computed" in capsys.readouterr().out
    # another --out, the same features: read back, the same numbers
    assert main(induction_args(base, ckpts, tmp_path / "again.json", features)) == 0
    assert capsys.readouterr().out.count("features of the same checkpoint, rows and settings: reused") == 4
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["model"] == first["model"] and again["baseline"] == first["baseline"]
    # the checkpoints swapped: the result is refused, the feature files are computed again
    swapped = {"coarse": ckpts["full"], "full": ckpts["coarse"]}
    assert main(induction_args(base, swapped, out, features)) == 1
    line = refusal(capsys)
    assert "checkpoint baseline: " in line and "checkpoint model: " in line
    assert main(induction_args(base, swapped, tmp_path / "swapped.json", features)) == 0
    assert capsys.readouterr().out.count("features of other inputs (checkpoint ") == 4
    swapped_result = json.loads((tmp_path / "swapped.json").read_text())
    assert swapped_result["baseline"]["top1"] == first["model"]["top1"]  # the coarse network, now as baseline


def test_coarse_fine_reuses_a_table_only_of_the_same_inputs(tiny_data, tmp_path, capsys):
    from fastload.cli import main
    base, ckpts = tiny_data
    out = tmp_path / "cf.tsv"
    args = ["coarse-fine", "--checkpoint", str(ckpts["full"]), "--beton-dir", str(base / "data"), "--resolution",
            "64", "--num-workers", "1", "--device", "cpu", "--out", str(out)]
    assert main(args + ["--min-subclasses", "1"]) == 0
    table = out.read_text()
    assert json.loads((tmp_path / "cf.tsv.inputs.json").read_text())["settings"]["min_subclasses"] == 1
    capsys.readouterr()
    assert main(args + ["--min-subclasses", "1"]) == 0
    printed = capsys.readouterr().out
    assert "reused, nothing computed" in printed and out.read_text() == table
    assert main(args + ["--min-subclasses", "2"]) == 1
    assert "setting min_subclasses: 1 there, 2 now" in refusal(capsys)


def test_a_second_writer_of_one_result_is_refused(tiny_data, tmp_path):
    """imagenet-cls runs (for long: many epochs); a second imagenet-cls, or an induction, writing the same --out is
    refused with one line naming the first."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from conftest import REPO, run_cli
    base, ckpts = tiny_data
    out = tmp_path / "result.json"
    args = cls_args(base, ckpts["coarse"], out)
    args[args.index("--epochs") + 1], args[args.index("--max-iters") + 1] = "100000", "0"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "fastload.cli", *args], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / ".result.json.lock"
        deadline = time.time() + 120
        while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
            assert time.time() < deadline and first.poll() is None, "the first run never took its lock"
            time.sleep(0.1)
        for second in (args, induction_args(base, ckpts, out, tmp_path / "features")):
            refused = run_cli(*second, env={"OMP_NUM_THREADS": "1"}, timeout=300)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 1 and len(lines) == 1, refused.stderr
            assert f"{out} is being written by fastload imagenet-cls (pid {first.pid} on host" in lines[0]
        assert not out.exists() and first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
