"""SUN-CLS: the SUN397 dataset and partition files, the mean per-class accuracy, the classifier's weights, the
shipped config, and a few fine-tuning iterations through `fastload transfer` on synthetic SUN397, on CPU."""
import json

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from fastload.errors import FastloadError, UsageError  # noqa: E402
from fastload.mmdet.classification import MeanPerClassAccuracy, mean_per_class_accuracy  # noqa: E402
from fastload.models.build import build_model  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402
from small_disk import small_disk  # noqa: E402,F401 (a fixture)

SUN_CONFIG = TRANSFER_CONFIGS_DIR / "alexnet-caffe_50k_sun397.py"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # AlexNet on tiny batches: one thread beats two contended ones
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sun_root(tmp_path_factory):
    from fastload.synth.sun import write_sun
    root = tmp_path_factory.mktemp("sun") / "data"
    write_sun(root, classes=3, train_per_class=4, test_per_class=2, size="64x48", seed=0, partitions=2)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    model = build_model("alexnet_caffe", 10)
    torch.save({"model": model.state_dict(), "arch": "alexnet_caffe", "num_classes": 10,
                "label_wnids": [f"n{i:08d}" for i in range(10)], "epoch": 1}, path)
    return path


def build_dataset(root, split="train", partition=1):
    from mmdet.registry import DATASETS
    init_default_scope("mmdet")
    return DATASETS.build(dict(type="SUN397Dataset", data_root=str(root), split=split, partition=partition))


def test_dataset_reads_the_partition_files(sun_root):
    classes = (sun_root / "Partitions" / "ClassName.txt").read_text().split()
    for partition in (1, 2):
        for split, name, per_class in (("train", "Training", 4), ("test", "Testing", 2)):
            ds = build_dataset(sun_root, split, partition)
            lines = (sun_root / "Partitions" / f"{name}_{partition:02d}.txt").read_text().split()
            assert len(ds) == len(lines) == 3 * per_class and ds.metainfo["classes"] == tuple(classes)
            for i, line in enumerate(lines):
                info = ds.get_data_info(i)
                assert info["img_path"] == str(sun_root / "SUN397" / line.lstrip("/"))
                assert classes[info["gt_label"]] == "/".join(line.split("/")[:-1])
    assert set(build_dataset(sun_root, "train", 1).get_data_info(i)["img_path"] for i in range(12)) != \
        set(build_dataset(sun_root, "train", 2).get_data_info(i)["img_path"] for i in range(12))


def test_bad_partition_arguments_are_named(sun_root, tmp_path):
    with pytest.raises(UsageError, match="1..10"):
        build_dataset(sun_root, partition=11)
    with pytest.raises(UsageError, match="train, test"):
        build_dataset(sun_root, split="val")
    with pytest.raises(FastloadError, match="Training_03.txt"):
        build_dataset(sun_root, partition=3)


def test_mean_per_class_accuracy_by_hand():
    # class 0: 3/4 right, class 1: 0/1, class 2: 2/2 -> mean (0.75 + 0 + 1) / 3; overall 5/7
    targets = [0, 0, 0, 0, 1, 2, 2]
    preds = [0, 0, 0, 2, 0, 2, 2]
    assert mean_per_class_accuracy(targets, preds, 3) == {"mean_class_acc": pytest.approx(1.75 / 3),
                                                          "accuracy": pytest.approx(5 / 7)}
    metric = MeanPerClassAccuracy(prefix="sun397")
    metric.dataset_meta = {"classes": ("a", "b", "c", "d")}  # class d has no test image: not averaged
    metric.process({}, [{"gt_label": torch.tensor([t]), "pred_label": torch.tensor([p])}
                        for t, p in zip(targets, preds)])
    assert metric.evaluate(7) == {"sun397/mean_class_acc": pytest.approx(1.75 / 3),
                                  "sun397/accuracy": pytest.approx(5 / 7)}


def test_shipped_config_is_the_papers_schedule():
    cfg = Config.fromfile(str(SUN_CONFIG))
    assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.train_cfg.max_iters == 50000
    assert cfg.param_scheduler[0].milestones == [20000, 40000] and cfg.param_scheduler[0].gamma == 0.1
    assert cfg.optim_wrapper.optimizer.type == "SGD" and cfg.optim_wrapper.optimizer.lr == 0.001
    assert cfg.model.num_classes == 397 and cfg.model.checkpoint is None
    assert cfg.train_dataloader.dataset.partition == 1 and cfg.val_dataloader.dataset.split == "test"
    assert cfg.primary_metric == "sun397/mean_class_acc"


def test_classifier_loads_conv1_to_fc7_and_a_new_fc8(checkpoint):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    reference = torch.load(checkpoint, weights_only=True)["model"]
    torch.manual_seed(1)
    model = MODELS.build(dict(type="FastloadImageClassifier", num_classes=5, checkpoint=str(checkpoint)))
    model.init_weights()
    for layer in ("conv1", "conv3", "conv5", "fc6", "fc7"):
        assert torch.equal(getattr(model.net, layer).weight, reference[f"{layer}.weight"])
    assert model.fc8.weight.shape == (5, 4096) and torch.all(model.fc8.bias == 0)
    assert abs(model.fc8.weight.std().item() - 0.01) < 0.001
    assert all(p.requires_grad for p in model.parameters())  # the whole network is fine-tuned
    with pytest.raises(FastloadError, match="no pre-trained checkpoint"):
        MODELS.build(dict(type="FastloadImageClassifier", num_classes=5)).init_weights()
    scratch = MODELS.build(dict(type="FastloadImageClassifier", num_classes=5, checkpoint="random"))
    scratch.init_weights()
    assert not torch.equal(scratch.net.conv1.weight, reference["conv1.weight"])


