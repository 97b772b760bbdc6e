"""fastload.mmdet + fastload.transfer: configs, checkpoint loading, VOC reading, metrics, and both pipelines on CPU,
on a tiny synthetic VOCdevkit written by `fastload synth voc`.
"""
import json
import random
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import fastload.mmdet  # noqa: E402,F401  (registrations)
from fastload.errors import FastloadError  # noqa: E402
from fastload.voc import VOC_ACTIONS  # noqa: E402
from fastload.mmdet.action import action_ap, candidate_regions, secondary_at_test, voc_ap  # noqa: E402
from fastload.models.build import build_model  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402
from fastload.transfer import (apply_config_variables, fingerprint_file, load_config, run_inputs,  # noqa: E402
                               set_checkpoint, transfer)

# the AlexNet configs; the ResNet ones have their own tests: tests/test_resnet_transfer.py (detection, SUN),
# tests/test_resnet_action.py (R*CNN)
CONFIGS = sorted(p for p in TRANSFER_CONFIGS_DIR.glob("*.py") if "alexnet" in p.name)
DET_CONFIG = TRANSFER_CONFIGS_DIR / "faster-rcnn_alexnet-caffe_70k_voc07.py"
ACT_CONFIG = TRANSFER_CONFIGS_DIR / "rstarcnn_alexnet-caffe_70k_voc12-action.py"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """`fastload synth voc`: VOC2007 trainval 8 / test 6 images, VOC2012 Action train 8 / val 10 images."""
    from fastload.synth.voc import write_voc
    out = tmp_path_factory.mktemp("voc") / "synth"
    write_voc(out, trainval=8, test=6, action_train=8, action_val=10, seed=0)
    return out / "VOCdevkit"


def _save_checkpoint(path, arch, drop=()):
    model = build_model(arch, num_classes=7)
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    torch.save(dict(model=state, arch=arch, num_classes=7, label_wnids=[f"n{i:08d}" for i in range(7)], epoch=1),
               path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {arch: _save_checkpoint(d / f"{arch}.pt", arch) for arch in ("alexnet_caffe", "alexnet_tv")}


def _tiny_options(data_root, iters=2):
    return {
        "data_root": str(data_root) + "/",
        "img_scale": (128, 96),
        "train_cfg.max_iters": iters,
        "train_cfg.val_interval": iters,
        "param_scheduler.0.end": iters,
        "param_scheduler.0.milestones": [max(iters - 1, 1)],
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "val_dataloader.num_workers": 0,
        "val_dataloader.persistent_workers": False,
        "default_hooks.logger.interval": 1,
        "default_hooks.checkpoint.interval": iters,
    }


# ---------------------------------------------------------------- configs and checkpoints

def _find_arch(node):
    if isinstance(node, dict):
        if isinstance(node.get("arch"), str):
            return node["arch"]
        return next((a for a in map(_find_arch, node.values()) if a), None)
    return None


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads_and_builds_with_pretrained_weights(config, checkpoints):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(config))
    assert isinstance(cfg.get("primary_metric"), str)  # what `fastload transfer` reports
    arch = _find_arch(cfg.model)
    assert set_checkpoint(cfg.model, str(checkpoints[arch])) >= 1
    init_default_scope(cfg.get("default_scope", "mmdet"))
    model = MODELS.build(cfg.model)
    model.init_weights()
    reference = torch.load(checkpoints[arch], weights_only=True)["model"]
    conv1 = "conv1.weight" if arch == "alexnet_caffe" else "features.0.weight"
    fc7 = "fc7.weight" if arch == "alexnet_caffe" else "classifier.4.weight"
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.shape == (4096, 4096)]
    assert torch.equal(convs[0].weight, reference[conv1])
    assert fcs and all(torch.equal(fc.weight, reference[fc7]) for fc in fcs)


PASCAL_CONFIGS = [p for pattern in ("faster-rcnn_*.py", "rstarcnn_*.py")
                  for p in sorted(TRANSFER_CONFIGS_DIR.glob(pattern)) if "alexnet" in p.name]


