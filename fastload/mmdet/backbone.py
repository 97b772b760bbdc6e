"""Pre-trained AlexNet pieces for MMDetection: the conv1..conv5 trunk, the fc6/fc7 box head, a CPU-capable RoI pool.

Both AlexNets (family 'alexnet' in `fastload.models.networks`) are supported. Their layers are named differently
in a fastload checkpoint's state dict; `CHECKPOINT_KEYS` maps the canonical names used here (conv1..conv5, fc6,
fc7) to them:

    layer   alexnet_caffe   alexnet_tv (torchvision)
    conv1   conv1           features.0
    conv2   conv2           features.3
    conv3   conv3           features.6
    conv4   conv4           features.8
    conv5   conv5           features.10
    fc6     fc6             classifier.1
    fc7     fc7             classifier.4

The weights are copied by our own code in `init_weights` (not through mmengine's `Pretrained` init, which expects a
'state_dict' key and only warns about missing keys): a checkpoint of the wrong architecture, a missing key or a
shape mismatch is a `FastloadError` naming the checkpoint and every offending key.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import FastloadError, UsageError
from ..models.build import build_model
from ..models.checkpoint import checkpoint_network, load_checkpoint
from ..models.networks import archs_of
from ..transfer import RANDOM_INIT

CHECKPOINT_KEYS = {
    "alexnet_caffe": {name: name for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")},
    "alexnet_tv": {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
                   "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4"},
}
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# prefixes that DistributedDataParallel and torch.compile put in front of state-dict keys
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def check_arch(arch: str) -> str:
    if arch not in archs_of("alexnet"):
        raise UsageError(f"unknown AlexNet arch '{arch}': choose one of {', '.join(archs_of('alexnet'))}")
    return arch


def _strip_wrapper_prefixes(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_pretrained_layers(checkpoint, arch: str, targets: dict) -> None:
    """Copy weight and bias of each canonical layer (conv1..fc7) of `checkpoint` into the module `targets[layer]`.

    Raises FastloadError naming the checkpoint and all missing / mismatched keys; copies nothing in that case.
    """
    ckpt = load_checkpoint(checkpoint)
    if ckpt["arch"] != arch:
        held = checkpoint_network(ckpt, checkpoint)
        raise FastloadError(
            f"checkpoint {checkpoint} holds an '{held.name}' model but the config builds '{arch}': "
            f"use the transfer config for {held.name} ({held.transfer_configs()})")
    state = _strip_wrapper_prefixes(ckpt["model"])
    missing, mismatched, pairs = [], [], []
    for layer, module in targets.items():
        for param in ("weight", "bias"):
            key = f"{CHECKPOINT_KEYS[arch][layer]}.{param}"
            target = getattr(module, param)
            if key not in state:
                missing.append(key)
            elif tuple(state[key].shape) != tuple(target.shape):
                mismatched.append(f"{key} {tuple(state[key].shape)} != expected {tuple(target.shape)}")
            else:
                pairs.append((target, state[key]))
    if missing or mismatched:
        problems = []
        if missing:
            problems.append("missing keys: " + ", ".join(missing))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        raise FastloadError(f"cannot initialise {arch} layers {', '.join(targets)} from {checkpoint}: "
                            + " | ".join(problems))
    with torch.no_grad():
        for target, value in pairs:
            target.copy_(value.to(target.dtype))


def _require_checkpoint(checkpoint, owner: str):
    """The checkpoint path, or None for an explicit random init; a forgotten checkpoint is an error."""
    if checkpoint is None:
        raise FastloadError(
            f"{owner}: no pre-trained checkpoint given: set the config's top-level `checkpoint` "
            f"(`--cfg-options checkpoint=RUN/last.pt` under mmdet's tools, `fastload transfer CONFIG --checkpoint "
            f"RUN/last.pt`; '{RANDOM_INIT}' trains from a random initialisation)")
    return None if checkpoint == RANDOM_INIT else checkpoint


def _trunk_modules(arch: str) -> nn.Sequential:
    """conv1 .. relu5 of a freshly built AlexNet (pool5 and the classifier dropped): stride 16, 256 channels.

    alexnet_caffe pools in ceil mode, as Caffe's pooling layer does (py-faster-rcnn's detection input sizes: a
    1000x600 image gives pool1 124x74, where floor mode gives 123x73); at the 227 pre-training input both modes
    agree. alexnet_tv keeps torchvision's floor mode."""
    model = build_model(arch, num_classes=1)
    if arch == "alexnet_caffe":
        names = ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2",
                 "conv3", "relu3", "conv4", "relu4", "conv5", "relu5"]
        for name in ("pool1", "pool2"):
            getattr(model, name).ceil_mode = True
        return nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))
    return model.features[:12]  # torchvision: features[11] is conv5's ReLU, features[12] is pool5


