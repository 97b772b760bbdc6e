"""py-faster-rcnn's region proposal details that mmdet 3.x does not have, for the PASCAL-DET configs.

- `PyFasterRCNNAnchorGenerator`: the anchors of py-faster-rcnn's lib/rpn/generate_anchors.py. mmdet's
  LegacyAnchorGenerator has the same centres (7.5 + 16 k) and corner convention, but sizes its non-square anchors
  as 16 * sqrt(ratio) * scale; py-faster-rcnn first rounds the sides of the 16-pixel base anchor (23 x 12 for
  ratio 0.5) and then scales them (184 x 96 at scale 8; mmdet gives 181 x 91).
- `PyFasterRCNNRPNHead`: RPNHead with py-faster-rcnn's proposal-size filter (lib/rpn/proposal_layer.py,
  `_filter_boxes`): a proposal is kept when both sides (x2 - x1 + 1, inclusive pixels) are at least
  `min_size_original` pixels of the original image, i.e. min_size_original x the image's resize factor in the
  network input (cfg.TRAIN/TEST.RPN_MIN_SIZE = 16). mmdet's own `min_bbox_size` compares (x2 - x1) > size in input
  pixels. One ordering difference stays: mmdet keeps the `nms_pre` best-scored proposals first and then filters by
  size; py-faster-rcnn filters first (docs/protocol.md).
"""
import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.models.task_modules.prior_generators import LegacyAnchorGenerator
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import get_box_wh

from ..errors import UsageError


def py_faster_rcnn_base_anchors(base_size, scales, ratios, center) -> torch.Tensor:
    """generate_anchors(base_size, ratios, scales): ratio-major, scale-minor rows of x1, y1, x2, y2 (inclusive)."""
    x_center, y_center = center
    sides = torch.round(torch.sqrt(base_size * base_size / ratios))  # _ratio_enum: ws = round(sqrt(size / ratio))
    heights = torch.round(sides * ratios)  # hs = round(ws * ratio)
    ws = (sides[:, None] * scales[None, :]).reshape(-1)  # _scale_enum
    hs = (heights[:, None] * scales[None, :]).reshape(-1)
    return torch.stack([x_center - 0.5 * (ws - 1), y_center - 0.5 * (hs - 1),
                        x_center + 0.5 * (ws - 1), y_center + 0.5 * (hs - 1)], dim=-1)


@TASK_UTILS.register_module()
class PyFasterRCNNAnchorGenerator(LegacyAnchorGenerator):
    """LegacyAnchorGenerator with py-faster-rcnn's anchor sizes (module docstring). Same arguments; center_offset
    must be 0.5 (the base anchor [0, 0, 15, 15] is centred at 7.5) and scale_major True (generate_anchors' order)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.center_offset != 0.5 or not self.scale_major:
            raise UsageError(f"PyFasterRCNNAnchorGenerator needs center_offset=0.5 and scale_major=True, got "
                             f"{self.center_offset} and {self.scale_major}")

    def gen_single_level_base_anchors(self, base_size, scales, ratios, center=None) -> torch.Tensor:
        if center is None:
            center = (self.center_offset * (base_size - 1), self.center_offset * (base_size - 1))
        return py_faster_rcnn_base_anchors(float(base_size), scales.float(), ratios.float(), center)


@MODELS.register_module()
class PyFasterRCNNRPNHead(RPNHead):
    """RPNHead whose proposals also pass py-faster-rcnn's size filter when the proposal cfg (train_cfg.rpn_proposal,
    test_cfg.rpn) sets `min_size_original` (module docstring). Other arguments as RPNHead."""

    def _bbox_post_process(self, results, cfg, rescale=False, with_nms=True, img_meta=None):
        min_size = cfg.get("min_size_original", -1)
        if min_size > 0 and len(results) > 0:
            w_scale, h_scale = img_meta["scale_factor"][:2]
            w, h = get_box_wh(results.bboxes)
            keep = (w + 1 >= min_size * w_scale) & (h + 1 >= min_size * h_scale)
            if not keep.all():
                results = results[keep]
        return super()._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)
