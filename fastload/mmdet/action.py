"""PASCAL VOC 2012 action classification, R*CNN style (Gkioxari, Girshick, Malik 2015), on a pre-trained AlexNet.

- `VOCActionDataset`: the people of ImageSets/Action/<split>.txt, each with its box and 10 action labels from the
  <actions> element of its XML object (the 11th VOC action, 'other', is not scored, as in the devkit).
- `RStarCNN`: score(a; person) = w_a . phi(person box) + max over secondary regions s of v_a . phi(s), where phi is
  conv5 -> RoI pool 6x6 -> fc6 -> fc7 of the pre-trained AlexNet. Secondary regions: R*CNN took selective-search
  proposals overlapping the person box with IoU in [0.2, 0.75]. We take the same IoU band over a fixed, image-wide
  multi-scale grid of boxes plus context boxes grown around each person (see `candidate_regions`): no proposal
  method to install, deterministic at test time. Training samples `num_secondary_train` of them per person; testing
  uses up to `max_secondary_test`. When none falls in the band (a person filling the frame) the whole image is the
  secondary region. Loss: per-action sigmoid cross-entropy (a person may carry several actions, or only 'other').
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
from mmengine.structures import InstanceData
from torch import nn

from ..errors import FastloadError, UsageError
from .backbone import _require_checkpoint, check_arch, load_pretrained_layers
from .voc import check_image, parse_xml, read_box, read_image_list, read_size, report_problems

ACTIONS = ("jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse", "running",
           "takingphoto", "usingcomputer", "walking")


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
        scores = np.concatenate([r[0] for r in results]).reshape(-1, len(ACTIONS))
        labels = np.concatenate([r[1] for r in results]).reshape(-1, len(ACTIONS))
        out, aps, absent = {}, [], []
        for k, action in enumerate(ACTIONS):
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
    sub_data_root: 'VOC2012/'. Each instance: bbox (0-based x1y1x2y2), bbox_label 0 (person), actions (10 ints 0/1),
    object_index. Bad input follows fastload.mmdet.voc's policy (errors naming the file; boxes clipped/skipped).
    """
    METAINFO = {"classes": ("person",), "actions": ACTIONS}

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
            labels = [_action_flag(actions, a, xml_path, index) for a in ACTIONS]
            box = read_box(obj, xml_path, width, height, index, problems)
            if box is not None:
                instances.append(dict(bbox=box, bbox_label=0, ignore_flag=0, actions=labels, object_index=index))
        missing = sorted(chosen - {inst["object_index"] for inst in instances})
        if missing:
            raise FastloadError(f"{self.ann_file} lists object(s) {missing} of {img_id}, but {xml_path} has no "
                                "usable person with <actions> at that index")
        return dict(img_path=img_path, img_id=img_id, xml_path=xml_path, width=width, height=height,
                    instances=instances)


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
    """LoadAnnotations(with_bbox=True) that also loads `gt_actions` (N, 10) float32 for the people."""

    def __init__(self, **kwargs):
        super().__init__(with_bbox=True, with_label=False, **kwargs)

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        actions = [inst["actions"] for inst in results.get("instances", [])]
        results["gt_actions"] = np.asarray(actions, dtype=np.float32).reshape(-1, len(ACTIONS))
        return results


@TRANSFORMS.register_module()
class PackActionInputs(PackDetInputs):
    """PackDetInputs that also packs `gt_actions` as gt_instances.actions."""
    mapping_table = {**PackDetInputs.mapping_table, "gt_actions": "actions"}


# ---------------------------------------------------------------- model

