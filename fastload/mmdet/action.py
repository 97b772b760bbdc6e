"""PASCAL VOC 2012 action classification, R*CNN (Gkioxari, Girshick, Malik 2015), on a pre-trained AlexNet.

Follows R*CNN's release (github.com/gkioxari/RstarCNN; lib/roi_data_layer/minibatch.py, lib/fast_rcnn/test.py,
lib/datasets/pascal_voc.py, models/VGG16_RstarCNN/train.prototxt); docs/protocol.md lists every setting.

- `VOCActionDataset`: the people of ImageSets/Action/<split>.txt, each with its box, its 10 action flags (what the
  devkit scores) and one class label for the softmax: the first of the 11 classes (10 actions, then 'other') that
  is flagged, as pascal_voc.py `_load_pascal_annotation` picks it; 'other' when none is.
- `RStarCNN`: score(a; r) = w_a . phi(r) + max over secondary regions s of v_a . phi(s), phi = conv5 -> RoI pool 6x6
  -> fc6 -> fc7 of the pre-trained AlexNet (fc6/fc7 shared by both terms), an 11-way softmax with cross-entropy,
  plus a class-specific box regressor on the primary regions as an auxiliary loss (training only).
  On a pre-trained ResNet-18/50 (`arch` 'resnet18'/'resnet50'), phi is the "C4" split of He et al. 2016 (Deep
  Residual Learning, appendix A; mmdet's faster-rcnn_r50-caffe-c4): trunk conv1..layer3 (conv4_x, stride 16,
  `FastloadResNetC4`) on the whole image -> RoI pool 14x14 -> layer4 (conv5_x) + global average pool per region
  (`ResNetRes5Head`, with the backbone's BlurPool and BatchNorm settings), in place of conv1..5 + fc6/fc7;
  BatchNorm frozen at its pre-trained statistics, as He et al. fine-tune. Everything else (regions, scoring,
  losses, box regressor) is the same code.
  Training: up to 15 primary regions per image, drawn from the person boxes and the region candidates with IoU
  >= 0.5 to a person (each takes that person's label); for each, 10 secondary regions among the boxes whose IoU
  with it lies in [0.2, 0.75], with replacement when fewer; a primary region with none is dropped.
  Test: every person box; its secondary regions are all candidates in the IoU band with it; a person with none is
  scored by the primary term alone; the scores are the softmax probabilities of the 10 actions.
  Region candidates: R*CNN used selective search, which cannot be had offline. We use a fixed image-wide multi-scale
  grid of boxes plus context boxes around each person (`candidate_regions`), both as primary-region proposals and as
  secondary regions: nothing to install, deterministic at test time.
- `VOCActionMetric`: AP per action as VOCevalaction.m computes it (the area under the monotone precision envelope,
  the VOC2010+ 'area' AP, not 11-point), and their mean.
"""
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.datasets.base_det_dataset import BaseDetDataset
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import nn

from ..errors import FastloadError, UsageError
from ..models.checkpoint import blurpool_to_build
from ..models.networks import NETWORKS, archs_of
from ..models.resnet import build_resnet
from ..voc import OTHER_ACTION, VOC_ACTIONS
from .backbone import _require_checkpoint, fc6_fc7, load_pretrained_layers
from .resnet import load_resnet_weights
from .voc import check_image, parse_xml, read_box, read_image_list, read_size, report_problems

ALL_ACTIONS = VOC_ACTIONS + (OTHER_ACTION,)  # R*CNN's 11 softmax classes: the 10 scored actions, then 'other'


# ---------------------------------------------------------------- metric