def trunk_layer(trunk: nn.Sequential, arch: str, layer: str) -> nn.Module:
    if arch == "alexnet_caffe":
        return getattr(trunk, layer)
    return trunk[int(CHECKPOINT_KEYS[arch][layer].split(".")[1])]


def fc6_fc7(x, fc6: nn.Linear, fc7: nn.Linear, dropout: nn.Module, arch: str):
    """fc6 and fc7 with ReLU and dropout where the arch's pre-training put them: after each ReLU for alexnet_caffe
    (BVLC's drop6/drop7, as Fast R-CNN's and R*CNN's prototxts), before each fc for alexnet_tv (torchvision's
    classifier: Dropout, Linear, ReLU, Dropout, Linear, ReLU)."""
    if arch == "alexnet_tv":
        x = F.relu(fc6(dropout(x)))
        return F.relu(fc7(dropout(x)))
    x = dropout(F.relu(fc6(x)))
    return dropout(F.relu(fc7(x)))


@MODELS.register_module()
class FastloadAlexNet(BaseModule):
    """AlexNet conv1..conv5 (after ReLU, before pool5) as a single-level detection backbone, stride 16.

    Args:
        arch (str): 'alexnet_caffe' or 'alexnet_tv'. Must match the checkpoint's arch.
        checkpoint (str | None): a fastload checkpoint (RUN/last.pt) whose conv1..conv5 initialise the trunk, or
            'random'. None (the config default, filled in by `fastload transfer --checkpoint`) is an error when
            the weights are initialised. Defaults to None.
        frozen_stages (int): how many conv layers, from conv1, are kept fixed (Fast R-CNN found fine-tuning conv1
            of small networks makes no difference). 0..5. Defaults to 1.
    """

    def __init__(self, arch: str = "alexnet_caffe", checkpoint=None, frozen_stages: int = 1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch = check_arch(arch)
        if not 0 <= int(frozen_stages) <= len(CONV_LAYERS):
            raise UsageError(f"frozen_stages must be 0..{len(CONV_LAYERS)}, got {frozen_stages}")
        self.checkpoint = checkpoint
        self.frozen_stages = int(frozen_stages)
        self.trunk = _trunk_modules(self.arch)
        self.out_channels = 256
        self._freeze_stages()

    def _freeze_stages(self):
        for layer in CONV_LAYERS[:self.frozen_stages]:
            for p in trunk_layer(self.trunk, self.arch, layer).parameters():
                p.requires_grad = False

    def init_weights(self):
        super().init_weights()
        checkpoint = _require_checkpoint(self.checkpoint, "FastloadAlexNet backbone")
        if checkpoint is not None:
            targets = {layer: trunk_layer(self.trunk, self.arch, layer) for layer in CONV_LAYERS}
            load_pretrained_layers(checkpoint, self.arch, targets)

    def forward(self, x):
        return (self.trunk(x),)


@MODELS.register_module()
class AlexNetBBoxHead(Shared2FCBBoxHead):
    """Shared2FCBBoxHead whose two fc layers are AlexNet's fc6 (9216 -> 4096) and fc7 (4096 -> 4096), loaded from
    the pre-trained checkpoint, with ReLU and dropout placed as in the arch's pre-training (`fc6_fc7`); new
    cls/reg layers on top.

    Args:
        arch (str): 'alexnet_caffe' or 'alexnet_tv'.
        checkpoint (str | None): fastload checkpoint for fc6/fc7, or 'random'; None is an error at init. Defaults None.
        dropout (float): dropout at fc6 and fc7 while training. Defaults to 0.5.
        frozen (bool): keep fc6 and fc7 fixed, so that only the new cls/reg layers learn (the CPU demo's short
            runs, which measure how far the pre-trained features carry; the paper fine-tunes them). Defaults False.
        Other arguments as Shared2FCBBoxHead; in_channels=256, roi_feat_size=6 and fc_out_channels=4096 are
        required by the pre-trained fc6.
    """

    def __init__(self, arch: str = "alexnet_caffe", checkpoint=None, dropout: float = 0.5, frozen: bool = False,
                 in_channels: int = 256, roi_feat_size: int = 6, fc_out_channels: int = 4096, **kwargs):
        if (in_channels, _pair(roi_feat_size), fc_out_channels) != (256, (6, 6), 4096):
            raise UsageError(f"AlexNetBBoxHead needs in_channels=256, roi_feat_size=6, fc_out_channels=4096 (fc6 "
                             f"takes 256x6x6 inputs), got {in_channels}, {roi_feat_size}, {fc_out_channels}")
        super().__init__(in_channels=in_channels, roi_feat_size=roi_feat_size,
                         fc_out_channels=fc_out_channels, **kwargs)
        self.arch = check_arch(arch)
        self.checkpoint = checkpoint
        self.dropout = nn.Dropout(dropout)
        self.frozen = bool(frozen)
        for p in self.shared_fcs.parameters():  # no gradient, so the optimizer leaves them as loaded
            p.requires_grad = not self.frozen

    def init_weights(self):
        super().init_weights()
        checkpoint = _require_checkpoint(self.checkpoint, "AlexNetBBoxHead")
        if checkpoint is not None:
            load_pretrained_layers(checkpoint, self.arch, {"fc6": self.shared_fcs[0], "fc7": self.shared_fcs[1]})

    def forward(self, x):
        x = x.flatten(1)  # (N, 256, 6, 6) -> 9216 in the order AlexNet's own flatten uses
        x = fc6_fc7(x, self.shared_fcs[0], self.shared_fcs[1], self.dropout, self.arch)
        return self.fc_cls(x), self.fc_reg(x)


@MODELS.register_module()
class TorchvisionRoIExtractor(SingleRoIExtractor):
    """SingleRoIExtractor whose RoI layer is torchvision's RoIPool or RoIAlign.

    mmcv 2.1's RoIPool has no CPU kernel; torchvision's has both CPU and CUDA kernels with Caffe's Fast R-CNN
    rounding, so the same config trains on a laptop and on GPUs. roi_layer: dict(type='RoIPool', output_size=6)
    or dict(type='RoIAlign', output_size=6, sampling_ratio=0).
    """

    def build_roi_layers(self, layer_cfg, featmap_strides):
        import torchvision.ops

        cfg = dict(layer_cfg)
        layer_type = cfg.pop("type")
        if layer_type not in ("RoIPool", "RoIAlign"):
            raise UsageError(f"TorchvisionRoIExtractor roi_layer type '{layer_type}': choose RoIPool or RoIAlign")
        cfg["output_size"] = _pair(cfg["output_size"])
        layer_cls = getattr(torchvision.ops, layer_type)
        return nn.ModuleList([layer_cls(spatial_scale=1 / s, **cfg) for s in featmap_strides])
