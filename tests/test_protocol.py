"""docs/protocol.md against the shipped configs, and the protocol behaviour that lives in code: R*CNN's primary and
secondary regions, its softmax scoring, py-faster-rcnn's anchors, proposal filter and difficult-only images,
Caffe's ceil-mode pooling, dropout placement per arch, and the new fc8's lr multipliers. Tiny inputs, CPU."""
import ast
import functools
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import fastload.mmdet  # noqa: E402,F401  (registrations)
from fastload.errors import FastloadError  # noqa: E402
from fastload.mmdet import action  # noqa: E402
from fastload.voc import VOC_ACTIONS  # noqa: E402
from fastload.mmdet.action import (ALL_ACTIONS, action_label, candidate_regions,  # noqa: E402
                                   sample_primary, sample_secondary, secondary_at_test)
from fastload.mmdet.backbone import fc6_fc7  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402

PROTOCOL = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


# ---------------------------------------------------------------- the table

def protocol_rows():
    """(config file name, config key, expected value, table line) for every row of docs/protocol.md with a key."""
    rows, config = [], None
    for line in PROTOCOL.read_text().splitlines():
        heading = re.match(r"#+ .*`transfer/([^`]+\.py)`", line)
        if heading:
            config = heading.group(1)
        elif line.startswith("## "):
            config = None
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if config is None or len(cells) != 5 or not cells[3].startswith("`"):
            continue
        key_cell, value_cell = cells[3], cells[2]
        literals = re.findall(r"`([^`]+)`", key_cell)
        key = literals[0]
        value = literals[1] if " = " in key_cell else re.findall(r"`([^`]+)`", value_cell)[0]
        rows.append((config, key, ast.literal_eval(value), line))
    return rows


def config_value(cfg, key: str):
    """cfg at a dotted key; list items by number, keys holding dots as ['a.b']."""
    node = cfg
    for name, quoted in re.findall(r"([^.\[\]]+)|\['([^']+)'\]", key):
        part = quoted or name
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node


def plain(value):
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


ROWS = protocol_rows()


def test_the_table_covers_every_task():
    configs = {r[0] for r in ROWS}
    assert configs == {"faster-rcnn_alexnet-caffe_70k_voc07.py", "faster-rcnn_alexnet-caffe_70k-1img_voc07.py",
                       "rstarcnn_alexnet-caffe_70k_voc12-action.py", "alexnet-caffe_50k_sun397.py"}
    assert len(ROWS) >= 70


@functools.lru_cache(maxsize=None)
def load(config: str):
    return Config.fromfile(str(TRANSFER_CONFIGS_DIR / config))


@pytest.mark.parametrize("config,key,expected,line", ROWS, ids=[f"{r[0][:12]}:{r[1]}" for r in ROWS])
def test_protocol_table_matches_the_config(config, key, expected, line):
    assert plain(config_value(load(config), key)) == plain(expected), line


@pytest.mark.parametrize("caffe,tv", [
    ("faster-rcnn_alexnet-caffe_70k_voc07.py", "faster-rcnn_alexnet-tv_70k_voc07.py"),
    ("rstarcnn_alexnet-caffe_70k_voc12-action.py", "rstarcnn_alexnet-tv_70k_voc12-action.py"),
    ("alexnet-caffe_50k_sun397.py", "alexnet-tv_50k_sun397.py")])
def test_tv_configs_differ_only_in_arch(caffe, tv):
    def flat(node, prefix=""):
        if isinstance(node, dict):
            return {k: v for key, val in node.items() for k, v in flat(val, f"{prefix}{key}.").items()}
        return {prefix[:-1]: plain(node)}
    a = flat(Config.fromfile(str(TRANSFER_CONFIGS_DIR / caffe)).to_dict())
    b = flat(Config.fromfile(str(TRANSFER_CONFIGS_DIR / tv)).to_dict())
    differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert differ and all(k == "arch" or k.endswith(".arch") for k in differ), differ
    assert {b[k] for k in differ} == {"alexnet_tv"}


# ---------------------------------------------------------------- R*CNN regions