def voc_ap(recall, precision) -> float:
    """VOCap.m: area under the precision envelope (precision made non-increasing from the right)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def action_ap(scores, gt) -> float:
    """VOCevalaction.m for one action: gt is +1 (positive), -1 (negative) or 0 (ignored) per person."""
    scores, gt = np.asarray(scores, dtype=np.float64), np.asarray(gt)
    if scores.shape != gt.shape or scores.ndim != 1:
        raise UsageError(f"scores {scores.shape} and gt {gt.shape} must be equal-length vectors")
    num_pos = int(np.sum(gt > 0))
    if num_pos == 0:
        raise FastloadError("no positive example for this action: its AP is undefined")
    order = np.argsort(-scores, kind="stable")  # MATLAB's sort is stable too
    tp = np.cumsum(gt[order] > 0)
    fp = np.cumsum(gt[order] < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    return voc_ap(tp / num_pos, precision)


@METRICS.register_module()
class VOCActionMetric(BaseMetric):
    """Mean over the 10 VOC actions of the devkit AP ('area'), from per-person action scores.

    Reads `pred_instances.action_scores` (N, 10) and `gt_instances.actions` (N, 10, 1 = does the action) of each
    data sample. Reports `voc_action/mAP` and `voc_action/AP_<action>` as fractions in [0, 1] (like VOCMetric).
    Actions without a positive example in the evaluated set are left out of the mean and named in the log.
    """
    default_prefix = "voc_action"

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            scores = sample["pred_instances"]["action_scores"].cpu().numpy()
            labels = sample["gt_instances"]["actions"].cpu().numpy()
            if scores.shape != labels.shape:
                raise FastloadError(f"image {sample.get('img_path')}: {scores.shape} scores for {labels.shape} "
                                    "labels: the model must score every annotated person")
            self.results.append((scores, labels))

    def compute_metrics(self, results: list) -> dict:
        scores = np.concatenate([r[0] for r in results]).reshape(-1, len(VOC_ACTIONS))
        labels = np.concatenate([r[1] for r in results]).reshape(-1, len(VOC_ACTIONS))
        out, aps, absent = {}, [], []
        for k, action in enumerate(VOC_ACTIONS):
            gt = np.where(labels[:, k] > 0, 1, -1)
            if not np.any(gt > 0):
                absent.append(action)
                continue
            ap = action_ap(scores[:, k], gt)
            out[f"AP_{action}"] = ap
            aps.append(ap)
        if absent:
            MMLogger.get_current_instance().warning(
                f"VOCActionMetric: no positive person for {', '.join(absent)} among {len(labels)}: left out")
        if not aps:
            raise FastloadError(f"VOCActionMetric: none of the {len(labels)} evaluated people has an action label")
        return {"mAP": float(np.mean(aps)), **out}


# ---------------------------------------------------------------- data

@DATASETS.register_module()
class VOCActionDataset(BaseDetDataset):
    """The people of a VOC2012 ImageSets/Action list, with their action labels.

    ann_file: e.g. 'VOC2012/ImageSets/Action/train.txt' (relative to data_root); lines 'IMAGE_ID' (every person
    with <actions> in that image) or 'IMAGE_ID OBJECT_INDEX' (that 1-based object only). data_prefix
    sub_data_root: 'VOC2012/'. Each instance: bbox (0-based x1y1x2y2), bbox_label 0 (person), actions (10 ints 0/1,
    the devkit's ground truth), action_label (0..10, the softmax class: see `action_label`), object_index. Bad input
    follows fastload.mmdet.voc's policy (errors naming the file; boxes clipped/skipped).
    """
    METAINFO = {"classes": ("person",), "actions": VOC_ACTIONS}

    def load_data_list(self) -> list:
        root = self.data_prefix.get("sub_data_root", "")
        problems, selected = [], {}
        for img_id, obj in read_image_list(self.ann_file):
            chosen = selected.setdefault(img_id, set())
            if obj is not None:
                chosen.add(obj)
        data_list = []
        for img_id, chosen in selected.items():
            info = self._parse_image(root, img_id, chosen, problems)
            if info["instances"]:
                data_list.append(info)
            else:
                problems.append(f"{info['xml_path']}: no person with <actions> left: image skipped")
        report_problems(problems, f"{self.ann_file} ({len(selected)} images)")
        if not data_list:
            raise FastloadError(f"{self.ann_file}: no annotated person in any listed image")
        return data_list

    def _parse_image(self, root, img_id, chosen, problems) -> dict:
        img_path = osp.join(root, "JPEGImages", f"{img_id}.jpg")
        xml_path = osp.join(root, "Annotations", f"{img_id}.xml")
        check_image(img_path, self.ann_file)
        xml = parse_xml(xml_path)
        width, height = read_size(xml, xml_path, img_path)
        instances = []
        for index, obj in enumerate(xml.findall("object"), 1):
            actions = obj.find("actions")
            if (chosen and index not in chosen) or actions is None:
                continue
            flags = [_action_flag(actions, a, xml_path, index) for a in ALL_ACTIONS]
            box = read_box(obj, xml_path, width, height, index, problems)
            if box is not None:
                instances.append(dict(bbox=box, bbox_label=0, ignore_flag=0, actions=flags[:len(VOC_ACTIONS)],
                                      action_label=action_label(flags), object_index=index))
        missing = sorted(chosen - {inst["object_index"] for inst in instances})
        if missing:
            raise FastloadError(f"{self.ann_file} lists object(s) {missing} of {img_id}, but {xml_path} has no "
                                "usable person with <actions> at that index")
        return dict(img_path=img_path, img_id=img_id, xml_path=xml_path, width=width, height=height,
                    instances=instances)


def action_label(flags) -> int:
    """The one softmax class of a person from its 11 flags (10 actions, then 'other'): the first flagged, as R*CNN's
    pascal_voc.py picks it (a person doing several actions trains on the first); 'other' when none is flagged."""
    return next((k for k, flag in enumerate(flags) if flag), len(ALL_ACTIONS) - 1)


def _action_flag(actions, name, xml_path, index) -> int:
    node = actions.find(name)
    if node is None:  # VOC2011+ files always list every action; older or hand-made files may omit zeros
        return 0
    text = (node.text or "").strip()
    if text not in ("0", "1"):
        raise FastloadError(f"malformed annotation {xml_path}: object {index} <{name}> is {text!r}, expected 0/1")
    return int(text)


@TRANSFORMS.register_module()
class LoadActionAnnotations(LoadAnnotations):
    """LoadAnnotations(with_bbox=True) that also loads, for the people, `gt_actions` (N, 10) float32 (the devkit's
    flags) and `gt_action_labels` (N,) int64 (the softmax class)."""

    def __init__(self, **kwargs):
        super().__init__(with_bbox=True, with_label=False, **kwargs)

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        actions = [inst["actions"] for inst in results.get("instances", [])]
        results["gt_actions"] = np.asarray(actions, dtype=np.float32).reshape(-1, len(VOC_ACTIONS))
        labels = [inst["action_label"] for inst in results.get("instances", [])]
        results["gt_action_labels"] = np.asarray(labels, dtype=np.int64)
        return results


@TRANSFORMS.register_module()
class PackActionInputs(PackDetInputs):
    """PackDetInputs that also packs `gt_actions` and `gt_action_labels` as gt_instances.actions / .action_labels."""
    mapping_table = {**PackDetInputs.mapping_table, "gt_actions": "actions", "gt_action_labels": "action_labels"}


# ---------------------------------------------------------------- regions

def candidate_regions(person: torch.Tensor, width: int, height: int,
                      scales=(0.15, 0.25, 0.4, 0.6, 0.8), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """Region candidates for one image (our stand-in for selective search): a sliding grid of boxes (sides
    `scale` x the shorter image side, aspect ratios `ratios`, stride half a side) plus, for every person box, the
    box grown 1.5x and 2x about its centre and shifted by half its width/height in the four directions. Clipped to
    the image; (M, 4) x1y1x2y2."""
    device = person.device
    short = min(width, height)
    boxes = []
    for scale in scales:
        for ratio in ratios:
            w, h = short * scale * ratio ** 0.5, short * scale / ratio ** 0.5
            xs = torch.arange(0.0, max(width - w, 0.0) + 1, max(w / 2, 1.0), device=device)
            ys = torch.arange(0.0, max(height - h, 0.0) + 1, max(h / 2, 1.0), device=device)
            gx, gy = torch.meshgrid(xs, ys, indexing="ij")
            boxes.append(torch.stack([gx, gy, gx + w, gy + h], -1).reshape(-1, 4))
    cx, cy = (person[:, 0] + person[:, 2]) / 2, (person[:, 1] + person[:, 3]) / 2
    pw, ph = person[:, 2] - person[:, 0], person[:, 3] - person[:, 1]
    for grow in (1.5, 2.0):
        boxes.append(torch.stack([cx - grow * pw / 2, cy - grow * ph / 2, cx + grow * pw / 2, cy + grow * ph / 2], 1))
    for dx, dy in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)):
        boxes.append(person + torch.stack([dx * pw, dy * ph, dx * pw, dy * ph], 1))
    boxes = torch.cat(boxes)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
    return boxes[(boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)]


def in_band(iou: torch.Tensor, iou_range) -> torch.Tensor:
    """Mask of IoUs inside the secondary-region band, both ends included (R*CNN's >= IOU_LB and <= IOU_UB)."""
    return (iou >= iou_range[0]) & (iou <= iou_range[1])


def sample_primary(person, boxes, fg_iou: float, limit: int):
    """R*CNN's primary regions of one training image (roi_data_layer/minibatch.py `_sample_rois`): the boxes
    (ground truth first, then candidates) with IoU >= fg_iou to some person, `limit` of them drawn without
    replacement (all when fewer). Returns (indices into boxes, owner: the index of the person each overlaps most,
    whose action label and box it takes)."""
    best_iou, owner = bbox_overlaps(boxes, person).max(dim=1)
    fg = torch.nonzero(best_iou >= fg_iou).flatten()
    if len(fg) > limit:
        fg = fg[torch.randperm(len(fg), device=fg.device)[:limit]]
    return fg, owner[fg]


def sample_secondary(primary, boxes, iou_range, num: int):
    """R*CNN's secondary regions for each training primary region: `num` of the boxes whose IoU with that region
    lies in the band, drawn without replacement when more are there and with replacement when fewer (even 1).
    Returns (indices (K, num) into boxes, kept: mask over the primaries; a primary with none in the band is
    dropped, as minibatch.py does)."""
    band = in_band(bbox_overlaps(primary, boxes), iou_range)  # (K, M)
    chosen, kept = [], []
    for row in band:
        idx = torch.nonzero(row).flatten()
        kept.append(len(idx) > 0)
        if len(idx) > num:
            chosen.append(idx[torch.randperm(len(idx), device=idx.device)[:num]])
        elif len(idx) > 0:
            chosen.append(idx[torch.randint(len(idx), (num,), device=idx.device)])
    kept = torch.tensor(kept, dtype=torch.bool, device=boxes.device)
    if not chosen:
        return boxes.new_zeros((0, num), dtype=torch.long), kept
    return torch.stack(chosen), kept


def secondary_at_test(person, candidates, iou_range, limit=None):
    """Secondary regions of each person at test time (R*CNN's test.py `im_detect`): every candidate in the band
    (the first `limit` when a limit is set). Returns (regions (M, 4), owner (M,)); a person may own none."""
    band = in_band(bbox_overlaps(person, candidates), iou_range)
    regions, owners = [], []
    for p, row in enumerate(band):
        idx = torch.nonzero(row).flatten()
        if limit is not None:
            idx = idx[:limit]
        regions.append(candidates[idx])
        owners.append(torch.full((len(idx),), p, dtype=torch.long, device=person.device))
    return torch.cat(regions), torch.cat(owners)


def encode_deltas(rois, gt, stds) -> torch.Tensor:
    """Fast R-CNN's box-regression targets (roi_data_layer/roidb.py `_compute_targets`: centre offsets over the
    RoI's size, log size ratios), divided by `stds`."""
    rw, rh = rois[:, 2] - rois[:, 0] + 1e-14, rois[:, 3] - rois[:, 1] + 1e-14
    gw, gh = gt[:, 2] - gt[:, 0] + 1e-14, gt[:, 3] - gt[:, 1] + 1e-14
    deltas = torch.stack([(gt[:, 0] + 0.5 * gw - rois[:, 0] - 0.5 * rw) / rw,
                          (gt[:, 1] + 0.5 * gh - rois[:, 1] - 0.5 * rh) / rh,
                          torch.log(gw / rw), torch.log(gh / rh)], 1)
    return deltas / deltas.new_tensor(stds)


# ---------------------------------------------------------------- ResNet trunk and region head ("C4")

# torchvision ResNet children on each side of the C4 split (He et al. 2016, appendix A: "RoI pooling is performed
# before conv5_1"): the trunk runs on the whole image (stride 16), conv5_x runs on each RoI-pooled region
RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
RESNET_RES5 = ("layer4",)
# what frozen_stages = k freezes, as mmdet's ResNet counts: the stem, then layer1 .. layer<k> (-1: nothing)
RESNET_STEM, RESNET_STAGES = ("conv1", "bn1"), ("layer1", "layer2", "layer3")


class ResNetPart(BaseModule):
    """Some top-level children of torchvision's ResNet `arch` (fastload.models.resnet), under torchvision's own names,
    so that a fastload checkpoint's keys are theirs; init_weights copies them strictly (fastload.mmdet.resnet
    `load_resnet_weights`: a checkpoint of another network, a missing or mis-shaped key, or a BlurPool setting other
    than the checkpoint's is a FastloadError naming the checkpoint). 'random' keeps torchvision's initialisation.

    blurpool: build with fastload's BlurPool; None (the default): as the checkpoint records it (its recipe's
    `blurpool`: the blur is not in the state dict, so it is read when the network is built); True/False: as set,
    checked against the checkpoint.
    norm_eval: every BatchNorm keeps the pre-trained statistics (eval mode, also while training) and its affine
    weights fixed: He et al. 2016 (appendix A) fix BN when fine-tuning for detection, as mmdet's C4 recipe does
    (norm_eval=True, norm_cfg requires_grad=False).
    """

    def __init__(self, arch: str, checkpoint, children: tuple, owner: str, blurpool=None,
                 norm_eval: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch not in archs_of("resnet"):
            raise UsageError(f"{owner}: unknown ResNet '{arch}': choose one of {', '.join(archs_of('resnet'))}")
        self.arch, self.checkpoint, self.owner = arch, checkpoint, owner
        self.blurpool, self.norm_eval = blurpool_to_build(blurpool, checkpoint), bool(norm_eval)
        net = build_resnet(arch, num_classes=1, blurpool=self.blurpool)
        self.res5_channels = net.fc.in_features  # 512 (BasicBlock) / 2048 (Bottleneck); layer3 has half
        for name in children:
            self.add_module(name, getattr(net, name))
        if self.norm_eval:
            for module in self._batchnorms():
                module.requires_grad_(False)

    def _batchnorms(self):
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.norm_eval:
            for module in self._batchnorms():
                module.eval()
        return self

    def init_weights(self):
        super().init_weights()
        checkpoint = _require_checkpoint(self.checkpoint, self.owner)
        if checkpoint is not None:
            load_resnet_weights(self, checkpoint, self.arch, self.owner)


@MODELS.register_module()
class FastloadResNetC4(ResNetPart):
    """conv1 .. layer3 (conv4_x) of a pre-trained torchvision ResNet-18/50 as a single-level detection backbone:
    stride 16, 256 (ResNet-18) / 1024 (ResNet-50) channels; the trunk of the C4 split.

    Args:
        arch (str): 'resnet18' or 'resnet50'; must match the checkpoint's.
        checkpoint (str | None): a fastload ResNet checkpoint (RUN/last.pt), or 'random'; None (filled in by
            `fastload transfer --checkpoint`) is an error when the weights are initialised. Defaults to None.
        blurpool (bool | None): fastload's BlurPool; None: as the checkpoint records it; True/False: as set
            (checked against the checkpoint). The region head takes the same. Defaults to None.
        frozen_stages (int): stages kept fixed, counted as mmdet's ResNet counts them: -1 none, 0 the stem (conv1,
            bn1), 1 the stem and layer1 (mmdet's C4 default, Detectron's FREEZE_AT 2), ... 3 the whole trunk.
            Defaults to 1.
        norm_eval (bool): BatchNorm frozen at its pre-trained statistics (see `ResNetPart`). Defaults to True.
    """

    def __init__(self, arch: str = "resnet50", checkpoint=None, blurpool=None, frozen_stages: int = 1,
                 norm_eval: bool = True, init_cfg=None):
        super().__init__(arch, checkpoint, RESNET_TRUNK, "FastloadResNetC4 backbone", blurpool, norm_eval, init_cfg)
        if not -1 <= int(frozen_stages) <= len(RESNET_STAGES):
            raise UsageError(f"frozen_stages must be -1..{len(RESNET_STAGES)}, got {frozen_stages}")
        self.frozen_stages = int(frozen_stages)
        self.out_channels = self.res5_channels // 2
        frozen = (RESNET_STEM + RESNET_STAGES[:self.frozen_stages]) if self.frozen_stages >= 0 else ()
        for name in frozen:
            getattr(self, name).requires_grad_(False)

    def forward(self, x):
        for name in RESNET_TRUNK:
            x = getattr(self, name)(x)
        return (x,)


class ResNetRes5Head(ResNetPart):
    """layer4 (conv5_x) of a pre-trained torchvision ResNet-18/50, then global average pooling: the per-region head
    of the C4 split (mmdet's ResLayer shared head + BBoxHead with_avg_pool). (N, C, 14, 14) RoI features -> layer4
    (stride 2, 7x7) -> (N, 512) for ResNet-18, (N, 2048) for ResNet-50. Arguments as `ResNetPart`."""

    def __init__(self, arch: str, checkpoint=None, blurpool=None, norm_eval: bool = True,
                 owner: str = "ResNetRes5Head"):
        super().__init__(arch, checkpoint, RESNET_RES5, owner, blurpool, norm_eval)
        self.out_channels = self.res5_channels

    def forward(self, x):
        return self.layer4(x).mean(dim=(2, 3))


def region_head_network(arch: str):
    """The per-region head's network record: an AlexNet (fc6/fc7) or a ResNet (conv5_x)."""
    if arch in NETWORKS:
        return NETWORKS[arch]
    raise UsageError(f"unknown arch '{arch}' for the R*CNN region head: choose one of {', '.join(NETWORKS)}")


# ---------------------------------------------------------------- model

@MODELS.register_module()
class RStarCNN(BaseDetector):
    """R*CNN action classifier (see the module docstring and docs/protocol.md).

    Args:
        backbone (dict): FastloadAlexNet config (conv5, stride 16), or FastloadResNetC4 (layer3, stride 16).
        roi_extractor (dict): RoI extractor config, e.g. TorchvisionRoIExtractor with RoIPool 6x6 (AlexNet) or 14x14
            (ResNet); its out_channels must be the backbone's.
        arch (str): network of the per-region head, the backbone's: 'alexnet_caffe' or 'alexnet_tv' (fc6/fc7), or
            'resnet18' / 'resnet50' (layer4 + global average pool, `ResNetRes5Head`).
        checkpoint (str | None): fastload checkpoint for that head (None is an error at init; 'random' allowed).
        num_classes (int): softmax classes, the 10 actions + 'other'. Defaults to 11.
        fg_iou (float): IoU with a person from which a box is a primary region in training. Defaults to 0.5.
        primary_per_image (int): most primary regions per training image (BATCH_SIZE / IMS_PER_BATCH). Defaults 15.
        iou_range (tuple[float, float]): IoU band of secondary regions (with the primary region). Defaults (0.2, 0.75).
        num_secondary_train (int): secondary regions per primary region in training. Defaults to 10.
        max_secondary_test (int | None): most secondary regions per person at test; None: all. Defaults to None.
        bbox_stds (tuple): divisors of the box-regression targets. Defaults to (0.1, 0.1, 0.2, 0.2).
        loss_bbox_weight (float): weight of the auxiliary box-regression loss. Defaults to 1.0.
        dropout (float): dropout at fc6 and fc7 in training (placed as the arch's pre-training placed it); must be 0
            for a ResNet, which has none.
        data_preprocessor (dict): DetDataPreprocessor config.
    """

    def __init__(self, backbone, roi_extractor, arch="alexnet_caffe", checkpoint=None, num_classes=len(ALL_ACTIONS),
                 fg_iou=0.5, primary_per_image=15, iou_range=(0.2, 0.75), num_secondary_train=10,
                 max_secondary_test=None, bbox_stds=(0.1, 0.1, 0.2, 0.2), loss_bbox_weight=1.0, dropout=0.5,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= iou_range[0] <= iou_range[1] <= 1.0:
            raise UsageError(f"iou_range must satisfy 0 <= low <= high <= 1, got {iou_range}")
        if int(num_classes) != len(ALL_ACTIONS):
            raise UsageError(f"num_classes must be {len(ALL_ACTIONS)} ({', '.join(ALL_ACTIONS)}), got {num_classes}")
        if int(primary_per_image) < 1 or int(num_secondary_train) < 1:
            raise UsageError(f"primary_per_image and num_secondary_train must be >= 1, got {primary_per_image}, "
                             f"{num_secondary_train}")
        self.backbone = MODELS.build(backbone)
        self.roi_extractor = MODELS.build(roi_extractor)
        self.network_record, self.checkpoint = region_head_network(arch), checkpoint
        self.arch = self.network_record.name
        if getattr(self.backbone, "arch", self.arch) != self.arch:  # the head continues the backbone's network
            raise UsageError(f"RStarCNN arch '{self.arch}' (its region head) differs from the backbone's "
                             f"'{self.backbone.arch}'")
        if self.roi_extractor.out_channels != self.backbone.out_channels:
            raise UsageError(f"roi_extractor out_channels {self.roi_extractor.out_channels} must be the backbone's "
                             f"{self.backbone.out_channels} ({self.arch})")
        self.fg_iou, self.primary_per_image = float(fg_iou), int(primary_per_image)
        self.iou_range = tuple(iou_range)
        self.num_secondary_train = int(num_secondary_train)
        self.max_secondary_test = None if max_secondary_test is None else int(max_secondary_test)
        self.bbox_stds, self.loss_bbox_weight = tuple(bbox_stds), float(loss_bbox_weight)
        if self.network_record.family == "resnet":
            if dropout:
                raise UsageError(f"RStarCNN: {self.arch} has no dropout (nor had its pre-training): set dropout=0, "
                                 f"not {dropout}")
            # the backbone's network continued: its BlurPool and BatchNorm settings
            self.res5 = ResNetRes5Head(self.arch, checkpoint, blurpool=self.backbone.blurpool,
                                       norm_eval=self.backbone.norm_eval, owner="RStarCNN layer4 head")
            self.feature_channels = self.res5.out_channels
        else:
            self.fc6, self.fc7 = nn.Linear(256 * 6 * 6, 4096), nn.Linear(4096, 4096)
            self.dropout = nn.Dropout(dropout)
            self.feature_channels = 4096
        self.primary_cls = nn.Linear(self.feature_channels, num_classes)
        self.secondary_cls = nn.Linear(self.feature_channels, num_classes)
        self.bbox_pred = nn.Linear(self.feature_channels, 4 * num_classes)

    def init_weights(self):
        super().init_weights()  # the backbone, and a ResNet's layer4 head (ResNetPart.init_weights)
        for layer, std in ((self.primary_cls, 0.01), (self.secondary_cls, 0.01), (self.bbox_pred, 0.001)):
            nn.init.normal_(layer.weight, 0.0, std)  # the fillers of R*CNN's train.prototxt
            nn.init.zeros_(layer.bias)
        if self.network_record.family == "resnet":
            return
        checkpoint = _require_checkpoint(self.checkpoint, "RStarCNN fc6/fc7")
        if checkpoint is not None:
            load_pretrained_layers(checkpoint, self.arch, {"fc6": self.fc6, "fc7": self.fc7})

    def extract_feat(self, batch_inputs):
        return self.backbone(batch_inputs)

    def _region_features(self, feats, boxes_per_image):
        """fc7 features (AlexNet) or pooled layer4 features (ResNet) of the boxes of each image: one head shared by
        primary and secondary regions, as R*CNN shares fc6_w/fc7_w."""
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes_per_image)])
        if len(rois) == 0:
            return feats[0].new_zeros((0, self.feature_channels))
        x = self.roi_extractor(feats, rois)
        if self.network_record.family == "resnet":
            return self.res5(x)
        return fc6_fc7(x.flatten(1), self.fc6, self.fc7, self.dropout, self.arch)

    def _image_info(self, sample):
        person = get_box_tensor(sample.gt_instances.bboxes).float()
        height, width = sample.metainfo["img_shape"][:2]
        return person, width, height

    def loss(self, batch_inputs, batch_data_samples) -> dict:
        feats = self.extract_feat(batch_inputs)
        primaries, secondaries, labels, targets = [], [], [], []
        for sample in batch_data_samples:
            person, width, height = self._image_info(sample)
            boxes = torch.cat([person, candidate_regions(person, width, height)])
            fg, owner = sample_primary(person, boxes, self.fg_iou, self.primary_per_image)
            chosen, kept = sample_secondary(boxes[fg], boxes, self.iou_range, self.num_secondary_train)
            fg, owner = fg[kept], owner[kept]
            primaries.append(boxes[fg])
            secondaries.append(boxes[chosen.flatten()])
            labels.append(sample.gt_instances.action_labels.to(person.device).long()[owner])
            targets.append(encode_deltas(boxes[fg], person[owner], self.bbox_stds))
        labels, targets = torch.cat(labels), torch.cat(targets)
        if len(labels) == 0:  # no person had a secondary region: nothing to learn from this batch
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            return {"loss_action": zero, "loss_bbox": zero.clone()}
        primary_feats = self._region_features(feats, primaries)
        secondary = self.secondary_cls(self._region_features(feats, secondaries))
        best = secondary.view(len(labels), self.num_secondary_train, -1).max(dim=1).values  # the MIL layer
        logits = self.primary_cls(primary_feats) + best
        deltas = self.bbox_pred(primary_feats).view(len(labels), -1, 4)[torch.arange(len(labels)), labels]
        loss_bbox = F.smooth_l1_loss(deltas, targets, beta=1.0, reduction="sum") / len(labels)
        return {"loss_action": F.cross_entropy(logits, labels), "loss_bbox": self.loss_bbox_weight * loss_bbox}

    def _predict_logits(self, feats, batch_data_samples) -> list:
        """Per image, (P, num_classes) logits: primary score + best secondary score (primary alone without one)."""
        persons, secondaries, owners = [], [], []
        for sample in batch_data_samples:
            person, width, height = self._image_info(sample)
            regions, owner = secondary_at_test(person, candidate_regions(person, width, height), self.iou_range,
                                            self.max_secondary_test)
            persons.append(person)
            secondaries.append(regions)
            owners.append(owner)
        primary = self.primary_cls(self._region_features(feats, persons))
        secondary = self.secondary_cls(self._region_features(feats, secondaries))
        logits, p0, s0 = [], 0, 0
        for person, regions, owner in zip(persons, secondaries, owners):
            sec = secondary[s0:s0 + len(regions)]
            best = sec.new_full((len(person), sec.shape[1]), float("-inf"))
            best = best.scatter_reduce(0, owner[:, None].expand_as(sec), sec, reduce="amax")
            best = torch.where(torch.isinf(best), torch.zeros_like(best), best)  # no secondary: primary alone
            logits.append(primary[p0:p0 + len(person)] + best)
            p0, s0 = p0 + len(person), s0 + len(regions)
        return logits

    def _forward(self, batch_inputs, batch_data_samples=None):
        return self._predict_logits(self.extract_feat(batch_inputs), batch_data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """Scores each person by the softmax probability of each action (R*CNN's test.py); 'other' is dropped."""
        logits = self._forward(batch_inputs, batch_data_samples)
        for sample, logit in zip(batch_data_samples, logits):
            boxes = get_box_tensor(sample.gt_instances.bboxes).float()
            if rescale and "scale_factor" in sample.metainfo:
                boxes = boxes / boxes.new_tensor(sample.metainfo["scale_factor"]).repeat(2)
            probs = logit.softmax(dim=1)
            sample.pred_instances = InstanceData(bboxes=boxes, action_scores=probs[:, :len(VOC_ACTIONS)])
        return batch_data_samples