@pytest.mark.parametrize("config", PASCAL_CONFIGS, ids=[p.stem for p in PASCAL_CONFIGS])
def test_pascal_configs_follow_the_paper_schedule_and_backbone(config, checkpoints):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(config))
    # 70k updates, the lr step at 40k updates; detection accumulates 2 one-image iterations per update
    per_update = cfg.optim_wrapper.get("accumulative_counts", 1)
    assert per_update == (2 if "1img" not in config.name and config.name.startswith("faster-rcnn") else 1)
    assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.train_cfg.max_iters == 70000 * per_update
    assert cfg.param_scheduler[0].milestones == [40000 * per_update] and cfg.param_scheduler[0].by_epoch is False
    assert cfg.optim_wrapper.optimizer.type == "SGD" and cfg.optim_wrapper.optimizer.lr == 0.001
    arch = cfg.model.backbone.arch
    set_checkpoint(cfg.model, str(checkpoints[arch]))
    init_default_scope("mmdet")
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    # conv1 frozen for R*CNN (Fast R-CNN's rule for small nets) and the VGG_CNN_M_1024 recipe; ZF's recipe trains it
    frozen = config.name.startswith("rstarcnn") or "1img" in config.name
    assert backbone.trunk[0].weight.requires_grad is not frozen
    feats = backbone(torch.zeros(1, 3, 96, 128))
    # 128 wide: caffe conv1 (11/4, no pad) 30 -> pool (ceil, as Caffe) 15 -> pool 7; torchvision (pad 2, floor)
    # 31 -> 15 -> 7
    assert feats[0].shape[1] == 256 and feats[0].shape[-1] == {"alexnet_caffe": 7, "alexnet_tv": 7}[arch]


def test_det_config_is_the_papers_setup():
    cfg = Config.fromfile(str(DET_CONFIG))
    assert cfg.val_evaluator.type == "VOCMetric" and cfg.val_evaluator.eval_mode == "11points"
    assert cfg.model.roi_head.bbox_head.num_classes == 20
    assert cfg.model.roi_head.bbox_roi_extractor.roi_layer.output_size == 6
    assert cfg.model.roi_head.bbox_roi_extractor.featmap_strides == [16]
    assert cfg.train_dataloader.dataset.ann_file.endswith("VOC2007/ImageSets/Main/trainval.txt")
    assert cfg.val_dataloader.dataset.ann_file.endswith("VOC2007/ImageSets/Main/test.txt")
    tv = Config.fromfile(str(TRANSFER_CONFIGS_DIR / "faster-rcnn_alexnet-tv_70k_voc07.py"))
    assert tv.model.backbone.arch == tv.model.roi_head.bbox_head.arch == "alexnet_tv"


def test_missing_checkpoint_keys_are_named(tmp_path):
    from mmdet.registry import MODELS
    bad = _save_checkpoint(tmp_path / "bad.pt", "alexnet_caffe", drop=("conv3.weight", "fc7.bias"))
    init_default_scope("mmdet")
    backbone = MODELS.build(dict(type="FastloadAlexNet", arch="alexnet_caffe", checkpoint=str(bad)))
    with pytest.raises(FastloadError, match=r"conv3\.weight"):
        backbone.init_weights()
    cfg = Config.fromfile(str(DET_CONFIG))
    head = MODELS.build({**cfg.model.roi_head.bbox_head, "checkpoint": str(bad)})
    with pytest.raises(FastloadError, match=r"missing keys: fc7\.bias"):
        head.init_weights()


def test_wrong_arch_or_no_checkpoint_is_an_error(checkpoints):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    backbone = MODELS.build(dict(type="FastloadAlexNet", arch="alexnet_caffe",
                                 checkpoint=str(checkpoints["alexnet_tv"])))
    with pytest.raises(FastloadError, match="alexnet_tv"):
        backbone.init_weights()
    with pytest.raises(FastloadError, match="no pre-trained checkpoint"):
        MODELS.build(dict(type="FastloadAlexNet", arch="alexnet_caffe")).init_weights()


def test_config_variables_reach_every_dataset_and_resize():
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({"data_root": "/elsewhere/", "img_scale": (200, 100)})
    apply_config_variables(cfg)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.data_root == "/elsewhere/"
        assert [s.scale for s in loader.dataset.pipeline if s.type == "Resize"] == [(200, 100)]


# ---------------------------------------------------------------- metrics