def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_primary_regions_are_proposals_on_a_person_labelled_by_it():
    torch.manual_seed(0)
    person = torch.tensor([[10.0, 10.0, 50.0, 90.0], [70.0, 20.0, 120.0, 80.0]])
    boxes = torch.cat([person, candidate_regions(person, 128, 96)])
    fg, owner = sample_primary(person, boxes, 0.5, 1000)
    best = [max(range(2), key=lambda p: iou(b, person[p].tolist())) for b in boxes.tolist()]
    expected = [i for i, b in enumerate(boxes.tolist()) if max(iou(b, p) for p in person.tolist()) >= 0.5]
    assert sorted(fg.tolist()) == expected and {0, 1} <= set(expected) and len(expected) > 2  # gt + proposals
    assert owner.tolist() == [best[i] for i in fg.tolist()]
    few, _ = sample_primary(person, boxes, 0.5, 3)  # at most `limit`, without replacement
    assert len(few) == 3 == len(set(few.tolist())) and set(few.tolist()) <= set(expected)


def test_secondary_regions_fill_up_with_replacement_and_drop_empty_primaries():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0],      # the primary
                          [20.0, 0.0, 60.0, 40.0],     # IoU 1/3 with it: in the band
                          [0.0, 0.0, 40.0, 20.0],      # IoU 1/2: in the band
                          [100.0, 100.0, 140.0, 140.0]])  # far: out
    chosen, kept = sample_secondary(boxes[:1], boxes, (0.2, 0.75), 10)
    assert kept.tolist() == [True] and chosen.shape == (1, 10) and set(chosen[0].tolist()) == {1, 2}
    many = torch.cat([boxes[:1], boxes[1:3].repeat(8, 1)])  # 16 in the band: 10 distinct ones
    chosen, _ = sample_secondary(many[:1], many, (0.2, 0.75), 10)
    assert len(set(chosen[0].tolist())) == 10
    chosen, kept = sample_secondary(boxes[3:], boxes, (0.2, 0.75), 10)  # nothing in the band: dropped
    assert kept.tolist() == [False] and chosen.shape == (0, 10)


def test_a_persons_class_is_its_first_action_or_other():
    flags = [0] * len(ALL_ACTIONS)
    assert action_label(flags) == ALL_ACTIONS.index("other")
    flags[VOC_ACTIONS.index("reading")] = flags[VOC_ACTIONS.index("walking")] = 1
    assert action_label(flags) == VOC_ACTIONS.index("reading")


@pytest.fixture(scope="module")
def rstarcnn():
    """The shipped R*CNN model with random weights and no dropout (so that scores can be recomputed)."""
    from mmdet.registry import MODELS
    cfg = load("rstarcnn_alexnet-caffe_70k_voc12-action.py")
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build({**cfg.model, "checkpoint": "random", "dropout": 0.0,
                          "backbone": {**cfg.model.backbone, "checkpoint": "random"}})
    model.init_weights()
    return model


def _sample(boxes, labels, width=128, height=96):
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), scale_factor=(1.0, 1.0)))
    flags = torch.nn.functional.one_hot(torch.tensor(labels), len(ALL_ACTIONS))[:, :len(VOC_ACTIONS)].float()
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes), action_labels=torch.tensor(labels),
                                       actions=flags)
    return sample


def test_rstarcnn_scores_people_by_the_softmax_with_or_without_secondary_regions(rstarcnn, monkeypatch):
    torch.manual_seed(0)
    model = rstarcnn.eval()
    candidates = torch.tensor([[10.0, 10.0, 50.0, 40.0], [20.0, 20.0, 70.0, 60.0], [0.0, 0.0, 127.0, 95.0]])
    monkeypatch.setattr(action, "candidate_regions", lambda person, w, h: candidates)
    person = [[10.0, 10.0, 50.0, 60.0], [100.0, 70.0, 120.0, 90.0]]  # the second has no candidate in the band
    sample = _sample(person, [2, 10])
    inputs = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        scores = model.predict(inputs, [sample])[0].pred_instances.action_scores
        feats = model.extract_feat(inputs)
        primary = model.primary_cls(model._region_features(feats, [torch.tensor(person)]))
        band = [i for i, c in enumerate(candidates.tolist()) if 0.2 <= iou(person[0], c) <= 0.75]
        assert band == [0, 1]
        secondary = model.secondary_cls(model._region_features(feats, [candidates[band]])).max(dim=0).values
    expected = torch.stack([(primary[0] + secondary).softmax(0), primary[1].softmax(0)])[:, :len(VOC_ACTIONS)]
    assert scores.shape == (2, len(VOC_ACTIONS)) and torch.allclose(scores, expected, atol=1e-6)
    assert bool((scores.sum(dim=1) < 1).all())  # 'other' holds the rest of the probability