def test_fine_tuning_runs_through_fastload_transfer(sun_root, checkpoint, tmp_path):
    from fastload.transfer import load_checkpoint_file, transfer
    iters = 3
    options = {"data_root": str(sun_root) + "/", "model.num_classes": 3,
               "train_cfg.max_iters": iters, "train_cfg.val_interval": iters,
               "param_scheduler.0.end": iters, "param_scheduler.0.milestones": [1, 2],
               "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 4,
               "train_dataloader.num_workers": 0, "train_dataloader.persistent_workers": False,
               "val_dataloader.num_workers": 0, "val_dataloader.persistent_workers": False,
               "default_hooks.logger.interval": 1, "default_hooks.checkpoint.interval": iters}
    summary = transfer(SUN_CONFIG, checkpoint, tmp_path / "sun", options, seeds=[0])
    assert summary["metric"] == "sun397/mean_class_acc" and 0.0 <= summary["mean"] <= 1.0
    result = json.loads((tmp_path / "sun" / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == iters and "sun397/accuracy" in result["metrics"]
    # the run's own resumable checkpoint loads through the weights-only allow-list
    state = load_checkpoint_file(tmp_path / "sun" / "seed_0" / f"iter_{iters}.pth", "cpu")["state_dict"]
    reference = torch.load(checkpoint, weights_only=True)["model"]
    assert state["fc8.weight"].shape == (3, 4096)
    # lr 0.001 with momentum for 3 steps: every layer moved, none far from its pre-trained value
    for layer in ("conv1", "fc7"):
        delta = (state[f"net.{layer}.weight"] - reference[f"{layer}.weight"]).abs().max().item()
        assert 0 < delta < 0.05, layer


def test_a_full_disk_under_the_work_dir_is_one_line_naming_it(sun_root, checkpoint, small_disk):
    """The run's resumable checkpoint (conv1..fc8 and their momenta, ~460 MB) cannot fit on an 80 MiB disk: one
    DiskFullError naming the work dir, no result."""
    from fastload.files import DiskFullError
    from fastload.transfer import transfer
    options = {"data_root": str(sun_root) + "/", "model.num_classes": 3, "train_cfg.max_iters": 1,
               "train_cfg.val_interval": 1, "param_scheduler.0.end": 1, "param_scheduler.0.milestones": [1],
               "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 4,
               "train_dataloader.num_workers": 0, "train_dataloader.persistent_workers": False,
               "val_dataloader.num_workers": 0, "val_dataloader.persistent_workers": False,
               "default_hooks.checkpoint.interval": 1}
    work = small_disk / "sun"
    with pytest.raises(DiskFullError, match=rf"no space left on the device to write {work}/seed_0: .* free there"):
        transfer(SUN_CONFIG, checkpoint, work, options, seeds=[0])
    assert not (work / "seed_0" / "result.json").exists()


class Exploit:
    """Unpickling this runs code: it writes the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_pickle_named_in_last_checkpoint_is_refused_not_run(sun_root, checkpoint, tmp_path, writer):
    import pickle

    from fastload.transfer import transfer
    seed_dir = tmp_path / "sun" / "seed_0"
    seed_dir.mkdir(parents=True)
    marker, evil = tmp_path / "executed", seed_dir / "iter_1.pth"
    payload = {"meta": {"iter": 1}, "state_dict": {}, "message_hub": Exploit(marker)}
    if writer == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    (seed_dir / "last_checkpoint").write_text(str(evil))
    options = {"data_root": str(sun_root) + "/", "model.num_classes": 3, "train_cfg.max_iters": 2,
               "train_cfg.val_interval": 2, "param_scheduler.0.end": 2,
               "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 4,
               "train_dataloader.num_workers": 0, "train_dataloader.persistent_workers": False,
               "val_dataloader.num_workers": 0, "val_dataloader.persistent_workers": False}
    # the unfinished run's recorded inputs are this run's: it is resumed, from the file named in last_checkpoint
    from fastload.transfer import fingerprint_file, load_config, run_inputs
    inputs = run_inputs(load_config(SUN_CONFIG, checkpoint, seed_dir, options, 0), fingerprint_file(checkpoint), 0)
    (seed_dir / "inputs.json").write_text(json.dumps(inputs))
    with pytest.raises(FastloadError, match=r"iter_1\.pth holds objects .*refused, not run.*Unsupported"):
        transfer(SUN_CONFIG, checkpoint, tmp_path / "sun", options, seeds=[0])
    assert not marker.exists()
    # the file is the exploit it claims to be: an unrestricted load runs it
    torch.load(evil, weights_only=False) if writer == "torch" else pickle.loads(evil.read_bytes())
    assert marker.exists()