def test_action_ap_matches_the_devkit_formula_by_hand():
    # ranked: + - + - +  -> precision at each recall step 1/1, 2/3, 3/5; area = mean over the 3 positives
    assert action_ap([0.9, 0.8, 0.7, 0.6, 0.5], [1, -1, 1, -1, 1]) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # the envelope: a later, higher precision lifts earlier recall levels; - + + : 1/2 -> envelope 2/3 for both
    assert action_ap([3, 2, 1], [-1, 1, 1]) == pytest.approx(2 / 3)
    # ignored (0) people count neither way; order of equal scores is the input order (MATLAB's stable sort)
    assert action_ap([0.9, 0.8, 0.7], [0, 1, -1]) == pytest.approx(1.0)
    assert action_ap([0.5, 0.5], [-1, 1]) == pytest.approx(0.5)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)


def test_action_metric_perfect_and_shuffled():
    from fastload.mmdet.action import VOCActionMetric
    rng = np.random.default_rng(0)
    labels = np.eye(10)[rng.integers(0, 10, 60)]

    def evaluate(scores):
        metric = VOCActionMetric()
        samples = [dict(pred_instances=dict(action_scores=torch.tensor(scores[i:i + 3])),
                        gt_instances=dict(actions=torch.tensor(labels[i:i + 3]))) for i in range(0, 60, 3)]
        metric.process({}, samples)
        return metric.compute_metrics(metric.results)

    perfect = evaluate(labels + 0.01 * rng.random(labels.shape))
    assert perfect["mAP"] == pytest.approx(1.0)
    shuffled = evaluate(labels[rng.permutation(60)])
    assert shuffled["mAP"] < 0.5
    # one ranking for every action (the person order): AP per action by the hand-checked formula, then the mean
    ranking = np.arange(60.0)[::-1]
    by_hand = np.mean([action_ap(ranking, np.where(labels[:, k] > 0, 1, -1)) for k in range(10)])
    assert evaluate(np.tile(ranking[:, None], (1, 10)))["mAP"] == pytest.approx(by_hand)


def _det_samples(cfg, voc_root, shuffle):
    """Predictions that are exactly the annotated boxes (score 1), with the true or with random labels."""
    from mmdet.registry import DATASETS
    init_default_scope("mmdet")
    dataset = DATASETS.build({**cfg.val_dataloader.dataset, "data_root": str(voc_root) + "/",
                              "pipeline": [dict(type="LoadAnnotations", with_bbox=True)]})
    rng = random.Random(0)
    samples = []
    for i in range(len(dataset)):
        item = dataset[i]
        boxes = item["gt_bboxes"].tensor
        labels = torch.as_tensor(item["gt_bboxes_labels"])
        ignore = torch.as_tensor(item["gt_ignore_flags"])
        predicted = torch.tensor([rng.randrange(20) for _ in labels]) if shuffle else labels
        samples.append(dict(gt_instances=dict(bboxes=boxes[~ignore], labels=labels[~ignore]),
                            ignored_instances=dict(bboxes=boxes[ignore], labels=labels[ignore]),
                            pred_instances=dict(bboxes=boxes, scores=torch.ones(len(boxes)), labels=predicted)))
    return dataset, samples


@pytest.mark.parametrize("shuffle", [False, True])
def test_voc_detection_metric_perfect_and_shuffled(voc_root, shuffle):
    from mmdet.registry import METRICS
    cfg = Config.fromfile(str(DET_CONFIG))
    dataset, samples = _det_samples(cfg, voc_root, shuffle)
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    mAP = metric.compute_metrics(metric.results)["mAP"]
    if shuffle:
        assert mAP < 0.3
    else:
        assert mAP == pytest.approx(1.0)


# ---------------------------------------------------------------- secondary regions

def test_secondary_regions_overlap_the_person_in_the_iou_band():
    person = torch.tensor([[20.0, 10.0, 60.0, 80.0], [100.0, 70.0, 104.0, 74.0]])
    candidates = candidate_regions(person, 128, 96)
    regions, owner = secondary_at_test(person, candidates, (0.2, 0.75))

    def iou(a, b):  # independent of mmdet: areas in continuous coordinates
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    for p in range(2):  # a large and a tiny person: both get regions (the context boxes), all in the band
        mine = regions[owner == p].tolist()
        assert len(mine) >= 2 and all(0.2 <= iou(person[p].tolist(), r) <= 0.75 for r in mine)
    capped, owner = secondary_at_test(person, candidates, (0.2, 0.75), limit=3)
    assert owner.tolist() == [0, 0, 0, 1, 1, 1]