def test_rstarcnn_training_loss_is_softmax_plus_box_regression(rstarcnn, monkeypatch):
    torch.manual_seed(0)
    model = rstarcnn.train()
    model.zero_grad()
    seen = {}
    real = action.sample_secondary

    def spy(primary, boxes, iou_range, num):
        chosen, kept = real(primary, boxes, iou_range, num)
        seen.setdefault("primaries", []).append(len(primary))
        seen.setdefault("kept", []).append(int(kept.sum()))
        return chosen, kept
    monkeypatch.setattr(action, "sample_secondary", spy)
    samples = [_sample([[10.0, 10.0, 60.0, 80.0]], [3]), _sample([[40.0, 20.0, 100.0, 90.0]], [10])]
    losses = model.loss(torch.rand(2, 3, 96, 128), samples)
    assert set(losses) == {"loss_action", "loss_bbox"}
    assert all(1 <= n <= 15 for n in seen["primaries"]) and sum(seen["kept"]) >= 2
    # an untrained 11-way softmax: cross-entropy near log(11)
    assert abs(losses["loss_action"].item() - torch.log(torch.tensor(11.0)).item()) < 0.5
    assert losses["loss_bbox"].item() >= 0
    sum(losses.values()).backward()
    assert model.bbox_pred.weight.grad.abs().sum() > 0 and model.secondary_cls.weight.grad.abs().sum() > 0


def test_person_without_secondary_regions_is_dropped_from_training(rstarcnn, monkeypatch):
    model = rstarcnn.train()
    monkeypatch.setattr(action, "candidate_regions", lambda person, w, h: person.new_zeros((0, 4)))
    losses = model.loss(torch.rand(1, 3, 96, 128), [_sample([[10.0, 10.0, 60.0, 80.0]], [3])])
    assert losses["loss_action"].item() == 0.0 and losses["loss_action"].requires_grad


def test_secondary_regions_at_test_are_all_in_the_band():
    person = torch.tensor([[20.0, 10.0, 60.0, 80.0]])
    candidates = candidate_regions(person, 128, 96)
    regions, owner = secondary_at_test(person, candidates, (0.2, 0.75))
    expected = [c for c in candidates.tolist() if 0.2 <= iou(person[0].tolist(), c) <= 0.75]
    assert regions.tolist() == expected and owner.tolist() == [0] * len(expected) and len(expected) > 16


# ---------------------------------------------------------------- PASCAL-DET details

def test_anchors_are_py_faster_rcnns():
    from mmdet.registry import TASK_UTILS
    generator = TASK_UTILS.build(dict(type="PyFasterRCNNAnchorGenerator", scales=[8, 16, 32],
                                      ratios=[0.5, 1.0, 2.0], strides=[16], center_offset=0.5))
    # py-faster-rcnn lib/rpn/generate_anchors.py generate_anchors(), printed by running it
    expected = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199], [-56, -56, 71, 71],
                [-120, -120, 135, 135], [-248, -248, 263, 263], [-36, -80, 51, 95], [-80, -168, 95, 183],
                [-168, -344, 183, 359]]
    assert generator.base_anchors[0].tolist() == expected
    grid = generator.grid_priors([(2, 3)], device="cpu")[0]
    assert grid[9].tolist() == [e + d for e, d in zip(expected[0], (16, 0, 16, 0))]  # next cell: 16 px right


def test_proposals_below_16_original_pixels_are_dropped():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(TRANSFER_CONFIGS_DIR / "faster-rcnn_alexnet-caffe_70k_voc07.py"))
    init_default_scope("mmdet")
    head = MODELS.build({**cfg.model.rpn_head, "train_cfg": cfg.model.train_cfg.rpn,
                         "test_cfg": cfg.model.test_cfg.rpn})
    # resized by 2: 16 original pixels are 32 input pixels, inclusive (x2 - x1 + 1)
    boxes = torch.tensor([[0.0, 0.0, 31.0, 31.0], [100.0, 0.0, 130.0, 40.0], [0.0, 100.0, 60.0, 160.0]])
    results = InstanceData(bboxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7]), level_ids=torch.zeros(3).long())
    kept = head._bbox_post_process(results, cfg.model.test_cfg.rpn, img_meta=dict(scale_factor=(2.0, 2.0)))
    assert sorted(kept.bboxes[:, 0].tolist()) == [0.0, 0.0]  # the 31-pixel-wide box is gone