def candidate_regions(person: torch.Tensor, width: int, height: int,
                      scales=(0.15, 0.25, 0.4, 0.6, 0.8), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """Secondary-region candidates for one image: a sliding grid of boxes (sides `scale` x the shorter image side,
    aspect ratios `ratios`, stride half a side) plus, for every person box, the box grown 1.5x and 2x about its
    centre and shifted by half its width/height in the four directions. Clipped to the image; (M, 4) x1y1x2y2."""
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


def select_secondary(person, candidates, iou_range, limit, sample: bool, width: int, height: int):
    """(regions (M, 4), owner (M,)): for each person the candidates with IoU in iou_range (inclusive), `limit` of
    them (random when sampling, else the first), or the whole image when none qualifies."""
    iou = bbox_overlaps(person, candidates)  # (P, M)
    regions, owners = [], []
    whole = person.new_tensor([[0, 0, width - 1, height - 1]])
    for p in range(len(person)):
        idx = torch.nonzero((iou[p] >= iou_range[0]) & (iou[p] <= iou_range[1])).flatten()
        if len(idx) > limit:
            idx = idx[torch.randperm(len(idx), device=idx.device)[:limit]] if sample else idx[:limit]
        chosen = candidates[idx] if len(idx) else whole
        regions.append(chosen)
        owners.append(torch.full((len(chosen),), p, dtype=torch.long, device=person.device))
    return torch.cat(regions), torch.cat(owners)


@MODELS.register_module()
class RStarCNN(BaseDetector):
    """R*CNN action classifier over given person boxes (see the module docstring).

    Args:
        backbone (dict): FastloadAlexNet config (conv5, stride 16).
        roi_extractor (dict): RoI extractor config, e.g. TorchvisionRoIExtractor with RoIPool 6x6.
        arch (str): AlexNet arch of the fc6/fc7 head, 'alexnet_caffe' or 'alexnet_tv'.
        checkpoint (str | None): fastload checkpoint for fc6/fc7 (None is an error at init; 'random' allowed).
        num_actions (int): number of actions scored. Defaults to 10.
        iou_range (tuple[float, float]): IoU band of secondary regions with the person box. Defaults (0.2, 0.75).
        num_secondary_train (int): secondary regions sampled per person in training. Defaults to 16.
        max_secondary_test (int): most secondary regions per person at test. Defaults to 256.
        dropout (float): dropout after fc6 and fc7 in training. Defaults to 0.5.
        data_preprocessor (dict): DetDataPreprocessor config.
    """

    def __init__(self, backbone, roi_extractor, arch="alexnet_caffe", checkpoint=None, num_actions=10,
                 iou_range=(0.2, 0.75), num_secondary_train=16, max_secondary_test=256, dropout=0.5,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= iou_range[0] <= iou_range[1] <= 1.0:
            raise UsageError(f"iou_range must satisfy 0 <= low <= high <= 1, got {iou_range}")
        self.backbone = MODELS.build(backbone)
        self.roi_extractor = MODELS.build(roi_extractor)
        self.arch, self.checkpoint = check_arch(arch), checkpoint
        self.iou_range = tuple(iou_range)
        self.num_secondary_train, self.max_secondary_test = int(num_secondary_train), int(max_secondary_test)
        self.fc6, self.fc7 = nn.Linear(256 * 6 * 6, 4096), nn.Linear(4096, 4096)
        self.dropout = nn.Dropout(dropout)
        self.primary_cls = nn.Linear(4096, num_actions)
        self.secondary_cls = nn.Linear(4096, num_actions)

    def init_weights(self):
        super().init_weights()
        for layer in (self.primary_cls, self.secondary_cls):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        checkpoint = _require_checkpoint(self.checkpoint, "RStarCNN fc6/fc7")
        if checkpoint is not None:
            load_pretrained_layers(checkpoint, self.arch, {"fc6": self.fc6, "fc7": self.fc7})

    def extract_feat(self, batch_inputs):
        return self.backbone(batch_inputs)

    def _region_features(self, feats, boxes_per_image):
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes_per_image)])
        x = self.roi_extractor(feats, rois).flatten(1)
        x = self.dropout(F.relu(self.fc6(x)))
        return self.dropout(F.relu(self.fc7(x)))

    def _forward(self, batch_inputs, batch_data_samples=None):
        """Action logits (sum of primary and max-secondary scores), one (P_i, num_actions) tensor per image."""
        feats = self.extract_feat(batch_inputs)
        persons, secondaries, owners = [], [], []
        for sample in batch_data_samples:
            person = get_box_tensor(sample.gt_instances.bboxes).float()
            height, width = sample.metainfo["img_shape"][:2]
            candidates = candidate_regions(person, width, height)
            limit = self.num_secondary_train if self.training else self.max_secondary_test
            regions, owner = select_secondary(person, candidates, self.iou_range, limit, self.training,
                                              width, height)
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
            logits.append(primary[p0:p0 + len(person)] + best)
            p0, s0 = p0 + len(person), s0 + len(regions)
        return logits

    def loss(self, batch_inputs, batch_data_samples) -> dict:
        logits = torch.cat(self._forward(batch_inputs, batch_data_samples))
        targets = torch.cat([s.gt_instances.actions for s in batch_data_samples]).to(logits)
        return {"loss_action": F.binary_cross_entropy_with_logits(logits, targets)}

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        logits = self._forward(batch_inputs, batch_data_samples)
        for sample, logit in zip(batch_data_samples, logits):
            boxes = get_box_tensor(sample.gt_instances.bboxes).float()
            if rescale and "scale_factor" in sample.metainfo:
                boxes = boxes / boxes.new_tensor(sample.metainfo["scale_factor"]).repeat(2)
            sample.pred_instances = InstanceData(bboxes=boxes, action_scores=logit.sigmoid())
        return batch_data_samples