# ---------------------------------------------------------------- bad input

def _build_dataset(cfg_path, voc_root, split_key="val_dataloader"):
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(str(cfg_path))
    init_default_scope("mmdet")
    return DATASETS.build({**cfg[split_key].dataset, "data_root": str(voc_root) + "/", "pipeline": []})


def test_bad_voc_input(voc_root, tmp_path):
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    test_ids = (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text().split()
    first, second = (root / "VOC2007" / "Annotations" / f"{i}.xml" for i in test_ids[:2])
    # a box reaching outside the image is clipped to it (and reported in the log)
    tree = ET.parse(second)
    width = int(tree.find("size/width").text)
    tree.find("object/bndbox/xmax").text = str(width + 50)
    tree.write(second)
    dataset = _build_dataset(DET_CONFIG, root)
    info = next(d for d in map(dataset.get_data_info, range(len(dataset))) if d["xml_path"] == str(second))
    assert info["instances"][0]["bbox"][2] == width - 1
    # a box with nothing inside the image is skipped
    tree.find("object/bndbox/xmin").text = str(width + 10)
    tree.write(second)
    dataset = _build_dataset(DET_CONFIG, root)
    info2 = next(d for d in map(dataset.get_data_info, range(len(dataset))) if d["xml_path"] == str(second))
    assert len(info2["instances"]) == len(info["instances"]) - 1
    # malformed XML: error naming the file
    first.write_text("<annotation><size><width>128</wid")
    with pytest.raises(FastloadError, match=first.name):
        _build_dataset(DET_CONFIG, root)
    # an image listed but missing: error naming the image
    val_id = (root / "VOC2012" / "ImageSets" / "Action" / "val.txt").read_text().split()[3]
    (root / "VOC2012" / "JPEGImages" / f"{val_id}.jpg").unlink()
    with pytest.raises(FastloadError, match=f"{val_id}.jpg"):
        _build_dataset(ACT_CONFIG, root)


def test_action_dataset_reads_people_and_actions(voc_root):
    dataset = _build_dataset(ACT_CONFIG, voc_root)
    ids = (voc_root / "VOC2012" / "ImageSets" / "Action" / "val.txt").read_text().split()
    assert len(dataset) == len(ids) == 10
    for i in (0, 5):
        info = dataset.get_data_info(i)
        xml = ET.parse(voc_root / "VOC2012" / "Annotations" / f"{ids[i]}.xml")
        people = [o for o in xml.findall("object") if o.find("actions") is not None]
        assert [inst["actions"] for inst in info["instances"]] == \
            [[int(p.find(f"actions/{a}").text) for a in VOC_ACTIONS] for p in people]
        assert [inst["bbox"] for inst in info["instances"]] == \
            [[int(p.find(f"bndbox/{k}").text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")] for p in people]


# ---------------------------------------------------------------- end to end

# anchors of 32 and 64 pixels (the real 128-512 ones do not fit inside a 128x96 image); fewer RoIs through fc6
SMALL_ANCHORS = {"model.rpn_head.anchor_generator.scales": [2, 4], "model.test_cfg.rpn.max_per_img": 50,
                 "model.train_cfg.rcnn.sampler.num": 32}


@pytest.mark.slow  # a real fastload transfer run, killed and resumed
def test_detection_runs_end_to_end_and_resumes(voc_root, checkpoints, tmp_path):
    work = tmp_path / "det"
    options = {**_tiny_options(voc_root, iters=2), **SMALL_ANCHORS, "default_hooks.checkpoint.interval": 1,
               "default_hooks.checkpoint.max_keep_ckpts": 2}
    summary = transfer(DET_CONFIG, checkpoints["alexnet_caffe"], work, options, seeds=[0])
    assert summary["metric"] == "pascal_voc/mAP" and 0.0 <= summary["mean"] <= 1.0 and summary["n"] == 1
    result = json.loads((work / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == 2 and result["value"] == result["metrics"]["pascal_voc/mAP"]
    # killed after the checkpoint at iter 1 (no result.json, no iter_2.pth): the same command resumes at iter 1
    (work / "seed_0" / "result.json").unlink()
    (work / "seed_0" / "iter_2.pth").unlink()
    (work / "seed_0" / "last_checkpoint").write_text(str(work / "seed_0" / "iter_1.pth"))
    transfer(DET_CONFIG, checkpoints["alexnet_caffe"], work, options, seeds=[0])
    result = json.loads((work / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == 2
    log = "\n".join(p.read_text() for p in (work / "seed_0").glob("*/*.log"))
    assert "resumed epoch: 0, iter: 1" in log


@pytest.mark.slow  # real fastload transfer runs over two seeds
def test_action_runs_end_to_end_and_summarises_seeds(voc_root, checkpoints, tmp_path):
    work = tmp_path / "act"
    options = {**_tiny_options(voc_root, iters=2), "default_hooks.checkpoint.save_last": False,
               "default_hooks.checkpoint.interval": 1000,  # no 0.5 GB checkpoints in this test
               "model.max_secondary_test": 16}
    # seed 1 finished earlier from the same inputs (its result is on disk): only seed 0 runs, the summary covers both
    (work / "seed_1").mkdir(parents=True)
    inputs = run_inputs(load_config(ACT_CONFIG, checkpoints["alexnet_caffe"], work / "seed_1", options, 1),
                        fingerprint_file(checkpoints["alexnet_caffe"]), 1)
    earlier = dict(seed=1, metric="voc_action/mAP", value=0.25, metrics={"voc_action/mAP": 0.25}, inputs=inputs)
    (work / "seed_1" / "result.json").write_text(json.dumps(earlier))
    summary = transfer(ACT_CONFIG, checkpoints["alexnet_caffe"], work, options, seeds=[0, 1])
    assert summary["metric"] == "voc_action/mAP" and summary["n"] == 2
    result = json.loads((work / "seed_0" / "result.json").read_text())
    assert set(result["metrics"]) >= {f"voc_action/AP_{a}" for a in VOC_ACTIONS} and 0.0 <= result["value"] <= 1.0
    assert [r["value"] for r in summary["runs"]] == [result["value"], 0.25]
    assert summary["mean"] == pytest.approx(np.mean([result["value"], 0.25]))
    assert summary["std"] == pytest.approx(np.std([result["value"], 0.25], ddof=1))
    assert json.loads((work / "summary.json").read_text()) == summary
    # a rerun skips both seeds
    assert transfer(ACT_CONFIG, checkpoints["alexnet_caffe"], work, options, seeds=[0, 1]) == summary


def test_cli_reports_a_missing_checkpoint(cli, tmp_path):
    proc = cli("transfer", DET_CONFIG, "--checkpoint", tmp_path / "nope.pt", "--work-dir", tmp_path / "w")
    assert proc.returncode == 1 and "nope.pt" in proc.stderr
    proc = cli("transfer", DET_CONFIG, "--checkpoint", tmp_path / "nope.pt", "--work-dir", tmp_path / "w",
               "--cfg-options", "oops")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr


def test_cfg_options_parse_like_mmengine():
    from fastload.commands.transfer import parse_cfg_options
    assert parse_cfg_options(["data_root=/data/VOCdevkit/", "img_scale=(500,300)", "train_cfg.max_iters=100",
                              "param_scheduler.0.milestones=[50]"]) == {
        "data_root": "/data/VOCdevkit/", "img_scale": (500, 300), "train_cfg.max_iters": 100,
        "param_scheduler.0.milestones": [50]}


@pytest.mark.parametrize("frozen", [False, True])
def test_box_head_frozen_keeps_fc6_fc7_fixed(frozen):
    """bbox_head.frozen (the CPU demo's linear transfer): fc6/fc7 get no gradient and the optimizer leaves them as
    loaded; the new cls/reg layers learn either way."""
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    head = MODELS.build(dict(type="AlexNetBBoxHead", arch="alexnet_caffe", checkpoint="random", frozen=frozen,
                             num_classes=20, dropout=0.0))
    head.init_weights()
    before = [p.detach().clone() for p in head.shared_fcs.parameters()]
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.1)
    cls, reg = head(torch.randn(4, 256, 6, 6))
    (cls.sum() + reg.sum()).backward()
    optimizer.step()
    assert head.fc_cls.weight.grad is not None
    fc_grads = [p.grad for p in head.shared_fcs.parameters()]
    changed = [not torch.equal(b, p) for b, p in zip(before, head.shared_fcs.parameters())]
    if frozen:
        assert all(g is None for g in fc_grads) and not any(changed)
    else:
        assert all(g is not None for g in fc_grads) and all(changed)