def write_tiny_voc07(root, difficult: list) -> list:
    """VOC2007 with one 64x48 image per entry of `difficult`, each holding one dog (difficult or not)."""
    from PIL import Image
    year = root / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(len(difficult))]
    for img_id, hard in zip(ids, difficult):
        Image.new("RGB", (64, 48), (90, 120, 150)).save(year / "JPEGImages" / f"{img_id}.jpg")
        (year / "Annotations" / f"{img_id}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size><object><name>dog"
            f"</name><difficult>{int(hard)}</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>40</xmax>"
            "<ymax>40</ymax></bndbox></object></annotation>")
    for split in ("trainval", "test"):
        (year / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return ids


def test_training_images_with_only_difficult_objects_are_dropped(tmp_path):
    from mmdet.registry import DATASETS
    ids = write_tiny_voc07(tmp_path, [False, True, False])
    cfg = load("faster-rcnn_alexnet-caffe_70k_voc07.py")
    init_default_scope("mmdet")
    dataset = {**cfg.train_dataloader.dataset, "data_root": str(tmp_path) + "/", "pipeline": []}
    train = DATASETS.build(dataset)
    assert [train.get_data_info(i)["img_id"] for i in range(len(train))] == [ids[0], ids[2]]
    # evaluation keeps every listed image (the metric ignores difficult objects itself)
    assert len(DATASETS.build({**dataset, "test_mode": True})) == 3
    write_tiny_voc07(tmp_path / "all_difficult", [True])
    with pytest.raises(FastloadError, match="no training image has an object that is not difficult"):
        DATASETS.build({**dataset, "data_root": str(tmp_path / "all_difficult") + "/"})


def test_caffe_pooling_rounds_up_at_detection_sizes():
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    caffe = MODELS.build(dict(type="FastloadAlexNet", arch="alexnet_caffe", checkpoint="random"))
    with torch.no_grad():
        pool1 = caffe.trunk[:4](torch.zeros(1, 3, 600, 1000))
    assert pool1.shape[-2:] == (74, 124)  # floor mode: 73 x 123
    tv = MODELS.build(dict(type="FastloadAlexNet", arch="alexnet_tv", checkpoint="random"))
    assert not any(getattr(m, "ceil_mode", False) for m in tv.trunk)  # torchvision's floor mode


@pytest.mark.parametrize("arch,first_width", [("alexnet_caffe", 4096), ("alexnet_tv", 9216)])
def test_dropout_sits_where_the_arch_was_pre_trained(arch, first_width):
    widths = []

    class Record(torch.nn.Module):
        def forward(self, x):
            widths.append(x.shape[1])
            return x
    fc6, fc7 = torch.nn.Linear(9216, 4096), torch.nn.Linear(4096, 4096)
    fc6_fc7(torch.zeros(2, 9216), fc6, fc7, Record(), arch)
    assert widths == [first_width, 4096]  # tv: before fc6 and fc7; caffe: after each


# ---------------------------------------------------------------- SUN-CLS fc8

@pytest.mark.parametrize("config", ["alexnet-caffe_50k_sun397.py", "alexnet-tv_50k_sun397.py"])
def test_new_fc8_learns_at_10x_and_its_bias_at_20x(config):
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(str(TRANSFER_CONFIGS_DIR / config))
    init_default_scope("mmdet")
    model = MODELS.build({**cfg.model, "checkpoint": "random"})
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g["params"][0])]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    lr, wd = 0.001, 0.0005
    assert groups["fc8.weight"] == pytest.approx((10 * lr, wd))
    assert groups["fc8.bias"] == pytest.approx((20 * lr, 0.0))
    conv1 = "net.conv1" if "caffe" in config else "net.features.0"
    assert groups[f"{conv1}.weight"] == pytest.approx((lr, wd))
    assert groups[f"{conv1}.bias"] == pytest.approx((2 * lr, 0.0))
    assert sum(1 for n in groups if n.startswith("fc8")) == 2 and len(groups) == 16  # conv1-5, fc6, fc7, fc8


def test_a_sun_data_root_without_partitions_names_what_it_must_hold(tmp_path):
    from fastload.transfer import load_config
    (tmp_path / "SUN397" / "a").mkdir(parents=True)  # the images, but no Partitions/ beside them
    with pytest.raises(FastloadError, match=r"has no Partitions/: data_root must be the folder that holds SUN397/"):
        load_config(TRANSFER_CONFIGS_DIR / "alexnet-caffe_50k_sun397.py", None, tmp_path / "w",
                    {"data_root": str(tmp_path)})
    with pytest.raises(FastloadError, match=r"has no SUN397, Partitions/"):  # the README's old mistake
        load_config(TRANSFER_CONFIGS_DIR / "alexnet-caffe_50k_sun397.py", None, tmp_path / "w",
                    {"data_root": str(tmp_path / "SUN397")})
